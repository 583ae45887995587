"""python manage.py export_alignmmbench --dataset NAME --out FILE.jsonl [--images-zip FILE.zip]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.alignmmbench import alignmmbench_export, alignmmbench_export_images
from annotation.models import Dataset


class Command(BaseCommand):
    help = "Export a dataset to the official AlignMMBench JSONL (and optionally a zip of its images)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", metavar="NAME", required=True)
        parser.add_argument("--out", metavar="FILE.jsonl", required=True)
        parser.add_argument("--images-zip", metavar="FILE.zip", default="")

    def handle(self, *args, dataset: str, out: str, images_zip: str, **options) -> None:
        try:
            source = Dataset.objects.get(name=dataset)
        except Dataset.DoesNotExist:
            raise CommandError(f"No dataset named “{dataset}”.") from None
        with open(out, "w", encoding="utf-8") as handle:
            count = alignmmbench_export(dataset=source, out=handle)
        self.stdout.write(f"wrote {count} questions to {out}")
        if images_zip:
            with open(images_zip, "wb") as handle:
                images = alignmmbench_export_images(dataset=source, out=handle)
            self.stdout.write(f"wrote {images} images to {images_zip}")
