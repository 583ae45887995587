"""Worker heartbeats and the hand-over of runs whose worker died.

Every worker writes a Worker row every WORKER_HEARTBEAT_SECONDS from a small thread in its main
process. The same beat looks for runs held by a worker that stopped beating (SIGKILL, a lost
host) and puts them back on the queue; the unique constraints make the second attempt finish the
run with exactly one row per item.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

log = logging.getLogger(__name__)

# "celery@host#pid": unique per process even when a restarted worker reuses its Celery hostname,
# so a dead worker's runs are told apart from the new one's.
WORKER_NAME = f"local@{socket.gethostname()}#{os.getpid()}"
_stop = threading.Event()
_state: dict = {}
# Set on warm shutdown: run loops hand their run back between batches instead of finishing it.
shutting_down = threading.Event()


@worker_shutting_down.connect
def _mark_shutting_down(**kwargs) -> None:
    shutting_down.set()


@worker_init.connect
def _name_worker(sender=None, **kwargs) -> None:
    global WORKER_NAME
    WORKER_NAME = f"{getattr(sender, 'hostname', None) or socket.gethostname()}#{os.getpid()}"


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender else []
    _state.update(queues=queues, started_at=timezone.now())
    _stop.clear()
    threading.Thread(target=_heartbeat_loop, name="alignbench-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(**kwargs) -> None:
    _stop.set()
    from .models import Worker

    try:
        Worker.objects.filter(name=WORKER_NAME).delete()
    except Exception:  # the database may already be gone at shutdown; the row will just go stale
        log.warning("could not remove worker row at shutdown", exc_info=True)


def beat_once() -> None:
    from .models import Worker
    from .runs import requeue_orphaned_runs

    Worker.beat(
        name=WORKER_NAME, hostname=socket.gethostname(), pid=os.getpid(),
        queues=_state.get("queues", []), started_at=_state.get("started_at", timezone.now()),
    )
    requeue_orphaned_runs()


def _heartbeat_loop() -> None:
    while not _stop.is_set():
        try:
            close_old_connections()
            beat_once()
        except Exception:
            log.exception("worker heartbeat failed")
        finally:
            connection.close()
        _stop.wait(settings.WORKER_HEARTBEAT_SECONDS)

