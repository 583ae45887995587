"""The critic and rewriter reply parsers, over corpora of realistic replies.

CRITIC_CORPUS and REWRITE_CORPUS are module-level so bench/ can import them
(``from tests.evaluation.test_parsing import CRITIC_CORPUS``)."""

from __future__ import annotations

import pytest

from evaluation.parsing import (
    ERROR_EMPTY,
    ERROR_EMPTY_LIST,
    ERROR_NO_LIST,
    CriticParse,
    dedupe_rewrites,
    normalise_for_dedup,
    parse_critique,
    parse_rewrites,
)

# (reply, expected rating or None, expected status)
CRITIC_CORPUS: list[tuple[str, int | None, str]] = [
    # --- strict JSON -------------------------------------------------------------------------------
    ('{"Rating": 8, "Reason": "回答正确识别了图中的金毛犬，但没有提到背景中的草地。"}', 8, "parsed"),
    ('{"Rating": 10, "Reason": "回答完整准确，满足了问题的全部要求。"}', 10, "parsed"),
    ('{"Rating": 1, "Reason": "回答与问题无关，没有描述图片内容。"}', 1, "parsed"),
    ('{\n  "Rating": 6,\n  "Reason": "回答给出的数量是4个，参考答案是3个，计数错误，但对物体的识别是正确的。"\n}', 6, "parsed"),
    ('{"rating": 7, "reason": "The answer is correct but too brief."}', 7, "parsed"),
    ('{"评分": 9, "理由": "回答准确解释了梗图的笑点。"}', 9, "parsed"),
    ('{"Reason": "回答把“平均”写成了“中位数”，图表数值读取基本正确。", "Rating": 7}', 7, "parsed"),
    ('  {"Rating": 3, "Reason": "回答与问题相关，但内容完全错误：图中是长颈鹿而不是斑马。"}\n', 3, "parsed"),
    ('{"Rating": 5, "Reason": "回答中超过一半的事实有误，\\"红色\\"应为\\"蓝色\\"。"}', 5, "parsed"),
    # --- strict-looking JSON with a quoted or decimal rating -------------------------------------------
    ('{"Rating": "8", "Reason": "回答基本正确。"}', 8, "recovered"),
    ('{"Rating": 8.0, "Reason": "回答基本正确。"}', 8, "recovered"),
    ('{"Rating": "9分", "Reason": "回答完整。"}', 9, "recovered"),
    ('{"Rating": "８", "Reason": "全角数字。"}', 8, "recovered"),
    # --- fenced JSON ---------------------------------------------------------------------------------
    ('```json\n{"Rating": 6, "Reason": "回答只部分满足了要求，漏掉了第二个问题。"}\n```', 6, "recovered"),
    ('```json\n{"Rating": 4, "Reason": "超过一半的描述与参考答案矛盾。"}\n```\n以上是我的评价，希望对你有帮助。', 4, "recovered"),
    ('好的，下面是我的评分：\n```\n{"Rating": 9, "Reason": "回答正确并给出了推理过程。"}\n```', 9, "recovered"),
    ('```json\n{"Rating": 7, "Reason": "回答正确但略简略。"}\n```\n综上，评分：7。', 7, "recovered"),
    ('Here is my evaluation:\n```json\n{\n  "Rating": 2,\n  "Reason": "The answer repeats the same sentence many times."\n}\n```', 2, "recovered"),
    # --- JSON-ish: reason first, broken quotes, single quotes, nesting, full-width punctuation -------
    ('{"Reason": "回答说图中有"三只猫"，与参考答案一致。", "Rating": 9}', 9, "recovered"),
    ('{Reason: 回答基本正确，但遗漏了文字内容, Rating: 7}', 7, "recovered"),
    ("{'Rating': 8, 'Reason': '回答准确，结构清晰。'}", 8, "recovered"),
    ('{"evaluation": {"Rating": 5, "Reason": "一半的事实有误。"}}', 5, "recovered"),
    ('{"Rating"：8，"Reason"："回答正确，但没有解释原因。"}', 8, "recovered"),
    ('{"Rating": 7, "Reason": "回答正确，但没有提到"限速40"的标志。"}\n\n注：我看不到图片，以上评价基于参考答案。', 7, "recovered"),
    # --- keyed statements in prose ----------------------------------------------------------------
    ("评分：8\n理由：回答正确识别了建筑为天坛祈年殿，但对历史背景的介绍较少。", 8, "recovered"),
    ("评分：８\n理由：全角数字与冒号。", 8, "recovered"),
    ("理由：回答的结论正确，推理过程清楚。\n评分为9分", 9, "recovered"),
    ("打分：6分\n原因：回答只回答了问题的一部分。", 6, "recovered"),
    ("**评分**：7\n**理由**：回答内容正确，但过于简略，没有分点对比。", 7, "recovered"),
    ("Rating: 8/10\nReason: The answer identifies the landmark correctly but misdates it.", 8, "recovered"),
    ("Rating: 9\n\nThe answer is complete and matches the reference.", 9, "recovered"),
    ("Score: 4 out of 10. More than half of the listed items are wrong.", 4, "recovered"),
    ("最终评分：5分。回答中关于人物身份的判断错误，其余描述基本正确。", 5, "recovered"),
    ("【评分】：7\n【理由】：回答正确，但没有说明图表中的单位。", 7, "recovered"),
    ("**Rating:** 8\n**Reason:** Correct, with a clear structure.", 8, "recovered"),
    ("评分（满分10分）：9\n理由：回答准确地提取了图中全部文字。", 9, "recovered"),
    # the ladder's "7-8分" quoted in the reasoning is not a rating statement
    ("根据评分标准，7-8分表示回答只有极少的错误，本回答符合这一点。因此评分：8", 8, "recovered"),
    ("回答与参考答案一致，OCR 提取的文字完全正确。\n\n评分：10", 10, "recovered"),
    # --- [[N]] ---------------------------------------------------------------------------------------
    ("回答正确解释了梗图的讽刺含义，并指出了文字与画面之间的反差。[[9]]", 9, "recovered"),
    ("The answer counts the apples correctly.\n\nRating: [[10]]", 10, "recovered"),
    # --- loose forms (no explicit rating statement) -------------------------------------------------
    ("这个回答整体不错，只是少了一些细节，8/10", 8, "recovered"),
    ("我给这个回答打7分，因为它正确但不够详细。", 7, "recovered"),
    ("8分。回答准确地描述了图片中的场景和人物动作。", 8, "recovered"),
    ("回答准确，语言流畅。\n\n9分", 9, "recovered"),
    ("The response is mostly accurate but misses the second question. I would give it a 6.", 6, "recovered"),
    # --- restated ratings that agree ---------------------------------------------------------------
    ("评分：6\n理由：回答只部分满足了要求。\n综上所述，最终评分：6", 6, "recovered"),
    ('{"Rating": 8, "Reason": "回答基本正确。"}\n所以我的评分是 8 分。', 8, "recovered"),
    ("Rating: 7\nReason: correct but brief.\nFinal rating: 7/10", 7, "recovered"),
    # an explicit rating outranks a fraction that is part of the reasoning
    ("评分：5\n理由：回答只答对了3/10的要点。", 5, "recovered"),
    # --- refused: conflicting ratings ---------------------------------------------------------------
    ("评分：6\n理由：回答有明显错误。\n经过重新考虑，最终评分：8", None, "unparsed"),
    ('{"Rating": 6, "Reason": "部分正确。"}\n修正：{"Rating": 8, "Reason": "我之前判断有误。"}', None, "unparsed"),
    ('{"Rating": 6, "Rating": 8, "Reason": "重复的键。"}', None, "unparsed"),
    ('{"Rating": 8, "评分": 7, "Reason": "两个评分键。"}', None, "unparsed"),
    ('```json\n{"Rating": 7, "Reason": "回答正确但简略。"}\n```\n综上，评分：8。', None, "unparsed"),
    ("回答只答对了3/10的要点，整体给6/10。", None, "unparsed"),
    ("Rating: 6\n\n[[8]]", None, "unparsed"),
    # --- refused: not a score -------------------------------------------------------------------------
    ('{"Rating": 0, "Reason": "回答完全无关。"}', None, "unparsed"),
    ('{"Rating": 11, "Reason": "回答非常完美，超出预期。"}', None, "unparsed"),
    ('{"Rating": -1, "Reason": "无法评价。"}', None, "unparsed"),
    ('{"Rating": 7.5, "Reason": "介于7分和8分之间。"}', None, "unparsed"),
    ("评分：7.5\n理由：回答基本正确但有小错误。", None, "unparsed"),
    ("评分：7-8分\n理由：回答基本正确。", None, "unparsed"),
    ("评分：80/100", None, "unparsed"),
    ("Rating: 0\nReason: off-topic.", None, "unparsed"),
    ('{"Rating": null, "Reason": "无法判断。"}', None, "unparsed"),
    ("评分：八分\n理由：中文数字的评分不读取。", None, "unparsed"),
    # --- refused: no rating at all ------------------------------------------------------------------
    ("这个回答整体还可以，但是有一些地方需要改进，比如没有提到图中的文字。", None, "unparsed"),
    ("I cannot evaluate this answer without seeing the image.", None, "unparsed"),
    ('{"Reason": "回答基本正确。"}', None, "unparsed"),
    ("", None, "unparsed"),
    ("   \n  ", None, "unparsed"),
]


@pytest.mark.parametrize(("reply", "rating", "status"), CRITIC_CORPUS)
def test_it_reads_each_reply_in_the_critic_corpus(reply: str, rating: int | None, status: str) -> None:
    parsed = parse_critique(reply)
    assert (parsed.rating, parsed.status) == (rating, status)


def test_it_has_a_large_varied_critic_corpus() -> None:
    statuses = [status for _, _, status in CRITIC_CORPUS]
    assert len(CRITIC_CORPUS) >= 45
    assert {"parsed", "recovered", "unparsed"} <= set(statuses)
    assert statuses.count("unparsed") >= 10


@pytest.mark.parametrize(("reply", "_rating", "_status"), CRITIC_CORPUS)
def test_it_never_returns_a_score_outside_one_to_ten(reply: str, _rating: int | None, _status: str) -> None:
    parsed = parse_critique(reply)
    assert parsed.rating is None or (isinstance(parsed.rating, int) and 1 <= parsed.rating <= 10)
    assert (parsed.rating is None) == (parsed.status == "unparsed")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"Rating": 8, "Reason": "回答正确。"}', "回答正确。"),
        ('{"评分": 8, "理由": "回答正确。"}', "回答正确。"),
        ('{"Rating": 8}', ""),
        ('```json\n{"Rating": 6, "Reason": "部分正确。"}\n```\n以上是我的评价。', "部分正确。"),
        ('{"Reason": "回答说图中有"三只猫"。", "Rating": 9}', '回答说图中有"三只猫"。'),
        ("评分：8\n理由：回答基本正确。", "回答基本正确。"),
        ("理由：回答基本正确。\n评分为8分", "回答基本正确。"),
        ("回答基本正确，但遗漏了颜色。评分：8", "回答基本正确，但遗漏了颜色。"),
        ("回答很好。[[9]]", "回答很好。"),
        ("8分。回答准确。", "回答准确。"),
        # a loose statement inside a sentence stays part of the critic's prose
        ("我给这个回答打7分，因为它正确。", "我给这个回答打7分，因为它正确。"),
    ],
)
def test_it_extracts_the_reason(reply: str, reason: str) -> None:
    assert parse_critique(reply).reason == reason


def test_it_keeps_the_whole_reply_as_the_reason_when_unparsed() -> None:
    reply = "评分：6\n经过重新考虑，最终评分：8"
    assert parse_critique(reply) == CriticParse(None, reply, "unparsed")


@pytest.mark.parametrize(
    "reply",
    ["{" * 2000, "[[" * 500, "评分：", "Rating", '{"Rating": 1e400}', '{"Rating": NaN}', "```json\n{\n```", "\x00\ufeff"],
)
def test_it_survives_malformed_replies(reply: str) -> None:
    assert parse_critique(reply).rating is None
    assert isinstance(parse_rewrites(reply).rewrites, list)


def test_it_does_not_read_a_rating_inside_the_reason_of_a_json_object() -> None:
    reply = '```json\n{"Rating": 8, "Reason": "参考答案中的评分：3 不适用于此题。"}\n```'
    assert parse_critique(reply).rating == 8


# --------------------------------------------------------------------------------------------------
# Rewrites
# --------------------------------------------------------------------------------------------------

FIVE = [
    "图里一共有几只猫？",
    "请问这张图片中有多少只猫？",
    "你能数一下图中的猫有几只吗？",
    "图中猫的数量是多少？",
    "麻烦告诉我，画面里能看到几只猫？",
]

# (reply, expected rewrites, expected error)
REWRITE_CORPUS: list[tuple[str, list[str], str]] = [
    # JSON lists
    ('["图里一共有几只猫？", "请问这张图片中有多少只猫？", "你能数一下图中的猫有几只吗？", "图中猫的数量是多少？", '
     '"麻烦告诉我，画面里能看到几只猫？"]', FIVE, ""),
    ('[\n  "图里一共有几只猫？",\n  "请问这张图片中有多少只猫？"\n]', FIVE[:2], ""),
    ('```json\n["图里一共有几只猫？", "请问这张图片中有多少只猫？", "图中猫的数量是多少？"]\n```',
     [FIVE[0], FIVE[1], FIVE[3]], ""),
    ('好的，以下是5个改写：\n```json\n' + str(FIVE).replace("'", '"') + "\n```\n希望对你有帮助！", FIVE, ""),
    ('以下是改写结果：\n["图里一共有几只猫？", "图中猫的数量是多少？"]', [FIVE[0], FIVE[3]], ""),
    ('{"rewrites": ["图里一共有几只猫？", "图中猫的数量是多少？"]}', [FIVE[0], FIVE[3]], ""),
    ('{"改写": ["图里一共有几只猫？", "图中猫的数量是多少？"], "数量": 2}', [FIVE[0], FIVE[3]], ""),
    ('[{"rewrite": "图里一共有几只猫？"}, {"rewrite": "图中猫的数量是多少？"}]', [FIVE[0], FIVE[3]], ""),
    ("['图里一共有几只猫？', '图中猫的数量是多少？',]", [FIVE[0], FIVE[3]], ""),
    # mixed Chinese punctuation that JSON rejects
    ('["图里一共有几只猫？"，"图中猫的数量是多少？"]', [FIVE[0], FIVE[3]], ""),
    ("[“图里一共有几只猫？”, “图中猫的数量是多少？”]", [FIVE[0], FIVE[3]], ""),
    # numbered lists
    ("1. 图里一共有几只猫？\n2. 请问这张图片中有多少只猫？\n3. 你能数一下图中的猫有几只吗？\n4. 图中猫的数量是多少？\n"
     "5. 麻烦告诉我，画面里能看到几只猫？", FIVE, ""),
    ("以下是五种不同的问法：\n1、图里一共有几只猫？\n2、请问这张图片中有多少只猫？\n\n希望对你有帮助！", FIVE[:2], ""),
    ("1）“图里一共有几只猫？”\n2）“请问这张图片中有多少只猫？”", FIVE[:2], ""),
    ("(1) 「图里一共有几只猫？」\n(2) 「请问这张图片中有多少只猫？」", FIVE[:2], ""),
    ("（1）图里一共有几只猫？\n（2）请问这张图片中有多少只猫？", FIVE[:2], ""),
    ("① 图里一共有几只猫？\n② 请问这张图片中有多少只猫？\n③ 图中猫的数量是多少？", [FIVE[0], FIVE[1], FIVE[3]], ""),
    ('1. "图里一共有几只猫？",\n2. "请问这张图片中有多少只猫？"', FIVE[:2], ""),
    ("1. **改写1**：图里一共有几只猫？\n2. **改写2**：请问这张图片中有多少只猫？", FIVE[:2], ""),
    # bulleted lists
    ("- 图里一共有几只猫？\n- 请问这张图片中有多少只猫？\n- 图中猫的数量是多少？", [FIVE[0], FIVE[1], FIVE[3]], ""),
    ("* 图里一共有几只猫？\n* 请问这张图片中有多少只猫？", FIVE[:2], ""),
    ("• 图里一共有几只猫？\n• 请问这张图片中有多少只猫？", FIVE[:2], ""),
    # errors
    ("图中一共有三只猫，两只是橘色的，一只是黑白相间的，它们正趴在沙发上晒太阳。", [], ERROR_NO_LIST),
    ('{"answer": "图中有三只猫。"}', [], ERROR_NO_LIST),
    ("", [], ERROR_EMPTY),
    ("   \n", [], ERROR_EMPTY),
    ("[]", [], ERROR_EMPTY_LIST),
]


@pytest.mark.parametrize(("reply", "rewrites", "error"), REWRITE_CORPUS)
def test_it_reads_each_reply_in_the_rewrite_corpus(reply: str, rewrites: list[str], error: str) -> None:
    parsed = parse_rewrites(reply)
    assert (parsed.rewrites, parsed.error) == (rewrites, error)


def test_it_has_a_large_varied_rewrite_corpus() -> None:
    assert len(REWRITE_CORPUS) >= 20
    assert sum(1 for _, _, error in REWRITE_CORPUS if error) >= 4


def test_it_explains_a_missing_list_in_chinese_and_english() -> None:
    error = parse_rewrites("图中有三只猫。").error
    assert "改写" in error and "rewrites" in error


# --------------------------------------------------------------------------------------------------
# Dedup
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("图中有几只猫？", "图中有几只猫?"),
        ("图中有几只猫？", " 图中 有几只猫 。"),
        ("What is this?", "what is this"),
        ("请描述「这张图」。", "请描述“这张图”"),
        ("ＧＤＰ是多少？", "GDP是多少"),
        ("第一、第二……", "第一第二"),
    ],
)
def test_it_normalises_away_spaces_punctuation_and_case(a: str, b: str) -> None:
    assert normalise_for_dedup(a) == normalise_for_dedup(b)


def test_it_keeps_different_words_apart() -> None:
    assert normalise_for_dedup("图中有几只猫？") != normalise_for_dedup("图中有几只狗？")
    assert normalise_for_dedup("图中有3只猫") != normalise_for_dedup("图中有4只猫")


def test_it_drops_proposals_identical_to_the_seed_an_existing_variant_or_an_earlier_proposal() -> None:
    seed = "图中有几只猫？"
    existing = ["请问图里有多少只猫？"]
    proposals = [
        "图中有几只猫?",  # the seed
        "请问 图里有多少只猫",  # an existing variant
        "你能数一下图中的猫吗？",
        "你能数一下图中的猫吗",  # an earlier proposal
        "图中猫的数量是多少？",
        "。。。",  # no words at all
    ]
    kept, dropped = dedupe_rewrites(seed, existing, proposals)
    assert kept == ["你能数一下图中的猫吗？", "图中猫的数量是多少？"]
    assert dropped == 4


def test_it_keeps_everything_when_nothing_repeats() -> None:
    kept, dropped = dedupe_rewrites("图中有几只猫？", [], FIVE)
    assert (kept, dropped) == (FIVE, 0)
