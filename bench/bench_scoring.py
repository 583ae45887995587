"""Human-scoring load test: real HTTP sessions against gunicorn + PostgreSQL, 127.0.0.1 only.

    .venv/bin/python bench/bench_scoring.py [--responses 100000] [--annotators 50] [--seconds 60]
                                            [--workers 3] [--no-stagger] [--reuse]

1. (Re)creates the PostgreSQL database BENCH_DB (default alignbench_bench) and migrates it
   (--reuse: keeps an earlier run's data and clears its scores and reservations).
2. Bulk-creates a dataset of --responses responses (questions x models) and syncs the queue.
3. Starts gunicorn on 127.0.0.1 and logs in --annotators sessions (sessions written directly),
   then warms every worker with one untimed "next" per annotator.
4. Paced run: every annotator does next, pause 1 s, submit, pause 1 s, ... for --seconds, each
   starting at a random moment within the first pause (--no-stagger: all at once).
5. Saturation run: --saturation-clients clients do next + submit with no pause for --seconds.
Each run reports latency percentiles and the CPU per pair of the load generator, gunicorn and the
bench database's PostgreSQL backends.
After each run it checks the database against what the clients were told: every confirmed
submit is exactly one HumanScore row, no response has more than N, nobody scored one twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = os.environ.get("BENCH_DB", "alignbench_bench")
PORT = int(os.environ.get("BENCH_PORT", "8765"))
BASE = f"http://127.0.0.1:{PORT}"
ITEM_RE = re.compile(r"score/item/(\d+)/submit")


def server_env() -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": f"{PG}/{DB}", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/5",
            "DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0", "LOG_LEVEL": "WARNING", "ALIGNBENCH_VAR_DIR": str(ROOT / "var" / "bench")}


def setup_database(responses: int, annotators: int) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(PG)
    where = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    subprocess.run(["dropdb", "--if-exists", *where, DB], check=True)
    subprocess.run(["createdb", *where, DB], check=True)
    os.environ.update(server_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignbench_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return populate(responses, annotators)


def session_cookie(user) -> str:
    """A signed-in session for the user, as the session cookie's value (whatever SESSION_ENGINE is)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session.session_key


def user_of_cookie(cookie: str) -> int:
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import SESSION_KEY

    return int(import_module(settings.SESSION_ENGINE).SessionStore(session_key=cookie)[SESSION_KEY])


def reuse_database(annotators: int) -> dict:
    """The data of an earlier run, with its scores and reservations cleared (a few seconds instead
    of the minute a fresh database takes)."""
    os.environ.update(server_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alignbench_site.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection

    from annotation.models import Assignment, Dataset, HumanScore, HumanScoreRevision, ScoringItem
    from evaluation.models import Response

    tables = ", ".join(m._meta.db_table for m in (HumanScoreRevision, HumanScore, Assignment))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables}")
    ScoringItem.objects.update(scores=0, full=False)
    Response.objects.filter(human_count__gt=0).update(human_count=0, human_sum=0)
    users = User.objects.filter(username__startswith="bench").order_by("username")[:annotators]
    return {"dataset": Dataset.objects.get(name="bench").pk, "sessions": [session_cookie(u) for u in users],
            "responses": Response.objects.count(), "reused": True}


def populate(responses: int, annotators: int) -> dict:
    from django.contrib.auth.models import Group, User

    from annotation import scoring
    from annotation.models import Dataset, Image, Question
    from annotation.tasks_catalog import TASKS
    from evaluation.models import InferenceRun, ModelEndpoint, Response

    started = time.perf_counter()
    models = 10
    per_model = responses // models
    dataset = Dataset.objects.create(name="bench", annotators_per_response=3)
    image = Image.objects.create(file="images/bench.png", sha256="0" * 64, width=640, height=480, format="PNG")
    tasks = [t for t in TASKS if t not in ("Coherence", "Incoherence")]
    questions = [
        Question(dataset=dataset, image=image, task=tasks[i % len(tasks)],
                 group=f"{TASKS[tasks[i % len(tasks)]].code}{i // len(tasks):04d}", variant=0,
                 text=f"请描述图片 {i}", reference=f"参考答案 {i}")
        for i in range(per_model)
    ]
    Question.objects.bulk_create(questions, batch_size=5000)
    questions = list(Question.objects.filter(dataset=dataset).only("pk"))
    text = "这是一个模型的回答。\n" * 20
    for m in range(models):
        endpoint = ModelEndpoint.objects.create(name=f"bench-model-{m}", role="vlm", backend="openai",
                                                base_url="http://127.0.0.1:9/v1", model_name="m")
        run = InferenceRun.objects.create(endpoint=endpoint, dataset=dataset, status="done")
        Response.objects.bulk_create([Response(run=run, question=q, text=text) for q in questions], batch_size=5000)
    made = time.perf_counter() - started
    t0 = time.perf_counter()
    scoring.queue_sync(dataset)
    synced = time.perf_counter() - t0
    group = Group.objects.get_or_create(name="annotator")[0]
    cookies = []
    for i in range(annotators):
        user = User(username=f"bench{i:03d}")
        user.set_unusable_password()
        user.save()
        user.groups.add(group)
        cookies.append(session_cookie(user))
    return {"dataset": dataset.pk, "sessions": cookies, "responses": Response.objects.count(),
            "populate_s": round(made, 1), "queue_sync_s": round(synced, 2)}


def start_server(workers: int, threads: int = 1) -> subprocess.Popen:
    log = open(ROOT / "var" / "bench-gunicorn.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "alignbench_site.wsgi", "-b", f"127.0.0.1:{PORT}",
         "-w", str(workers), *(["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else []),
         "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
    )
    import httpx

    for _ in range(100):
        try:
            httpx.get(f"{BASE}/login/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start; see var/bench-gunicorn.log")


class Session:
    """One annotator's HTTP/1.1 connection to gunicorn: plain asyncio streams instead of an HTTP
    library, because the load generator shares the 2 cores with the server and httpx cost ~4.5 ms
    of CPU a request. Cookies are fixed (the signed session and a CSRF token sent back as the
    X-CSRFToken header); the connection is reused when the server keeps it open (gthread), and
    reopened when it closes it (sync workers close after every response)."""

    def __init__(self, session_key: str):
        token = secrets.token_hex(16)  # any 32-character secret: the CSRF cookie and header just have to agree
        self.head = (f"Host: 127.0.0.1:{PORT}\r\nCookie: sessionid={session_key}; csrftoken={token}\r\n"
                     f"HX-Request: true\r\nX-CSRFToken: {token}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n")
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: str = "") -> tuple[int, str]:
        return await asyncio.wait_for(self._post(path, body.encode()), timeout=30)

    async def _post(self, path: str, body: bytes) -> tuple[int, str]:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", PORT)
        reader, writer = self.streams
        writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head.split(" ", 2)[1])
        length = re.search(r"\r\ncontent-length: *(\d+)", head)
        if length is None:
            raise ValueError("response without Content-Length")
        text = (await reader.readexactly(int(length.group(1)))).decode()
        if "\r\nconnection: close" in head:
            await self.close()
        return status, text

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def annotator(session_key: str, dataset: int, *, pause: float, until: float, stats: dict,
                    stagger: bool = False) -> None:
    client = Session(session_key)
    if stagger:
        # People don't all click at the same instant: each starts somewhere in the first pause.
        await asyncio.sleep(random.uniform(0, pause))
    while time.monotonic() < until:
        t0 = time.perf_counter()
        try:
            status, text = await client.post(f"/score/{dataset}/next")
            stats["next"].append(time.perf_counter() - t0)
            found = ITEM_RE.search(text) if status == 200 else None
            if found is None:
                stats["errors"].append(f"next {status}")
                await asyncio.sleep(pause or 0.05)
                continue
            await asyncio.sleep(pause)
            t0 = time.perf_counter()
            status, text = await client.post(f"/score/item/{found.group(1)}/submit", "score=7")
            stats["submit"].append(time.perf_counter() - t0)
            if status == 200 and 'data-testid="side-by-side"' in text:
                stats["confirmed"].append((int(found.group(1)), session_key))
            else:
                stats["errors"].append(f"submit {status}")
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            stats["errors"].append(type(exc).__name__)
            await client.close()
        await asyncio.sleep(pause)
    await client.close()


async def run_load(sessions: list[str], dataset: int, *, pause: float, seconds: float, stagger: bool = False,
                   server: subprocess.Popen | None = None) -> dict:
    stats: dict = {"next": [], "submit": [], "errors": [], "confirmed": []}
    until = time.monotonic() + seconds
    meter = CpuMeter(server)
    sampling = asyncio.create_task(meter.every(0.5))
    started = time.perf_counter()
    await asyncio.gather(*(annotator(s, dataset, pause=pause, until=until, stats=stats, stagger=stagger)
                           for s in sessions))
    stats["elapsed"] = time.perf_counter() - started
    sampling.cancel()
    stats["cpu_s"] = meter.used()
    return stats


async def warm_up(sessions: list[str], dataset: int, *, concurrency: int = 4) -> None:
    """One untimed "next" per annotator, a few at a time: every gunicorn worker has its database
    connection, compiled templates and loaded code before the clock starts, as a server that has
    been up a while would. The reservations they make are what the first timed "next" resumes."""
    gate = asyncio.Semaphore(concurrency)

    async def one(session_key: str) -> None:
        client = Session(session_key)
        async with gate:
            status, _ = await client.post(f"/score/{dataset}/next")
            await client.close()
        if status != 200:
            raise RuntimeError(f"warm-up next: HTTP {status}")

    await asyncio.gather(*(one(s) for s in sessions))


class CpuMeter:
    """CPU seconds used during a run by this process (the load generator), the gunicorn processes
    and the PostgreSQL backends of the bench database, sampled from /proc twice a second (backends
    come and go with CONN_MAX_AGE: each counts from when it was first seen to when it was last)."""

    def __init__(self, server: subprocess.Popen | None):
        self.server = server
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, float] = {}
        self.client = time.process_time()
        self.sample()

    async def every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.sample()

    def sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                kind = self._kind(int(proc.name), int(fields[1]), proc)
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
            if kind:
                cpu = (int(fields[11]) + int(fields[12])) / tick
                self.first.setdefault(int(proc.name), (kind, cpu))
                self.last[int(proc.name)] = cpu

    def _kind(self, pid: int, ppid: int, proc: Path) -> str | None:
        if self.server is not None and self.server.pid in (pid, ppid):
            return "gunicorn"
        title = (proc / "cmdline").read_bytes()
        return "postgres" if title.startswith(b"postgres:") and f" {DB} ".encode() in title else None

    def used(self) -> dict[str, float]:
        self.sample()
        used = {"client": time.process_time() - self.client, "gunicorn": 0.0, "postgres": 0.0}
        for pid, (kind, cpu) in self.first.items():
            used[kind] += self.last[pid] - cpu
        return {k: round(v, 2) for k, v in used.items()}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def check(stats: dict) -> dict:
    """Compare what the clients were told with what the database holds."""
    from django.db.models import Count

    from annotation.models import Assignment, Dataset, HumanScore

    n = Dataset.objects.get(name="bench").annotators_per_response
    user_of = {cookie: user_of_cookie(cookie) for cookie in {cookie for _, cookie in stats["confirmed"]}}
    assignments = dict(Assignment.objects.values_list("pk", "response_id"))
    confirmed = Counter((assignments[a], user_of[s]) for a, s in stats["confirmed"])
    rows = Counter(HumanScore.objects.values_list("response_id", "annotator_id"))
    over = HumanScore.objects.values("response_id").annotate(c=Count("id")).filter(c__gt=n).count()
    return {"confirmed_submits": sum(confirmed.values()), "score_rows": sum(rows.values()),
            "lost": sum((confirmed - rows).values()), "unconfirmed_rows": sum((rows - confirmed).values()),
            "doubled": sum(1 for v in confirmed.values() if v > 1), "responses_over_n": over}


def summary(name: str, stats: dict, verdict: dict) -> dict:
    both = stats["next"] + stats["submit"]
    return {
        "run": name, "seconds": round(stats["elapsed"], 1), "pairs": len(stats["confirmed"]),
        "pairs_per_s": round(len(stats["confirmed"]) / stats["elapsed"], 1), "requests": len(both),
        "errors": len(stats["errors"]), "error_kinds": dict(Counter(stats["errors"]).most_common(5)),
        "median_ms": round(pct(both, 0.5), 1), "p95_ms": round(pct(both, 0.95), 1), "p99_ms": round(pct(both, 0.99), 1),
        "next_median_ms": round(pct(stats["next"], 0.5), 1), "next_p95_ms": round(pct(stats["next"], 0.95), 1),
        "submit_median_ms": round(pct(stats["submit"], 0.5), 1),
        "submit_p95_ms": round(pct(stats["submit"], 0.95), 1),
        # CPU per confirmed next + submit pair, by process group (postgres: the bench database's backends)
        "cpu_ms_per_pair": {k: round(v * 1000 / max(1, len(stats["confirmed"])), 1) for k, v in stats["cpu_s"].items()},
        **verdict,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="above 1: gthread workers with this many threads")
    parser.add_argument("--saturation-clients", type=int, default=16)
    parser.add_argument("--stagger", action=argparse.BooleanOptionalAction, default=True,
                        help="paced annotators start at random moments within the first pause (default), "
                             "not all at once")
    parser.add_argument("--reuse", action="store_true",
                        help="keep BENCH_DB's data from an earlier run; clear its scores and reservations")
    args = parser.parse_args()
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    setup = reuse_database(args.annotators) if args.reuse else setup_database(args.responses, args.annotators)
    print(json.dumps({k: v for k, v in setup.items() if k != "sessions"}), flush=True)
    server = start_server(args.workers, args.threads)
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
               "cpus": os.cpu_count(), "gunicorn_workers": args.workers, "threads": args.threads,
               "stagger": args.stagger, "load_before": os.getloadavg(),
               **{k: v for k, v in setup.items() if k != "sessions"}, "runs": []}
    try:
        asyncio.run(warm_up(setup["sessions"], setup["dataset"]))
        paced = asyncio.run(run_load(setup["sessions"], setup["dataset"], pause=1.0, seconds=args.seconds,
                                     stagger=args.stagger, server=server))
        results["runs"].append(summary(f"paced: {args.annotators} annotators, 1 s pauses", paced, check(paced)))
        print(json.dumps(results["runs"][-1]), flush=True)
        # Saturation: fewer clients than annotators is enough to keep every worker busy; the
        # confirmed list starts afresh and the check covers both runs' rows together.
        saturated = asyncio.run(run_load(setup["sessions"][: args.saturation_clients], setup["dataset"],
                                         pause=0.0, seconds=args.seconds, server=server))
        saturated["confirmed"] = paced["confirmed"] + saturated["confirmed"]
        verdict = check(saturated)
        saturated["confirmed"] = saturated["confirmed"][len(paced["confirmed"]):]
        results["runs"].append(summary(f"saturation: {args.saturation_clients} clients, no pauses", saturated, verdict))
        print(json.dumps(results["runs"][-1]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    results["load_after"] = os.getloadavg()
    out = ROOT / "var" / "bench_scoring.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
