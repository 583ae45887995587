"""Keyword-only factories for tests: small, explicit, no magic."""

from __future__ import annotations

import io
import random

from django.contrib.auth.models import Group, User
from PIL import Image as PILImage

from annotation.images import ingest_image
from annotation.models import Dataset, Image, Question
from evaluation.models import CriticRun, CriticScore, InferenceRun, ModelEndpoint, Response

PASSWORD = "correct horse battery staple"


def make_user(*, username: str, role: str | None = None, staff: bool = False) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=staff, is_superuser=staff)
    if role:
        # get_or_create: transactional tests flush the groups the data migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def png_bytes(*, width: int = 64, height: int = 48, seed: int = 0, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    rng = random.Random(seed)
    image = PILImage.new(mode, (width, height), tuple(rng.randrange(256) for _ in range(len(mode))))
    image.putpixel((0, 0), tuple(rng.randrange(256) for _ in range(len(mode))))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def make_image(*, seed: int = 0, width: int = 64, height: int = 48) -> Image:
    return ingest_image(png_bytes(width=width, height=height, seed=seed), filename=f"img-{seed}.png").image


def make_dataset(*, name: str = "ds", **fields) -> Dataset:
    return Dataset.objects.create(name=name, **fields)


def make_question(*, dataset: Dataset, image: Image | None = None, task: str = "Description", group: str = "00000000",
                  variant: int = 0, text: str = "描述图片。", reference: str = "一张图。", history=None,
                  status: str = "accepted") -> Question:
    return Question.objects.create(
        dataset=dataset, image=image or make_image(seed=hash((group, variant)) % 10_000), task=task, group=group,
        variant=variant, text=text, reference=reference if variant == 0 else "", history=history or [], status=status,
    )


def make_endpoint(*, name: str = "vlm", role: str = "vlm", backend: str = "openai",
                  base_url: str = "http://127.0.0.1:9/v1", model_name: str = "m", model_path: str = "", **fields) -> ModelEndpoint:
    return ModelEndpoint.objects.create(name=name, role=role, backend=backend, base_url=base_url,
                                        model_name=model_name, model_path=model_path, **fields)


def make_run(*, endpoint: ModelEndpoint, dataset: Dataset, **fields) -> InferenceRun:
    return InferenceRun.objects.create(endpoint=endpoint, dataset=dataset, **fields)


def make_response(*, run: InferenceRun, question: Question, text: str = "答案", error: str = "") -> Response:
    return Response.objects.create(run=run, question=question, text=text, error=error)


def make_critic_score(*, critic_run: CriticRun, response: Response, score: int | None = 7,
                      status: str = "parsed", **fields) -> CriticScore:
    return CriticScore.objects.create(critic_run=critic_run, response=response, score=score, parse_status=status,
                                      **fields)


def make_critic_run(*, name: str = "critic", runs: list[InferenceRun] | None = None, **fields) -> CriticRun:
    critic_run = CriticRun.objects.create(name=name, **fields)
    if runs:
        critic_run.inference_runs.set(runs)
    return critic_run


def make_scoring_dataset(*, name: str = "scoring", questions: int = 3, models: int = 2,
                         tasks: tuple[str, ...] = ("Description", "OCR"), annotators_per_response: int = 3,
                         show_peer_scores: bool = False, failed: int = 0) -> tuple[Dataset, list[Response]]:
    """A dataset with `questions` seeds per task, answered by `models` runs (plus `failed` error
    responses, which are not scorable). One shared image keeps it fast."""
    dataset = make_dataset(name=name, annotators_per_response=annotators_per_response,
                           show_peer_scores=show_peer_scores)
    image = Image.objects.first() or make_image(seed=1)
    from annotation.tasks_catalog import TASKS

    qs = [make_question(dataset=dataset, image=image, task=task, group=f"{TASKS[task].code}{i:04d}",
                        text=f"问题 {task} {i}", reference=f"参考 {task} {i}")
          for task in tasks for i in range(questions)]
    responses = []
    for m in range(models):
        endpoint = make_endpoint(name=f"{name}-model-{m}")
        run = make_run(endpoint=endpoint, dataset=dataset)
        responses += [make_response(run=run, question=q, text=f"回答 {m} {q.pk}\n  第二行 line two") for q in qs]
        for q in qs[:failed]:
            Response.objects.filter(run=run, question=q).update(error="timeout")
    return dataset, [r for r in responses if not Response.objects.get(pk=r.pk).error]
