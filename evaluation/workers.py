"""What the workers page checks: the broker, a ping through a queue, one tiny generation per endpoint."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction

from .backends.base import Message
from .models import (
    EndpointCheck,
    ModelEndpoint,
    Ping,
)


def broker_status() -> dict:
    """Can we reach the broker? A connection attempt works the same for Redis and the filesystem."""
    from alignbench_site.celery import app

    url = settings.CELERY_BROKER_URL
    shown = url.split("@")[-1] if "@" in url else url  # never show a password
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "detail": shown}
    except Exception as exc:
        return {"ok": False, "detail": f"{shown}: {exc}"}


@transaction.atomic
def ping_create(*, queue: str = "default") -> Ping:
    from .tasks import answer_ping

    ping = Ping.objects.create(queue=queue)
    answer_ping.apply_async_on_commit((ping.pk,), queue=queue)
    return ping


CHECK_IMAGE_SIZE = (64, 64)


@transaction.atomic
def endpoint_check_create(*, endpoint: ModelEndpoint) -> EndpointCheck:
    from .tasks import check_endpoint

    check = EndpointCheck.objects.create(endpoint=endpoint)
    check_endpoint.apply_async_on_commit((check.pk,), queue=endpoint.queue)
    return check


def endpoint_check_work(check_id: int) -> None:
    """One tiny generation: a small drawn image and a short Chinese question (text only for critics)."""
    import tempfile

    from PIL import Image as PILImage

    from .backends import get_backend

    check = EndpointCheck.objects.select_related("endpoint").filter(pk=check_id).first()
    if check is None or check.status != EndpointCheck.Status.QUEUED:
        return
    endpoint = check.endpoint
    started = time.monotonic()
    try:
        with tempfile.NamedTemporaryFile(suffix=".png") as handle:
            if endpoint.role == ModelEndpoint.Role.VLM:
                PILImage.new("RGB", CHECK_IMAGE_SIZE, (200, 40, 40)).save(handle.name)
                conversation = [Message("user", "图片是什么颜色？用一个词回答。", (handle.name,))]
            else:
                conversation = [Message("user", "用一句话介绍你自己。")]
            config = endpoint.to_backend_config()
            backend = get_backend(config, cache_key=endpoint.cache_key)
            result = backend.generate([conversation])[0]
        status = EndpointCheck.Status.FAILED if result.error else EndpointCheck.Status.DONE
        EndpointCheck.objects.filter(pk=check.pk).update(status=status, output=result.text, error=result.error,
                                                         latency_s=time.monotonic() - started)
    except Exception as exc:
        EndpointCheck.objects.filter(pk=check.pk).update(status=EndpointCheck.Status.FAILED,
                                                         error=f"{type(exc).__name__}: {exc}"[:4000],
                                                         latency_s=time.monotonic() - started)
