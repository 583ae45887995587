"""Start real Celery workers against the test database and the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The DATABASE_URL of the test database pytest-django created, for a worker subprocess."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgresql://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1",
           "WORKER_HEARTBEAT_SECONDS": "1", "WORKER_STALE_SECONDS": "4",
           "ALIGNBENCH_VAR_DIR": str(settings.VAR_DIR)}
    broker = os.environ.get("CELERY_BROKER_URL")
    if broker:
        env["CELERY_BROKER_URL"] = broker
    env.update(extra)
    return env


def start_worker(*, name: str, queues: str = "default,gpu", pool: str = "threads", concurrency: int = 4,
                 log_path: Path | None = None, **extra_env: str) -> subprocess.Popen:
    log = open(log_path or (Path(settings.VAR_DIR) / f"worker-{name}.log"), "w")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "alignbench_site", "worker", "-Q", queues, "-P", pool,
         "-c", str(concurrency), "-n", f"{name}@%h", "-l", "INFO", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=worker_env(**extra_env), stdout=log, stderr=subprocess.STDOUT,
    )


def wait_for(predicate: Callable[[], object], *, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def purge_broker() -> None:
    from alignbench_site.celery import app

    with app.connection_for_write() as conn:
        for queue in ("default", "gpu"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # the queue may not exist yet
                pass
