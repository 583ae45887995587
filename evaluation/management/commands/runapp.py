"""Start the web server and Celery workers together; Ctrl-C (or SIGTERM, SIGHUP) stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


def _stop(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the web server and the workers (default and gpu queues) in one terminal."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, **options) -> None:
        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = [
            # HTTP endpoints, imports, rewrites: I/O bound, so threads.
            [python, "-m", "celery", "-A", "alignbench_site", "worker", "-Q", "default", "-P", "threads",
             "-c", "4", "-n", "default@%h", "-l", "INFO"],
            # Local weights: one job at a time, the model cache lives in this process.
            [python, "-m", "celery", "-A", "alignbench_site", "worker", "-Q", "gpu", "-P", "solo",
             "-n", "gpu@%h", "-l", "INFO"],
            [python, "manage.py", "runserver", options["addr"], "--noreload"],
        ]
        # Python's default SIGTERM/SIGHUP end the process without running `finally`, which would
        # leave the server and workers orphaned: treat them like Ctrl-C.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop)
        processes = [subprocess.Popen(cmd, env=env, cwd=settings.BASE_DIR) for cmd in commands]
        self.stdout.write(self.style.SUCCESS(f"\nalignbench is running at http://{options['addr']}/  (Ctrl-C stops it)\n"))
        try:
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
            self.stderr.write("a process stopped; shutting the others down")
        except KeyboardInterrupt:
            pass
        finally:
            for p in processes:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.time() + 15
            for p in processes:
                try:
                    p.wait(timeout=max(deadline - time.time(), 0.1))
                except subprocess.TimeoutExpired:
                    p.kill()
