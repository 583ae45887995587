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
