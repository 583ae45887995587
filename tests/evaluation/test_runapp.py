"""`manage.py runapp` (what `make run` ends with): one terminal, web server + both workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.workers import ROOT, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie no one has reaped yet is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_runapp_stops_the_server_and_both_workers(signum, tmp_path):
    port = _free_port()
    log = open(tmp_path / "runapp.log", "w")
    app = subprocess.Popen([sys.executable, "manage.py", "runapp", "--addr", f"127.0.0.1:{port}"],
                           cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT)
    children: list[int] = []
    try:
        wait_for(lambda: _serves(f"http://127.0.0.1:{port}/login/"), timeout=60, what="the web server")
        children = wait_for(lambda: len(_children(app.pid)) == 3 and _children(app.pid), what="three children")
        assert all(_alive(pid) for pid in children)

        app.send_signal(signum)
        assert app.wait(timeout=30) == 0
        wait_for(lambda: not any(_alive(pid) for pid in children), timeout=20, what="the children to stop")
        assert not _serves(f"http://127.0.0.1:{port}/login/")
    finally:
        for pid in [app.pid, *children]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        app.wait()
        log.close()
