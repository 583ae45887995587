"""Batched generation throughput of the transformers backend at real model sizes, random weights.

    python bench/bench_gpu_batching.py [--sizes 2b,7b] [--batches 1,8,32] [--new-tokens 128] [--json FILE]

Issue 4, measurement 3. For each size it builds a LLaVA-layout VLM with random weights through
``evaluation.tiny_models.build_llava`` (the dimensions below; bfloat16, made on the GPU, saved
with ``save_pretrained``), loads it through the real backend (``TransformersBackend``: the same
``AutoProcessor`` / ``AutoModelForImageTextToText`` path, chat template, left padding and batched
``generate`` as a worker) and times ``generate()`` on conversations of one 640x480 image and a
Chinese question, at each batch size. Every answer is exactly ``--new-tokens`` tokens: the loaded
model's ``generation_config.min_new_tokens`` holds the stop token back (random weights would
otherwise stop at random places), and the script checks the count on every result.

Figures: generated tokens per second (all rows of the batch), items per second, the time per
decoding step (batch wall time / new tokens, prefill included), the CPU time to prepare one
batch (chat template, image loading and processing, tokenising; included in the wall time),
and the peak GPU memory. Each batch size is warmed up once, then timed over three batches.
Needs no Django and no database: it runs on a bare GPU machine with torch + transformers.
``--sizes tiny`` runs the tiny model on the CPU as a smoke test of the script itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# CLIP ViT-L/14 at 336 px, LLaVA-1.5's vision tower: 576 image tokens per image.
CLIP_L_336 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14, projection_dim=768,
)
SIZES = {
    # A 2B-class VLM: CLIP-L/336 + a 1.5B Llama-layout LM with Qwen2-1.5B's dimensions (as in
    # Qwen2-VL-2B: 28 layers, hidden 1536, GQA 12/2 heads, 151,936-token vocabulary, tied embeddings).
    "2b": dict(vision=CLIP_L_336, text=dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096,
    )),
    # LLaVA-1.5-7B exactly: CLIP-L/336 + Llama-2-7B (32 layers, hidden 4096, 32 heads, MHA).
    "7b": dict(vision=CLIP_L_336, text=dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, vocab_size=32064, tie_word_embeddings=False, max_position_embeddings=4096,
    )),
    "tiny": dict(vision=None, text=None),
}
QUESTIONS = [
    "请描述这张图片中的内容。",
    "这张表情包表达了什么情绪？请解释其中的幽默之处。",
    "图表中哪一年的销售额最高？比上一年增长了多少？",
    "请识别图片中的所有文字，并按原来的顺序写出来。",
    "图中有几个人？他们在做什么？",
    "根据图片，写一段一百字左右的介绍。",
    "这张图片可能是在什么季节拍摄的？为什么？",
    "请判断图中的说法是否正确，并给出理由。",
]


def make_image(directory: Path) -> str:
    from PIL import Image

    image = Image.new("RGB", (640, 480))
    image.putdata([((x * 7) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(480) for x in range(640)])
    path = directory / "image.png"
    image.save(path)
    return str(path)


def conversations(count: int, image: str):
    from evaluation.backends import Message

    return [[Message("user", QUESTIONS[i % len(QUESTIONS)], images=(image,))] for i in range(count)]


def measure(size: str, batches: list[int], new_tokens: int, work: Path) -> list[dict]:
    import torch

    from evaluation.backends import BackendConfig
    from evaluation.backends.transformers_backend import TransformersBackend
    from evaluation.tiny_models import build_llava

    gpu = size != "tiny"
    if gpu and not torch.cuda.is_available():
        raise SystemExit(f"size {size!r} needs a CUDA GPU; use --sizes tiny for a CPU smoke test")
    device = "cuda" if gpu else "cpu"
    dtype = torch.bfloat16 if gpu else torch.float32
    started = time.perf_counter()
    model_dir = build_llava(work / size, seed=0, dtype=dtype, device=device, **SIZES[size])
    built_s = time.perf_counter() - started
    if gpu:
        torch.cuda.empty_cache()
    started = time.perf_counter()
    config = BackendConfig(
        backend="transformers", kind="vlm", path=str(model_dir), max_new_tokens=new_tokens,
        temperature=0.0, batch_size=1, device=device, dtype="bfloat16" if gpu else "float32",
    )
    backend = TransformersBackend(config)
    loaded_s = time.perf_counter() - started
    backend.model.generation_config.min_new_tokens = new_tokens
    parameters = sum(p.numel() for p in backend.model.parameters())
    print(f"[{size}] {parameters / 1e9:.2f}B parameters; built+saved {built_s:.1f}s, loaded {loaded_s:.1f}s", flush=True)
    image = make_image(work)

    rows = []
    for batch in batches:
        backend.config = dataclasses.replace(config, batch_size=batch)
        backend.generate(conversations(batch, image))  # warm-up: kernels, allocator, caches
        repeats = 3
        items = conversations(batch * repeats, image)
        # The CPU share of a batch: chat template, image loading and processing, tokenising.
        started = time.perf_counter()
        backend._encode([backend._prepare(conversation) for conversation in items[:batch]])
        prepare_ms = (time.perf_counter() - started) * 1000
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        results = backend.generate(items)
        if gpu:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        errors = [r.error for r in results if r.error]
        if errors:
            raise SystemExit(f"[{size}] batch {batch}: {len(errors)} failed, first: {errors[0]}")
        counts = {r.completion_tokens for r in results}
        if counts != {new_tokens}:
            raise SystemExit(f"[{size}] batch {batch}: generated token counts {sorted(counts)}, expected {new_tokens}")
        tokens = sum(r.completion_tokens for r in results)
        row = dict(
            size=size, parameters_b=round(parameters / 1e9, 2), batch=batch, items=len(items),
            new_tokens=new_tokens, prompt_tokens=max(r.prompt_tokens for r in results),
            seconds=round(elapsed, 3), tokens_per_s=round(tokens / elapsed, 1),
            items_per_s=round(len(items) / elapsed, 2),
            ms_per_step=round(elapsed / repeats / new_tokens * 1000, 2),
            prepare_ms_per_batch=round(prepare_ms, 1),
            peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if gpu else None,
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    backend.close()
    del backend
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2b,7b")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the rows and the machine here")
    args = parser.parse_args()
    import torch
    import transformers

    batches = [int(b) for b in args.batches.split(",")]
    machine = dict(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), python=platform.python_version(),
        torch=torch.__version__, transformers=transformers.__version__,
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    )
    print(json.dumps(machine), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="alignbench-gpu-") as work:
        for size in args.sizes.split(","):
            rows += measure(size.strip(), batches, args.new_tokens, Path(work))
    print("\n| size | batch | items | prompt tokens | tokens/s | items/s | ms per step | preparing a batch (ms) | peak GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} ({r['parameters_b']}B) | {r['batch']} | {r['items']} | {r['prompt_tokens']} | "
              f"{r['tokens_per_s']:,} | {r['items_per_s']} | {r['ms_per_step']} | {r['prepare_ms_per_batch']} | "
              f"{r['peak_gib']} |")
    if args.json:
        args.json.write_text(json.dumps(dict(machine=machine, rows=rows), indent=2))


if __name__ == "__main__":
    main()
