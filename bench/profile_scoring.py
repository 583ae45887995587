"""In-process profile of next + submit pairs (htmx fragments) against a bench database.

    BENCH_DB=perf_scoring .venv/bin/python bench/profile_scoring.py [--setup] [--pairs 200]

--setup recreates the database with bench_scoring's 100,000 responses. Prints statements per
pair (by kind), CPU ms per pair, and the top of a cProfile of the pairs in CPU time (SORT=tottime
to sort differently, PROFILE_OUT=file to keep the profile for pstats).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_scoring  # noqa: E402

HX = {"HTTP_HX_REQUEST": "true"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setup", action="store_true")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--show-sql", action="store_true")
    args = parser.parse_args()
    if args.setup:
        bench_scoring.setup_database(100_000, 50)
    else:
        os.environ.update(bench_scoring.server_env())
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignbench_site.settings")
        import django

        django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from annotation.models import Dataset

    dataset = Dataset.objects.get(name="bench").pk
    keys = [bench_scoring.session_cookie(user) for user in User.objects.filter(username__startswith="bench")[:50]]
    clients = []
    for key in keys:
        c = Client(enforce_csrf_checks=False, HTTP_HOST="127.0.0.1")
        c.cookies["sessionid"] = key
        clients.append(c)

    def pair(c):
        r = c.post(f"/score/{dataset}/next", **HX)
        pk = re.search(r"score/item/(\d+)/submit", r.content.decode()).group(1)
        r = c.post(f"/score/item/{pk}/submit", {"score": "7"}, **HX)
        assert 'data-testid="side-by-side"' in r.content.decode(), r.status_code

    for c in clients[:10]:  # warm up
        pair(c)
    with CaptureQueriesContext(connection) as ctx:
        pair(clients[10])
    kinds = Counter(q["sql"].split()[0] for q in ctx.captured_queries)
    print(f"statements per pair: {len(ctx.captured_queries)} {dict(kinds)}")
    if args.show_sql:
        for q in ctx.captured_queries:
            print(f"  {q['time']}  {q['sql'][:220]}")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(args.pairs):
        pair(clients[i % len(clients)])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"{args.pairs} pairs: CPU {cpu / args.pairs * 1000:.1f} ms/pair (this process), wall {wall / args.pairs * 1000:.1f} ms/pair")
    prof = cProfile.Profile(time.process_time)  # CPU, not waiting for PostgreSQL
    prof.enable()
    for i in range(args.pairs):
        pair(clients[i % len(clients)])
    prof.disable()
    if os.environ.get("PROFILE_OUT"):
        prof.dump_stats(os.environ["PROFILE_OUT"])
    pstats.Stats(prof).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(30)


if __name__ == "__main__":
    main()
