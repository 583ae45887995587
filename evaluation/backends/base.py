"""The one interface every model backend speaks, and the rating helpers both backends share.

A backend takes a batch of conversations and returns one ``Result`` per conversation, in the same
order. A failure of one item is recorded on that item (``Result.error``) and never fails the
others. Nothing here imports Django: the Django side turns a ``ModelEndpoint`` row into a
``BackendConfig``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    text: str
    images: tuple[str, ...] = ()  # absolute file paths of images (the image goes in the first user turn)


@dataclass(frozen=True)
class BackendConfig:
    """Built by the Django side from a ModelEndpoint row."""

    backend: str  # "transformers" | "openai"
    kind: str = "vlm"  # "vlm" (image+text -> AutoModelForImageTextToText) or "text" (AutoModelForCausalLM)
    path: str = ""  # local model dir (transformers)
    adapter_path: str = ""  # a PEFT (LoRA) adapter dir loaded on top of the model at ``path``
    base_url: str = ""  # e.g. http://127.0.0.1:8000/v1 (openai)
    model_name: str = ""
    api_key: str = ""  # resolved from an env var by the caller; never logged
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 8  # transformers
    concurrency: int = 8  # openai
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:0" | "auto"
    dtype: str = "auto"  # "auto" | "float32" | "bfloat16" | "float16"
    trust_remote_code: bool = False
    timeout_s: float = 120.0
    max_retries: int = 5

    def __repr__(self) -> str:
        # Configs end up in logs and tracebacks: never show the key.
        fields = ", ".join(
            f"{name}={'***' if name == 'api_key' and value else value!r}" for name, value in self.__dict__.items()
        )
        return f"BackendConfig({fields})"


@dataclass
class Result:
    text: str = ""
    error: str = ""  # non-empty => this item failed permanently (after retries)
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    score_probs: dict[int, float] | None = None  # P(rating = k), k in 1..10, normalised, when available


class Backend(Protocol):
    config: BackendConfig

    def generate(self, conversations: list[list[Message]], *, score_probs: bool = False) -> list[Result]: ...


# ---------------------------------------------------------------------------------------------------
# Where a critic's rating starts, and which tokens spell a rating
# ---------------------------------------------------------------------------------------------------

# A rating key ("Rating" quoted or not, any case, or 评分), optional markdown/quotes, a colon
# (ASCII or full-width), optional quotes/space, then the first digit of the rating.
_RATING_START = re.compile(r"""(?:"rating"|rating|评分)[\s*"'“”]*[:：][\s*"'“”]*(?=\d)""", re.I)

# Characters a tokenizer may glue in front of the first digit of a rating (" 8", "\"8", ":8").
_GLUE = " \t\n\"'“”:：*"
# A token that spells a whole rating, possibly with glue in front and something non-digit after.
_RATING_TOKEN = re.compile(r"[" + re.escape(_GLUE) + r"]*(10|[1-9])(?!\d)(.*)", re.S)
# A token that continues a "1" into "10": starts with "0" and is not "00...".
_ZERO_TOKEN = re.compile(r"0(?!\d)")


def find_rating_offset(text: str) -> int | None:
    """Character offset of the first digit of the first rating statement in ``text``, if any.

    The first statement, not the last: that is where the model decided on its rating; a later
    restatement is conditioned on the first and its distribution is nearly a copy of it.
    """
    match = _RATING_START.search(text)
    return match.end() if match else None


@dataclass(frozen=True)
class RatingToken:
    value: int  # 1..10
    bare_one: bool  # the token is just "1" (with glue): it may still be continued into "10"


def classify_rating_token(token_text: str) -> RatingToken | None:
    """The rating a token spells when it stands where a rating starts, or None."""
    match = _RATING_TOKEN.fullmatch(token_text)
    if not match:
        return None
    value = int(match[1])
    return RatingToken(value=value, bare_one=value == 1 and match[2] == "")


def is_zero_continuation(token_text: str) -> bool:
    return _ZERO_TOKEN.match(token_text) is not None


def rating_distribution(
    candidates: Iterable[tuple[str, float]], *, p_zero_after_one: float | None = None
) -> dict[int, float] | None:
    """Turn (token text, probability) pairs at the rating position into P(rating = k), k = 1..10.

    Tokens spelling the same rating are summed (" 8" and "8" are both 8). If the tokenizer has
    no single "10" token, a bare "1" is a 1 or the start of "10": given P("0" | ... "1") it is
    split into P(1) = P("1") * (1 - p0) and P(10) += P("1") * p0. Normalised over 1..10; None
    when no rating token has any probability.
    """
    mass = dict.fromkeys(range(1, 11), 0.0)
    bare_one = 0.0
    for text, prob in candidates:
        token = classify_rating_token(text)
        if token is None or not prob > 0:
            continue
        if token.bare_one:
            bare_one += prob
        else:
            mass[token.value] += prob
    if p_zero_after_one is None:
        mass[1] += bare_one
    else:
        mass[1] += bare_one * (1.0 - p_zero_after_one)
        mass[10] += bare_one * p_zero_after_one
    total = sum(mass.values())
    if not total > 0 or not math.isfinite(total):
        return None
    return {k: v / total for k, v in mass.items()}
