import argparse

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.forms.models import model_to_dict

from evaluation.forms import EndpointForm
from evaluation.models import ModelEndpoint

# option -> model field, for the options that map one to one.
OPTIONS = {
    "role": "role", "backend": "backend", "path": "model_path", "base_url": "base_url", "model": "model_name",
    "api_key_env": "api_key_env", "max_new_tokens": "max_new_tokens", "temperature": "temperature", "top_p": "top_p",
    "batch_size": "batch_size", "concurrency": "concurrency", "device": "device", "dtype": "dtype",
    "trust_remote_code": "trust_remote_code", "send_image": "send_image", "timeout": "timeout_s",
    "max_retries": "max_retries",
}


class Command(BaseCommand):
    help = ("Register a model endpoint: local transformers weights or an OpenAI-compatible server. Given an "
            "existing name, change only the options given.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", choices=ModelEndpoint.Role.values, help="required for a new endpoint")
        parser.add_argument("--backend", choices=ModelEndpoint.Backend.values, help="required for a new endpoint")
        parser.add_argument("--path", help="transformers: the local model directory")
        parser.add_argument("--base-url", help="openai: e.g. http://gpu-host:8000/v1")
        parser.add_argument("--model", help="openai: the model name the server expects")
        parser.add_argument("--api-key-env", help="name of the environment variable holding the key")
        parser.add_argument("--max-new-tokens", type=int, help="default 512")
        parser.add_argument("--temperature", type=float, help="default 0 (greedy)")
        parser.add_argument("--top-p", type=float, help="default 1")
        parser.add_argument("--batch-size", type=int, help="transformers: questions per generate() (default 8)")
        parser.add_argument("--concurrency", type=int, help="openai: requests in flight (default 8)")
        parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
        parser.add_argument("--dtype", help="auto, float32, bfloat16 or float16 (default auto)")
        parser.add_argument("--trust-remote-code", action=argparse.BooleanOptionalAction)
        parser.add_argument("--send-image", action=argparse.BooleanOptionalAction,
                            help="critics: also send the image")
        parser.add_argument("--timeout", type=float, help="seconds per request (default 120)")
        parser.add_argument("--max-retries", type=int, help="openai: retries of a transient failure (default 5)")

    def handle(self, *args, **o) -> None:
        instance = ModelEndpoint.objects.filter(name=o["name"]).first()
        if instance is None and not (o["role"] and o["backend"]):
            raise CommandError("A new endpoint needs --role and --backend.")
        data = model_to_dict(instance or ModelEndpoint(), fields=EndpointForm.Meta.fields)
        data["name"] = o["name"]
        data.update({field: o[option] for option, field in OPTIONS.items() if o[option] is not None})
        form = EndpointForm(data, instance=instance)
        if not form.is_valid():
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
            raise CommandError(problems)
        try:
            endpoint = form.save()
        except ValidationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"endpoint_id={endpoint.pk} {'updated' if instance else 'created'} {endpoint.name}")
