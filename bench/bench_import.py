"""Benchmark: import the 4,978 released AlignMMBench rows with 1,054 stand-in images, then time the
image library page at 10,000 images.

    .venv/bin/python bench/bench_import.py               # SQLite in a fresh temp folder
    .venv/bin/python bench/bench_import.py --postgres    # a fresh PostgreSQL database, bench_curation

Figures go to stdout; copy them into docs/benchmarks.md.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="bench-import-"))
os.environ["ALIGNBENCH_VAR_DIR"] = str(WORK)  # database (SQLite), media and broker of its own
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignbench_site.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
if "--postgres" in sys.argv:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "bench_curation" WITH (FORCE)')
        conn.execute('CREATE DATABASE "bench_curation"')
    os.environ["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/bench_curation"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from annotation.alignmmbench import alignmmbench_import  # noqa: E402
from annotation.models import Dataset, Image, Question, Tag  # noqa: E402
from tests.annotation.standins import METADATA, make_standin_images  # noqa: E402
from tests.factories import make_user  # noqa: E402

LIBRARY_IMAGES = 10_000


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed_get(client: Client, url: str, params: dict, runs: int = 15) -> float:
    client.get(url, params)  # warm caches and templates
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url, params)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(samples)


def main() -> None:
    if not METADATA.exists():
        sys.exit(f"the released file is absent: {METADATA}")
    memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {memory} GiB, Python {platform.python_version()}, "
          f"{connection.vendor}, {date.today().isoformat()}")
    call_command("migrate", verbosity=0)

    images = WORK / "alignmmbench"
    start = time.perf_counter()
    count = make_standin_images(images)
    print(f"stand-in images: {count} in {time.perf_counter() - start:.1f} s (not counted)")

    dataset = Dataset.objects.create(name="alignmmbench")
    rss_before = rss_mib()
    start = time.perf_counter()
    report = alignmmbench_import(dataset=dataset, jsonl=METADATA, images=images)
    elapsed = time.perf_counter() - start
    print(f"import: {report.imported} imported, {report.unchanged} unchanged, {report.failed} failed "
          f"in {elapsed:.1f} s; peak RSS {rss_mib():.0f} MiB (before: {rss_before:.0f} MiB)")

    start = time.perf_counter()
    again = alignmmbench_import(dataset=dataset, jsonl=METADATA, images=images)
    print(f"re-import (all unchanged: {again.unchanged}) in {time.perf_counter() - start:.1f} s")

    # Python-level allocations of one import (tracemalloc slows it down, so a separate run).
    tracemalloc.start()
    second = Dataset.objects.create(name="alignmmbench copy")
    start = time.perf_counter()
    alignmmbench_import(dataset=second, jsonl=METADATA, images=images)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"import into a second dataset under tracemalloc: {time.perf_counter() - start:.1f} s, "
          f"peak traced {peak / 2**20:.0f} MiB")

    # The library at 10,000 images: the imported ones plus rows up to 10,000, some tagged.
    missing = LIBRARY_IMAGES - Image.objects.count()
    Image.objects.bulk_create([
        Image(file=f"images/zz/{i:064x}.png", sha256=f"{i:064x}", width=640, height=480, format="PNG",
              original_name=f"upload-{i}.png", source="bench") for i in range(missing)], batch_size=2000)
    Tag.objects.create(name="meme").images.add(*Image.objects.order_by("id")[:2000])
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    client = Client(SERVER_NAME="localhost")
    client.force_login(make_user(username="bench-curator", role="curator"))
    print(f"library: {Image.objects.count()} images, {Question.objects.count()} questions")
    cases = {
        "first page": {},
        "page 150": {"page": 150},
        "tag + has questions": {"tag": "meme", "has_questions": "yes"},
        "task filter": {"task": "Chart"},
        "search (question text)": {"q": "图片"},
        "dataset filter, page 10": {"dataset": dataset.pk, "page": 10},
    }
    for name, params in cases.items():
        print(f"  GET /images/ {name}: {timed_get(client, '/images/', params):.1f} ms (median of 15)")


if __name__ == "__main__":
    main()
