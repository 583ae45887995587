"""The 13 AlignMMBench tasks, their categories, codes and abbreviations: one table, used everywhere."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class Category(models.TextChoices):
    PERCEPTION = "Perception & Understanding", "感知与理解 Perception & Understanding"
    REASONING = "Reasoning & Analysis", "推理与分析 Reasoning & Analysis"
    DIALOGUE = "Dialogue Context", "对话语境 Dialogue Context"


class Task(models.TextChoices):
    DESCRIPTION = "Description", "描述类 Description"
    RECOGNITION = "Recognition", "识别类 Recognition"
    COUNTING = "Counting", "计数类 Counting"
    OCR = "OCR", "OCR理解 OCR"
    MEME = "Meme", "梗图理解 Meme"
    KNOWLEDGE = "Knowledge", "世界知识 Knowledge"
    REASONING = "Reasoning", "推理类 Reasoning"
    CHART = "Chart", "图表类 Chart"
    PROBLEM = "Problem", "智力类 Problem"
    COMPARISON = "Comparison", "对比类 Comparison"
    WRITING = "Writing", "创作类 Writing"
    COHERENCE = "Coherence", "多轮对话 Coherence"
    INCOHERENCE = "Incoherence", "多轮对话 Incoherence"


@dataclass(frozen=True)
class TaskInfo:
    task: str
    zh: str
    abbreviation: str
    category: str
    code: str  # the TTTT part of an official question_id


TASKS: dict[str, TaskInfo] = {
    info.task: info
    for info in [
        TaskInfo("Description", "描述类", "Des", Category.PERCEPTION, "0000"),
        TaskInfo("Recognition", "识别类", "Rec", Category.PERCEPTION, "0002"),
        TaskInfo("Counting", "计数类", "Cou", Category.PERCEPTION, "0003"),
        TaskInfo("OCR", "OCR理解", "OCR", Category.PERCEPTION, "0010"),
        TaskInfo("Meme", "梗图理解", "Mem", Category.PERCEPTION, "0008"),
        TaskInfo("Knowledge", "世界知识", "Kno", Category.PERCEPTION, "0009"),
        TaskInfo("Reasoning", "推理类", "Rea", Category.REASONING, "0001"),
        TaskInfo("Chart", "图表类", "Cha", Category.REASONING, "0004"),
        TaskInfo("Problem", "智力类", "Pro", Category.REASONING, "0007"),
        TaskInfo("Comparison", "对比类", "Com", Category.REASONING, "0005"),
        TaskInfo("Writing", "创作类", "Wri", Category.REASONING, "0006"),
        TaskInfo("Coherence", "多轮对话", "Coh", Category.DIALOGUE, "0011"),
        TaskInfo("Incoherence", "多轮对话", "Inc", Category.DIALOGUE, "0011"),
    ]
}
DIALOGUE_TASKS = frozenset({Task.COHERENCE.value, Task.INCOHERENCE.value})


def category_of(task: str) -> str:
    return TASKS[task].category


def tasks_in(category: str) -> list[str]:
    return [info.task for info in TASKS.values() if info.category == category]
