"""Demo models for `make run`: a tiny random-weight LLaVA-style VLM and text critic built on disk
(no downloads), registered as endpoints, so a new user can start a real run at once."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from .models import ModelEndpoint


def load_demo_models() -> list[str]:
    from .tiny_models import build_tiny_causal_lm, build_tiny_llava

    lines = []
    root = Path(settings.VAR_DIR) / "models"
    for name, role, builder in [("demo-tiny-llava", "vlm", build_tiny_llava),
                                ("demo-tiny-critic", "critic", build_tiny_causal_lm),
                                ("demo-tiny-rewriter", "rewriter", build_tiny_causal_lm)]:
        directory = root / name
        if not (directory / "config.json").exists():
            builder(directory)
        _, created = ModelEndpoint.objects.get_or_create(
            name=name,
            defaults=dict(role=role, backend="transformers", model_path=str(directory), max_new_tokens=32,
                          batch_size=8, device="cpu", dtype="float32"),
        )
        lines.append(f"endpoint {name} ({role}, random weights: answers are gibberish){' created' if created else ''}")
    return lines


def load_demo_runs() -> list[str]:
    """Imported answers of a pretend model and a critic's scores of them, so annotators have work and
    the leaderboard has numbers on a fresh install. Made once; later calls leave them alone."""
    import json

    from annotation.models import Dataset, Question

    from . import exchange
    from .models import InferenceRun

    dataset = Dataset.objects.filter(name="demo").first()
    vlm = ModelEndpoint.objects.filter(name="demo-tiny-llava").first()
    if dataset is None or vlm is None or InferenceRun.objects.filter(dataset=dataset, source="import").exists():
        return []
    lines, critiques = [], []
    for i, question in enumerate(Question.objects.filter(dataset=dataset).accepted().order_by("group", "variant")):
        reference = question.reference_answer or "（无）"
        # Some answers right, some half right, some off: a spread worth scoring.
        answer, rating = [(reference, 9), (reference[: max(len(reference) // 2, 4)] + "……", 5),
                          ("我看不清这张图片。", 2)][i % 3]
        lines.append(json.dumps({"question_id": question.question_id, "predict": answer}, ensure_ascii=False))
        critiques.append(json.dumps({"question_id": question.question_id, "Rating": rating if i % 7 else -1,
                                     "Reason": "示例评语：与参考答案比较后给出的分数。"}, ensure_ascii=False))
    run, _ = exchange.responses_import(lines=lines, endpoint=vlm, dataset=dataset)
    critic_run, _ = exchange.critiques_import(lines=critiques, run=run, critic_name="demo-critic (imported)")
    return [f"demo answers: run {run.pk} with {run.done} answers; critic run {critic_run.pk} "
            f"({critic_run.done} scored, {critic_run.unparsed} unparsed)"]
