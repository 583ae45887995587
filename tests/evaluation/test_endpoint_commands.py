"""add_endpoint, run_inference and export_responses: what a typo or a bad path gets (no worker needed)."""

import io

import pytest
from django.core.management import CommandError, call_command

from evaluation.models import InferenceRun, ModelEndpoint
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run

pytestmark = pytest.mark.django_db


def add(*args):
    call_command("add_endpoint", *args, stdout=io.StringIO())
    return ModelEndpoint.objects.get(name=args[0])


def test_it_checks_device_dtype_and_sizes_by_name(tmp_path):
    base = ("local", "--role", "vlm", "--backend", "transformers", "--path", str(tmp_path))
    assert add(*base, "--dtype", "fp16", "--device", "cuda:1").dtype == "float16"
    for extra, message in ((("--dtype", "fp8"), "dtype: Use one of auto, float32"),
                           (("--device", "gpu0"), "device: Use auto, cpu, cuda, cuda:N"),
                           (("--batch-size", "0"), "batch_size: Must be at least 1."),
                           (("--max-new-tokens", "0"), "max_new_tokens: Must be at least 1.")):
        with pytest.raises(CommandError, match=message):
            add(*base, *extra)
    endpoint = ModelEndpoint.objects.get(name="local")
    assert (endpoint.dtype, endpoint.device, endpoint.batch_size) == ("float16", "cuda:1", 8)


def test_updating_an_endpoint_changes_only_the_options_given():
    add("api", "--role", "vlm", "--backend", "openai", "--base-url", "http://h:8000/v1", "--model", "m",
        "--api-key-env", "MY_KEY", "--max-retries", "2", "--trust-remote-code")
    endpoint = add("api", "--concurrency", "32")
    assert (endpoint.concurrency, endpoint.api_key_env, endpoint.max_retries, endpoint.trust_remote_code,
            endpoint.role, endpoint.model_name) == (32, "MY_KEY", 2, True, "vlm", "m")
    assert add("api", "--no-trust-remote-code").trust_remote_code is False


def test_a_new_endpoint_needs_a_role_and_a_backend():
    with pytest.raises(CommandError, match="needs --role and --backend"):
        add("new", "--base-url", "http://h/v1")
    assert not ModelEndpoint.objects.filter(name="new").exists()


def test_an_endpoint_with_runs_keeps_its_role():
    endpoint = make_endpoint(name="vlm")
    make_run(endpoint=endpoint, dataset=make_dataset())
    with pytest.raises(CommandError, match="already has runs as a vlm"):
        add("vlm", "--role", "critic")
    assert ModelEndpoint.objects.get(name="vlm").role == "vlm"


@pytest.mark.parametrize("args,message", [
    (("--tasks", "Descripton"), "Unknown task Descripton; the tasks are Description"),
    (("--variants", "x"), "'x' is not a number or a range"),
    (("--variants", "5-1"), "runs backwards"),
    (("--variants", "3"), "No accepted questions in d match"),
    (("--endpoint", "judge"), "judge is a critic, not a VLM"),
])
def test_run_inference_refuses_a_selection_it_cannot_run(args, message):
    make_question(dataset=make_dataset(name="d"), group="00000000")
    make_endpoint(name="vlm")
    make_endpoint(name="judge", role="critic")
    options = {"--endpoint": "vlm", "--dataset": "d", **dict(zip(args[::2], args[1::2], strict=True))}
    with pytest.raises(CommandError, match=message):
        call_command("run_inference", *[x for pair in options.items() for x in pair], stdout=io.StringIO())
    assert not InferenceRun.objects.exists()


def test_export_to_a_missing_folder_says_so_and_leaves_nothing(tmp_path):
    dataset = make_dataset()
    run = make_run(endpoint=make_endpoint(), dataset=dataset)
    make_response(run=run, question=make_question(dataset=dataset, group="00000000"))
    target = tmp_path / "nope" / "answers.jsonl"
    with pytest.raises(CommandError, match=f"Can't write {target}: No such file or directory"):
        call_command("export_responses", "--run", str(run.pk), "--out", str(target), stdout=io.StringIO())
    out = tmp_path / "answers.jsonl"
    call_command("export_responses", "--run", str(run.pk), "--out", str(out), stdout=io.StringIO())
    assert out.read_text().count("\n") == 1 and list(tmp_path.iterdir()) == [out]
