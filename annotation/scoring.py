"""Human scoring: the queue (reserve, submit, skip), edits, progress and adjudication.

The queue is ``ScoringItem`` rows, one per scorable response (a Response with no error whose
question is in the dataset). A reservation is an ``Assignment``. How a response gets at most N
scores and nobody twice, under any number of concurrent annotators:

* Every write that changes how many people hold or have scored a response (reserve, submit,
  reclaiming an expired reservation) first takes that response's ScoringItem row: PostgreSQL with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` (reserve: busy rows are passed over, nobody waits) or a
  plain ``UPDATE`` (submit: waits for the row). On SQLite, which has no row locks, the same
  ``UPDATE`` takes the database's single write lock, so writers run one at a time.
* Under that lock it recounts (a fresh statement sees everything committed before the lock) and
  checks what it got: the conditional ``UPDATE ... WHERE scores = <what we read>`` must hit one row.
* The unique constraints on (response, annotator) of Assignment and HumanScore make "nobody scores
  one twice" a fact of the database.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Avg, Count, Exists, F, JSONField, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from evaluation.models import CriticScore, Response

from .models import Adjudication, Assignment, Dataset, HumanScore, HumanScoreRevision, Question, ScoringItem

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class Order:
    BALANCED = "balanced"
    RANDOM = "random"
    DOUBT = "doubt"
    CHOICES = [
        (BALANCED, "均衡 Balanced across tasks and models"),
        (RANDOM, "随机 Random"),
        (DOUBT, "评审最不确定优先 Critic least sure first"),
    ]
    VALUES = {BALANCED, RANDOM, DOUBT}


class ScoringError(Exception):
    """A submit or edit that can't be accepted; the message is shown to the annotator."""


RANDOM_KEY_MOD = 2_147_483_647  # keys are a multiplicative hash of the response id, below 2**31


# ---------------------------------------------------------------------------------------------
# Keeping the queue in step with the responses


def queue_sync(dataset: Dataset) -> int:
    """Add queue rows for new scorable responses, refresh the "full" flags (the dataset's N may
    have changed) and the critics' doubt. Returns how many rows were added. Safe to run at once
    from several processes (ON CONFLICT DO NOTHING)."""
    item_t, response_t, question_t = ScoringItem._meta.db_table, Response._meta.db_table, Question._meta.db_table
    # balanced_key: rank within the response's (task, run), continuing after the rows that group
    # already has, so ordering by it deals out tasks and models round-robin.
    sql = f"""
        INSERT INTO {item_t} (response_id, dataset_id, task, balanced_key, random_key, doubt, scores, "full")
        SELECT r.id, q.dataset_id, q.task,
               ROW_NUMBER() OVER (PARTITION BY q.task, r.run_id ORDER BY q."group", q.variant, r.id)
                 + COALESCE(e.n, 0),
               (r.id * 2654435761) %% {RANDOM_KEY_MOD}, 0, 0, %s
        FROM {response_t} r
        JOIN {question_t} q ON q.id = r.question_id
        LEFT JOIN (
            SELECT si.task AS task, r2.run_id AS run_id, COUNT(*) AS n
            FROM {item_t} si JOIN {response_t} r2 ON r2.id = si.response_id
            WHERE si.dataset_id = %s GROUP BY si.task, r2.run_id
        ) e ON e.task = q.task AND e.run_id = r.run_id
        WHERE q.dataset_id = %s AND r.error = ''
          AND NOT EXISTS (SELECT 1 FROM {item_t} s WHERE s.response_id = r.id)
        ON CONFLICT DO NOTHING
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [False, dataset.pk, dataset.pk])
        added = max(cursor.rowcount, 0)
    _refresh_full(dataset)
    _refresh_doubt(dataset)
    return added


def _refresh_full(dataset: Dataset) -> None:
    n = dataset.annotators_per_response
    ScoringItem.objects.filter(dataset=dataset, full=False, scores__gte=n).update(full=True)
    ScoringItem.objects.filter(dataset=dataset, full=True, scores__lt=n).update(full=False)


@transaction.atomic
def dataset_scoring_update(*, dataset: Dataset, annotators_per_response: int, show_peer_scores: bool) -> None:
    """Change how a dataset's responses are scored; the queue follows at once: responses that
    now have all their scores drop out of it, and those that lack some come back."""
    Dataset.objects.filter(pk=dataset.pk).update(annotators_per_response=annotators_per_response,
                                                 show_peer_scores=show_peer_scores)
    dataset.annotators_per_response, dataset.show_peer_scores = annotators_per_response, show_peer_scores
    _refresh_full(dataset)


def _refresh_doubt(dataset: Dataset) -> None:
    """Recompute how unsure the critics are, only when the dataset's critic scores changed."""
    mark = CriticScore.objects.filter(response__question__dataset=dataset).aggregate(m=Max("id"), n=Count("id"))
    key = f"scoring:doubt:{dataset.pk}"
    if cache.get(key) == mark or not mark["n"]:
        return
    item_t, critic_t = ScoringItem._meta.db_table, CriticScore._meta.db_table
    # An unparsed reply outweighs any spread; then the widest expected-score spread and the
    # biggest gap between critics add up.
    sql = f"""
        UPDATE {item_t} SET doubt = COALESCE((
            SELECT 10.0 * MAX(CASE WHEN c.parse_status IN ('unparsed', 'failed') THEN 1 ELSE 0 END)
                   + COALESCE(MAX(c.expected_spread), 0) + COALESCE(MAX(c.score) - MIN(c.score), 0)
            FROM {critic_t} c WHERE c.response_id = {item_t}.response_id
        ), 0)
        WHERE dataset_id = %s AND "full" = %s
          AND response_id IN (SELECT c2.response_id FROM {critic_t} c2)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [dataset.pk, False])
    cache.set(key, mark, None)


def queue_sync_if_stale(dataset: Dataset, *, every_s: int = 60) -> None:
    """At most one sync per dataset per minute per process: new responses show up soon enough,
    and the requests in between don't pay for the scan."""
    if cache.add(f"scoring:synced:{dataset.pk}", True, every_s):
        queue_sync(dataset)


# ---------------------------------------------------------------------------------------------
# What a question shows besides its text


SEED_TEXTS = ("seed_reference", "seed_history")


def with_seed_texts(queryset: QuerySet, *, question: str) -> QuerySet:
    """The seed's reference answer and dialogue history (``seed_reference``, ``seed_history``),
    read in the statement that loads the question (at ``question``, a path from the queryset's
    model): a rewrite shows its seed's, and reading the seed afterwards would cost each page a
    statement."""
    seed = Question.objects.filter(dataset_id=OuterRef(f"{question}__dataset_id"), group=OuterRef(f"{question}__group"),
                                   variant=0).order_by()  # (one row at most: the group's variant 0 is unique)
    return queryset.annotate(seed_reference=Subquery(seed.values("reference")[:1]),
                             seed_history=Subquery(seed.values("history")[:1], output_field=JSONField()))


@dataclass(frozen=True)
class QuestionTexts:
    history: list
    reference: str


def question_texts(question: Question, *, loaded_with=None) -> QuestionTexts:
    """The dialogue history and reference answer to show with a question. The seed keeps both and
    its rewrites share them (as Question.dialogue_history and reference_answer say); they come from
    ``loaded_with``, the object a with_seed_texts queryset loaded, else the seed is read now."""
    if question.is_seed:
        return QuestionTexts(history=question.history, reference=question.reference)
    if loaded_with is None or not hasattr(loaded_with, "seed_history"):
        seed = question.seed
        return QuestionTexts(history=question.history or seed.history, reference=seed.reference)
    return QuestionTexts(history=question.history or loaded_with.seed_history or [],
                         reference=loaded_with.seed_reference or "")


# ---------------------------------------------------------------------------------------------
# Reserve, submit, skip


def _reservation_until():
    return timezone.now() + timedelta(minutes=settings.SCORING_RESERVATION_MINUTES)


def live_assignment(*, user: User, dataset: Dataset) -> Assignment | None:
    """The annotator's unexpired reservation in this dataset, if any: "next" resumes it."""
    return (
        with_seed_texts(Assignment.objects.active(), question="response__question").for_annotator(user)
        .select_related("response__question__image").filter(response__question__dataset=dataset)
        .order_by("-reserved_until").first()
    )


def datasets_for_annotator(*, user: User):
    """Datasets with what "next" needs to know about this annotator, in the query that loads the
    dataset anyway: ``live_assignment_id`` (their unexpired reservation in it, or None) and their
    counts (``counts_of``)."""
    live = (Assignment.objects.active().for_annotator(user).filter(response__question__dataset=OuterRef("pk"))
            .order_by("-reserved_until").values("pk")[:1])
    return Dataset.objects.annotate(live_assignment_id=Subquery(live), **annotator_count_annotations(user=user))


def _live_count(now) -> Subquery:
    live = (
        Assignment.objects.filter(response_id=OuterRef("pk"), status=Assignment.Status.RESERVED,
                                  reserved_until__gt=now)
        .order_by().values("response_id").annotate(n=Count("id")).values("n")
    )
    return Coalesce(Subquery(live), 0)


def _candidates(*, user: User, dataset: Dataset, order: str, now):
    n = dataset.annotators_per_response
    items = (
        with_seed_texts(ScoringItem.objects.filter(dataset=dataset, full=False), question="response__question")
        .exclude(Exists(Assignment.objects.filter(response_id=OuterRef("pk"), annotator=user)))
        .alias(live=_live_count(now))
        .filter(live__lt=n - F("scores"))
    )
    if connection.features.has_select_for_update_skip_locked:
        # OF self: lock the queue row only, not the response, question and image read with it.
        items = items.select_for_update(skip_locked=True, of=("self",))
    if order == Order.RANDOM:
        # Start at a random point of the hashed order and wrap around: random for each request,
        # and still an index walk rather than ORDER BY random() over the whole table.
        start = random.randrange(RANDOM_KEY_MOD)
        return [items.filter(random_key__gte=start).order_by("random_key"), items.order_by("random_key")]
    if order == Order.DOUBT:
        return [items.order_by("-doubt", "random_key")]
    return [items.order_by("balanced_key", "random_key")]


def _claim(*, user: User, dataset: Dataset, order: str) -> Assignment | None | bool:
    """One attempt, in one transaction. Returns the new Assignment (with its response, question,
    image and seed texts, read with the queue row), None when the queue is empty for this
    annotator, or False when the row we picked changed under us (try again)."""
    now = timezone.now()
    with transaction.atomic():
        item = None
        for candidates in _candidates(user=user, dataset=dataset, order=order, now=now):
            item = candidates.select_related("response__question__image").first()
            if item is not None:
                break
        if item is None:
            return None
        if connection.vendor == "postgresql":
            # We hold the row (FOR UPDATE SKIP LOCKED), so this later statement's snapshot sees
            # every reservation and score committed before the lock: recount, reclaim and insert
            # in one round trip.
            got = _claim_locked_pg(user=user, dataset=dataset, response_id=item.pk, now=now)
            return _handed_over(got, item) if got else got
        # Check what we got: on SQLite this UPDATE takes the write lock. If someone submitted in
        # between, `scores` moved and we try again.
        if not ScoringItem.objects.filter(pk=item.pk, full=False, scores=item.scores).update(touched_at=now):
            return False
        held = Assignment.objects.filter(response_id=item.pk).aggregate(
            live=Count("id", filter=Q(status=Assignment.Status.RESERVED, reserved_until__gt=now)),
            mine=Count("id", filter=Q(annotator=user)),
        )
        if held["mine"] or item.scores + held["live"] >= dataset.annotators_per_response:
            return False
        # Reclaim: stale reservations of this response stop being anyone's.
        Assignment.objects.filter(response_id=item.pk, status=Assignment.Status.RESERVED,
                                  reserved_until__lte=now).update(status=Assignment.Status.EXPIRED, updated_at=now)
        got = Assignment.objects.create(response=item.response, annotator=user, status=Assignment.Status.RESERVED,
                                        reserved_until=now + timedelta(minutes=settings.SCORING_RESERVATION_MINUTES))
        return _handed_over(got, item)


def _handed_over(assignment: Assignment, item: ScoringItem) -> Assignment:
    """The new assignment with what was read with its queue row: the response (question, image)
    and the seed texts."""
    assignment.response = item.response
    for name in SEED_TEXTS:
        setattr(assignment, name, getattr(item, name))
    return assignment


def _claim_locked_pg(*, user: User, dataset: Dataset, response_id: int, now) -> Assignment | bool:
    """PostgreSQL, with the ScoringItem row locked: one statement recounts (score count from the
    row, live reservations and this annotator's own from Assignment), reclaims expired
    reservations and inserts the new one only if there is still room. False: no room after all."""
    item_t, assignment_t = ScoringItem._meta.db_table, Assignment._meta.db_table
    reserved, expired = Assignment.Status.RESERVED, Assignment.Status.EXPIRED
    until = now + timedelta(minutes=settings.SCORING_RESERVATION_MINUTES)
    sql = f"""
        WITH held AS (
            SELECT COUNT(*) FILTER (WHERE a.status = %(reserved)s AND a.reserved_until > %(now)s) AS live,
                   COUNT(*) FILTER (WHERE a.annotator_id = %(user)s) AS mine
            FROM {assignment_t} a WHERE a.response_id = %(response)s
        ), room AS (
            SELECT 1 FROM held, {item_t} si
            WHERE si.response_id = %(response)s AND NOT si."full" AND held.mine = 0
              AND si.scores + held.live < %(n)s
        ), reclaimed AS (
            UPDATE {assignment_t} SET status = %(expired)s, updated_at = %(now)s
            WHERE response_id = %(response)s AND status = %(reserved)s AND reserved_until <= %(now)s
              AND EXISTS (SELECT 1 FROM room)
        )
        INSERT INTO {assignment_t} (response_id, annotator_id, status, reserved_until, created_at, updated_at)
        SELECT %(response)s, %(user)s, %(reserved)s, %(until)s, %(now)s, %(now)s FROM room
        RETURNING id
    """
    params = {"reserved": reserved, "expired": expired, "now": now, "until": until, "user": user.pk,
              "response": response_id, "n": dataset.annotators_per_response}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    return Assignment(pk=row[0], response_id=response_id, annotator=user, status=reserved, reserved_until=until,
                      created_at=now, updated_at=now)


def assignment_reserve_next(*, user: User, dataset: Dataset, order: str = Order.BALANCED,
                            attempts: int = 8) -> Assignment | None:
    """The annotator's next response, with its question and image: their live reservation if they
    have one, else a new one. A dataset from datasets_for_annotator already knows the former."""
    if hasattr(dataset, "live_assignment_id"):
        current = dataset.live_assignment_id and (
            with_seed_texts(Assignment.objects.active(), question="response__question")
            .select_related("response__question__image").filter(pk=dataset.live_assignment_id).first())
    else:
        current = live_assignment(user=user, dataset=dataset)
    if current:
        return current
    order = order if order in Order.VALUES else Order.BALANCED
    for _ in range(attempts):
        got = _claim(user=user, dataset=dataset, order=order)
        if got is not False:
            return got
    return None


@dataclass
class ScoreInput:
    score: int
    rationale: str
    flags: list[str]


SCORE_PATTERN = re.compile(r"[0-9]{1,2}")


def parse_score(raw: str | None) -> int | None:
    """A score typed or posted: 1 to 10 in ASCII digits, else None. (Not str.isdigit(): it takes
    "²", which int() refuses, and int() takes "٣" and "７", which are no score a button sends.)"""
    raw = (raw or "").strip()
    if not SCORE_PATTERN.fullmatch(raw):
        return None
    score = int(raw)
    return score if 1 <= score <= 10 else None


def clean_score_input(data) -> tuple[ScoreInput | None, dict[str, str]]:
    """Validate a score form (a QueryDict); returns (input, errors by field)."""
    errors: dict[str, str] = {}
    score = parse_score(data.get("score")) or 0
    if not score:
        errors["score"] = "请选择 1-10 分 Choose a score from 1 to 10."
    rationale = (data.get("rationale") or "").strip()
    if 1 <= score < settings.SCORING_RATIONALE_BELOW and not rationale:
        errors["rationale"] = (f"低于 {settings.SCORING_RATIONALE_BELOW} 分需要填写理由 "
                               f"A rationale is required below {settings.SCORING_RATIONALE_BELOW}.")
    flags = sorted(set(data.getlist("flags")))
    if any(flag not in HumanScore.Flag.values for flag in flags):
        errors["flags"] = "Unknown flag."
    if errors:
        return None, errors
    return ScoreInput(score=score, rationale=rationale, flags=flags), {}


def _lock_item(response_id: int) -> ScoringItem:
    items = ScoringItem.objects.select_related("dataset")
    if connection.features.has_select_for_update_of:
        # PostgreSQL: take the row and read it (and its dataset) in one statement.
        return items.select_for_update(of=("self",)).get(pk=response_id)
    # SQLite: an UPDATE takes the database write lock, then read.
    ScoringItem.objects.filter(pk=response_id).update(touched_at=timezone.now())
    return items.get(pk=response_id)


@transaction.atomic
def score_submit(*, assignment: Assignment, data: ScoreInput, time_spent_s: float) -> HumanScore:
    item = _lock_item(assignment.response_id)
    now = timezone.now()
    # (Only what can change: a full refresh would also drop the response the caller loaded with it.)
    assignment.refresh_from_db(fields=["status", "reserved_until"])
    if assignment.status == Assignment.Status.SUBMITTED:
        raise ScoringError("这条已经提交过了 You already scored this response.")
    if assignment.status == Assignment.Status.SKIPPED:
        raise ScoringError("这条已跳过 You skipped this response.")
    if not assignment.is_live:
        # Late, but if nobody took the place meanwhile the work isn't wasted.
        others = Assignment.objects.filter(
            response_id=item.pk, status=Assignment.Status.RESERVED, reserved_until__gt=now
        ).exclude(pk=assignment.pk).count()
        if item.scores + others >= item.dataset.annotators_per_response:
            Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.EXPIRED, updated_at=now)
            raise ScoringError("预留已过期，已分配给他人 Your reservation expired and the response went to someone else.")
    if item.scores >= item.dataset.annotators_per_response:
        raise ScoringError("这条已评满 This response already has all its scores.")
    human_score = HumanScore.objects.create(
        response_id=item.pk, annotator_id=assignment.annotator_id, score=data.score, rationale=data.rationale,
        flags=data.flags, time_spent_s=max(0.0, time_spent_s),
    )
    Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SUBMITTED, updated_at=now)
    ScoringItem.objects.filter(pk=item.pk).update(
        scores=F("scores") + 1, full=item.scores + 1 >= item.dataset.annotators_per_response
    )
    return human_score


def time_spent(*, assignment: Assignment, claimed: str | None) -> float:
    """Seconds on the item: what the page measured, capped by the time since the reservation."""
    reserved_at = assignment.reserved_until - timedelta(minutes=settings.SCORING_RESERVATION_MINUTES)
    elapsed = max(0.0, (timezone.now() - reserved_at).total_seconds())
    try:
        value = float(claimed) if claimed else elapsed
    except ValueError:
        value = elapsed
    return round(min(max(value, 0.0), elapsed + 5.0), 1)


def assignment_skip(*, assignment: Assignment) -> bool:
    """Give the response back (to others: this annotator won't be offered it again)."""
    return bool(Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.RESERVED)
                .update(status=Assignment.Status.SKIPPED, updated_at=timezone.now()))


def can_edit(human_score: HumanScore) -> bool:
    window = timedelta(minutes=settings.SCORING_EDIT_WINDOW_MINUTES)
    return timezone.now() < human_score.created_at + window


def edit_refusal(human_score: HumanScore, *, by: User) -> str:
    """Why this person may not change this score now, or "" when they may."""
    if human_score.annotator_id != by.pk:
        return "只能修改自己的评分 You can only change your own score."
    if not can_edit(human_score):
        minutes = settings.SCORING_EDIT_WINDOW_MINUTES
        return (f"提交 {minutes} 分钟后不能再修改，这条评分已不能更改 Scores can be changed for {minutes} minutes "
                "after submitting; this one can no longer be changed.")
    return ""


def score_edit(*, human_score: HumanScore, data: ScoreInput, by: User) -> HumanScoreRevision | None:
    refusal = edit_refusal(human_score, by=by)
    if refusal:
        raise ScoringError(refusal)
    return human_score.revise(score=data.score, rationale=data.rationale, flags=data.flags, by=by)


# ---------------------------------------------------------------------------------------------
# What an annotator may see after submitting


def has_scored(*, user: User, response_id: int) -> bool:
    return HumanScore.objects.filter(response_id=response_id, annotator=user).exists()


@dataclass
class SideBySide:
    mine: HumanScore
    critics: list[CriticScore]
    peers: list[HumanScore]
    gap: int

    @property
    def critic_gaps(self) -> list[tuple[CriticScore, int | None]]:
        return [(c, None if c.score is None else abs(c.score - self.mine.score)) for c in self.critics]

    @property
    def peer_gaps(self) -> list[tuple[HumanScore, int]]:
        return [(p, abs(p.score - self.mine.score)) for p in self.peers]


def side_by_side(*, human_score: HumanScore) -> SideBySide:
    """Only ever called with the viewer's own submitted score: that is what unlocks the rest."""
    critics = list(CriticScore.objects.filter(response_id=human_score.response_id)
                   .select_related("critic_run__critic").order_by("critic_run_id"))
    peers: list[HumanScore] = []
    if human_score.response.question.dataset.show_peer_scores:
        peers = list(HumanScore.objects.filter(response_id=human_score.response_id)
                     .exclude(pk=human_score.pk).order_by("created_at"))
    return SideBySide(mine=human_score, critics=critics, peers=peers, gap=settings.SCORING_ADJUDICATION_GAP)


# ---------------------------------------------------------------------------------------------
# Progress


def annotator_count_annotations(*, user: User) -> dict:
    """annotator_counts as two subquery annotations (``counts_total``, ``counts_today``), to ride
    along in a query a view makes anyway instead of costing a round trip of their own."""
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = HumanScore.objects.filter(annotator=user).order_by().values("annotator")

    def count(queryset):
        return Coalesce(Subquery(queryset.annotate(c=Count("id")).values("c")), 0)

    return {"counts_total": count(mine), "counts_today": count(mine.filter(created_at__gte=start))}


def counts_of(obj) -> dict[str, int]:
    """The counts a query annotated with annotator_count_annotations."""
    return {"total": obj.counts_total, "today": obj.counts_today}


def annotator_counts(*, user: User, dataset: Dataset | None = None) -> dict[str, int]:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = HumanScore.objects.filter(annotator=user)
    if dataset is not None:
        mine = mine.filter(response__question__dataset=dataset)
    return mine.aggregate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=start)))


def left_for(*, user: User, dataset: Dataset) -> int:
    """Responses this annotator could still be given (not full, not theirs already)."""
    return (ScoringItem.objects.filter(dataset=dataset, full=False)
            .exclude(Exists(Assignment.objects.filter(response_id=OuterRef("pk"), annotator=user))).count())


def datasets_with_work(*, user: User) -> list[tuple[Dataset, int]]:
    """Every dataset that has scorable responses, with how many this annotator could still take."""
    datasets = list(Dataset.objects.filter(questions__responses__error="").distinct().order_by("name"))
    rows = []
    for dataset in datasets:
        queue_sync_if_stale(dataset)
        rows.append((dataset, left_for(user=user, dataset=dataset)))
    return rows


RECENT_EDITS = 20


def dataset_progress(dataset: Dataset) -> dict:
    n = dataset.annotators_per_response
    by_count = dict(ScoringItem.objects.filter(dataset=dataset).values_list("scores").annotate(c=Count("pk")))
    histogram = [(k, by_count.get(k, 0)) for k in range(0, n + 1)]
    extra = sum(c for k, c in by_count.items() if k > n)  # N lowered after scoring
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    annotators = (
        HumanScore.objects.filter(response__question__dataset=dataset)
        .values("annotator__username")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=start)),
                  mean_score=Avg("score"), mean_time=Avg("time_spent_s"), last=Max("created_at"))
        .order_by("-total", "annotator__username")
    )
    live = Assignment.objects.active().filter(response__question__dataset=dataset).count()
    total = sum(by_count.values())
    # Edits lead to their response's page (every score with its history), disagreement or not.
    edits = (HumanScoreRevision.objects.filter(human_score__response__question__dataset=dataset)
             .select_related("human_score__annotator", "changed_by").order_by("-changed_at", "-id")[:RECENT_EDITS])
    return {"histogram": histogram, "beyond_n": extra, "total": total, "annotators": list(annotators),
            "live_reservations": live, "complete": sum(c for k, c in by_count.items() if k >= n),
            "edits": list(edits)}


# ---------------------------------------------------------------------------------------------
# Adjudication


def disagreements(*, dataset: Dataset, resolved: bool = False):
    """Responses where people disagree by the gap or more, or their mean is that far from the
    critics' mean: one row per response with n, lo, hi, mean and critic (values() dicts)."""
    gap = settings.SCORING_ADJUDICATION_GAP
    critic_mean = (
        CriticScore.objects.filter(response_id=OuterRef("response_id"), score__isnull=False)
        .order_by().values("response_id").annotate(m=Avg("score")).values("m")
    )
    adjudicated = Exists(Adjudication.objects.filter(response_id=OuterRef("response_id")))
    rows = (
        HumanScore.objects.filter(response__question__dataset=dataset)
        .filter(adjudicated if resolved else ~adjudicated)
        .values("response_id")
        .annotate(n=Count("id"), lo=Min("score"), hi=Max("score"), mean=Avg("score"), critic=Subquery(critic_mean))
        .filter(Q(hi__gte=F("lo") + gap) | Q(critic__isnull=False) & (Q(mean__gte=F("critic") + gap)
                                                                        | Q(mean__lte=F("critic") - gap)))
        .order_by("response_id")
    )
    return rows


def adjudication_resolve(*, response: Response, note: str, score: int | None, by: User) -> Adjudication:
    adjudication, _ = Adjudication.objects.update_or_create(
        response=response, defaults={"note": note, "score": score, "resolved_by": by}
    )
    return adjudication

