import json

from django.core.management.base import BaseCommand, CommandError

from evaluation import analysis
from evaluation.models import CriticRun


class Command(BaseCommand):
    help = "Critic-human agreement (MAE, Pearson, Spearman, Kendall tau-b, exact, within-1, band) with 95% intervals."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--critic-run", type=int, action="append", required=True, dest="critic_runs",
                            help="A critic run id; repeat to compare critics side by side.")
        parser.add_argument("--json", action="store_true", help="Print the whole report as JSON.")

    def handle(self, *args, **o) -> None:
        runs = list(CriticRun.objects.filter(pk__in=o["critic_runs"]).select_related("critic").order_by("pk"))
        missing = set(o["critic_runs"]) - {run.pk for run in runs}
        if missing:
            raise CommandError(f"No critic run {', '.join(map(str, sorted(missing)))}.")
        report = analysis.agreement_report(critic_runs=runs)
        if o["json"]:
            self.stdout.write(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
            return
        names = list(analysis.METRIC_LABELS.values())
        self.stdout.write("\t".join(["critic", "n", "unparsed", *names]))
        for row in report.overall:
            self.stdout.write("\t".join([row.critic, str(row.n), str(row.unparsed), *(e.display() for e in row.cells)]))
        if report.humans:
            alpha = report.humans.alpha
            self.stdout.write(f"Krippendorff alpha (interval): {'undefined' if alpha is None else f'{alpha:.3f}'}"
                              f" over {report.humans.units} responses")
