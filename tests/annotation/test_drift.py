"""Drift flags on proposed rewrites, and the highlight segments the review page renders."""

from __future__ import annotations

import pytest

from annotation.drift import Drift, detect_drift, highlight


def flags(seed: str, proposal: str) -> list[tuple[str, str]]:
    return [(drift.kind, drift.token) for drift in detect_drift(seed, proposal)]


# (seed, proposal, expected (kind, token) flags)
DRIFT_CASES: list[tuple[str, str, list[tuple[str, str]]]] = [
    # unchanged or harmlessly reworded
    ("图中有3只猫吗？", "图中有3只猫吗？", []),
    ("请描述这张图片。", "麻烦你描述一下这张照片。", []),
    # numbers
    ("图中有3只猫吗？", "图里有三只猫吗？", []),
    ("图中有十二个人吗？", "图里是不是有12个人？", []),
    ("图中有1只猫吗？", "图里有一只猫吗？", []),
    ("第1张图和第2张图有什么不同？", "第一张和第二张图片有何区别？", []),
    ("占比为50%的是哪一项？", "占比百分之五十的是哪一项？", []),
    ("图中的数字1,000出现在哪里？", "数字1000在图中什么位置？", []),
    ("增长率是3.5%还是4%？", "增长率到底是3.50%还是4%？", []),
    ("图中有3只猫吗？", "图里有猫吗？", [("number", "3")]),
    ("图中有3只猫吗？", "图里有4只猫吗？", [("number", "3")]),
    ("图中有三只猫吗？", "图中有猫吗？", [("number", "三只")]),
    ("2023年的销量是多少？", "今年的销量是多少？", [("number", "2023")]),
    ("用一句话描述这张图片。", "请简单描述一下这张图片。", [("number", "一句")]),
    # not numbers: grammar and idioms
    ("请看一下这张图，图中有几个人？", "图里有几个人？", []),
    ("这只狗十分可爱吗？", "这只狗很可爱吗？", []),
    ("千万不要忽略背景，图中有什么？", "图里有什么？", []),
    # quoted text
    ("图中“RUNNING BIBLE”是什么意思？", "图里「RUNNING BIBLE」这几个字是什么意思？", []),
    ("图中“RUNNING BIBLE”是什么意思？", "图中“RUNNING BOOK”是什么意思？", [("quoted", "RUNNING BIBLE")]),
    ("招牌上的「老王面馆」是什么字体？", "招牌上的店名是什么字体？", [("quoted", "老王面馆")]),
    ('标语"Just do it"出自哪个品牌？', "这句标语出自哪个品牌？", [("quoted", "Just do it")]),
    # Latin-script tokens
    ("2023年中国GDP增长了多少？", "2023年中国gdp增长了多少？", []),
    ("2023年中国GDP增长了多少？", "2023年中国的经济增长了多少？", [("latin", "GDP")]),
    ("图中的iPhone是哪一年发布的？", "图中的苹果手机是哪一年发布的？", [("latin", "iPhone")]),
    ("图中RUNNING BIBLE是什么意思？", "图中running bible是什么意思？", []),
    ("图中RUNNING BIBLE是什么意思？", "图中RUNNING是什么意思？", [("latin", "RUNNING BIBLE")]),
    ("选项A、B、C中哪个正确？", "A、B、C哪个选项是对的？", []),
    ("选项A、B、C中哪个正确？", "哪个选项是对的？", [("latin", "A"), ("latin", "B"), ("latin", "C")]),
    ("GPT-4的价格是多少？", "GPT-4 的价格多少？", []),
    ("图中的GDP数据是多少？", "图中的GDPR数据是多少？", [("latin", "GDP")]),
    # named entities
    ("这本《三体》的作者是谁？", "《三体》这本书是谁写的？", []),
    ("这本《三体》的作者是谁？", "这本书的作者是谁？", [("entity", "三体")]),
    ("这座建筑位于Paris吗？", "这座建筑在Paris吗？", []),
    ("这座建筑位于Paris吗？", "这座建筑位于巴黎吗？", [("entity", "Paris")]),
    ("这座桥在New York吗？", "这座桥在new york吗？", []),
    ("这张照片拍摄于北京市吗？", "这张照片是在北京拍的吗？", []),
    ("这张照片拍摄于北京市吗？", "这张照片拍摄于上海吗？", [("entity", "北京市")]),
    ("图中的校门属于清华大学吗？", "图中是哪所大学的校门？", [("entity", "清华大学")]),
    ("这个城市的地标是什么？", "这座都市的地标是什么？", []),
    ("这家公司的标志是什么颜色？", "该企业的标志是什么颜色？", []),
]


@pytest.mark.parametrize(("seed", "proposal", "expected"), DRIFT_CASES)
def test_it_flags_exactly_the_drifts_in_each_case(seed: str, proposal: str, expected: list[tuple[str, str]]) -> None:
    assert flags(seed, proposal) == expected


def test_it_gives_each_flag_a_bilingual_message() -> None:
    [drift] = detect_drift("图中有3只猫吗？", "图里有4只猫吗？")
    assert drift == Drift("number", "3", drift.message)
    assert "3" in drift.message and "4" in drift.message
    assert "数字" in drift.message and "Number" in drift.message


def test_it_reports_a_changed_quotation_once() -> None:
    # The Latin words and the number inside the quotation are judged by the quotation alone.
    assert flags("图中“GPT-4 NOW 2”是什么意思？", "图中“GPT-5 SOON”是什么意思？") == [("quoted", "GPT-4 NOW 2")]


def test_it_folds_full_width_characters_before_comparing() -> None:
    assert flags("图中有３只猫，ＧＤＰ是多少？", "图里有3只猫，GDP是多少？") == []


def test_it_returns_frozen_drifts() -> None:
    [drift] = detect_drift("图中有3只猫吗？", "图里有猫吗？")
    with pytest.raises(AttributeError):
        drift.token = "4"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Highlight
# --------------------------------------------------------------------------------------------------


def test_it_splits_text_into_flagged_and_plain_segments() -> None:
    assert highlight("2023年中国GDP增长了多少？", ["GDP", "2023"]) == [
        ("2023", True), ("年中国", False), ("GDP", True), ("增长了多少？", False)]


def test_it_does_not_highlight_a_token_inside_a_longer_word_or_number() -> None:
    assert highlight("图中有3只猫和13只狗", ["3"]) == [("图中有", False), ("3", True), ("只猫和13只狗", False)]
    assert highlight("GDPR与GDP", ["GDP"]) == [("GDPR与", False), ("GDP", True)]


def test_it_highlights_case_insensitively_and_prefers_the_longest_token() -> None:
    assert highlight("running bible和running", ["RUNNING BIBLE", "RUNNING"]) == [
        ("running bible", True), ("和", False), ("running", True)]


def test_it_highlights_chinese_tokens_and_keeps_the_original_characters() -> None:
    assert highlight("这本《三体》有３册", ["三体", "3"]) == [("这本《", False), ("三体", True), ("》有", False), ("３", True), ("册", False)]


@pytest.mark.parametrize("tokens", [[], [""], ["  "], ["不存在"]])
def test_it_returns_the_whole_text_unflagged_when_nothing_matches(tokens: list[str]) -> None:
    assert highlight("图中有几只猫？", tokens) == [("图中有几只猫？", False)]


def test_it_returns_no_segments_for_empty_text() -> None:
    assert highlight("", ["3"]) == []


def test_it_round_trips_the_text() -> None:
    text = "图中“RUNNING BIBLE”下方的3行文字是什么？GDP呢？"
    drifts = detect_drift(text, "图中文字是什么？")
    segments = highlight(text, [drift.token for drift in drifts])
    assert "".join(segment for segment, _ in segments) == text
    assert {segment for segment, flagged in segments if flagged} == {"RUNNING BIBLE", "3", "GDP"}
