import io
import os
import stat

from django.contrib.auth.models import User
from django.core.management import call_command

from annotation.demo import ensure_demo_users, load_demo_dataset
from annotation.models import Dataset, Image, Question
from annotation.tasks_catalog import TASKS


def test_it_loads_the_demo_dataset_over_all_13_tasks_with_rewrites_and_dialogues(db):
    load_demo_dataset()
    questions = Question.objects.filter(dataset__name="demo")
    assert set(questions.values_list("task", flat=True)) == set(TASKS)
    assert questions.filter(variant__gte=1).exists()
    assert questions.dialogues().count() == 2
    assert all(q.history for q in questions.dialogues())
    assert 25 <= Image.objects.count() <= 35


def test_it_is_idempotent(db, settings, tmp_path):
    settings.VAR_DIR, settings.EMBEDDED_MODE = tmp_path, True
    first_logins = ensure_demo_users()
    load_demo_dataset()
    counts = (Image.objects.count(), Question.objects.count(), Dataset.objects.count(), User.objects.count())
    second_logins = ensure_demo_users()
    load_demo_dataset()
    assert (Image.objects.count(), Question.objects.count(), Dataset.objects.count(), User.objects.count()) == counts
    assert first_logins == second_logins, "the printed passwords stay valid"
    for username, _, password in second_logins:
        assert User.objects.get(username=username).check_password(password)


def test_it_keeps_the_logins_file_private(db, settings, tmp_path):
    settings.VAR_DIR, settings.EMBEDDED_MODE = tmp_path, True
    ensure_demo_users()
    mode = stat.S_IMODE(os.stat(tmp_path / "demo_logins.txt").st_mode)
    assert mode == 0o600


def test_it_refuses_demo_logins_in_server_mode(db, settings):
    settings.EMBEDDED_MODE = False
    import pytest
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="only in the embedded default"):
        call_command("load_demo")


def test_it_gives_every_role_something_to_do_once(db, settings, tmp_path):
    from evaluation.models import CriticRun, InferenceRun, Response

    settings.VAR_DIR, settings.EMBEDDED_MODE = tmp_path, True
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=io.StringIO())
    run = InferenceRun.objects.get()
    critic_run = CriticRun.objects.get()
    assert run.done == Response.objects.count() == Question.objects.filter(dataset__name="demo").count()
    assert critic_run.done > 0 and critic_run.unparsed > 0
    assert "Demo logins" in out.getvalue()
