"""The model backends: tiny random-weight models through the real transformers path, and the
OpenAI-compatible backend against a local Chat Completions server that misbehaves on demand.

No database and no Django: these run with ``-p no:django`` too.
"""

from __future__ import annotations

import base64
import math
import shutil
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from evaluation import backends
from evaluation.backends import BackendConfig, Message, expected_score, get_backend, openai_backend
from evaluation.backends.base import find_rating_offset, rating_distribution
from evaluation.tiny_models import build_tiny_causal_lm, build_tiny_llava
from tests.chat_server import ChatServer, ConnectProxy, default_top_logprobs, message_text

# ---------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_llava(model_root) -> Path:
    return build_tiny_llava(model_root / "llava")


@pytest.fixture(scope="session")
def tiny_critic(model_root) -> Path:
    return build_tiny_causal_lm(model_root / "critic")


@pytest.fixture(scope="session")
def tiny_split_digit_critic(model_root) -> Path:
    return build_tiny_causal_lm(model_root / "critic-split", split_digits=True)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("images")
    paths = {}
    for name, size, colour in [("meme.png", (64, 48), (200, 30, 30)), ("chart.jpg", (40, 90), (20, 90, 200)),
                               ("photo.png", (33, 33), (10, 200, 40))]:
        path = directory / name
        Image.new("RGB", size, colour).save(path)
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="session")
def vlm(tiny_llava):
    return backends.build_backend(
        BackendConfig(backend="transformers", kind="vlm", path=str(tiny_llava), max_new_tokens=12, batch_size=8,
                      device="cpu", dtype="float32")
    )


@pytest.fixture(scope="session")
def critic(tiny_critic):
    return backends.build_backend(
        BackendConfig(backend="transformers", kind="text", path=str(tiny_critic), max_new_tokens=16, batch_size=4,
                      device="cpu", dtype="float32")
    )


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setattr(openai_backend, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setattr(openai_backend, "BACKOFF_CAP_S", 0.01)


@pytest.fixture
def server():
    with ChatServer() as chat_server:
        yield chat_server


def http_backend(server: ChatServer, **overrides) -> openai_backend.OpenAIBackend:
    settings = dict(backend="openai", base_url=server.base_url, model_name="fake-vlm", max_new_tokens=64,
                    concurrency=4, timeout_s=5.0, max_retries=3) | overrides
    return openai_backend.OpenAIBackend(BackendConfig(**settings))


def mixed_conversations(images: dict[str, str]) -> list[list[Message]]:
    """Eight conversations of very different lengths: single- and multi-turn, Chinese and English."""
    meme, chart, photo = images["meme.png"], images["chart.jpg"], images["photo.png"]
    return [
        [Message("user", "图中是什么？", (meme,))],
        [Message("user", "Describe the chart in detail: which quarter had the highest revenue and why?", (chart,))],
        [Message("system", "你是一个乐于助人的助手。"), Message("user", "这张表情包表达了什么情绪？", (meme,))],
        [Message("user", "1+1=?", (photo,))],
        [Message("user", "请识别图片中的文字。", (chart,)), Message("assistant", "北京欢迎你。"),
         Message("user", "营业时间呢？")],
        [Message("user", "这是哪里？请用一句话回答，不要超过二十个字，并说明你的理由。", (photo,))],
        [Message("user", "第一轮：图里有几个人？", (meme,)), Message("assistant", "三个人。"),
         Message("user", "第二轮：他们在做什么？"), Message("assistant", "在开会。"),
         Message("user", "第三轮：气氛如何？")],
        [Message("user", "Hi", (chart,))],
    ]


# ---------------------------------------------------------------------------------------------------
# transformers: tiny LLaVA
# ---------------------------------------------------------------------------------------------------


def test_it_gives_the_same_greedy_answers_in_a_batch_as_one_at_a_time(tiny_llava, vlm, images):
    conversations = mixed_conversations(images)
    one_at_a_time = backends.build_backend(
        BackendConfig(backend="transformers", kind="vlm", path=str(tiny_llava), max_new_tokens=12, batch_size=1,
                      device="cpu", dtype="float32")
    )

    batched = vlm.generate(conversations)
    single = one_at_a_time.generate(conversations)

    assert [r.error for r in batched] == [""] * 8
    assert len({r.prompt_tokens for r in batched}) > 4  # the rows really were padded differently
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]


def test_it_answers_multi_turn_chinese_conversations_with_history(vlm, images):
    first_turn = [Message("user", "第一轮：图里有几个人？", (images["meme.png"],))]
    three_rounds = mixed_conversations(images)[6]

    short, long = vlm.generate([first_turn, three_rounds])
    prompt = vlm._prepare(three_rounds).prompt

    assert short.error == long.error == ""
    assert long.text and short.text
    assert long.prompt_tokens > short.prompt_tokens + 10
    # The history is in the prompt, in order, with the image placeholder in the first user turn.
    assert prompt.index("<image>") < prompt.index("第一轮") < prompt.index("三个人") < prompt.index("第三轮")
    assert prompt.count("<image>") == 1


def test_it_fills_token_counts_and_latency(vlm, images):
    [result] = vlm.generate([[Message("user", "图中是什么？", (images["photo.png"],))]])

    # 16 image tokens (32x32 image, 8x8 patches, CLS dropped) plus the text.
    assert result.prompt_tokens > 16
    assert 1 <= result.completion_tokens <= 12
    assert result.latency_s > 0


def test_it_records_an_unreadable_image_on_its_item_only(vlm, images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    conversations = [[Message("user", "图中是什么？", (images["meme.png"],))],
                     [Message("user", "图中是什么？", (str(broken),))],
                     [Message("user", "图中是什么？", (str(tmp_path / "missing.png"),))]]

    good, bad, missing = vlm.generate(conversations)

    assert good.error == "" and good.text
    assert "UnidentifiedImageError" in bad.error
    assert "missing.png" in missing.error



def test_it_builds_other_model_sizes_through_the_same_path(tmp_path, images):
    """The GPU benchmark's real-size models come from build_llava with other dimensions: here a
    small one with a bigger image, GQA heads and a vocabulary larger than the tokenizer's."""
    from evaluation.tiny_models import build_llava

    directory = build_llava(
        tmp_path / "other", vision=dict(image_size=48, patch_size=12),
        text=dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2, vocab_size=2048),
    )
    backend = backends.build_backend(BackendConfig(
        backend="transformers", kind="vlm", path=str(directory), max_new_tokens=6, batch_size=2,
        device="cpu", dtype="float32"))
    backend.model.generation_config.min_new_tokens = 6  # as the benchmark fixes the answer length

    results = backend.generate([[Message("user", "图中是什么？", (images["meme.png"],))],
                                [Message("user", "Describe it.", (images["chart.jpg"],))]])

    text = backend.model.config.text_config
    assert (text.hidden_size, text.head_dim, text.num_key_value_heads, text.vocab_size) == (48, 8, 2, 2048)
    assert [r.error for r in results] == ["", ""]
    assert [r.completion_tokens for r in results] == [6, 6]
    # (48 / 12) ** 2 = 16 image tokens, expanded by the processor into the prompt.
    encoded = backend._encode([backend._prepare([Message("user", "x", (images["meme.png"],))])])
    assert int(encoded["input_ids"].eq(backend.model.config.image_token_index).sum()) == 16

# ---------------------------------------------------------------------------------------------------
# transformers: tiny critic and score probabilities
# ---------------------------------------------------------------------------------------------------


def critic_conversations() -> list[list[Message]]:
    return [
        [Message("system", "你是一个公正的评委。"), Message("user", f"请为回答打分（1-10），以 JSON 输出。回答：{answer}")]
        for answer in ["图中有一只猫。", "这是一张风景照片，远处是山。", "I don't know.", "图表显示销售额增长了百分之十五。",
                       "北京欢迎你"]
    ]


def test_it_gives_score_probs_from_the_tiny_critic_every_time(critic):
    results = critic.generate(critic_conversations(), score_probs=True)

    for result in results:
        assert result.error == ""
        assert set(result.score_probs) == set(range(1, 11))
        assert math.isclose(sum(result.score_probs.values()), 1.0, abs_tol=1e-6)
        assert all(p > 0 for p in result.score_probs.values())
        mean, spread = expected_score(result.score_probs)
        assert 1 <= mean <= 10 and spread > 0


def test_it_gives_no_score_probs_unless_asked(critic):
    [result] = critic.generate(critic_conversations()[:1])

    assert result.score_probs is None


def test_it_splits_a_bare_one_into_one_and_ten_when_ten_is_not_a_token(tiny_split_digit_critic):
    critic = backends.build_backend(
        BackendConfig(backend="transformers", kind="text", path=str(tiny_split_digit_critic), max_new_tokens=8,
                      device="cpu", dtype="float32")
    )

    [result] = critic.generate(critic_conversations()[:1], score_probs=True)

    assert not critic._rating_vocabulary().has_single_ten
    assert math.isclose(sum(result.score_probs.values()), 1.0, abs_tol=1e-6)
    assert 0 < result.score_probs[10] < result.score_probs[1]  # P(10) = P("1") * P("0" | "1")


def test_it_finds_the_rating_token_where_the_reply_states_it(critic):
    tokenizer = critic.tokenizer
    for reply, before in [('{"Rating": 8, "Reason": "回答基本正确"}', '{"Rating":'),
                          ("理由：描述准确。评分：7", "理由：描述准确。评分："),
                          ('好的。\n"Rating"："10"', '好的。\n"Rating"："')]:
        ids = tokenizer.encode(reply, add_special_tokens=False)

        position = critic._rating_token_index(ids, tokenizer.decode(ids))

        assert tokenizer.decode(ids[:position]).rstrip() == before
        assert tokenizer.decode(ids[position:]).lstrip(' "').startswith(("8", "7", "10"))
    no_rating = tokenizer.encode("这个回答很好。", add_special_tokens=False)
    assert critic._rating_token_index(no_rating, tokenizer.decode(no_rating)) is None


def test_it_rejects_images_for_a_text_model(critic, images):
    [result] = critic.generate([[Message("user", "打分", (images["meme.png"],))]])

    assert "text model" in result.error


def test_it_fails_loudly_for_a_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        backends.build_backend(BackendConfig(backend="transformers", path=str(tmp_path / "nope")))


# ---------------------------------------------------------------------------------------------------
# Ratings, distributions and expected scores
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, digit_at", [
    ('{"Rating": 8, "Reason": "好"}', 11),
    ('{"Reason": "好", "Rating": 3}', 26),
    ("评分：7 分", 3),
    ("**Rating**: 9/10", 12),
    ('rating:"6"', 8),
    ("评分为8分", None),
    ("这个回答很好", None),
])
def test_it_finds_where_a_rating_starts(text, digit_at):
    assert find_rating_offset(text) == digit_at


def test_it_sums_tokens_that_spell_the_same_rating():
    probs = rating_distribution([("8", 0.3), (" 8", 0.1), ("7", 0.2), ('"9', 0.2), ("hello", 0.2)])

    assert probs[8] == pytest.approx(0.5) and probs[7] == pytest.approx(0.25) and probs[9] == pytest.approx(0.25)


def test_it_splits_a_bare_one_by_the_probability_of_a_following_zero():
    probs = rating_distribution([("1", 0.5), ("2", 0.5)], p_zero_after_one=0.4)

    assert probs == pytest.approx({1: 0.3, 2: 0.5, 10: 0.2, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0})


def test_it_computes_expected_score_and_spread():
    assert expected_score({8: 1.0}) == (8.0, 0.0)
    assert expected_score({1: 0.5, 10: 0.5}) == pytest.approx((5.5, 4.5))
    assert expected_score({6: 2.0, 8: 2.0}) == pytest.approx((7.0, 1.0))  # renormalised
    with pytest.raises(ValueError):
        expected_score({})


# ---------------------------------------------------------------------------------------------------
# The backend cache
# ---------------------------------------------------------------------------------------------------


class _FakeBackend:
    built = 0

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.closed = False
        _FakeBackend.built += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_builds(monkeypatch):
    backends.clear_cache()
    _FakeBackend.built = 0
    monkeypatch.setattr(backends, "build_backend", _FakeBackend)
    yield _FakeBackend
    backends.clear_cache()


def test_it_loads_a_backend_once_per_cache_key(fake_builds):
    config = BackendConfig(backend="transformers", path="/models/a")

    first = get_backend(config, "1:100.0")
    again = get_backend(config, "1:100.0")
    edited = get_backend(config, "1:200.0")

    assert first is again and edited is not first
    assert fake_builds.built == 2


def test_it_evicts_and_frees_the_least_recently_used_backend(fake_builds):
    config = BackendConfig(backend="transformers", path="/models/a")
    a, b = get_backend(config, "a"), get_backend(config, "b")
    get_backend(config, "a")  # a is now the most recently used

    c = get_backend(config, "c")

    assert b.closed and not a.closed and not c.closed
    assert get_backend(config, "a") is a
    assert fake_builds.built == 3


def test_it_builds_a_fresh_backend_without_a_cache_key(fake_builds):
    config = BackendConfig(backend="openai", base_url="http://127.0.0.1:1/v1")

    assert get_backend(config) is not get_backend(config)


def test_it_caches_a_real_tiny_model(tiny_critic):
    backends.clear_cache()
    config = BackendConfig(backend="transformers", kind="text", path=str(tiny_critic), max_new_tokens=4)
    try:
        assert get_backend(config, "7:1") is get_backend(config, "7:1")
    finally:
        backends.clear_cache()


# ---------------------------------------------------------------------------------------------------
# openai: against the local Chat Completions server
# ---------------------------------------------------------------------------------------------------


def test_it_sends_images_as_data_urls_and_history_as_messages(server, images):
    backend = http_backend(server, api_key="sk-test", temperature=0.2, top_p=0.9)
    conversation = [
        Message("system", "你是一个乐于助人的助手。"),
        Message("user", "请识别图片中的文字。", (images["meme.png"],)),
        Message("assistant", "北京欢迎你。"),
        Message("user", "营业时间呢？"),
    ]

    [result] = backend.generate([conversation])

    assert result.error == "" and result.text == "回答: 营业时间呢？"
    assert result.prompt_tokens > 0 and result.completion_tokens == len(result.text) and result.latency_s > 0
    request = server.requests[0]
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]
    system, first_user, assistant, last_user = request["messages"]
    assert system["content"] == "你是一个乐于助人的助手。" and assistant["content"] == "北京欢迎你。"
    assert last_user["content"] == "营业时间呢？"
    image_part, text_part = first_user["content"]
    assert text_part == {"type": "text", "text": "请识别图片中的文字。"}
    prefix, encoded = image_part["image_url"]["url"].split(",", 1)
    assert image_part["type"] == "image_url" and prefix == "data:image/png;base64"
    assert base64.b64decode(encoded) == Path(images["meme.png"]).read_bytes()
    assert (request["model"], request["max_tokens"], request["temperature"], request["top_p"]) == ("fake-vlm", 64, 0.2, 0.9)
    assert "logprobs" not in request
    headers = {k.lower(): v for k, v in server.request_headers[0].items()}
    assert headers["authorization"] == "Bearer sk-test"


def test_it_goes_through_the_proxy_the_environment_names(server, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.base_url.removesuffix("/v1"))
    backend = openai_backend.OpenAIBackend(
        BackendConfig(backend="openai", base_url="http://model-host.invalid:8000/v1", model_name="m", max_retries=0))

    [result] = backend.generate([[Message("user", "你好")]])

    assert result.error == "" and result.text == "回答: 你好"
    headers = {k.lower(): v for k, v in server.request_headers[0].items()}
    assert headers["host"] == "model-host.invalid:8000"


@pytest.fixture
def self_signed(tmp_path) -> tuple[str, ssl.SSLContext]:
    """A certificate for 127.0.0.1 (made with the openssl command), and a server context holding it."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    return str(cert), server_side


def test_it_speaks_https_and_checks_the_certificate(self_signed, monkeypatch, tmp_path):
    cert, server_side = self_signed
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ChatServer(tls=server_side) as server:
        config = BackendConfig(backend="openai", base_url=server.base_url, model_name="m", max_retries=0, concurrency=2)
        assert server.base_url.startswith("https://")

        monkeypatch.setattr(openai_backend, "_tls", None)  # the trusted certificates are read once
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "nothing-trusted.pem"))
        [untrusted] = openai_backend.OpenAIBackend(config).generate([[Message("user", "你好")]])

        monkeypatch.setattr(openai_backend, "_tls", None)
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        backend = openai_backend.OpenAIBackend(config)
        answers = backend.generate([[Message("user", f"问题{i}")] for i in range(4)])
        backend.close()

    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.error
    assert [r.text for r in answers] == [f"回答: 问题{i}" for i in range(4)]
    assert len(server.requests) == 4  # the refused handshake never reached the application


def test_it_tunnels_https_through_the_proxy_the_environment_names(self_signed, monkeypatch):
    cert, server_side = self_signed
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(openai_backend, "_tls", None)
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    with ChatServer(tls=server_side) as server, ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        backend = openai_backend.OpenAIBackend(
            BackendConfig(backend="openai", base_url=server.base_url, model_name="m", max_retries=0))
        results = backend.generate([[Message("user", "你好")], [Message("user", "再见")]])
        backend.close()
        server_address = server.base_url.split("/")[2]

    assert [r.text for r in results] == ["回答: 你好", "回答: 再见"]
    assert proxy.tunnels and set(proxy.tunnels) == {server_address}

def test_it_encodes_an_image_shared_by_many_questions_correctly_for_each(server, images):
    conversations = [[Message("user", f"问题{i}", (images["meme.png"] if i % 2 else images["chart.jpg"],))]
                     for i in range(6)]

    http_backend(server).generate(conversations)

    sent = {message_text(r["messages"][0]): r["messages"][0]["content"][0]["image_url"]["url"] for r in server.requests}
    for i in range(6):
        path = images["meme.png"] if i % 2 else images["chart.jpg"]
        assert base64.b64decode(sent[f"问题{i}"].split(",", 1)[1]) == Path(path).read_bytes()


def test_it_sends_no_authorization_without_an_api_key(server):
    http_backend(server).generate([[Message("user", "你好")]])

    assert "authorization" not in {k.lower() for k in server.request_headers[0]}


def test_it_keeps_api_keys_out_of_the_config_repr():
    assert "sk-secret" not in repr(BackendConfig(backend="openai", api_key="sk-secret"))


def test_it_honours_retry_after_on_429_then_succeeds(server):
    server.retry_after = "0.3"
    server.fail_next(1, "429")

    started = time.perf_counter()
    [result] = http_backend(server).generate([[Message("user", "你好")]])

    assert result.error == "" and result.text == "回答: 你好"
    assert time.perf_counter() - started >= 0.3
    assert server.status_counts == {"429": 1, "200": 1}


@pytest.mark.parametrize("mode", ["500", "drop", "malformed", "empty"])
def test_it_retries_a_transient_failure_then_succeeds(server, mode):
    server.fail_next(2, mode)

    [result] = http_backend(server).generate([[Message("user", "你好")]])

    assert result.error == "" and result.text == "回答: 你好"
    assert server.requests_received == 3


def test_it_retries_a_timeout_then_succeeds(server):
    server.slow_s = 1.0
    server.fail_next(1, "slow")

    [result] = http_backend(server, timeout_s=0.3).generate([[Message("user", "你好")]])

    assert result.error == "" and result.text == "回答: 你好"
    assert server.requests_received == 2


def test_it_records_a_permanent_400_on_its_item_while_others_succeed(server):
    server.fail_when(lambda messages, request: "坏问题" in str(messages), "400")
    questions = ["问题一", "坏问题", "问题三", "问题四"]

    results = http_backend(server).generate([[Message("user", q)] for q in questions])

    assert [r.text for r in results] == ["回答: 问题一", "", "回答: 问题三", "回答: 问题四"]
    assert results[1].error.startswith("HTTP 400") and "refuses this one" in results[1].error
    assert all(r.error == "" for i, r in enumerate(results) if i != 1)
    assert server.status_counts["400"] == 1  # a permanent error is not retried


def test_it_records_an_error_when_retries_are_exhausted(server):
    server.fail_next(10, "500")

    results = http_backend(server, max_retries=2).generate([[Message("user", "你好")]])

    assert results[0].error.startswith("HTTP 500") and "after 3 attempts" in results[0].error
    assert server.requests_received == 3


def test_it_fails_an_unreachable_server_per_item(images):
    backend = openai_backend.OpenAIBackend(
        BackendConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model_name="m", max_retries=1)
    )

    results = backend.generate([[Message("user", "你好")], [Message("user", "图", ("/nonexistent.png",))]])

    assert "connection error" in results[0].error and "2 attempts" in results[0].error
    assert "nonexistent.png" in results[1].error


def test_it_bounds_concurrency(server):
    server.latency_s = 0.05

    results = http_backend(server, concurrency=4).generate([[Message("user", f"问题{i}")] for i in range(24)])

    assert [r.text for r in results] == [f"回答: 问题{i}" for i in range(24)]
    assert 1 < server.max_concurrency_seen <= 4


def _expected_from_server(digit_alternatives: list[tuple[str, float]]) -> dict[int, float]:
    mass = {int(token): math.exp(logprob) for token, logprob in digit_alternatives if token != "0"}
    total = sum(mass.values())
    return {k: mass.get(k, 0.0) / total for k in range(1, 11)}


def test_it_builds_score_probs_from_the_servers_logprobs(server):
    server.reply = lambda messages, request: '{"Rating": 7, "Reason": "基本正确"}'

    [result] = http_backend(server).generate([[Message("user", "打分")]], score_probs=True)

    assert server.requests[0]["logprobs"] is True and server.requests[0]["top_logprobs"] == 20
    assert result.score_probs == pytest.approx(_expected_from_server(default_top_logprobs("7", 11, "")))
    assert expected_score(result.score_probs)[0] == pytest.approx(7.0)


def test_it_splits_a_rating_of_ten_over_two_tokens(server):
    server.reply = lambda messages, request: "评分：10"

    [result] = http_backend(server).generate([[Message("user", "打分")]], score_probs=True)

    # At "1": P("1") = 0.6, P("2") = 0.15, P("3") = 0.04 (P("0") is no rating); after it P("0") = 0.6.
    expected = {1: 0.6 * 0.4, 10: 0.6 * 0.6, 2: 0.15, 3: 0.04}
    total = sum(expected.values())
    assert result.score_probs == pytest.approx({k: expected.get(k, 0.0) / total for k in range(1, 11)})


def test_it_gives_no_score_probs_when_the_server_ignores_logprobs(server):
    server.supports_logprobs = False
    server.reply = lambda messages, request: '{"Rating": 7}'

    [result] = http_backend(server).generate([[Message("user", "打分")]], score_probs=True)

    assert result.error == "" and result.score_probs is None


def test_it_asks_again_without_logprobs_when_the_server_refuses_them(server):
    server.reject_logprobs = True
    server.reply = lambda messages, request: '{"Rating": 7}'

    [result] = http_backend(server).generate([[Message("user", "打分")]], score_probs=True)

    assert result.error == "" and result.text == '{"Rating": 7}' and result.score_probs is None
    assert server.status_counts == {"400": 1, "200": 1}
    assert "logprobs" not in server.requests[1]


def test_it_gives_no_score_probs_for_a_reply_without_a_rating(server):
    [result] = http_backend(server).generate([[Message("user", "打分")]], score_probs=True)

    assert result.error == "" and result.score_probs is None


def test_it_frees_the_weights_on_close(tiny_critic):
    backend = backends.build_backend(BackendConfig(backend="transformers", kind="text", path=str(tiny_critic)))

    backend.close()

    assert backend.model is None
    with pytest.raises(RuntimeError):
        backend.generate([[Message("user", "你好")]])


def test_it_closes_an_http_backend_only_after_its_batch_in_flight(server):
    server.latency_s = 0.2
    backend = http_backend(server)
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(backend.generate, [[Message("user", f"问题{i}")] for i in range(4)])
        time.sleep(0.05)
        backend.close()  # evicted by the cache while another thread is mid-batch

        assert [r.error for r in batch.result()] == [""] * 4
    assert backend.closed


def test_it_stops_sending_when_the_caller_stops_taking_answers(server):
    server.latency_s = 0.1
    backend = http_backend(server, concurrency=4)
    answers = backend.generate_iter([[Message("user", f"问题{i}")] for i in range(40)])

    next(answers)
    answers.close()  # e.g. the run was cancelled mid-batch
    backend.close()

    assert backend.closed
    time.sleep(0.3)
    assert server.requests_received <= 8  # the first wave and the one that had started, not all 40
