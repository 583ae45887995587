from __future__ import annotations

import re
from urllib.parse import urlsplit

from django import forms

from annotation.models import Dataset
from annotation.tasks_catalog import Task

from .models import ModelEndpoint

DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class EndpointForm(forms.ModelForm):
    class Meta:
        model = ModelEndpoint
        fields = ["name", "role", "backend", "model_path", "base_url", "model_name", "api_key_env", "max_new_tokens",
                  "temperature", "top_p", "batch_size", "concurrency", "device", "dtype", "trust_remote_code",
                  "send_image", "timeout_s", "max_retries"]
        widgets = {"base_url": forms.TextInput(attrs={"placeholder": "http://gpu-host:8000/v1"})}
        help_texts = {
            "batch_size": "transformers: questions per generate() call. 8 suits a small GPU; on an 80 GB card a "
                          "2B-7B model answers ~3x faster at 32 (docs/benchmarks.md).",
            "device": "auto, cpu, cuda, cuda:N or mps.",
            "dtype": "auto, float32, bfloat16 or float16.",
        }

    def clean_dtype(self) -> str:
        dtype = self.cleaned_data["dtype"].strip().lower()
        dtype = DTYPE_ALIASES.get(dtype, dtype)
        if dtype not in DTYPES:
            raise forms.ValidationError(f"Use one of {', '.join(DTYPES)}.")
        return dtype

    def clean_device(self) -> str:
        device = self.cleaned_data["device"].strip().lower()
        if not DEVICE.fullmatch(device):
            raise forms.ValidationError("Use auto, cpu, cuda, cuda:N (a GPU index) or mps.")
        return device

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        endpoint = self.instance
        if endpoint.pk and role != endpoint.role and (endpoint.inference_runs.exists() or endpoint.critic_runs.exists()
                                                      or endpoint.rewrite_runs.exists()):
            raise forms.ValidationError(f"{endpoint.name} already has runs as a {endpoint.role}: "
                                        "add a new endpoint for the other role.")
        return role

    def clean(self) -> dict:
        data = super().clean()
        for name in ("max_new_tokens", "batch_size", "concurrency"):
            if data.get(name) is not None and data[name] < 1:
                self.add_error(name, "Must be at least 1.")
        backend = data.get("backend")
        if backend == ModelEndpoint.Backend.TRANSFORMERS and not data.get("model_path"):
            self.add_error("model_path", "A transformers endpoint needs the local directory of its weights.")
        base_url = data.get("base_url") or ""
        if base_url:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                self.add_error("base_url", "Use an http:// or https:// URL, e.g. http://gpu-host:8000/v1.")
        if backend == ModelEndpoint.Backend.OPENAI:
            if not base_url:
                self.add_error("base_url", "An OpenAI-compatible endpoint needs the server's base URL.")
            if not data.get("model_name"):
                self.add_error("model_name", "Give the model name the server expects.")
        key_env = data.get("api_key_env") or ""
        if key_env and not key_env.replace("_", "").isalnum():
            self.add_error("api_key_env", "Give the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key.")
        if data.get("temperature") is not None and not 0 <= data["temperature"] <= 2:
            self.add_error("temperature", "Temperature must be between 0 and 2.")
        if data.get("top_p") is not None and not 0 < data["top_p"] <= 1:
            self.add_error("top_p", "top-p must be above 0 and at most 1.")
        return data


def parse_variants(text: str) -> list[int]:
    """'0' or '0,1,2' or '1-5' -> sorted variant indexes; ValueError says what is wrong."""
    variants: set[int] = set()
    for part in (text or "").replace("，", ",").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        if not low.strip().isascii() or not low.strip().isdigit() or (high and not (
                high.strip().isascii() and high.strip().isdigit())):
            raise ValueError(f"Variants: {part!r} is not a number or a range; use e.g. 0 or 0,1,2 or 1-5.")
        first, last = int(low), int(high) if high else int(low)
        if last < first:
            raise ValueError(f"Variants: the range {part!r} runs backwards; write {last}-{first}.")
        variants.update(range(first, last + 1))
    return sorted(variants)


class InferenceRunForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.filter(role="vlm"), label="模型 Model")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), label="数据集 Dataset")
    tasks = forms.MultipleChoiceField(choices=Task.choices, required=False, label="任务 Tasks (none: all)",
                                      widget=forms.CheckboxSelectMultiple)
    variants = forms.CharField(required=False, label="变体 Variants (e.g. 0 or 0-5; empty: all)")

    def clean_variants(self) -> list[int]:
        try:
            return parse_variants(self.cleaned_data["variants"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class ResponsesImportForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.filter(role="vlm"), label="模型 Model")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), label="数据集 Dataset")
    file = forms.FileField(label='JSONL: {"question_id": ..., "predict": ...} per line')
    # Set after a partial import, so the fixed file is added to that run instead of making a second one.
    run = forms.ModelChoiceField(queryset=None, required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        from .models import InferenceRun

        super().__init__(*args, **kwargs)
        self.fields["run"].queryset = InferenceRun.objects.filter(source=InferenceRun.Source.IMPORT)


class CritiquesImportForm(forms.Form):
    run = forms.ModelChoiceField(queryset=None, label="推理运行 Inference run the critiques score")
    critic_name = forms.CharField(max_length=200, label="评分模型名 Critic name",
                                  help_text="The name of a critic endpoint links the run to it; any other name is kept as a label.")
    file = forms.FileField(label='JSONL: {"question_id": ..., "Rating": 1-10 or -1, "Reason": ...} per line')

    def __init__(self, *args, **kwargs) -> None:
        from .models import InferenceRun

        super().__init__(*args, **kwargs)
        self.fields["run"].queryset = InferenceRun.objects.filter(done__gt=0).select_related(
            "endpoint", "dataset").order_by("-created_at")
        self.fields["run"].label_from_instance = lambda run: (
            f"#{run.pk} {run.endpoint.name} · {run.dataset.name} · {run.done} answers")


class CriticRunForm(forms.Form):
    critic = forms.ModelChoiceField(queryset=ModelEndpoint.objects.filter(role="critic"), label="评分模型 Critic")
    template = forms.ModelChoiceField(queryset=None, label="模板 Template (name:version)")
    inference_runs = forms.ModelMultipleChoiceField(queryset=None, label="推理运行 Inference runs",
                                                    widget=forms.CheckboxSelectMultiple)
    max_retries = forms.IntegerField(min_value=0, max_value=10, initial=2,
                                     label="重试 Extra attempts for an unparseable reply")

    def __init__(self, *args, **kwargs) -> None:
        from .models import InferenceRun, PromptTemplate

        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = PromptTemplate.objects.filter(kind="critic").order_by("name", "-version")
        self.fields["inference_runs"].queryset = InferenceRun.objects.filter(done__gt=0).select_related(
            "endpoint", "dataset").order_by("-created_at")
        self.fields["inference_runs"].label_from_instance = lambda run: (
            f"#{run.pk} {run.endpoint.name} · {run.dataset.name} · {run.done} answers")


class TemplateForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 24, "spellcheck": "false"}), label="模板 Template",
                           strip=False)  # whitespace in a prompt is part of the prompt
    note = forms.CharField(required=False, max_length=300, label="说明 What changed")

    def __init__(self, *args, kind: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind

    def clean_body(self) -> str:
        from .prompts import validate_template

        body = self.cleaned_data["body"]
        problems = validate_template(self.kind, body)
        if problems:
            raise forms.ValidationError(problems)
        return body


class NewTemplateForm(TemplateForm):
    name = forms.SlugField(max_length=100, label="名称 Name")
    kind_choice = forms.ChoiceField(choices=[("critic", "critic"), ("rewrite", "rewrite")], label="类型 Kind")


class RewriteRunForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.filter(role="rewriter"), label="改写模型 Rewriter")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.filter(frozen=False), label="数据集 Dataset")
    tasks = forms.MultipleChoiceField(choices=[c for c in Task.choices if c[0] not in ("Coherence", "Incoherence")],
                                      required=False, label="任务 Tasks (none: all; dialogues are never rewritten)",
                                      widget=forms.CheckboxSelectMultiple)
    per_seed = forms.IntegerField(min_value=1, max_value=20, initial=5, label="每个种子 Rewrites per seed")
    template = forms.ModelChoiceField(queryset=None, required=False, label="模板 Template (default: ours)")

    def __init__(self, *args, **kwargs) -> None:
        from .models import PromptTemplate

        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = PromptTemplate.objects.filter(kind="rewrite").order_by("name", "-version")
