"""Critic and rewrite prompt templates: rendering, sections and validation."""

from __future__ import annotations

import pytest

from evaluation.prompts import (
    DEFAULT_CRITIC_TEMPLATE,
    DEFAULT_REWRITE_TEMPLATE,
    TASK_NAMES_ZH,
    TASK_RULES,
    format_history,
    placeholders,
    render,
    render_critic_prompt,
    render_rewrite_prompt,
    validate_template,
)

TASKS = ["Description", "Recognition", "Counting", "OCR", "Meme", "Knowledge", "Reasoning", "Chart", "Problem",
         "Comparison", "Writing", "Coherence", "Incoherence"]

THREE_ROUNDS = [
    {"user": "图中是什么动物？", "assistant": "图中是一只狐狸。"},
    {"user": "你确定吗？它的耳朵很长。", "assistant": "抱歉，我看错了，图中是一只兔子。"},
    {"user": "请用一句话描述它在做什么。", "assistant": "兔子正在草地上吃胡萝卜。"},
]


def single_turn(task: str = "Counting") -> str:
    return render_critic_prompt(
        DEFAULT_CRITIC_TEMPLATE, task=task, history=[], question="图中有几只猫？", reference="图中有3只猫。",
        answer="图中有三只猫，都趴在沙发上。",
    )


def test_it_has_names_and_rules_for_all_thirteen_tasks() -> None:
    assert set(TASK_NAMES_ZH) == set(TASKS)
    assert set(TASK_RULES) == set(TASKS)
    assert all(rule.strip() for rule in TASK_RULES.values())
    assert TASK_NAMES_ZH["OCR"] == "OCR理解" and TASK_NAMES_ZH["Meme"] == "梗图理解"


def test_it_renders_a_single_turn_item_without_a_history_block() -> None:
    prompt = single_turn()
    assert "对话历史" not in prompt
    assert "第1轮" not in prompt
    assert not prompt.startswith("\n")
    assert "{{" not in prompt and "}}" not in prompt


def test_it_puts_the_data_between_markers_in_the_documented_order() -> None:
    prompt = single_turn()
    order = ["[问题开始]\n图中有几只猫？\n[问题结束]", "[任务类型]\n计数类", "[参考答案开始]\n图中有3只猫。\n[参考答案结束]",
             "[AI助手回答开始]\n图中有三只猫，都趴在沙发上。\n[AI助手回答结束]", "专业、客观、公正", "1 分", "9-10 分",
             TASK_RULES["Counting"], "看不到", '"Rating"']
    positions = [prompt.index(part) for part in order]
    assert positions == sorted(positions)


def test_it_shows_the_chinese_task_name_and_only_that_tasks_rules() -> None:
    prompt = single_turn("Counting")
    assert "计数类" in prompt
    assert TASK_RULES["Counting"] in prompt
    for task, rule in TASK_RULES.items():
        if task != "Counting":
            assert rule not in prompt, task
    assert "Counting" not in prompt


@pytest.mark.parametrize("task", TASKS)
def test_it_renders_every_task_with_its_own_rules(task: str) -> None:
    prompt = single_turn(task)
    assert TASK_NAMES_ZH[task] in prompt
    assert TASK_RULES[task] in prompt


def test_it_includes_the_ladder_the_caveat_and_the_output_instruction() -> None:
    prompt = single_turn()
    for step in ["1 分：回答没有遵循指令", "2 分", "3 分", "4-5 分", "6 分", "7-8 分", "9-10 分", "同义"]:
        assert step in prompt
    assert "看不到问题所对应的图片" in prompt
    assert '{"Rating": 7, "Reason": "……"}' in prompt  # JSON braces stay literal
    assert prompt.index('"Rating"') < prompt.index('"Reason"')


def test_it_renders_a_three_round_dialogue_with_numbered_rounds_in_order() -> None:
    prompt = render_critic_prompt(
        DEFAULT_CRITIC_TEMPLATE, task="Incoherence", history=THREE_ROUNDS, question="那它吃的是什么颜色的食物？",
        reference="橙色的胡萝卜。", answer="它吃的是橙色的胡萝卜。",
    )
    assert "[对话历史开始]" in prompt and "[对话历史结束]" in prompt
    starts = [prompt.index(f"第{n}轮") for n in (1, 2, 3)]
    assert starts == sorted(starts)
    assert prompt.index("[对话历史结束]") < prompt.index("[问题开始]")
    assert "第4轮" not in prompt
    assert "用户：你确定吗？它的耳朵很长。\n助手：抱歉，我看错了，图中是一只兔子。" in prompt
    assert "多轮对话" in prompt
    assert TASK_RULES["Incoherence"] in prompt
    assert "改正" in TASK_RULES["Incoherence"] and "改正" not in TASK_RULES["Coherence"]


def test_it_formats_history_as_numbered_rounds() -> None:
    assert format_history(THREE_ROUNDS[:2]) == (
        "第1轮\n用户：图中是什么动物？\n助手：图中是一只狐狸。\n\n"
        "第2轮\n用户：你确定吗？它的耳朵很长。\n助手：抱歉，我看错了，图中是一只兔子。"
    )
    assert format_history([]) == "" and format_history(None) == ""


def test_it_lets_a_templates_own_task_rules_override_the_defaults() -> None:
    prompt = render_critic_prompt(
        DEFAULT_CRITIC_TEMPLATE, task="Counting", history=[], question="q", reference="r", answer="a",
        task_rules={"Counting": "数字必须一致。"},
    )
    assert "数字必须一致。" in prompt and TASK_RULES["Counting"] not in prompt
    # A template without a rule for the task falls back to the default.
    fallback = render_critic_prompt(
        DEFAULT_CRITIC_TEMPLATE, task="OCR", history=[], question="q", reference="r", answer="a",
        task_rules={"Counting": "数字必须一致。"},
    )
    assert TASK_RULES["OCR"] in fallback


def test_it_keeps_json_braces_literal_and_never_expands_a_value_twice() -> None:
    body = '问题：{{question}}\n回答：{{answer}}\n输出 {"Rating": 1}，不要输出 {answer} 或 {{unknown}}'
    rendered = render(body, question="用 {{answer}} 占位符提问", answer="回答")
    assert rendered == '问题：用 {{answer}} 占位符提问\n回答：回答\n输出 {"Rating": 1}，不要输出 {answer} 或 {{unknown}}'


def test_it_drops_a_section_when_its_value_is_blank_and_keeps_it_otherwise() -> None:
    body = "开头\n{{#history}}\n[历史]\n{{history}}\n\n{{/history}}\n问题{{#history}}（有历史）{{/history}}：{{question}}"
    assert render(body, history="", question="q") == "开头\n问题：q"
    assert render(body, history="   ", question="q") == "开头\n问题：q"
    assert render(body, question="q") == "开头\n问题：q"
    assert render(body, history="第1轮", question="q") == "开头\n[历史]\n第1轮\n\n问题（有历史）：q"


def test_it_lists_placeholders_including_sections() -> None:
    assert placeholders("{{question}} {{ answer }} {{#history}}{{history}}{{/history}} {\"Rating\": 1}") == {
        "question", "answer", "history"}


def test_it_accepts_the_default_templates() -> None:
    assert validate_template("critic", DEFAULT_CRITIC_TEMPLATE) == []
    assert validate_template("rewrite", DEFAULT_REWRITE_TEMPLATE) == []


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("critic", "请评价：{{answer}}", ["{{question}}"]),
        ("critic", "{{question}}", ["{{answer}}"]),
        ("critic", "{{question}} {{answer}} {{image}}", ["{{image}}"]),
        ("critic", "{{question}} {{answer}} {{n}}", ["{{n}}"]),
        ("rewrite", "改写：{{question}}", ["{{n}}"]),
        ("rewrite", "改写 {{n}} 次：{{question}}，参考 {{answer}}", ["{{answer}}"]),
        ("critic", "{{question}} {{answer}} {{#history}}{{history}}", ["{{#history}}"]),
        ("critic", "", ["empty"]),
        ("judge", "{{question}}", ["judge"]),
    ],
)
def test_it_reports_missing_and_unknown_placeholders(kind: str, body: str, expected: list[str]) -> None:
    errors = validate_template(kind, body)
    assert len(errors) == len(expected)
    for error, fragment in zip(errors, expected, strict=True):
        assert fragment in error


def test_it_renders_the_rewrite_template() -> None:
    prompt = render_rewrite_prompt(DEFAULT_REWRITE_TEMPLATE, question="图中有几只猫？", n=5, task="Counting")
    assert "[问题开始]\n图中有几只猫？\n[问题结束]" in prompt
    assert "5 个" in prompt and "{{" not in prompt
    assert "计数类" in prompt
    assert "JSON 列表" in prompt and "不要回答问题" in prompt
    assert '["第一个改写", "第二个改写"]' in prompt
    untitled = render_rewrite_prompt(DEFAULT_REWRITE_TEMPLATE, question="q", n=3, task="")
    assert "任务类型" not in untitled and "3 个" in untitled
