import json

import pytest
from django.core.management import CommandError, call_command

from annotation.models import HumanScore
from evaluation.models import Response
from evaluation.pairs import pointwise_votes
from evaluation.ratings import RatingsError
from tests.factories import make_critic_run, make_critic_score, make_scoring_dataset, make_user


@pytest.fixture
def scored(db):
    """3 models x 6 questions; the critic scores model 2 > model 1 > model 0 except one tie."""
    dataset, responses = make_scoring_dataset(name="pairs", questions=3, models=3)
    runs = sorted({r.run_id for r in responses})
    critic_run = make_critic_run(name="judge")
    for r in responses:
        score = 3 + 2 * runs.index(r.run_id)
        make_critic_score(critic_run=critic_run, response=r, score=score)
    # On one question, models 1 and 2 tie; model 0 wins one question outright against model 1.
    first, second = sorted({r.question_id for r in responses})[:2]
    critic_run.scores.filter(response__question_id=first, response__run_id=runs[2]).update(score=5)
    critic_run.scores.filter(response__question_id=second, response__run_id=runs[0]).update(score=6)
    return dataset, responses, critic_run


def test_it_turns_critic_scores_into_votes_per_question(scored):
    dataset, responses, critic_run = scored
    votes = pointwise_votes(dataset=dataset, source=f"critic-run:{critic_run.pk}")
    assert len(votes) == 6 * 3  # 6 questions x 3 model pairs
    assert {v.judge for v in votes} == {"judge"}
    winners = [v.winner for v in votes]
    assert winners.count("tie") == 1
    assert sum(1 for v in votes if v.model_a == "pairs-model-0" and v.model_b == "pairs-model-1"
               and v.winner == "model_a") == 1
    assert all(v.length_a and v.length_b for v in votes)


def test_it_reads_human_scores_as_the_mean_of_annotators(scored):
    dataset, responses, _ = scored
    alice, bob = make_user(username="alice", role="annotator"), make_user(username="bob", role="annotator")
    question = responses[0].question_id
    on_question = [r for r in responses if r.question_id == question]
    for r, (a, b) in zip(on_question, [(4, 6), (5, 5), (9, 1)], strict=True):
        HumanScore.objects.create(response=r, annotator=alice, score=a)
        HumanScore.objects.create(response=r, annotator=bob, score=b)
    Response.objects.refresh_human_stats()
    votes = pointwise_votes(dataset=dataset, source="human-scores")
    assert len(votes) == 3 and {v.winner for v in votes} == {"tie"}


def test_it_refuses_unknown_sources_and_empty_data(scored):
    dataset, _, _ = scored
    with pytest.raises(RatingsError, match="unknown source"):
        pointwise_votes(dataset=dataset, source="critic-run:x")
    with pytest.raises(RatingsError, match="no critic run 999999"):
        pointwise_votes(dataset=dataset, source="critic-run:999999")
    with pytest.raises(RatingsError, match="two or more inference runs"):
        pointwise_votes(dataset=dataset, source="human-scores")


def test_it_rates_a_critic_run_from_the_command(scored, capsys):
    dataset, _, critic_run = scored
    call_command("pairwise_ratings", "--dataset", "pairs", "--source", f"critic-run:{critic_run.pk}",
                 "--bootstrap", "50", "--json")
    report = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in report["models"]] == ["pairs-model-2", "pairs-model-1", "pairs-model-0"]
    assert report["votes"] == 18


def test_it_explains_a_missing_dataset_or_source(scored):
    with pytest.raises(CommandError, match="No dataset named 'nope'"):
        call_command("pairwise_ratings", "--dataset", "nope", "--source", "human-scores")
    with pytest.raises(CommandError, match="needs --source"):
        call_command("pairwise_ratings", "--dataset", "pairs")
    with pytest.raises(CommandError, match="two or more inference runs"):
        call_command("pairwise_ratings", "--dataset", "pairs", "--source", "human-scores")
