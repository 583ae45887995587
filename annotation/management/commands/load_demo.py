from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotation.demo import ensure_demo_users, load_demo_dataset


class Command(BaseCommand):
    help = "Create demo logins (embedded default only) and the drawn demo dataset. Safe to run again."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-users", action="store_true", help="Only load the demo dataset.")

    def handle(self, *args, **options) -> None:
        logins = []
        if not options["no_users"]:
            if not settings.EMBEDDED_MODE:
                raise CommandError("Demo logins are created only in the embedded default; in server mode use "
                                   "`manage.py createsuperuser` and the admin to add people to roles.")
            logins = ensure_demo_users()
        counts = load_demo_dataset()
        self.stdout.write(f"demo dataset: {counts['images_total']} images, {counts['questions']} new questions")
        from evaluation.demo import load_demo_models, load_demo_runs

        for line in [*load_demo_models(), *load_demo_runs()]:
            self.stdout.write(line)
        if logins:
            self.stdout.write("\nDemo logins (also in var/demo_logins.txt, readable only by you):")
            for username, role, password in logins:
                self.stdout.write(f"  {role:<11} {username:<11} {password}")
