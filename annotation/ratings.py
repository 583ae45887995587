"""Human scores made elsewhere (a spreadsheet, another tool) brought in as if scored on the page.

Each line is checked like the scoring form (``scoring.clean_score_input``): a score 1-10, a rationale
below ``SCORING_RATIONALE_BELOW``. New annotators become inactive users in the annotator group: they
own their scores, and nobody can log in as them until an admin activates them.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import QueryDict

from evaluation.exchange import jsonl_read
from evaluation.models import InferenceRun, Response

from .alignmmbench import ImportReport, Problem
from .models import HumanScore, ScoringItem
from .roles import ANNOTATOR
from .scoring import clean_score_input, dataset_scoring_update, queue_sync


def _form_data(record: dict) -> QueryDict:
    """The line as the scoring form would post it, so one validation serves both."""
    data = QueryDict(mutable=True)
    score = record.get("score")
    # 7 and "7" are a score; 7.0, true and "seven" are not (the form's strict reading decides).
    data["score"] = str(score) if isinstance(score, int | str) and not isinstance(score, bool) else ""
    data["rationale"] = record.get("rationale") or ""
    return data


def _check_username(name: str) -> str:
    """Empty when ``name`` can be a username, else why not."""
    if len(name) > User._meta.get_field("username").max_length:
        return "annotator name is too long"
    try:
        User.username_validator(name)
    except ValidationError as exc:
        return f"annotator {name!r}: {exc.messages[0]}"
    return ""


@transaction.atomic
def human_scores_import(*, lines: Iterable[str], run: InferenceRun) -> ImportReport:
    """`{"question_id", "annotator", "score", "rationale"}` lines as human scores of ``run``'s answers.

    Bad lines are reported by number and skipped; a line equal to a score already stored is
    "unchanged"; when no line imports, nothing at all is stored (no score, no new user).
    """
    report = ImportReport()
    responses = {r.question.question_id: r for r in
                 Response.objects.filter(run=run, error="").select_related("question")}
    stored = {(s.response_id, s.annotator.username): s for s in
              HumanScore.objects.filter(response__run=run).select_related("annotator")}
    new: dict[tuple[int, str], HumanScore] = {}
    for line in jsonl_read(lines):
        number, record = line.number, line.record
        report.total += 1
        if record is None:
            report.problems.append(Problem(number, "", line.error))
            continue
        if not isinstance(record.get("question_id"), str):
            report.problems.append(Problem(number, "", 'needs a "question_id" string'))
            continue
        question_id, annotator = record["question_id"], record.get("annotator")

        def fail(reason: str, question_id: str = question_id, number: int = number) -> None:
            report.problems.append(Problem(number, question_id, reason))

        if not isinstance(annotator, str) or not annotator.strip():
            fail('needs an "annotator" name')
            continue
        annotator = annotator.strip()
        if reason := _check_username(annotator):
            fail(reason)
            continue
        if not isinstance(record.get("rationale", ""), str | None):
            fail('"rationale" must be a string')
            continue
        data, errors = clean_score_input(_form_data(record))
        if errors:
            fail(" ".join(errors.values()))
            continue
        response = responses.get(question_id)
        if response is None:
            fail(f"no answer to {question_id} in run {run.pk}")
            continue
        key = (response.pk, annotator)
        if key in new:
            fail(f"{annotator} scores {question_id} twice in this file")
            continue
        if (old := stored.get(key)) is not None:
            if (old.score, old.rationale) == (data.score, data.rationale):
                report.unchanged += 1
            else:
                fail(f"{annotator} already scored {question_id} ({old.score}); edit it on the scoring page")
            continue
        new[key] = HumanScore(response=response, score=data.score, rationale=data.rationale, flags=data.flags)
    if new:
        _store(new, run=run)
    report.imported = len(new)
    return report


def _store(new: dict[tuple[int, str], HumanScore], *, run: InferenceRun) -> None:
    names = {name for _, name in new}
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    group = Group.objects.get_or_create(name=ANNOTATOR)[0]
    for name in sorted(names - set(users)):
        user = User(username=name, is_active=False)
        user.set_unusable_password()
        user.save()
        user.groups.add(group)
        users[name] = user
    for (_, name), score in new.items():
        score.annotator = users[name]
    HumanScore.objects.bulk_create(new.values(), batch_size=1000)
    # bulk_create sends no post_save: the responses' counts and the scoring queue follow here.
    touched = Response.objects.filter(pk__in={pk for pk, _ in new})
    touched.refresh_human_stats()
    dataset = run.dataset
    queue_sync(dataset)
    counts = HumanScore.objects.filter(response=OuterRef("pk")).order_by().values("response").annotate(
        n=Count("id")).values("n")
    ScoringItem.objects.filter(pk__in=touched.values("pk")).update(scores=Coalesce(Subquery(counts), 0))
    dataset_scoring_update(dataset=dataset, annotators_per_response=dataset.annotators_per_response,
                           show_peer_scores=dataset.show_peer_scores)
