from django.contrib import admin

from .models import (
    CriticRun,
    CriticScore,
    InferenceRun,
    ModelEndpoint,
    Ping,
    PromptTemplate,
    Response,
    RewriteRun,
    Worker,
)

RUN_COLUMNS = ["id", "status", "done", "failed", "total", "created_by", "created_at", "finished_at"]


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "role", "backend", "location", "batch_size", "concurrency", "updated_at"]
    list_filter = ["role", "backend"]
    search_fields = ["name", "model_path", "base_url", "model_name"]


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "version", "note", "created_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "body"]


@admin.register(InferenceRun)
class InferenceRunAdmin(admin.ModelAdmin):
    list_display = [*RUN_COLUMNS[:1], "endpoint", "dataset", "source", *RUN_COLUMNS[1:]]
    list_filter = ["status", "source", "endpoint"]
    search_fields = ["endpoint__name", "dataset__name"]
    list_select_related = ["endpoint", "dataset", "created_by"]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "question", "short_text", "error", "latency_s", "created_at"]
    list_filter = ["run"]
    search_fields = ["text", "error"]
    raw_id_fields = ["run", "question"]
    list_select_related = ["run__endpoint", "run__dataset", "question"]

    @admin.display(description="text")
    def short_text(self, obj: Response) -> str:
        return obj.text[:60]


@admin.register(CriticRun)
class CriticRunAdmin(admin.ModelAdmin):
    list_display = ["id", "label", "template", "status", "done", "unparsed", "failed", "total", "created_at"]
    list_filter = ["status", "critic"]
    search_fields = ["name", "critic__name"]
    filter_horizontal = ["inference_runs"]
    list_select_related = ["critic", "template"]


@admin.register(CriticScore)
class CriticScoreAdmin(admin.ModelAdmin):
    list_display = ["id", "critic_run", "response", "score", "expected_score", "parse_status", "attempts"]
    list_filter = ["parse_status", "critic_run"]
    search_fields = ["critique", "raw_output"]
    raw_id_fields = ["critic_run", "response"]


@admin.register(RewriteRun)
class RewriteRunAdmin(admin.ModelAdmin):
    list_display = ["id", "endpoint", "dataset", "template", "per_seed", "status", "done", "failed", "total"]
    list_filter = ["status"]
    search_fields = ["endpoint__name", "dataset__name"]
    list_select_related = ["endpoint", "dataset", "template"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "pid", "queues", "started_at", "last_seen"]
    search_fields = ["name", "hostname"]


@admin.register(Ping)
class PingAdmin(admin.ModelAdmin):
    list_display = ["id", "queue", "created_at", "answered_at", "answered_by"]
