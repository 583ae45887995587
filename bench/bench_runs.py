"""Inference and critic run throughput through a real worker, Redis and PostgreSQL.

    python bench/bench_runs.py            # all measurements, a Markdown table at the end

1. Orchestration overhead: N questions against a local Chat Completions server that answers at
   once: items per second end to end (the app, not the model, is what is measured). The server is
   ``instant_chat_server.py``, a cheap asyncio process of its own speaking real HTTP: on 2 cores
   its CPU is taken from the app being measured.
2. Concurrency efficiency: the server answering after 100 ms, concurrency 32, 2,000 requests:
   achieved throughput over the ideal 32 / 0.1 s, for the backend alone and for a whole run.
3. Critic throughput, same latency and concurrency, over 2,000 answers.
4. Batching: the transformers backend with the tiny LLaVA model, batch 8 against batch 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _setup import ROOT, django_setup, ensure_postgres_database, machine

# Overridable so two sessions on one machine don't drop each other's database or flush each other's Redis.
BENCH_DB = os.environ.get("BENCH_DB", "alignbench_bench_runs")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/7")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children so far (from /proc; Linux only)."""
    total = 0.0
    for child in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [d for c in map(int, children) for d in (c, *_descendants(c))]


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def start_worker(database_url: str, media_root: str, *, concurrency: int = 2) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": REDIS, "MEDIA_ROOT": media_root,
           "LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "alignbench_site", "worker", "-Q", "default,gpu",
                             "-P", "threads", "-c", str(concurrency), "-n", "bench@%h", "-l", "WARNING",
                             "--without-gossip", "--without-mingle"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_questions(count: int, name: str):
    from annotation.models import Dataset, Question
    from tests.factories import make_image

    dataset = Dataset.objects.create(name=name)
    image = make_image(seed=1)
    Question.objects.bulk_create(
        [Question(dataset=dataset, image=image, task="Description", group=f"0000{i:04d}", variant=i // 10000,
                  text=f"请描述图片{i}。", reference="") for i in range(count)], batch_size=2000)
    return dataset


def wait_done(run, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in ("queued", "running"):
            return run
        time.sleep(0.2)
    raise TimeoutError(run)


def timed_run(create, worker: subprocess.Popen) -> tuple[float, object, float]:
    """Seconds from creating the run to its row saying done, the run, and the worker's CPU seconds."""
    from django.db import transaction

    cpu_before = cpu_seconds(worker.pid)
    start = time.monotonic()
    with transaction.atomic():
        run = create()
    run = wait_done(run)
    return time.monotonic() - start, run, cpu_seconds(worker.pid) - cpu_before


def cpu_note(worker_cpu: float, server_cpu: float, items: int) -> str:
    return (f"CPU per 1,000 items: worker {1000 * worker_cpu / items:.2f} s, fake server "
            f"{1000 * server_cpu / items:.2f} s; load average {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=5000)
    parser.add_argument("--skip-batching", action="store_true")
    parser.add_argument("--overhead-only", action="store_true", help="only measurement 1")
    parser.add_argument("--repeat", type=int, default=1, help="run measurement 1 this many times")
    args = parser.parse_args()

    database_url = ensure_postgres_database(BENCH_DB)
    media = tempfile.mkdtemp(prefix="bench-media-")
    os.environ["MEDIA_ROOT"] = media
    os.environ["CELERY_BROKER_URL"] = REDIS
    django_setup(database_url)
    import redis

    redis.Redis.from_url(REDIS).flushdb()

    from instant_chat_server import InstantChatServer

    from evaluation import critics, inference
    from evaluation.backends.base import BackendConfig, Message
    from evaluation.backends.openai_backend import OpenAIBackend
    from evaluation.models import ModelEndpoint

    rows: list[tuple[str, str]] = []
    worker = start_worker(database_url, media)
    try:
        time.sleep(4)
        with InstantChatServer(reply="好") as server:
            endpoint = ModelEndpoint.objects.create(name="instant", role="vlm", backend="openai",
                                                    base_url=server.base_url, model_name="m", concurrency=32)
            for attempt in range(args.repeat):
                dataset = make_questions(args.questions, f"bench-overhead-{attempt}")
                server_cpu = cpu_seconds(server.process.pid)
                seconds, run, worker_cpu = timed_run(
                    lambda dataset=dataset: inference.inference_run_create(endpoint=endpoint, dataset=dataset), worker)
                server_cpu = cpu_seconds(server.process.pid) - server_cpu
                assert run.done == args.questions, run
                rate = args.questions / seconds
                rows.append(("orchestration: instant server, concurrency 32, end to end",
                             f"{args.questions} items in {seconds:.1f} s = **{rate:.0f} items/s**"))
                print(rows[-1], cpu_note(worker_cpu, server_cpu, args.questions))
        if args.overhead_only:
            return

        with InstantChatServer(reply="好", latency_s=0.1) as server:
            config = BackendConfig(backend="openai", base_url=server.base_url, model_name="m", concurrency=32)
            backend = OpenAIBackend(config)
            conversations = [[Message("user", f"问题{i}")] for i in range(2000)]
            start = time.monotonic()
            results = backend.generate(conversations)
            seconds = time.monotonic() - start
            backend.close()
            assert not any(r.error for r in results)
            ratio = (2000 / seconds) / (32 / 0.1)
            rows.append(("concurrency efficiency: backend alone, 100 ms, c=32, 2,000 requests",
                         f"{2000 / seconds:.0f} req/s of ideal 320 = **{ratio:.2f}**"))
            print(rows[-1])

            dataset = make_questions(2000, "bench-latency")
            endpoint = ModelEndpoint.objects.create(name="slow", role="vlm", backend="openai",
                                                    base_url=server.base_url, model_name="m", concurrency=32)
            seconds, run, worker_cpu = timed_run(
                lambda: inference.inference_run_create(endpoint=endpoint, dataset=dataset), worker)
            ratio = (2000 / seconds) / 320
            rows.append(("concurrency efficiency: whole inference run, 100 ms, c=32, 2,000 items",
                         f"{2000 / seconds:.0f} items/s of ideal 320 = **{ratio:.2f}**"))
            print(rows[-1], f"worker CPU per 1,000 items {1000 * worker_cpu / 2000:.2f} s; load {load_average()}")

        with InstantChatServer(reply='{"Rating": 7, "Reason": "不错"}', latency_s=0.1) as server:
            critic = ModelEndpoint.objects.create(name="judge", role="critic", backend="openai",
                                                  base_url=server.base_url, model_name="m", concurrency=32)
            seconds, critic_run, worker_cpu = timed_run(lambda: critics.critic_run_create(
                critic=critic, template=critics.critic_template_default(), inference_runs=[run]), worker)
            assert critic_run.done == 2000, critic_run
            ratio = (2000 / seconds) / 320
            rows.append(("critic throughput: 100 ms, c=32, 2,000 answers (logprobs on)",
                         f"{2000 / seconds:.0f} items/s of ideal 320 = **{ratio:.2f}**"))
            print(rows[-1], f"worker CPU per 1,000 items {1000 * worker_cpu / 2000:.2f} s; load {load_average()}")
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    if not args.skip_batching:
        from evaluation.backends.transformers_backend import TransformersBackend
        from evaluation.tiny_models import build_tiny_llava

        path = build_tiny_llava(Path(tempfile.mkdtemp()) / "tiny-llava")
        image = Path(media) / "bench.png"
        from PIL import Image as PILImage

        PILImage.new("RGB", (64, 64), (10, 200, 30)).save(image)
        conversations = [[Message("user", f"图里有什么？{i}", (str(image),))] for i in range(64)]
        for batch in (1, 8):
            backend = TransformersBackend(BackendConfig(backend="transformers", path=str(path), batch_size=batch,
                                                        max_new_tokens=32, device="cpu", dtype="float32"))
            backend.generate(conversations[:2])  # warm-up
            start = time.monotonic()
            backend.generate(conversations)
            seconds = time.monotonic() - start
            rows.append((f"batching: tiny LLaVA on CPU, batch {batch}, 64 items, 32 new tokens",
                         f"**{64 / seconds:.1f} items/s**"))
            print(rows[-1])

    print(f"\nMachine: {machine()}; PostgreSQL 15 and Redis 7 on the same machine\n")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
