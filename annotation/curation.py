"""What curators do to datasets, questions and images: create, add, remove, copy as a new version, edit."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, ProtectedError, QuerySet

from .models import Dataset, Image, Question, Tag
from .tasks_catalog import TASKS

if TYPE_CHECKING:
    from django.contrib.auth.models import User

from .alignmmbench import CHUNK


def dataset_create(*, name: str, description: str = "", by: User | None) -> Dataset:
    return Dataset.objects.create(name=name.strip(), description=description.strip(), created_by=by)


@dataclass
class AddResult:
    added: int = 0
    already: int = 0
    renumbered: int = 0


@transaction.atomic
def dataset_add_questions(*, dataset: Dataset, questions: QuerySet, by: User | None) -> AddResult:
    """Copy questions into ``dataset`` with their whole rewrite groups (a rewrite needs its seed's
    reference). A group whose id is taken there by a different seed gets the next free id."""
    dataset.ensure_editable()
    result = AddResult()
    keys = set(questions.exclude(dataset=dataset).values_list("dataset_id", "group").distinct())
    if not keys:
        return result
    source = defaultdict(list)
    wanted = Question.objects.exclude(variant=None).filter(
        dataset_id__in={d for d, _ in keys}, group__in={g for _, g in keys}).order_by("dataset_id", "group", "variant")
    for question in wanted:
        if (question.dataset_id, question.group) in keys:
            source[(question.dataset_id, question.group)].append(question)
    here = defaultdict(dict)
    for question in dataset.questions.exclude(variant=None).filter(group__in={g for _, g in keys}):
        here[question.group][question.variant] = question
    copies: list[Question] = []
    next_index: dict[str, int] = {}
    for (_, group), members in sorted(source.items()):
        seed = members[0]
        target_group = group
        mine = here.get(group)
        if mine and not _same_seed(mine.get(0), seed):
            target_group = _next_free_group(dataset, seed.task, next_index)
            result.renumbered += 1
            mine = None
        for question in members:
            if mine and question.variant in mine:
                result.already += 1
                continue
            copies.append(Question(
                dataset=dataset, image_id=question.image_id, task=question.task, group=target_group,
                variant=question.variant, text=question.text, history=question.history,
                reference=question.reference, origin=question.origin, status=question.status, created_by=by))
        here[target_group] = {q.variant: q for q in members}
    Question.objects.bulk_create(copies, batch_size=CHUNK)
    result.added = len(copies)
    return result


def _same_seed(mine: Question | None, theirs: Question) -> bool:
    return mine is not None and (mine.image_id, mine.task, mine.text, mine.reference, mine.history) == (
        theirs.image_id, theirs.task, theirs.text, theirs.reference, theirs.history)


def _next_free_group(dataset: Dataset, task: str, next_index: dict[str, int]) -> str:
    code = TASKS[task].code
    if code not in next_index:
        next_index[code] = int(Question.next_group(dataset, task)[4:])
    group = f"{code}{next_index[code]:04d}"
    next_index[code] += 1
    return group


class QuestionsInUse(ValueError):
    pass


@transaction.atomic
def dataset_remove_questions(*, dataset: Dataset, questions: QuerySet) -> int:
    """Remove questions; removing a seed removes its whole group (its rewrites share its reference)."""
    dataset.ensure_editable()
    mine = questions.filter(dataset=dataset)
    seed_groups = set(mine.filter(variant=0).values_list("group", flat=True))
    doomed = Question.objects.filter(dataset=dataset).filter(pk__in=mine.values("pk")) | Question.objects.filter(
        dataset=dataset, group__in=seed_groups)
    try:
        count, _ = doomed.delete()
    except ProtectedError:
        raise QuestionsInUse(
            "Some of these questions already have model responses, so they can't be removed: "
            "copy the dataset as a new version and remove them there.") from None
    return count


@transaction.atomic
def dataset_copy_as_version(*, dataset: Dataset, by: User | None) -> Dataset:
    """A new, editable dataset with the same questions; parent points back, version counts up."""
    root = dataset
    while root.parent_id is not None and root.parent is not None:
        root = root.parent
    family_max = Dataset.objects.filter(name__startswith=root.name).aggregate(m=Max("version"))["m"] or 1
    version = max(family_max, dataset.version) + 1
    name = f"{root.name} v{version}"
    while Dataset.objects.filter(name=name).exists():
        version += 1
        name = f"{root.name} v{version}"
    copy = Dataset.objects.create(
        name=name, description=dataset.description, parent=dataset, version=version,
        annotators_per_response=dataset.annotators_per_response, show_peer_scores=dataset.show_peer_scores,
        created_by=by)
    Question.objects.bulk_create([
        Question(dataset=copy, image_id=q.image_id, task=q.task, group=q.group, variant=q.variant, text=q.text,
                 history=q.history, reference=q.reference, origin=q.origin, status=q.status, drift=q.drift,
                 rewrite_run_id=q.rewrite_run_id, created_by_id=q.created_by_id, reviewed_by_id=q.reviewed_by_id)
        for q in dataset.questions.all()
    ], batch_size=CHUNK)
    return copy


# --------------------------------------------------------------------------------------------------
# Questions and images
# --------------------------------------------------------------------------------------------------

@transaction.atomic
def question_create(*, dataset: Dataset, image: Image, task: str, text: str, reference: str = "",
                    history: list | None = None, by: User | None) -> Question:
    """A new seed question (variant 0) in the next free group of its task."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)  # serialise group numbering
    dataset.ensure_editable()
    question = Question(dataset=dataset, image=image, task=task, group=Question.next_group(dataset, task),
                        variant=0, text=text, reference=reference, history=history or [],
                        origin=Question.Origin.HUMAN, status=Question.Status.ACCEPTED, created_by=by)
    question.full_clean(exclude=["rewrite_run"])
    question.save()
    return question


@transaction.atomic
def question_update(*, question: Question, task: str, text: str, reference: str = "",
                    history: list | None = None) -> Question:
    """Edit a question. A seed without rewrites may change task (it moves to a group of the new task);
    a rewrite keeps its seed's task, reference and history, so only its text changes."""
    question.dataset.ensure_editable()
    if question.is_seed:
        if task != question.task:
            if Question.objects.in_group(question).exclude(pk=question.pk).exists():
                raise ValidationError({"task": "This seed has rewrites, which share its task: its task can't change."})
            question.task = task
            question.group = Question.next_group(question.dataset, task)
        question.reference = reference
        question.history = history or []
    question.text = text
    question.full_clean(exclude=["rewrite_run", "image", "dataset"])
    question.save()
    return question


def image_update(*, image: Image, source: str, licence: str, tags: list[str]) -> Image:
    image.source, image.licence = source.strip(), licence.strip()
    image.save(update_fields=["source", "licence"])
    image.tags.set([Tag.objects.get_or_create(name=name)[0] for name in tags])
    return image
