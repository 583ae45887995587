"""Small typed readers for environment variables.

Each one fails loudly (ImproperlyConfigured naming the variable and the bad value) instead of
quietly falling back, so a typo in a deployment shows up at start-up, not as odd behaviour later.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(url: str, *, base_dir: Path) -> dict:
    """Turn a DATABASE_URL into a Django DATABASES entry.

    Supported: ``sqlite:///relative/or/absolute/path`` and ``postgres://`` / ``postgresql://``
    (psycopg 3). Anything else is refused rather than guessed at.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///var/db.sqlite3 -> relative to the project; sqlite:////abs/path -> absolute.
        raw_path = unquote(parts.path)
        if not raw_path or raw_path == "/":
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no SQLite file.")
        path = Path(raw_path[1:]) if raw_path.startswith("/") else Path(raw_path)
        if not path.is_absolute():
            path = base_dir / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            # WAL lets the web server read while the worker writes; a busy timeout rides out the
            # short write locks instead of failing with "database is locked".
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL={url!r} names no database.")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        # Parameters travel apart from the SQL and each connection prepares its frequent statements,
        # so PostgreSQL plans a hot query once per connection instead of on every request (the
        # scoring workspace spent more of PostgreSQL's CPU planning than running). Behind PgBouncer
        # in transaction mode, which can't keep prepared statements: ?prepare_threshold= (empty).
        binding = options.pop("server_side_binding", "true")
        if binding.strip().lower() not in _TRUE | _FALSE:
            raise ImproperlyConfigured(f"DATABASE_URL: server_side_binding={binding!r} is not a boolean.")
        threshold = options.pop("prepare_threshold", "5").strip()
        if threshold and not threshold.isdigit():
            raise ImproperlyConfigured(f"DATABASE_URL: prepare_threshold={threshold!r} is not a whole number.")
        options["server_side_binding"] = binding.strip().lower() in _TRUE
        options["prepare_threshold"] = int(threshold) if threshold else None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL={url!r}: unsupported scheme {scheme!r}; use sqlite:///path or postgresql://user@host/db."
    )


def broker_from_url(url: str, *, var_dir: Path) -> tuple[str, dict]:
    """Return (broker_url, broker_transport_options) for CELERY_BROKER_URL.

    ``filesystem://`` (the embedded default) keeps messages as files under var/broker, which a
    real worker consumes without any server running. ``filesystem:///some/dir`` puts them elsewhere.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "filesystem":
        path = unquote(urlsplit(url).path)
        folder = Path(path) if path not in ("", "/") else var_dir / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return "filesystem://", {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    if scheme in {"redis", "rediss", "amqp", "amqps", "sqs"}:
        return url, {"visibility_timeout": 3600} if scheme.startswith("redis") else {}
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL={url!r}: unsupported scheme {scheme!r}; use redis://host:6379/0 or filesystem://."
    )
