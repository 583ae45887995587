"""python manage.py import_alignmmbench FILE.jsonl --images DIR_OR_ZIP --dataset NAME"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.alignmmbench import ImportRefused, alignmmbench_import
from annotation.models import Dataset


class Command(BaseCommand):
    help = "Import an official AlignMMBench JSONL file (+ its images folder or zip) into a dataset."

    def add_arguments(self, parser) -> None:
        parser.add_argument("jsonl", metavar="FILE.jsonl")
        parser.add_argument("--images", metavar="DIR_OR_ZIP", default="",
                            help="the folder or zip the image_path values are relative to")
        parser.add_argument("--dataset", metavar="NAME", required=True, help="created when it does not exist")

    def handle(self, *args, jsonl: str, images: str, dataset: str, **options) -> None:
        target, created = Dataset.objects.get_or_create(name=dataset)
        if created:
            self.stdout.write(f"created dataset “{target.name}”")
        step = {"next": 0}

        def progress(done: int, total: int) -> None:
            if options["verbosity"] > 1 and total and done * 10 // total >= step["next"]:
                self.stdout.write(f"  {done}/{total} lines")
                step["next"] = done * 10 // total + 1

        try:
            report = alignmmbench_import(dataset=target, jsonl=jsonl, images=images or None, progress=progress)
        except ImportRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(report.summary())
