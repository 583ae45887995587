"""Celery tasks of the annotation app: thin; the work is in services."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="annotation.tasks.run_import")  # the default queue ("default")
def run_import(job_id: int) -> None:
    services.import_job_run(job_id=job_id)
