from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError

from .models import Dataset, Question, Tag
from .tasks_catalog import TASKS, Task


def parse_tags(text: str) -> list[str]:
    """'meme, ocr  chart' -> ['chart', 'meme', 'ocr']: lower-case, comma or space separated, slug-safe."""
    names = {re.sub(r"[^\w-]+", "-", part.strip().lower()).strip("-")[:50] for part in re.split(r"[,，\s]+", text)}
    return sorted(name for name in names if name)


def history_from_post(data, prefix: str = "history") -> list[dict]:
    """The dialogue rounds a form posted as history-0-user / history-0-assistant, ...; rounds left
    entirely blank are dropped (that is how a round is removed without JavaScript)."""
    indexes = sorted({int(m.group(1)) for key in data for m in [re.match(rf"^{prefix}-(\d+)-(user|assistant)$", key)]
                      if m})
    rounds = []
    for index in indexes[:100]:
        user = data.get(f"{prefix}-{index}-user", "")
        assistant = data.get(f"{prefix}-{index}-assistant", "")
        if user.strip() or assistant.strip():
            rounds.append({"user": user.strip(), "assistant": assistant.strip()})
    return rounds


def task_choices() -> list[tuple[str, str]]:
    return [(task, f"{info.zh} {task}") for task, info in TASKS.items()]


class LibraryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="搜索 Search")
    tag = forms.ChoiceField(required=False, label="标签 Tag")
    task = forms.ChoiceField(required=False, label="任务 Task")
    has_questions = forms.ChoiceField(required=False, label="问题 Questions",
                                      choices=[("", "全部 Any"), ("yes", "有问题 With questions"),
                                               ("no", "无问题 Without questions")])
    source = forms.CharField(required=False, max_length=200, label="来源 Source")
    dataset = forms.ChoiceField(required=False, label="数据集 Dataset")

    def __init__(self, *args, tags: list[str], datasets: list[tuple[int, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tag"].choices = [("", "全部 Any")] + [(t, t) for t in tags]
        self.fields["task"].choices = [("", "全部 Any")] + task_choices()
        self.fields["dataset"].choices = [("", "全部 Any")] + [(str(pk), name) for pk, name in datasets]

    def filter(self, images):
        """The images that match; an invalid filter value is ignored, as a search box should be."""
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("tag"):
            images = images.tagged(data["tag"])
        if data.get("task"):
            images = images.with_task(data["task"])
        if data.get("has_questions"):
            images = images.with_questions(data["has_questions"] == "yes")
        if data.get("source"):
            images = images.from_source(data["source"])
        if data.get("dataset"):
            images = images.in_dataset(int(data["dataset"]))
        if data.get("q"):
            images = images.search(data["q"])
        return images


class UploadForm(forms.Form):
    """The fields that apply to every file of an upload batch (the files come as request.FILES)."""

    tags = forms.CharField(required=False, max_length=300, label="标签 Tags",
                           help_text="逗号分隔 Comma-separated, e.g. meme, ocr")
    source = forms.CharField(required=False, max_length=300, label="来源 Source")
    licence = forms.CharField(required=False, max_length=200, label="许可 Licence")

    def clean_tags(self) -> list[str]:
        return parse_tags(self.cleaned_data["tags"])


class ImageEditForm(forms.Form):
    source = forms.CharField(required=False, max_length=300, label="来源 Source")
    licence = forms.CharField(required=False, max_length=200, label="许可 Licence")
    tags = forms.CharField(required=False, max_length=500, label="标签 Tags", help_text="逗号分隔 Comma-separated")

    def clean_tags(self) -> list[str]:
        return parse_tags(self.cleaned_data["tags"])


class QuestionForm(forms.Form):
    """A question and its dialogue rounds. The rounds are posted as plain fields (history-0-user,
    history-0-assistant, ...); the rules come from Question.clean(), so the form and the model agree."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.filter(frozen=False), label="数据集 Dataset",
                                     empty_label=None)
    task = forms.ChoiceField(label="任务 Task")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="问题 Question", required=False)
    reference = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="参考答案 Reference answer",
                                required=False)

    def __init__(self, *args, with_dataset: bool = True, question: Question | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["task"].choices = task_choices()
        self.question = question
        if not with_dataset:
            del self.fields["dataset"]
        if question is not None and not question.is_seed:
            # A rewrite shares its seed's task, reference and history: only its wording is its own.
            for name in ("task", "reference"):
                self.fields[name].disabled = True
        self.history: list[dict] = list(question.dialogue_history) if question is not None else []
        self.history_errors: list[str] = []
        if self.is_bound and (question is None or question.is_seed):
            self.history = history_from_post(self.data)

    def clean(self) -> dict:
        data = super().clean()
        task = data.get("task") or (self.question.task if self.question else "")
        probe = Question(task=task, text=data.get("text", ""), history=self.history)
        try:
            probe.clean()
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                if field == "history":
                    self.history_errors.extend(messages)
                    self.add_error(None, messages)
                else:
                    self.add_error(field if field in self.fields else None, messages)
        return data

    def rounds(self) -> list[dict]:
        """The rounds to show: the ones written so far, and one blank round to add without JavaScript."""
        return [*self.history, {"user": "", "assistant": ""}]


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description"]
        labels = {"name": "名称 Name", "description": "说明 Description"}
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class ScoringSettingsForm(forms.Form):
    """How a dataset's responses are scored by people. Nothing here touches the questions, so a
    frozen dataset (the one being scored) may change them too."""

    # (at least one, or nobody scores; the top is a guard against typos, far below the column's 32767)
    annotators_per_response = forms.IntegerField(
        min_value=1, max_value=100, label="每条回答评分人数 Annotators per response",
        help_text="每条回答最多这么多人评分 At most this many people score each response.",
        error_messages={"min_value": "至少 1 人 At least one person must score each response.",
                        "max_value": "最多 100 人 At most 100 people per response."},
    )
    show_peer_scores = forms.BooleanField(required=False, label="提交后显示他人评分 Show other people's scores after submitting")

    @classmethod
    def of(cls, dataset: Dataset) -> ScoringSettingsForm:
        return cls(initial={"annotators_per_response": dataset.annotators_per_response,
                            "show_peer_scores": dataset.show_peer_scores})


class DatasetAddForm(forms.Form):
    """Copy questions in, by filter (a dataset, a task, a search) or by selection (question ids)."""

    source = forms.ModelChoiceField(queryset=Dataset.objects.all(), required=False, label="来自数据集 From dataset")
    task = forms.ChoiceField(required=False, label="任务 Task")
    q = forms.CharField(required=False, max_length=200, label="搜索 Search")
    questions = forms.ModelMultipleChoiceField(queryset=Question.objects.all(), required=False,
                                               widget=forms.MultipleHiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["task"].choices = [("", "全部 Any")] + task_choices()

    def clean(self) -> dict:
        data = super().clean()
        if not data.get("questions") and not data.get("source"):
            raise ValidationError("Choose a dataset to copy from, or select questions. 请选择来源数据集或问题。")
        return data

    def selected(self):
        data = self.cleaned_data
        if data.get("questions"):
            return Question.objects.filter(pk__in=[q.pk for q in data["questions"]])
        questions = Question.objects.filter(dataset=data["source"]).numbered()
        if data.get("task"):
            questions = questions.filter(task=data["task"])
        if data.get("q"):
            questions = questions.search(data["q"])
        return questions


class ImportForm(forms.Form):
    dataset = forms.CharField(max_length=200, label="数据集 Dataset",
                              help_text="已有或新建 An existing dataset, or a new name")
    jsonl = forms.FileField(label="JSONL 文件 File", help_text="metadata.jsonl")
    images = forms.FileField(required=False, label="图片 zip Images zip",
                             help_text="image_path 相对于 zip 内 Paths are relative to the zip")

    def clean_dataset(self) -> str:
        name = self.cleaned_data["dataset"].strip()
        if not name:
            raise ValidationError("A dataset name is required.")
        existing = Dataset.objects.filter(name=name).first()
        if existing is not None and existing.frozen:
            raise ValidationError(f"Dataset “{name}” is frozen: copy it as a new version to import into it.")
        return name


def tag_names() -> list[str]:
    return list(Tag.objects.values_list("name", flat=True))


__all__ = ["Task"]
