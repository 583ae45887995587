"""Writing a command's output file: all of it or nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO

from django.core.management.base import CommandError


def write_whole(path: str, write: Callable[[IO[str]], int]) -> int:
    """``write(out)`` into ``path.partial``, renamed to ``path`` at the end; a failure (a missing folder,
    a full disk, a database error half way) leaves no half-written file and a clear CommandError."""
    partial = f"{path}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as out:
            count = write(out)
        os.replace(partial, path)
    except OSError as exc:
        raise CommandError(f"Can't write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return count
