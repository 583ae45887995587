from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from evaluation.forms import EndpointForm
from evaluation.models import ModelEndpoint


class Command(BaseCommand):
    help = "Register (or update) a model endpoint: local transformers weights or an OpenAI-compatible server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", required=True, choices=ModelEndpoint.Role.values)
        parser.add_argument("--backend", required=True, choices=ModelEndpoint.Backend.values)
        parser.add_argument("--path", default="", help="transformers: the local model directory")
        parser.add_argument("--base-url", default="", help="openai: e.g. http://gpu-host:8000/v1")
        parser.add_argument("--model", default="", help="openai: the model name the server expects")
        parser.add_argument("--api-key-env", default="", help="name of the environment variable holding the key")
        parser.add_argument("--max-new-tokens", type=int, default=512)
        parser.add_argument("--temperature", type=float, default=0.0)
        parser.add_argument("--top-p", type=float, default=1.0)
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--concurrency", type=int, default=8)
        parser.add_argument("--device", default="auto")
        parser.add_argument("--dtype", default="auto")
        parser.add_argument("--trust-remote-code", action="store_true")
        parser.add_argument("--send-image", action="store_true", help="critics: also send the image")
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args, **o) -> None:
        data = {
            "name": o["name"], "role": o["role"], "backend": o["backend"], "model_path": o["path"],
            "base_url": o["base_url"], "model_name": o["model"], "api_key_env": o["api_key_env"],
            "max_new_tokens": o["max_new_tokens"], "temperature": o["temperature"], "top_p": o["top_p"],
            "batch_size": o["batch_size"], "concurrency": o["concurrency"], "device": o["device"],
            "dtype": o["dtype"], "trust_remote_code": o["trust_remote_code"], "send_image": o["send_image"],
            "timeout_s": o["timeout"], "max_retries": 5,
        }
        instance = ModelEndpoint.objects.filter(name=o["name"]).first()
        form = EndpointForm(data, instance=instance)
        if not form.is_valid():
            problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
            raise CommandError(problems)
        try:
            endpoint = form.save()
        except ValidationError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"endpoint_id={endpoint.pk} {'updated' if instance else 'created'} {endpoint.name}")
