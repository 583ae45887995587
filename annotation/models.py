"""What people write: datasets, images, questions (seeds, rewrites, dialogues), assignments and
human scores with their revision history."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from .tasks_catalog import DIALOGUE_TASKS, TASKS, Category, Task

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = ["Category", "Task"]


class DatasetFrozen(ValidationError):
    """Raised when something tries to change a frozen dataset."""


class Dataset(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    frozen = models.BooleanField(default=False, help_text="A frozen dataset's questions can't change.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="versions",
        help_text="The dataset this one was copied from.",
    )
    version = models.PositiveIntegerField(default=1)
    annotators_per_response = models.PositiveSmallIntegerField(
        default=3, help_text="At most this many people score each response."
    )
    show_peer_scores = models.BooleanField(
        default=False, help_text="After submitting, annotators also see other people's scores."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(annotators_per_response__gte=1), name="dataset_annotators_min_1"),
        ]

    def __str__(self) -> str:
        return self.name

    def ensure_editable(self) -> None:
        if self.frozen:
            raise DatasetFrozen(f"Dataset “{self.name}” is frozen: copy it as a new version to change it.")

    def freeze(self) -> None:
        Dataset.objects.filter(pk=self.pk).update(frozen=True)
        self.frozen = True

    def unfreeze(self) -> None:
        Dataset.objects.filter(pk=self.pk).update(frozen=False)
        self.frozen = False


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True, allow_unicode=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def image_upload_to(instance: Image, filename: str) -> str:
    # Content-addressed: the same bytes always land at the same path, and names never collide.
    return f"images/{instance.sha256[:2]}/{instance.sha256}.{instance.extension}"


class ImageQuerySet(models.QuerySet):
    """The library's filters. Each is ``pk IN (one uncorrelated subquery)``: the database runs the
    subquery once, rather than probing it for each of 10,000 images, so a page stays cheap."""

    def _with(self, questions: models.QuerySet) -> models.QuerySet:
        return questions.order_by().values("image_id")

    def tagged(self, name: str) -> ImageQuerySet:
        return self.filter(pk__in=Image.tags.through.objects.filter(tag__name=name).values("image_id"))

    def with_task(self, task: str) -> ImageQuerySet:
        return self.filter(pk__in=self._with(Question.objects.filter(task=task)))

    def in_dataset(self, dataset_id: int) -> ImageQuerySet:
        return self.filter(pk__in=self._with(Question.objects.filter(dataset_id=dataset_id)))

    def with_questions(self, has: bool = True) -> ImageQuerySet:
        having = Q(pk__in=self._with(Question.objects.all()))
        return self.filter(having if has else ~having)

    def from_source(self, text: str) -> ImageQuerySet:
        return self.filter(source__icontains=text)

    def search(self, text: str) -> ImageQuerySet:
        """Name, source, licence, a tag, or the text of one of its questions."""
        return self.filter(
            Q(original_name__icontains=text) | Q(source__icontains=text) | Q(licence__icontains=text)
            | Q(pk__in=Image.tags.through.objects.filter(tag__name__icontains=text).values("image_id"))
            | Q(pk__in=self._with(Question.objects.filter(text__icontains=text)))
        )

    def with_question_count(self) -> ImageQuerySet:
        # A correlated count, evaluated for the page's rows only (not a JOIN + GROUP BY over the library).
        counts = (Question.objects.filter(image_id=OuterRef("pk")).order_by().values("image_id")
                  .annotate(n=Count("pk")).values("n"))
        return self.annotate(question_count=Coalesce(Subquery(counts), 0))


class Image(models.Model):
    class Format(models.TextChoices):
        JPEG = "JPEG"
        PNG = "PNG"
        WEBP = "WEBP"

    file = models.FileField(upload_to=image_upload_to, max_length=300)
    thumbnail = models.FileField(upload_to="thumbnails/", max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=8, choices=Format.choices)
    original_name = models.CharField(max_length=255, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="images")
    source = models.CharField(max_length=300, blank=True)
    licence = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(width__gte=1) & Q(height__gte=1), name="image_positive_size"),
        ]

    def __str__(self) -> str:
        return self.original_name or self.sha256[:12]

    @property
    def extension(self) -> str:
        return {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[self.format]

    def ensure_thumbnail(self):
        """The thumbnail file, made once on first request and kept."""
        from .images import make_thumbnail, thumbnail_name

        if self.thumbnail and self.thumbnail.storage.exists(self.thumbnail.name):
            return self.thumbnail
        name = thumbnail_name(self.sha256)
        storage = self.file.storage
        if not storage.exists(name):
            from django.core.files.base import ContentFile

            name = storage.save(name, ContentFile(make_thumbnail(self.file.path)))
        self.thumbnail.name = name
        Image.objects.filter(pk=self.pk).update(thumbnail=name)
        return self.thumbnail


class QuestionQuerySet(models.QuerySet):
    def seeds(self) -> QuestionQuerySet:
        return self.filter(variant=0)

    def accepted(self) -> QuestionQuerySet:
        return self.filter(status=Question.Status.ACCEPTED)

    def proposed(self) -> QuestionQuerySet:
        return self.filter(status=Question.Status.PROPOSED)

    def dialogues(self) -> QuestionQuerySet:
        return self.filter(task__in=DIALOGUE_TASKS)

    def in_group(self, question: Question) -> QuestionQuerySet:
        return self.filter(dataset_id=question.dataset_id, group=question.group)

    def numbered(self) -> QuestionQuerySet:
        """Seeds, accepted rewrites and drafts: the questions that have an official id."""
        return self.exclude(variant=None)

    def search(self, text: str) -> QuestionQuerySet:
        """Question or reference text; an official id (or its start, like 00110003) finds its group."""
        condition = Q(text__icontains=text) | Q(reference__icontains=text)
        if re.fullmatch(r"\d{4,8}(-\d+)?", text):
            condition |= Q(group__startswith=text.split("-")[0])
        return self.filter(condition)


class Question(models.Model):
    class Origin(models.TextChoices):
        HUMAN = "human", "written by a person"
        LLM = "llm", "proposed by an LLM"
        IMPORT = "import", "imported"

    class Status(models.TextChoices):
        DRAFT = "draft"
        PROPOSED = "proposed"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="questions")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="questions")
    task = models.CharField(max_length=20, choices=Task.choices)
    # The rewrite group: the TTTTSSSS part of an official question_id. Variant 0 is the seed;
    # proposals have no variant until a curator accepts them.
    group = models.CharField(max_length=32)
    variant = models.PositiveSmallIntegerField(null=True, blank=True)
    text = models.TextField(help_text="The final user turn.")
    history = models.JSONField(default=list, blank=True, help_text="Earlier rounds: [{user, assistant}, ...]")
    reference = models.TextField(blank=True, help_text="Reference answer; kept on the seed, shared by rewrites.")
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.HUMAN)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCEPTED)
    drift = models.JSONField(default=list, blank=True, help_text="Drift flags found on a proposed rewrite.")
    rewrite_run = models.ForeignKey(
        "evaluation.RewriteRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="proposals"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = QuestionQuerySet.as_manager()

    class Meta:
        ordering = ["dataset_id", "group", F("variant").asc(nulls_last=True), "id"]
        indexes = [
            models.Index(fields=["dataset", "task"]),
            models.Index(fields=["dataset", "status"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "group", "variant"], name="question_unique_group_variant"),
            models.CheckConstraint(condition=Q(task__in=Task.values), name="question_task_valid"),
            models.CheckConstraint(condition=~Q(text=""), name="question_text_not_empty"),
            # Accepted and draft questions have a variant index; proposals and rejects do not.
            models.CheckConstraint(
                condition=(Q(status__in=["accepted", "draft"], variant__isnull=False)
                           | Q(status__in=["proposed", "rejected"], variant__isnull=True)),
                name="question_variant_matches_status",
            ),
            # The reference answer lives once, on the seed.
            models.CheckConstraint(condition=Q(variant=0) | Q(reference=""), name="question_reference_on_seed"),
        ]

    def __str__(self) -> str:
        return f"{self.question_id} {self.text[:40]}"

    @property
    def question_id(self) -> str:
        """The official id, TTTTSSSS-K; proposals show a '?' for their variant."""
        return f"{self.group}-{'?' if self.variant is None else self.variant}"

    @property
    def category(self) -> str:
        return TASKS[self.task].category

    @property
    def is_seed(self) -> bool:
        return self.variant == 0

    @property
    def is_dialogue(self) -> bool:
        return self.task in DIALOGUE_TASKS

    @cached_property
    def seed(self) -> Question:
        """Variant 0 of the group, which keeps the reference answer and the dialogue history."""
        if self.is_seed:
            return self
        return Question.objects.get(dataset_id=self.dataset_id, group=self.group, variant=0)

    @property
    def reference_answer(self) -> str:
        return self.reference if self.is_seed else self.seed.reference

    @classmethod
    def attach_seeds(cls, questions: Iterable[Question]) -> None:
        """Load the seeds of these rewrites in one query, so their reference answer and dialogue
        history cost nothing more per question."""
        rewrites = [q for q in questions if not q.is_seed and "seed" not in q.__dict__]
        if not rewrites:
            return
        seeds = cls.objects.filter(dataset_id__in={q.dataset_id for q in rewrites},
                                   group__in={q.group for q in rewrites}, variant=0)
        by_group = {(seed.dataset_id, seed.group): seed for seed in seeds}
        for question in rewrites:
            if (seed := by_group.get((question.dataset_id, question.group))) is not None:
                question.seed = seed

    @property
    def group_has_seed(self) -> bool:
        """A rewrite (accepted or proposed) belongs to a stored seed and takes its history from it."""
        if self.variant == 0 or not self.group or not self.dataset_id:
            return False
        return Question.objects.filter(dataset_id=self.dataset_id, group=self.group, variant=0).exclude(
            pk=self.pk).exists()

    @property
    def dialogue_history(self) -> list:
        """The history lives on the seed, like the reference answer."""
        return self.history if self.is_seed or self.history else self.seed.history

    def rewrites(self) -> QuestionQuerySet:
        """The seed's other variants and pending proposals, in variant order."""
        return Question.objects.in_group(self).exclude(pk=self.pk)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not (self.text or "").strip():
            errors["text"] = "The question text can't be empty."
        history = self.history or []
        if not isinstance(history, list) or any(
            not isinstance(turn, dict) or set(turn) != {"user", "assistant"}
            or not all(isinstance(v, str) and v.strip() for v in turn.values())
            for turn in history
        ):
            errors["history"] = "Each dialogue round needs a non-empty user turn and a non-empty assistant turn."
        elif self.task in DIALOGUE_TASKS and not history and self.variant in (0, None) and not self.group_has_seed:
            errors["history"] = "Dialogue tasks need at least one earlier round of user and assistant turns."
        elif self.task and self.task not in DIALOGUE_TASKS and history:
            errors["history"] = "Only the dialogue tasks (Coherence, Incoherence) have a dialogue history."
        if errors:
            raise ValidationError(errors)

    @classmethod
    def next_group(cls, dataset: Dataset, task: str) -> str:
        """A new seed group id in the official TTTTSSSS form, after the highest one in use."""
        code = TASKS[task].code
        last = (
            cls.objects.filter(dataset=dataset, group__startswith=code, group__regex=r"^\d{8}$")
            .aggregate(m=Max("group"))["m"]
        )
        index = int(last[4:]) + 1 if last else 0
        return f"{code}{index:04d}"

    def next_variant(self) -> int:
        last = Question.objects.in_group(self).aggregate(m=Max("variant"))["m"]
        return 0 if last is None else last + 1

    @transaction.atomic
    def accept_rewrite(self, *, by: User, text: str | None = None) -> None:
        """Turn a proposed rewrite into the group's next variant (optionally with edited text)."""
        self.dataset.ensure_editable()
        # Lock the seed row so two curators accepting at once get different variant indexes.
        Question.objects.select_for_update().filter(pk=self.seed.pk).first()
        if text is not None:
            self.text = text.strip()
        self.variant = self.next_variant()
        self.status = Question.Status.ACCEPTED
        self.reviewed_by = by
        self.full_clean(exclude=["rewrite_run", "image", "dataset"])
        self.save()

    def reject_rewrite(self, *, by: User) -> None:
        self.dataset.ensure_editable()
        self.status = Question.Status.REJECTED
        self.variant = None
        self.reviewed_by = by
        self.save(update_fields=["status", "variant", "reviewed_by", "updated_at"])


class AssignmentQuerySet(models.QuerySet):
    def active(self) -> AssignmentQuerySet:
        return self.filter(status=Assignment.Status.RESERVED, reserved_until__gt=timezone.now())

    def for_annotator(self, user: User) -> AssignmentQuerySet:
        return self.filter(annotator=user)


class Assignment(models.Model):
    class Status(models.TextChoices):
        RESERVED = "reserved"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    response = models.ForeignKey("evaluation.Response", on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    reserved_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "reserved_until"])]
        constraints = [
            models.UniqueConstraint(fields=["response", "annotator"], name="assignment_unique_response_annotator"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} → response {self.response_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status == self.Status.RESERVED and self.reserved_until > timezone.now()

    def extend(self, minutes: int) -> None:
        self.reserved_until = timezone.now() + timedelta(minutes=minutes)
        self.save(update_fields=["reserved_until", "updated_at"])

    def skip(self) -> None:
        self.status = self.Status.SKIPPED
        self.save(update_fields=["status", "updated_at"])

    def expire(self) -> None:
        self.status = self.Status.EXPIRED
        self.save(update_fields=["status", "updated_at"])


class HumanScore(models.Model):
    class Flag(models.TextChoices):
        REFERENCE_WRONG = "reference_wrong", "reference looks wrong"
        IMAGE_UNREADABLE = "image_unreadable", "image unreadable"
        RESPONSE_CUT_OFF = "response_cut_off", "response cut off"

    response = models.ForeignKey("evaluation.Response", on_delete=models.CASCADE, related_name="human_scores")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="human_scores")
    score = models.PositiveSmallIntegerField()
    rationale = models.TextField(blank=True)
    flags = models.JSONField(default=list, blank=True)
    time_spent_s = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["response", "annotator"], name="humanscore_unique_response_annotator"),
            models.CheckConstraint(condition=Q(score__gte=1) & Q(score__lte=10), name="humanscore_score_1_10"),
            models.CheckConstraint(condition=Q(time_spent_s__gte=0), name="humanscore_time_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator}: {self.score} on response {self.response_id}"

    # Every write of one score (the scoring page, an edit, the admin) recounts its response in the
    # same transaction; bulk loads call Response.objects.refresh_human_stats() themselves.
    # (savepoint=False: inside the caller's transaction this adds no statements)
    def save(self, *args, **kwargs) -> None:
        with transaction.atomic(savepoint=False):
            super().save(*args, **kwargs)
            self._refresh_response_stats()

    def delete(self, *args, **kwargs):
        with transaction.atomic(savepoint=False):
            deleted = super().delete(*args, **kwargs)
            self._refresh_response_stats()
        return deleted

    def _refresh_response_stats(self) -> None:
        responses = self._meta.get_field("response").related_model.objects
        responses.filter(pk=self.response_id).refresh_human_stats()

    @transaction.atomic
    def revise(self, *, score: int, rationale: str, flags: list[str], by: User) -> HumanScoreRevision | None:
        """Change the score, keeping the old value, who changed it and when."""
        if (score, rationale, sorted(flags)) == (self.score, self.rationale, sorted(self.flags)):
            return None
        revision = HumanScoreRevision.objects.create(
            human_score=self, score=self.score, rationale=self.rationale, flags=self.flags, changed_by=by
        )
        self.score, self.rationale, self.flags = score, rationale, flags
        self.save(update_fields=["score", "rationale", "flags", "updated_at"])
        return revision


class HumanScoreRevision(models.Model):
    """The value a HumanScore had before an edit."""

    human_score = models.ForeignKey(HumanScore, on_delete=models.CASCADE, related_name="revisions")
    score = models.PositiveSmallIntegerField()
    rationale = models.TextField(blank=True)
    flags = models.JSONField(default=list, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1) & Q(score__lte=10), name="revision_score_1_10"),
        ]

    def __str__(self) -> str:
        return f"was {self.score} (changed by {self.changed_by_id} at {self.changed_at:%Y-%m-%d %H:%M})"


class Adjudication(models.Model):
    """A researcher's resolution of a response where people (or people and critic) disagree."""

    response = models.OneToOneField("evaluation.Response", on_delete=models.CASCADE, related_name="adjudication")
    score = models.PositiveSmallIntegerField(null=True, blank=True)
    note = models.TextField()
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    resolved_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=1) & Q(score__lte=10)), name="adjudication_score_1_10"
            ),
        ]

    def __str__(self) -> str:
        return f"adjudication of response {self.response_id}"


class ImportJob(models.Model):
    """An AlignMMBench import running on a worker; the row carries its progress and report."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="imports")
    jsonl_path = models.CharField(max_length=500)
    images_path = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=list, blank=True, help_text="[{line, question_id, reason}, ...]")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.pk} into {self.dataset_id} ({self.status})"


class ScoringItemQuerySet(models.QuerySet):
    def open(self) -> ScoringItemQuerySet:
        return self.filter(full=False)

    def in_dataset(self, dataset: Dataset) -> ScoringItemQuerySet:
        return self.filter(dataset=dataset)


class ScoringItem(models.Model):
    """A response in its dataset's human-scoring queue.

    The queue needs three things the Response table can't give cheaply at 100,000 rows: an order
    that an index can walk (balanced, random, least-sure-first), a "this one has all its scores"
    flag so finished work drops out of that index, and one row per response to lock while
    reserving it. Rows are made by ``ScoringItem.objects.sync(dataset)`` (see annotation/scoring.py);
    ``scores`` counts submitted human scores and is only changed under that row's lock.
    """

    response = models.OneToOneField(
        "evaluation.Response", primary_key=True, on_delete=models.CASCADE, related_name="scoring_item"
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="scoring_items")
    task = models.CharField(max_length=20, choices=Task.choices)
    # Round-robin rank within the response's (task, run): ordering by it interleaves tasks and models.
    balanced_key = models.PositiveIntegerField(default=0)
    random_key = models.PositiveIntegerField(default=0)
    # How unsure the critics are (unparsed replies, expected-score spread, gap between critics).
    doubt = models.FloatField(default=0)
    scores = models.PositiveSmallIntegerField(default=0)
    full = models.BooleanField(default=False)
    touched_at = models.DateTimeField(null=True, blank=True)

    objects = ScoringItemQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["dataset", "balanced_key", "random_key"], condition=Q(full=False),
                         name="scoringitem_open_balanced"),
            models.Index(fields=["dataset", "random_key"], condition=Q(full=False), name="scoringitem_open_random"),
            models.Index(fields=["dataset", "-doubt", "random_key"], condition=Q(full=False),
                         name="scoringitem_open_doubt"),
            models.Index(fields=["dataset", "scores"], name="scoringitem_dataset_scores"),
        ]

    def __str__(self) -> str:
        return f"response {self.response_id} ({self.scores} scores)"
