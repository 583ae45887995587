from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from annotation.tasks_catalog import TASKS
from evaluation import preferences


class Command(BaseCommand):
    help = ("Write preference pairs (chosen / rejected answers) from human scores, critic runs, votes or "
            "pair-judge runs, in TRL, RLAIF-V, LLaVA-RLHF or POVID format, with their images.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--source", action="append", required=True,
                            help="human-scores | human-votes | critic-run:ID | pair-run:ID (repeatable)")
        parser.add_argument("--min-margin", type=float, default=2.0,
                            help="Points between the two responses' scores (pointwise sources). Default 2.")
        parser.add_argument("--min-agreement", type=float, default=0.0,
                            help="0-1: share of annotators (or voters) on the chosen side.")
        parser.add_argument("--critic-agrees", action="store_true",
                            help="critic-run: only pairs the humans who scored both order the same way.")
        parser.add_argument("--task", action="append", default=[], choices=sorted(TASKS))
        parser.add_argument("--run", action="append", type=int, default=[], help="Only these inference runs.")
        parser.add_argument("--per-question", type=int, default=0, help="At most K pairs per question and source.")
        parser.add_argument("--keep-duplicates", action="store_true", help="Keep identical answer texts.")
        parser.add_argument("--format", default="trl", choices=preferences.FORMATS)
        parser.add_argument("--split", type=float, default=0.0,
                            help="Validation share, split by seed group (writes FILE-train and FILE-validation).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", required=True)
        parser.add_argument("--images-zip", help="Write the images once into this zip (relative paths in rows).")
        parser.add_argument("--images-dir", help="Or into this folder.")

    def handle(self, *args, **o) -> None:
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset named {o['dataset']!r}.")
        if o["images_zip"] and o["images_dir"]:
            raise CommandError("Choose --images-zip or --images-dir, not both.")
        try:
            options = preferences.Options(
                dataset=dataset, sources=[preferences.Source.parse(s) for s in o["source"]],
                min_margin=o["min_margin"], min_agreement=o["min_agreement"], tasks=o["task"], run_ids=o["run"],
                per_question=max(o["per_question"], 0), dedupe=not o["keep_duplicates"],
                critic_agrees=o["critic_agrees"])
            images = o["images_zip"] or o["images_dir"]
            written = preferences.export(options, fmt=o["format"], out=Path(o["out"]),
                                         images=Path(images) if images else None,
                                         images_as_zip=bool(o["images_zip"]), split=o["split"], seed=o["seed"])
        except preferences.PreferenceError as error:
            raise CommandError(str(error)) from None
        for line in preferences.report_lines(written):
            self.stdout.write(line)
        self.stdout.write("files: " + " ".join(str(p) for p in written.files))
