"""Celery tasks of the annotation app: thin; the work is in import_jobs."""

from __future__ import annotations

from celery import shared_task

from . import import_jobs


@shared_task(name="annotation.tasks.run_import")  # the default queue ("default")
def run_import(job_id: int) -> None:
    import_jobs.import_job_run(job_id=job_id)
