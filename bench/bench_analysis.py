"""Server time of the analysis pages on PostgreSQL at the sizes the issue asks for.

    python bench/bench_analysis.py          # loads the data (about a minute), then times the pages

1. The agreement page over 1,000,000 critic-human pairs: 100 models x 5,000 questions = 500,000 answers,
   each scored by 2 critic runs (3% unparsed) and by 2 of 3 annotators; the page compares both critics
   with the mean of annotators (2 x 500,000 pairs), per task, with human-human agreement. Target < 2 s.
2. The leaderboard over 50 models x 5,000 questions (250,000 critic scores, rewrite groups of 5). Target < 0.5 s.

The data is generated inside PostgreSQL with INSERT ... SELECT over generate_series (faster than COPY
from Python, and nothing to ship). Times are the full view (SQL, numpy, bootstrap, template) through
Django's test client, median of 3 (agreement) or 5 (leaderboard) after one warm-up request: once
computed from scratch (cache cleared) and once served from the report cache (same data fingerprint).
"""

from __future__ import annotations

import statistics
import time

from _setup import django_setup, ensure_postgres_database, machine

QUESTIONS = 5000


def load(*, name: str, models: int, critics: int, humans: bool) -> tuple:
    from django.db import connection

    from annotation.models import Dataset, Question
    from annotation.tasks_catalog import TASKS
    from evaluation.models import CriticRun, InferenceRun, ModelEndpoint
    from tests.factories import make_image

    dataset = Dataset.objects.create(name=name)
    image = make_image(seed=1)
    tasks = [t for t in TASKS if t not in ("Coherence", "Incoherence")]
    questions = []
    for i in range(QUESTIONS):
        seed, variant = divmod(i, 5)
        task = tasks[seed % len(tasks)]
        questions.append(Question(dataset=dataset, image=image, task=task, group=f"{TASKS[task].code}{seed:04d}",
                                  variant=variant, text=f"问题{i}", reference="参考" if variant == 0 else ""))
    Question.objects.bulk_create(questions, batch_size=5000)
    runs = []
    for m in range(models):
        endpoint = ModelEndpoint.objects.create(name=f"{name}-模型{m:03d}", role="vlm", backend="openai",
                                                base_url="http://127.0.0.1:9/v1", model_name="m")
        runs.append(InferenceRun.objects.create(endpoint=endpoint, dataset=dataset, status="done"))
    critic_runs = []
    for c in range(critics):
        critic = ModelEndpoint.objects.create(name=f"{name}-评委{c}", role="critic", backend="openai",
                                              base_url="http://127.0.0.1:9/v1", model_name="judge")
        run = CriticRun.objects.create(critic=critic, status="done")
        run.inference_runs.set(runs)
        critic_runs.append(run)
    with connection.cursor() as cursor:
        cursor.execute("""
            INSERT INTO evaluation_response (run_id, question_id, text, error, created_at)
            SELECT r.id, q.id, '回答', '', now() FROM evaluation_inferencerun r
            JOIN annotation_question q ON q.dataset_id = r.dataset_id WHERE r.dataset_id = %s""", [dataset.pk])
        for k, run in enumerate(critic_runs):
            # A hidden "true" score per answer, the critic within +-2 of it, 3% unparsed.
            cursor.execute("""
                INSERT INTO evaluation_criticscore (critic_run_id, response_id, score, expected_score, critique,
                    raw_output, prompt, parse_status, attempts, error, created_at)
                SELECT %s, r.id, CASE WHEN u < 0.03 THEN NULL ELSE LEAST(10, GREATEST(1, t + d)) END,
                       CASE WHEN u < 0.03 THEN NULL ELSE LEAST(10.0, GREATEST(1.0, t + d + 0.3)) END,
                       '理由', '', '', CASE WHEN u < 0.03 THEN 'unparsed' ELSE 'parsed' END, 1, '', now()
                FROM (SELECT id, 1 + (id * 7919) %% 10 AS t, floor(random() * (5 - %s))::int - 2 AS d, random() AS u
                      FROM evaluation_response WHERE run_id = ANY(%s)) r""", [run.pk, k, [r.pk for r in runs]])
        if humans:
            from tests.factories import make_user

            people = [make_user(username=f"{name}-标注{i}", role="annotator") for i in range(3)]
            for offset in range(2):
                cursor.execute("""
                    INSERT INTO annotation_humanscore (response_id, annotator_id, score, rationale, flags,
                        time_spent_s, created_at, updated_at)
                    SELECT r.id, (%s::bigint[])[1 + (r.id + %s) %% 3],
                           LEAST(10, GREATEST(1, 1 + (r.id * 7919) %% 10 + floor(random() * 3)::int - 1)),
                           '理由', '[]', 0, now(), now()
                    FROM evaluation_response r WHERE r.run_id = ANY(%s)""",
                               [[p.pk for p in people], offset, [r.pk for r in runs]])
    if humans:
        # Raw INSERTs skip the signals that keep each response's human count and sum.
        from evaluation.models import Response

        Response.objects.filter(run__in=runs).refresh_human_stats()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return dataset, runs, critic_runs


def timed(client, url: str, params: dict, repeat: int = 5, headers: dict | None = None) -> tuple[float, float]:
    """(median computed from scratch, median served from the report cache), after one warm-up request."""
    from django.core.cache import cache

    assert client.get(url, params, headers=headers).status_code == 200
    computed, cached = [], []
    for _ in range(repeat):
        cache.clear()
        start = time.perf_counter()
        response = client.get(url, params, headers=headers)
        computed.append(time.perf_counter() - start)
        assert response.status_code == 200
        start = time.perf_counter()
        client.get(url, params, headers=headers)
        cached.append(time.perf_counter() - start)
    return statistics.median(computed), statistics.median(cached)


def main() -> None:
    database_url = ensure_postgres_database("alignbench_bench_analysis")
    django_setup(database_url)
    from django.conf import settings
    from django.test import Client
    from django.urls import reverse

    from annotation.models import HumanScore
    from evaluation.models import CriticScore
    from tests.factories import make_user

    settings.ALLOWED_HOSTS = ["*"]
    start = time.perf_counter()
    _, _, critic_runs = load(name="agree", models=100, critics=2, humans=True)
    board_dataset, _, _ = load(name="board", models=50, critics=1, humans=False)
    print(f"loaded in {time.perf_counter() - start:.0f} s: {CriticScore.objects.count():,} critic scores, "
          f"{HumanScore.objects.count():,} human scores")
    client = Client()
    client.force_login(make_user(username="bench-researcher", role="researcher"))
    rows = []
    url = reverse("evaluation:analysis_agreement")
    pick = {"critic_run": [r.pk for r in critic_runs], "human": "mean"}
    median, cold = timed(client, url, {**pick, "by": "task"}, repeat=3)
    rows.append(("agreement page: 2 critics x 500,000 answers = 1,000,000 critic-human pairs, overall + per task, "
                 "heat maps, bootstrap 1,000", median, cold, "2 s"))
    median, cold = timed(client, url, {**pick, "by": "task", "humans": "1"}, repeat=3,
                         headers={"HX-Request": "true"})
    rows.append(("human-human partial (htmx, loaded after the page): alpha over 500,000 responses, annotator pairs",
                 median, cold, "-"))
    median, cold = timed(client, url, {**pick, "by": "model"}, repeat=3)
    rows.append(("agreement page, per model (100 models x 2 critics, distributions)", median, cold, "2 s"))
    median, cold = timed(client, reverse("evaluation:leaderboard"), {"dataset": board_dataset.pk})
    rows.append(("leaderboard: 50 models x 5,000 questions (250,000 critic scores), alignment over 1,000 groups",
                 median, cold, "0.5 s"))
    print(f"\nMachine: {machine()}; PostgreSQL on 127.0.0.1\n")
    print("| measurement | server time, computed (median) | repeat view, report cached | target |")
    print("|---|---|---|---|")
    for label, computed, cached, target in rows:
        print(f"| {label} | **{computed:.2f} s** | {cached:.2f} s | {target} |")


if __name__ == "__main__":
    main()
