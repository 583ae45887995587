"""Critic and rewrite prompt templates: the defaults, rendering and validation.

Pure Python (no Django): the PromptTemplate model stores bodies and calls these functions.

Template syntax
---------------
* ``{{name}}`` is a placeholder. Double braces keep JSON examples in a template (``{"Rating": 7}``)
  literal, and nothing is ever evaluated: a placeholder is replaced by its value as plain text,
  in one pass, so a value that itself contains ``{{answer}}`` (a model can write anything) is
  never expanded a second time.
* ``{{#name}} … {{/name}}`` is a section, kept (without its markers) when ``name`` has a non-blank
  value and dropped when it is blank or missing. Marker lines on their own are removed entirely,
  so a dropped section leaves no empty lines; a section can also sit inside one line. The default
  critic template wraps the dialogue history in a section: a single-turn item's prompt shows no
  history block at all (rather than an empty one or "无").
* Critic placeholders: history, question, task (the Chinese task name), task_rules, reference,
  answer; question and answer are required. Rewrite placeholders: question, n, task; question
  and n are required.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

CRITIC = "critic"
REWRITE = "rewrite"

PLACEHOLDERS: dict[str, frozenset[str]] = {
    CRITIC: frozenset({"history", "question", "task", "task_rules", "reference", "answer"}),
    REWRITE: frozenset({"question", "n", "task"}),
}
REQUIRED: dict[str, frozenset[str]] = {
    CRITIC: frozenset({"question", "answer"}),
    REWRITE: frozenset({"question", "n"}),
}

TASK_NAMES_ZH: dict[str, str] = {
    "Description": "描述类",
    "Recognition": "识别类",
    "Counting": "计数类",
    "OCR": "OCR理解",
    "Meme": "梗图理解",
    "Knowledge": "世界知识",
    "Reasoning": "推理类",
    "Chart": "图表类",
    "Problem": "智力类",
    "Comparison": "对比类",
    "Writing": "创作类",
    "Coherence": "多轮对话",
    "Incoherence": "多轮对话",
}

_DIALOGUE_RULE = (
    "这是一段多轮对话。请结合对话历史判断回答：它必须遵循用户在前几轮中提出的要求和设定（例如格式、角色、"
    "限制条件），与前文保持一致，不能前后矛盾，也不能忽略上下文而只回答最后一个问题。"
)

# Per-task rules, following the "topics" of the paper's critic prompt (docs/benchmark.md).
TASK_RULES: dict[str, str] = {
    "Description": (
        "描述类问题：重点看描述的结构是否清晰、内容是否完整，是否覆盖了图片中的主要对象、场景及其关系。"
        "参考答案本身也可能不完整，回答中有参考答案未提到但合理的细节时不应扣分；只有与参考答案明显矛盾的描述才算错误。"
    ),
    "Recognition": (
        "识别类问题：回答与参考答案在语义上一致即可给满分，不要求字面相同。物体、人物、地点等名称的翻译、"
        "别名或同义说法，以及数值的等价表示（如单位换算、不同写法）都应视为正确。"
    ),
    "Counting": (
        "计数类问题：回答给出的数量必须与参考答案完全一致，数量不对即为错误，不能因为“接近”而给高分。"
        "阿拉伯数字与中文数字（如 3 与“三”）视为相同。"
    ),
    "OCR": (
        "OCR理解类问题：对图片中文字的提取必须与参考答案严格一致，错字、漏字、多字都应扣分。"
        "但如果回答用另一种语言准确表达了相同的内容（如翻译后的文字），不应视为失败。"
    ),
    "Meme": (
        "梗图理解类问题：重点看回答是否真正解释了梗图的笑点、讽刺或隐含含义，而不只是描述画面内容。"
        "没有解释出笑点的回答不能给高分。"
    ),
    "Knowledge": (
        "世界知识类问题：以参考答案中的知识点为准判断回答是否正确。回答中额外提供的正确知识不算错误，也不应扣分；"
        "额外提供的错误知识应扣分。"
    ),
    "Reasoning": (
        "推理类问题：好的回答应先给出结论，再给出解释。先看结论是否与参考答案一致，再看推理过程是否合理、有依据；"
        "结论错误的回答即使过程详细也不能给高分。"
    ),
    "Chart": (
        "图表类问题：先检查回答是否满足问题要求的输出格式（如只给数字、给出表格、保留几位小数），"
        "再将回答中的数值和结论与参考答案逐项比较，数值错误应扣分。"
    ),
    "Problem": (
        "智力类问题：回答必须真正解出题目，最终答案要与参考答案一致。只复述题目、只给思路而没有答案，"
        "或答案错误的回答都不能给高分；给出正确答案并展示了合理解题过程的回答应给予肯定。"
    ),
    "Comparison": (
        "对比类问题：回答应逐项指出对比对象之间的相同点和不同点，并与参考答案核对是否正确。"
        "结构清晰（如分点或分项对比）的回答更好。"
    ),
    "Writing": (
        "创作类问题：不要因为回答与参考答案不同而扣分，参考答案只是一种可能的写法。"
        "重点看回答是否满足题目的要求（主题、体裁、字数等），以及是否通顺、流畅、有趣、有创意，并与图片内容相关。"
    ),
    "Coherence": _DIALOGUE_RULE,
    "Incoherence": (
        _DIALOGUE_RULE
        + "在这段对话中，AI助手在之前的回答里犯了错误，用户已经指出。好的回答必须真正改正这个错误，"
        "给出正确的内容；只是道歉、坚持原来的错误答案，或者口头承认却没有改正的回答，都不能给高分。"
    ),
}

DEFAULT_CRITIC_TEMPLATE = """\
{{#history}}
[对话历史开始]
{{history}}
[对话历史结束]

{{/history}}
[问题开始]
{{question}}
[问题结束]

[任务类型]
{{task}}

[参考答案开始]
{{reference}}
[参考答案结束]

[AI助手回答开始]
{{answer}}
[AI助手回答结束]

你是一位专业、客观、公正的评审专家。请根据上面的问题{{#history}}、对话历史{{/history}}、任务类型和参考答案，\
评价AI助手回答的质量。

请给出 1 到 10 之间的整数评分，评分标准如下：
- 1 分：回答没有遵循指令，或与问题无关；
- 2 分：回答与问题相关，但包含有害内容、语句不通顺或大量重复；
- 3 分：回答与问题相关，但内容完全错误；
- 4-5 分：回答中超过一半的事实有误；
- 6 分：回答中不到一半的事实有误，或只部分满足了问题的要求；
- 7-8 分：回答只有极少的错误，或内容正确但过于简略；
- 9-10 分：回答满足了问题的全部要求。
评分时请接受同义词和含义相同的表达；如果回答展示了合理的推理过程，请给予相应的肯定。

{{#task_rules}}
本题的任务类型是“{{task}}”，请特别注意：
{{task_rules}}

{{/task_rules}}
注意：你看不到问题所对应的图片。参考答案不一定包含图片中的全部细节，因此回答中提到而参考答案没有提到的细节，\
不能直接判定为错误；只有与参考答案矛盾的内容才应视为错误。

请先给出评分，再给出理由。只输出一个 JSON 对象，"Rating" 在前，是 1 到 10 之间的整数；\
"Reason" 在后，用中文说明评分理由。例如：
{"Rating": 7, "Reason": "……"}
"""

DEFAULT_REWRITE_TEMPLATE = """\
你是一位擅长中文表达的改写专家。下面是一个针对图片提出的问题{{#task}}（任务类型：{{task}}）{{/task}}。\
请把它改写成 {{n}} 个说法不同、意思完全相同的问题。

[问题开始]
{{question}}
[问题结束]

改写要求：
1. 意思不变：每个改写问的必须是同一件事，正确答案也必须与原问题完全相同。
2. 保留格式和约束：原问题要求的回答格式（如“用一句话回答”“分点列出”“只回答数字”）和所有限制条件都要保留；\
数字、引号中的文字、人名地名等专有名词、英文单词、选项及其编号必须原样保留。
3. 变换风格：改变语气、长短、礼貌程度和措辞，例如更口语或更正式、更简短或更详细、加上或去掉客气话、调整句式和用词。
4. 各不相同：{{n}} 个改写之间要有明显差别，也不要与原问题一字不差。
5. 只改写，不回答：不要回答问题，不要描述图片，也不要添加原问题中没有的信息或要求。

只输出一个包含 {{n}} 个字符串的 JSON 列表，不要输出任何其他内容。格式示例：
["第一个改写", "第二个改写"]
"""

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = re.compile(r"\{\{\s*(" + _NAME + r")\s*\}\}")
_SECTION_MARK = re.compile(r"\{\{\s*([#/])\s*(" + _NAME + r")\s*\}\}")
# A section whose markers stand on their own lines: the marker lines go with it.
_SECTION_LINES = re.compile(
    r"^[ \t]*\{\{\s*#\s*(?P<name>" + _NAME + r")\s*\}\}[ \t]*\n(?P<body>.*?)^[ \t]*\{\{\s*/\s*(?P=name)\s*\}\}[ \t]*(?:\n|\Z)",
    re.S | re.M,
)
_SECTION_INLINE = re.compile(
    r"\{\{\s*#\s*(?P<name>" + _NAME + r")\s*\}\}(?P<body>.*?)\{\{\s*/\s*(?P=name)\s*\}\}", re.S
)


def _present(value: object) -> bool:
    return value is not None and str(value).strip() != ""


def _render_sections(body: str, values: Mapping[str, object]) -> str:
    def keep_or_drop(match: re.Match[str]) -> str:
        return match["body"] if _present(values.get(match["name"])) else ""

    # Repeat so nested sections open up from the outside in.
    previous = None
    while previous != body:
        previous = body
        body = _SECTION_LINES.sub(keep_or_drop, body)
        body = _SECTION_INLINE.sub(keep_or_drop, body)
    return body


def render(body: str, **values: object) -> str:
    """The template with sections resolved and known placeholders replaced by their values.

    Placeholders without a value are left as they are (validation reports unknown names)."""
    body = _render_sections(body, values)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values and values[name] is not None else match.group(0)

    return _PLACEHOLDER.sub(replace, body)


def placeholders(body: str) -> set[str]:
    """The names a template uses, as ``{{name}}`` or as a ``{{#name}}`` section."""
    return set(_PLACEHOLDER.findall(body)) | {name for _, name in _SECTION_MARK.findall(body)}


def validate_template(kind: str, body: str) -> list[str]:
    """Problems that would make the template unusable; an empty list means it is fine."""
    if kind not in PLACEHOLDERS:
        return [f"未知的模板类型 {kind!r}（应为 critic 或 rewrite）/ Unknown template kind {kind!r} (critic or rewrite)."]
    if not body or not body.strip():
        return ["模板为空。/ The template is empty."]
    errors = []
    used = placeholders(body)
    for name in sorted(REQUIRED[kind] - used):
        errors.append(f"缺少必需的占位符 {{{{{name}}}}}。/ Required placeholder {{{{{name}}}}} is missing.")
    allowed = ", ".join(f"{{{{{name}}}}}" for name in sorted(PLACEHOLDERS[kind]))
    for name in sorted(used - PLACEHOLDERS[kind]):
        errors.append(
            f"未知的占位符 {{{{{name}}}}}（可用：{allowed}）。/ Unknown placeholder {{{{{name}}}}} (allowed: {allowed})."
        )
    opened = [name for mark, name in _SECTION_MARK.findall(body) if mark == "#"]
    closed = [name for mark, name in _SECTION_MARK.findall(body) if mark == "/"]
    for name in sorted(set(opened) | set(closed)):
        if opened.count(name) != closed.count(name):
            errors.append(
                f"段落 {{{{#{name}}}}} 与 {{{{/{name}}}}} 不成对。/ Section {{{{#{name}}}}} is not closed by {{{{/{name}}}}}."
            )
    return errors


def format_history(history: list[dict] | None) -> str:
    """Dialogue rounds as the critic reads them: "第1轮\\n用户：…\\n助手：…", a blank line between rounds.

    Rounds are ``{"user": ..., "assistant": ...}`` as in the official question files; an empty or
    missing history gives "" (and the template's history section is then dropped)."""
    rounds = []
    for number, turn in enumerate(history or [], start=1):
        user = str(turn.get("user", turn.get("question", "")) or "").strip()
        assistant = str(turn.get("assistant", turn.get("answer", "")) or "").strip()
        rounds.append(f"第{number}轮\n用户：{user}\n助手：{assistant}")
    return "\n\n".join(rounds)


def task_rules_for(task: str, overrides: Mapping[str, str] | None = None) -> str:
    """The rules for one task: a template's own rule for it when it has one, else the default."""
    if overrides and overrides.get(task, "").strip():
        return overrides[task].strip()
    return TASK_RULES.get(task, "")


def render_critic_prompt(
    body: str,
    *,
    task: str,
    history: list[dict] | None,
    question: str,
    reference: str,
    answer: str,
    task_rules: Mapping[str, str] | None = None,
) -> str:
    """The prompt a critic gets for one response. ``task`` is the English task key; the prompt
    shows its Chinese name and only that task's rules (``task_rules`` overrides the defaults per
    task, as a PromptTemplate's own rules do)."""
    return render(
        body,
        history=format_history(history),
        question=question.strip(),
        task=TASK_NAMES_ZH.get(task, task),
        task_rules=task_rules_for(task, task_rules),
        reference=reference.strip() or "（无参考答案）",
        answer=answer.strip(),
    )


def render_rewrite_prompt(body: str, *, question: str, n: int, task: str) -> str:
    """The prompt a rewriter gets for one seed question; ``task`` is the English task key."""
    return render(body, question=question.strip(), n=str(n), task=TASK_NAMES_ZH.get(task, task))
