"""What models write and the jobs that make them write it: endpoints, prompt templates, inference,
critic and rewrite runs, responses and critic scores, and the workers seen doing the work."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from .backends.base import BackendConfig


class ModelEndpoint(models.Model):
    class Role(models.TextChoices):
        VLM = "vlm", "VLM (answers questions)"
        CRITIC = "critic", "critic (scores answers)"
        REWRITER = "rewriter", "rewriter (proposes rewrites)"

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "transformers (local weights)"
        OPENAI = "openai", "OpenAI-compatible HTTP (vLLM, SGLang, LMDeploy, hosted APIs)"

    name = models.CharField(max_length=100, unique=True)
    role = models.CharField(max_length=10, choices=Role.choices)
    backend = models.CharField(max_length=20, choices=Backend.choices)
    model_path = models.CharField(max_length=500, blank=True, help_text="Local directory with the weights.")
    adapter_path = models.CharField(max_length=500, blank=True,
                                    help_text="A LoRA adapter directory loaded (PEFT) on top of the weights.")
    base_endpoint = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="fine_tuned", help_text="The critic this one was fine-tuned from.")
    # A CharField, not URLField: internal hosts like http://gpu7:8000/v1 have no dot and are fine.
    base_url = models.CharField(max_length=500, blank=True, help_text="e.g. http://gpu-host:8000/v1")
    model_name = models.CharField(max_length=200, blank=True, help_text="The model name the server expects.")
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable holding the API key (never the key)."
    )
    max_new_tokens = models.PositiveIntegerField(default=512)
    temperature = models.FloatField(default=0.0)
    top_p = models.FloatField(default=1.0)
    batch_size = models.PositiveIntegerField(default=8, help_text="transformers: questions per generate() call.")
    concurrency = models.PositiveIntegerField(default=8, help_text="openai: requests in flight at once.")
    device = models.CharField(max_length=20, default="auto")
    dtype = models.CharField(max_length=20, default="auto")
    trust_remote_code = models.BooleanField(default=False)
    send_image = models.BooleanField(default=False, help_text="Critics: also send the image (VLM judges).")
    timeout_s = models.FloatField(default=120.0)
    max_retries = models.PositiveSmallIntegerField(default=5)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=["vlm", "critic", "rewriter"]), name="endpoint_role_valid"),
            models.CheckConstraint(
                condition=(Q(backend="transformers") & ~Q(model_path=""))
                | (Q(backend="openai") & ~Q(base_url="") & ~Q(model_name="")),
                name="endpoint_backend_has_location",
            ),
            models.CheckConstraint(condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="endpoint_temperature"),
            models.CheckConstraint(condition=Q(top_p__gt=0) & Q(top_p__lte=1), name="endpoint_top_p"),
            models.CheckConstraint(
                condition=Q(batch_size__gte=1) & Q(concurrency__gte=1) & Q(max_new_tokens__gte=1),
                name="endpoint_positive_sizes",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def location(self) -> str:
        return self.model_path if self.backend == self.Backend.TRANSFORMERS else f"{self.base_url} · {self.model_name}"

    @property
    def queue(self) -> str:
        """Local weights need a GPU worker; HTTP endpoints only need a thread on any worker."""
        return "gpu" if self.backend == self.Backend.TRANSFORMERS else "default"

    @property
    def items_per_batch(self) -> int:
        """How many items a run task takes at a time. HTTP: many waves of the concurrent slots (answers
        are stored as they arrive, so a batch only bounds the wait for its slowest request); local
        weights: one generate() call."""
        if self.backend == self.Backend.OPENAI:
            return max(self.concurrency * 16, 16)
        return self.batch_size

    @property
    def cache_key(self) -> str:
        # Any edit of the endpoint changes updated_at, so a worker reloads instead of reusing stale weights.
        return f"{self.pk}:{self.updated_at.timestamp() if self.updated_at else 0}"

    def to_backend_config(self) -> BackendConfig:
        from .backends.base import BackendConfig

        return BackendConfig(
            backend=self.backend,
            # A critic that is sent the image is a VLM judge and loads as one.
            kind="vlm" if self.role == self.Role.VLM or (self.role == self.Role.CRITIC and self.send_image) else "text",
            path=self.model_path,
            adapter_path=self.adapter_path,
            base_url=self.base_url,
            model_name=self.model_name,
            api_key=os.environ.get(self.api_key_env, "") if self.api_key_env else "",
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            device=settings.MODEL_DEVICE if self.device == "auto" else self.device,
            dtype=settings.MODEL_DTYPE if self.dtype == "auto" else self.dtype,
            trust_remote_code=self.trust_remote_code,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
        )

    # What shapes an answer. A run remembers these; a stopped run whose endpoint has since changed
    # any of them can't be resumed, or one run would mix two models' answers. Where the model runs
    # (base URL, device) and how fast (batch size, concurrency) may change in between.
    ANSWER_FIELDS = ("backend", "model_path", "adapter_path", "model_name", "max_new_tokens", "temperature", "top_p",
                     "dtype", "trust_remote_code", "send_image")

    def changes_since(self, params: dict) -> list[str]:
        """`field: old -> new` for each answer-shaping setting that differs from a run's snapshot."""
        return [f"{name}: {params[name]!r} -> {getattr(self, name)!r}" for name in self.ANSWER_FIELDS
                if name in params and params[name] != getattr(self, name)]

    def generation_params(self) -> dict:
        """The snapshot a run keeps, so later edits of the endpoint don't rewrite history."""
        return {
            "backend": self.backend, "model_path": self.model_path, "adapter_path": self.adapter_path,
            "base_url": self.base_url,
            "model_name": self.model_name, "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature, "top_p": self.top_p, "batch_size": self.batch_size,
            "concurrency": self.concurrency, "device": self.device, "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code, "send_image": self.send_image,
        }


class PromptTemplate(models.Model):
    """A versioned prompt. Rows are never edited: a change is a new version, so every run can say
    exactly which words it sent."""

    class Kind(models.TextChoices):
        CRITIC = "critic"
        REWRITE = "rewrite"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    body = models.TextField()
    task_rules = models.JSONField(default=dict, blank=True, help_text="Per-task rules: {task: text}.")
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name", "version"], name="template_unique_version"),
            models.CheckConstraint(condition=~Q(body=""), name="template_body_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    def revise(self, *, body: str, task_rules: dict | None = None, note: str = "", by: User | None) -> PromptTemplate:
        latest = PromptTemplate.objects.filter(kind=self.kind, name=self.name).aggregate(m=Max("version"))["m"] or 0
        return PromptTemplate.objects.create(
            kind=self.kind, name=self.name, version=latest + 1, body=body,
            task_rules=self.task_rules if task_rules is None else task_rules, note=note, created_by=by,
        )


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class RunQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)

    def orphaned(self):
        """Running jobs whose worker has stopped sending heartbeats (killed, lost, powered off)."""
        stale = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
        live = Worker.objects.filter(last_seen__gte=stale).values("name")
        return self.filter(status=JobStatus.RUNNING).exclude(claimed_by__in=live)


class Run(models.Model):
    """What every job row shares: its state, counts, the worker that holds it and timestamps.

    The row is the job. A task claims it with a conditional UPDATE, so two deliveries of the same
    message (or a re-enqueue after a worker died) never work on one run at the same time.
    """

    Status = JobStatus

    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)
    # Which task holds the run: every claim draws a new token, so a task that was cancelled and
    # resumed, or re-delivered, while an earlier one was still busy leaves one of them working.
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    # Where the latest claim started, for the speed and time left of a resumed run.
    resumed_at = models.DateTimeField(null=True, blank=True, editable=False)
    processed_before = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RunQuerySet.as_manager()

    PROCESSED_FIELDS = ("done", "failed")

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def processed(self) -> int:
        return self.done + self.failed

    @property
    def retryable(self) -> int:
        """Items a "retry" would redo."""
        return self.failed

    def every_request_failed(self) -> bool:
        """Nothing came back at all (a dead endpoint, a wrong model name): the run fails, not "done"."""
        return 0 < self.failed == self.processed

    @property
    def remaining(self) -> int:
        return max(self.total - self.processed, 0)

    @property
    def percent(self) -> float:
        return 100.0 * self.processed / self.total if self.total else 0.0

    def claim(self, worker: str) -> bool:
        """Take the run for this task if nobody live holds it; True when we got it.

        The same worker may take over its own run (a re-delivered message, a resume while the task
        that was cancelled is still finishing a chunk): the new claim token tells the older task to stop.
        """
        now = timezone.now()
        stale = now - timedelta(seconds=settings.WORKER_STALE_SECONDS)
        live = Worker.objects.filter(last_seen__gte=stale).exclude(name=worker).values("name")
        processed = sum((F(name) for name in self.PROCESSED_FIELDS[1:]), F(self.PROCESSED_FIELDS[0]))
        got = (
            type(self).objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES)
            .filter(Q(status=JobStatus.QUEUED) | Q(claimed_by="") | Q(claimed_by=worker) | ~Q(claimed_by__in=live))
            .update(status=JobStatus.RUNNING, claimed_by=worker, claim_token=uuid.uuid4().hex,
                    started_at=Coalesce(F("started_at"), Value(now)), resumed_at=now, processed_before=processed,
                    updated_at=now)
        )
        self.refresh_from_db()
        return got == 1

    def endpoint_changes(self) -> list[str]:
        """What the run's endpoint changed since the run started (see ModelEndpoint.ANSWER_FIELDS)."""
        endpoint = self.model_endpoint
        return endpoint.changes_since(self.params) if endpoint is not None else []

    def holds_claim(self) -> bool:
        """Still this task's to work on: not cancelled, and not taken over by a later claim."""
        return type(self).objects.filter(pk=self.pk, status=JobStatus.RUNNING, claim_token=self.claim_token).exists()

    def cancel(self) -> bool:
        got = type(self).objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now(), updated_at=timezone.now()
        )
        self.refresh_from_db()
        return got == 1

    def requeue(self) -> bool:
        """Resume a stopped run: it goes back to the queue and does only what is missing."""
        got = type(self).objects.filter(pk=self.pk).exclude(status__in=ACTIVE_STATUSES).update(
            status=JobStatus.QUEUED, claimed_by="", finished_at=None, error="", updated_at=timezone.now()
        )
        self.refresh_from_db()
        return got == 1

    def finish(self, *, error: str = "") -> None:
        status = JobStatus.FAILED if error else JobStatus.DONE
        type(self).objects.filter(pk=self.pk, status=JobStatus.RUNNING, claim_token=self.claim_token).update(
            status=status, error=error, claimed_by="", finished_at=timezone.now(), updated_at=timezone.now()
        )
        self.refresh_from_db()

    def items_per_second(self) -> float | None:
        """Since the latest claim, so a run resumed hours later is not measured over the pause."""
        start, before = (self.resumed_at, self.processed_before) if self.resumed_at else (self.started_at, 0)
        if not start or self.processed <= before:
            return None
        end = self.finished_at or timezone.now()
        seconds = (end - start).total_seconds()
        return (self.processed - before) / seconds if seconds > 0 else None

    def seconds_left(self) -> float | None:
        rate = self.items_per_second()
        return self.remaining / rate if rate else None


class InferenceRun(Run):
    class Source(models.TextChoices):
        WORKER = "worker", "generated here"
        IMPORT = "import", "imported answers"

    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="inference_runs")
    dataset = models.ForeignKey("annotation.Dataset", on_delete=models.PROTECT, related_name="inference_runs")
    tasks = models.JSONField(default=list, blank=True, help_text="Only these tasks (empty: all).")
    variants = models.JSONField(default=list, blank=True, help_text="Only these variant indexes (empty: all).")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WORKER)

    class Meta(Run.Meta):
        pass

    def __str__(self) -> str:
        return f"Run {self.pk}: {self.endpoint} on {self.dataset}"

    @property
    def resumable(self) -> bool:
        return self.source == self.Source.WORKER

    @property
    def model_endpoint(self) -> ModelEndpoint:
        return self.endpoint

    def questions(self):
        from annotation.models import Question

        qs = Question.objects.filter(dataset_id=self.dataset_id).accepted()
        if self.tasks:
            qs = qs.filter(task__in=self.tasks)
        if self.variants:
            qs = qs.filter(variant__in=self.variants)
        return qs

    def pending_questions(self):
        """Questions with no Response yet: what a (re)started task still has to do."""
        return self.questions().exclude(responses__run=self)


class ResponseQuerySet(models.QuerySet):
    def refresh_human_stats(self) -> int:
        """Recount the human scores of these responses; what the agreement SQL joins. The one way
        human_count and human_sum change, the same ORM statements on SQLite and PostgreSQL: lock the
        rows first where the database can (SQLite's write lock already serializes), so two scores of
        one response written at once both count (the UPDATE's snapshot is taken after the lock)."""
        from annotation.models import HumanScore

        if connection.features.has_select_for_update and connection.in_atomic_block:
            list(self.order_by("pk").select_for_update().values_list("pk", flat=True))
        scores = HumanScore.objects.filter(response=models.OuterRef("pk")).order_by().values("response")
        return self.update(
            human_count=Coalesce(models.Subquery(scores.annotate(n=models.Count("id")).values("n")), 0),
            human_sum=Coalesce(models.Subquery(scores.annotate(s=models.Sum("score")).values("s")), 0),
        )


class Response(models.Model):
    run = models.ForeignKey(InferenceRun, on_delete=models.CASCADE, related_name="responses")
    question = models.ForeignKey("annotation.Question", on_delete=models.PROTECT, related_name="responses")
    text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    latency_s = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Kept equal to the response's HumanScore rows (count and sum of scores) whenever one is saved or
    # deleted, so agreement over a million pairs joins one row per response instead of averaging
    # every human score on each request.
    human_count = models.PositiveSmallIntegerField(db_default=0)
    human_sum = models.PositiveIntegerField(db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ResponseQuerySet.as_manager()

    class Meta:
        ordering = ["run_id", "question_id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "question"], name="response_unique_run_question"),
        ]
        indexes = [models.Index(fields=["run", "error"])]

    def __str__(self) -> str:
        return f"Response {self.pk} (run {self.run_id})"

    @property
    def is_failed(self) -> bool:
        return bool(self.error)


class CriticRun(Run):
    critic = models.ForeignKey(
        ModelEndpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="critic_runs",
        help_text="Empty for imported critiques.",
    )
    template = models.ForeignKey(PromptTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    inference_runs = models.ManyToManyField(InferenceRun, related_name="critic_runs")
    name = models.CharField(max_length=200, blank=True, help_text="A label, e.g. the critic of imported critiques.")
    unparsed = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveSmallIntegerField(default=2, help_text="Extra attempts for an unparseable reply.")

    class Meta(Run.Meta):
        pass

    def __str__(self) -> str:
        return f"Critic run {self.pk}: {self.label}"

    @property
    def label(self) -> str:
        return self.name or (self.critic.name if self.critic_id else f"critic run {self.pk}")

    PROCESSED_FIELDS = ("done", "unparsed", "failed")

    @property
    def processed(self) -> int:
        return self.done + self.unparsed + self.failed

    @property
    def retryable(self) -> int:
        return self.unparsed + self.failed

    @property
    def resumable(self) -> bool:
        return self.critic_id is not None

    @property
    def model_endpoint(self) -> ModelEndpoint | None:
        return self.critic

    def responses(self):
        return Response.objects.filter(run__in=self.inference_runs.all(), error="")

    def pending_responses(self):
        return self.responses().exclude(critic_scores__critic_run=self)


class CriticScore(models.Model):
    class ParseStatus(models.TextChoices):
        PARSED = "parsed", "parsed (strict JSON)"
        RECOVERED = "recovered", "recovered by a fallback"
        UNPARSED = "unparsed", "unparsed"
        FAILED = "failed", "request failed"

    critic_run = models.ForeignKey(CriticRun, on_delete=models.CASCADE, related_name="scores")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="critic_scores")
    score = models.PositiveSmallIntegerField(null=True, blank=True)
    expected_score = models.FloatField(null=True, blank=True)
    expected_spread = models.FloatField(null=True, blank=True)
    critique = models.TextField(blank=True)
    raw_output = models.TextField(blank=True)
    prompt = models.TextField(blank=True)
    parse_status = models.CharField(max_length=10, choices=ParseStatus.choices)
    attempts = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["critic_run_id", "response_id"]
        constraints = [
            models.UniqueConstraint(fields=["critic_run", "response"], name="criticscore_unique_run_response"),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=1) & Q(score__lte=10)), name="criticscore_score_1_10"
            ),
            models.CheckConstraint(
                condition=Q(expected_score__isnull=True) | (Q(expected_score__gte=1) & Q(expected_score__lte=10)),
                name="criticscore_expected_1_10",
            ),
            # A score exists exactly when the reply was understood.
            models.CheckConstraint(
                condition=(Q(parse_status__in=["parsed", "recovered"]) & Q(score__isnull=False))
                | (Q(parse_status__in=["unparsed", "failed"]) & Q(score__isnull=True)),
                name="criticscore_score_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score if self.score is not None else '—'} ({self.parse_status})"


class RewriteRun(Run):
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="rewrite_runs")
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey("annotation.Dataset", on_delete=models.PROTECT, related_name="rewrite_runs")
    per_seed = models.PositiveSmallIntegerField(default=5)
    seed_ids = models.JSONField(default=list, blank=True, help_text="The seeds to rewrite (ids).")
    duplicates_dropped = models.PositiveIntegerField(default=0)
    proposed = models.PositiveIntegerField(default=0)
    processed_ids = models.JSONField(default=list, blank=True, help_text="Seeds already asked (ids).")
    report = models.JSONField(default=list, blank=True, help_text="Per-seed errors: [{question, error, raw}].")

    class Meta(Run.Meta):
        pass

    def __str__(self) -> str:
        return f"Rewrite run {self.pk}: {self.endpoint} on {self.dataset}"

    @property
    def resumable(self) -> bool:
        return True

    @property
    def model_endpoint(self) -> ModelEndpoint:
        return self.endpoint

    def every_request_failed(self) -> bool:
        return False  # `failed` here also counts replies that held no usable list

    def seeds(self):
        from annotation.models import Question

        return Question.objects.filter(pk__in=self.seed_ids)

    def pending_seeds(self):
        return self.seeds().exclude(pk__in=self.processed_ids)


class TrainingRun(Run):
    """A critic fine-tuned on human scores: the base critic, the data, the held-out seed groups (fixed
    when the run is made), the LoRA settings, and the training's progress. ``done``/``total`` count
    optimizer steps."""

    base = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="training_runs",
                             help_text="The critic fine-tuned: a transformers endpoint with local weights.")
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="+")
    datasets = models.ManyToManyField("annotation.Dataset", blank=True, related_name="training_runs")
    inference_runs = models.ManyToManyField(InferenceRun, blank=True, related_name="training_runs",
                                            help_text="Only these runs' responses (none: every run of the datasets).")
    held_out_fraction = models.FloatField(default=0.2)
    seed = models.IntegerField(default=0)
    lora = models.JSONField(default=dict, blank=True, help_text="LoRA and trainer settings (training.LORA_DEFAULTS).")
    train_response_ids = models.JSONField(default=list, blank=True)
    held_out_response_ids = models.JSONField(default=list, blank=True)
    held_out_groups = models.JSONField(default=list, blank=True, help_text="[[dataset id, group], ...]")
    loss_history = models.JSONField(default=list, blank=True, help_text="[[step, loss], ...]")
    tokens_per_second = models.FloatField(null=True, blank=True)
    output_dir = models.CharField(max_length=500, blank=True)
    critic_endpoint = models.OneToOneField(ModelEndpoint, null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="trained_by", help_text="The critic this run produced.")

    class Meta(Run.Meta):
        constraints = [
            models.CheckConstraint(condition=Q(held_out_fraction__gt=0) & Q(held_out_fraction__lt=1),
                                   name="trainingrun_held_out_fraction"),
        ]

    def __str__(self) -> str:
        return f"Training run {self.pk}: {self.base}"

    @property
    def resumable(self) -> bool:
        return True

    @property
    def model_endpoint(self) -> ModelEndpoint:
        return self.base


class Worker(models.Model):
    """A Celery worker seen recently. Workers write these rows themselves, which works with every
    broker (the filesystem transport has no broadcast for `inspect ping`)."""

    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_alive(self) -> bool:
        return self.last_seen >= timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)

    @classmethod
    @transaction.atomic
    def beat(cls, *, name: str, hostname: str, pid: int, queues: list[str], started_at) -> None:
        cls.objects.update_or_create(
            name=name,
            defaults={"hostname": hostname, "pid": pid, "queues": queues, "started_at": started_at,
                      "last_seen": timezone.now()},
        )


class Ping(models.Model):
    """A test job from the status page: proves web -> broker -> worker -> database end to end."""

    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.CharField(max_length=200, blank=True)
    queue = models.CharField(max_length=20, default="default")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ping {self.pk} on {self.queue}"

    def answer(self, worker: str) -> None:
        Ping.objects.filter(pk=self.pk, answered_at__isnull=True).update(answered_at=timezone.now(), answered_by=worker)


class EndpointCheck(models.Model):
    """The "test" button: one tiny generation run as a job, its answer or error kept for the page."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        DONE = "done"
        FAILED = "failed"

    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.CASCADE, related_name="checks")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    latency_s = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"check {self.pk} of {self.endpoint_id}: {self.status}"
