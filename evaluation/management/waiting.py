"""`--wait` for the run commands: progress on stderr, the summary line last on stdout, exit status 1
unless the run completed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from django.core.management.base import BaseCommand, CommandError

from evaluation import runs
from evaluation.models import Run


def wait_and_report(command: BaseCommand, run: Run, *, timeout: float | None, summary: Callable[[Run], str],
                    problems: Callable[[Run], Iterable[str]] = lambda run: [run.error] if run.error else []) -> None:
    last = [-1]

    def progress(r: Run) -> None:
        if r.processed != last[0]:
            last[0] = r.processed
            command.stderr.write(f"{r.status} {r.processed}/{r.total}")

    try:
        run = runs.run_wait(run, timeout=timeout, on_progress=progress)
    except TimeoutError as exc:
        command.stdout.write(summary(run))
        raise CommandError(str(exc)) from None
    for problem in problems(run):
        command.stderr.write(problem)
    command.stdout.write(summary(run))
    if run.status != Run.Status.DONE:
        sys.exit(1)
