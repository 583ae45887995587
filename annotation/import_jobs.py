"""Import jobs: a large upload is kept on disk and imported on a worker; the row is the job."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Dataset, DatasetFrozen, ImportJob

if TYPE_CHECKING:
    from django.contrib.auth.models import User

from .alignmmbench import ImportRefused, alignmmbench_import


def import_dir() -> Path:
    return Path(settings.VAR_DIR) / "imports"


@transaction.atomic
def import_job_start(*, dataset: Dataset, jsonl_upload, images_upload=None, user: User | None) -> ImportJob:
    """Keep the uploaded files on disk, make the job row, and enqueue it once the row is committed."""
    from .tasks import run_import

    dataset.ensure_editable()
    folder = import_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    jsonl_path = folder / "metadata.jsonl"
    with open(jsonl_path, "wb") as out:
        for chunk in jsonl_upload.chunks():
            out.write(chunk)
    images_path = ""
    if images_upload is not None:
        images_path = str(folder / "images.zip")
        with open(images_path, "wb") as out:
            for chunk in images_upload.chunks():
                out.write(chunk)
    job = ImportJob.objects.create(dataset=dataset, jsonl_path=str(jsonl_path), images_path=images_path,
                                   created_by=user)
    run_import.delay_on_commit(job.pk)
    return job


def import_job_run(*, job_id: int) -> None:
    """Run a queued job to its end. A second delivery finds it claimed and returns."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING)
    if not claimed:
        return
    job = ImportJob.objects.select_related("dataset", "created_by").get(pk=job_id)

    def progress(processed: int, total: int) -> None:
        ImportJob.objects.filter(pk=job_id).update(processed=processed, total=total)

    try:
        report = alignmmbench_import(dataset=job.dataset, jsonl=job.jsonl_path, images=job.images_path or None,
                                     user=job.created_by, progress=progress)
    except DatasetFrozen as exc:
        _finish(job_id, status=ImportJob.Status.FAILED, error=exc.messages[0])
        return
    except ImportRefused as exc:
        _finish(job_id, status=ImportJob.Status.FAILED, error=str(exc))
        return
    except Exception as exc:
        _finish(job_id, status=ImportJob.Status.FAILED, error=f"The import stopped: {exc}")
        raise
    _finish(job_id, status=ImportJob.Status.DONE, total=report.total, processed=report.total,
            imported=report.imported, unchanged=report.unchanged, failed=report.failed,
            report=[p.as_dict() for p in report.problems])
    folder = Path(job.jsonl_path).parent
    if folder.parent == import_dir():
        shutil.rmtree(folder, ignore_errors=True)  # the uploaded copies are no longer needed


def _finish(job_id: int, **fields) -> None:
    ImportJob.objects.filter(pk=job_id).update(finished_at=timezone.now(), **fields)
