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
