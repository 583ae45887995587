from django.contrib import admin

from .models import (
    Adjudication,
    Assignment,
    Dataset,
    HumanScore,
    HumanScoreRevision,
    Image,
    ImportJob,
    Question,
    ScoringItem,
    Tag,
)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "frozen", "annotators_per_response", "created_by", "created_at"]
    list_filter = ["frozen"]
    search_fields = ["name", "description"]
    raw_id_fields = ["parent", "created_by"]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "original_name", "format", "width", "height", "source", "created_at"]
    list_filter = ["format", "tags"]
    search_fields = ["original_name", "sha256", "source"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["sha256", "width", "height", "format", "file", "thumbnail"]


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "group", "variant", "task", "status", "origin", "short_text"]
    list_filter = ["task", "status", "origin", "dataset"]
    search_fields = ["text", "group", "reference"]
    raw_id_fields = ["image", "dataset", "rewrite_run", "created_by", "reviewed_by"]
    list_select_related = ["dataset"]

    @admin.display(description="text")
    def short_text(self, obj: Question) -> str:
        return obj.text[:60]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "response", "annotator", "status", "reserved_until", "created_at"]
    list_filter = ["status"]
    search_fields = ["annotator__username"]
    raw_id_fields = ["response", "annotator"]


# Scores and their history are shown here, not written: an edit in the admin would keep no
# revision row (and a new score would bypass the queue's counts). A score changes through
# HumanScore.revise, the annotator's edit, which keeps the old value, who and when.
SCORE_FIELDS = ["score", "rationale", "flags"]


class RevisionInline(admin.TabularInline):
    model = HumanScoreRevision
    extra = 0
    can_delete = False
    readonly_fields = [*SCORE_FIELDS, "changed_by", "changed_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HumanScore)
class HumanScoreAdmin(admin.ModelAdmin):
    list_display = ["id", "response", "annotator", "score", "time_spent_s", "created_at", "updated_at"]
    list_filter = ["score"]
    search_fields = ["annotator__username", "rationale"]
    readonly_fields = ["response", "annotator", *SCORE_FIELDS, "time_spent_s", "created_at", "updated_at"]
    inlines = [RevisionInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # A deleted score would leave its scoring-queue row counting it, so the response would never get
        # its N-th look; and the annotator's work would vanish without a trace.
        return False


@admin.register(HumanScoreRevision)
class HumanScoreRevisionAdmin(admin.ModelAdmin):
    list_display = ["id", "human_score", "score", "changed_by", "changed_at"]
    search_fields = ["changed_by__username"]
    readonly_fields = ["human_score", *SCORE_FIELDS, "changed_by", "changed_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Adjudication)
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["id", "response", "score", "resolved_by", "resolved_at"]
    search_fields = ["note"]
    raw_id_fields = ["response", "resolved_by"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "status", "total", "imported", "unchanged", "failed", "created_at"]
    list_filter = ["status"]
    search_fields = ["jsonl_path"]
    raw_id_fields = ["dataset", "created_by"]


@admin.register(ScoringItem)
class ScoringItemAdmin(admin.ModelAdmin):
    list_display = ["response", "dataset", "task", "scores", "full", "doubt"]
    list_filter = ["full", "dataset"]
    raw_id_fields = ["response"]
