from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evaluation"
    verbose_name = "Evaluation (what models write)"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (worker heartbeats)
