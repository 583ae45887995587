"""Any server that speaks the OpenAI Chat Completions protocol (vLLM, SGLang, LMDeploy, hosted APIs).

One POST to ``{base_url}/chat/completions`` per conversation, at most ``concurrency`` in flight
(a thread pool over one shared ``httpx.Client`` whose connection pool has the same bound, so
connections are kept alive and reused). ``generate`` is called from a Celery worker thread, so
plain threads are simpler than an event loop here and just as fast for I/O-bound requests.

Messages: images become ``image_url`` parts holding base64 data URLs (the file's own bytes and
MIME type), placed before the text of the turn that carries them (the first user turn); a turn
without images is sent as plain string content, which every server accepts.

Retries, per item: 429, 5xx, timeouts, connection errors (including a dropped connection) and
garbled 200s (invalid JSON, no ``choices[0].message.content``) are retried up to ``max_retries``
times with exponential backoff and full jitter, sleeping exactly ``Retry-After`` seconds instead
when the server says so. Any other 4xx is permanent for that item: its error says the status and
the start of the body. A 400 to a request that asked for logprobs is retried once without them
(some servers refuse the parameter). The backoff constants are module-level so tests and
benchmarks can shrink them.

Score probabilities (``score_probs=True``): we ask for ``logprobs`` with ``top_logprobs: 20``.
If the reply's tokens come back, we find the token where the rating starts (the first digit after
``Rating``/``评分`` and a colon, as in ``base.find_rating_offset``) and build P(rating = k) from
that token's ``top_logprobs`` (tokens spelling the same rating summed, see
``base.rating_distribution``). When the chosen token there is a bare "1", the next token's
``top_logprobs`` give P("0" | "1"), splitting its mass between 1 and 10. A server that ignores
logprobs, or a reply without a rating, gives ``score_probs=None``.
"""

from __future__ import annotations

import base64
import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from .base import (
    BackendConfig,
    Message,
    Result,
    classify_rating_token,
    find_rating_offset,
    is_zero_continuation,
    rating_distribution,
)

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5  # first retry waits up to this long; doubles each attempt
BACKOFF_CAP_S = 30.0  # no single wait longer than this (unless the server's Retry-After says so)
RETRY_AFTER_CAP_S = 300.0  # ...but never trust a Retry-After beyond this
TOP_LOGPROBS = 20  # the most OpenAI's API allows
ERROR_EXCERPT_CHARS = 300

_MIME_BY_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
]


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish, in seconds, if it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OpenAIBackend:
    def __init__(self, config: BackendConfig) -> None:
        if not config.base_url:
            raise ValueError("an openai endpoint needs a base URL, e.g. http://127.0.0.1:8000/v1")
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        concurrency = max(1, config.concurrency)
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        # The cache may evict us while another thread is mid-batch: close only once that batch is done.
        self._lock = threading.Lock()
        self._active = 0
        self._closing = False

    # -- public ---------------------------------------------------------------------------------

    def generate(self, conversations: list[list[Message]], *, score_probs: bool = False) -> list[Result]:
        results: list[Result | None] = [None] * len(conversations)
        for index, result in self.generate_iter(conversations, score_probs=score_probs):
            results[index] = result
        return results  # type: ignore[return-value]

    def generate_iter(self, conversations: list[list[Message]], *, score_probs: bool = False
                      ) -> Iterator[tuple[int, Result]]:
        """(index, result) pairs in the order they finish, so callers can store each answer at once
        instead of waiting for the slowest request of a batch."""
        with self._lock:
            self._active += 1
        try:
            workers = min(max(1, self.config.concurrency), len(conversations))
            if workers <= 1:
                for index, conversation in enumerate(conversations):
                    yield index, self._answer(conversation, score_probs)
                return
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai-backend") as pool:
                futures = {pool.submit(self._answer, conversation, score_probs): index
                           for index, conversation in enumerate(conversations)}
                for future in as_completed(futures):
                    yield futures[future], future.result()
        finally:
            with self._lock:
                self._active -= 1
                close_now = self._closing and self._active == 0
            if close_now:
                self._client.close()

    def close(self) -> None:
        """Close the connections, now or when the batch in flight finishes."""
        with self._lock:
            self._closing = True
            close_now = self._active == 0
        if close_now:
            self._client.close()

    # -- one item -------------------------------------------------------------------------------

    def _answer(self, conversation: list[Message], score_probs: bool) -> Result:
        try:
            payload = self._payload(conversation, score_probs)
        except Exception as exc:  # an unreadable image fails its own item only
            return Result(error=f"{type(exc).__name__}: {exc}"[:1000])
        try:
            return self._post_with_retries(payload)
        except Exception as exc:  # a bug must not take the other items down with it
            logger.exception("chat completion failed unexpectedly")
            return Result(error=f"{type(exc).__name__}: {exc}"[:1000])

    def _payload(self, conversation: list[Message], score_probs: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        for message in conversation:
            if message.images:
                parts: list[dict[str, Any]] = [
                    {"type": "image_url", "image_url": {"url": _data_url(path)}} for path in message.images
                ]
                parts.append({"type": "text", "text": message.text})
                messages.append({"role": message.role, "content": parts})
            else:
                messages.append({"role": message.role, "content": message.text})
        payload: dict[str, Any] = {
            "model": self.config.model_name,
            "messages": messages,
            "max_tokens": self.config.max_new_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
        }
        if score_probs:
            payload.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return payload

    def _post_with_retries(self, payload: dict[str, Any]) -> Result:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = self._post(payload)
                # Latency of the request that answered: waits for a busy server are not the model's.
                result.latency_s = time.perf_counter() - started
                return result
            except _Permanent as exc:
                if exc.status == 400 and "logprobs" in payload:
                    # Some servers refuse logprobs outright: ask once more without them.
                    payload = {k: v for k, v in payload.items() if k not in ("logprobs", "top_logprobs")}
                    continue
                return Result(error=str(exc))
            except _Transient as exc:
                if attempt >= self.config.max_retries:
                    return Result(error=f"{exc} (gave up after {attempt + 1} attempts)")
                delay = _backoff_delay(attempt, exc.retry_after)
                logger.info("retrying chat completion in %.2fs after: %s", delay, exc)
                time.sleep(delay)
                attempt += 1

    def _post(self, payload: dict[str, Any]) -> Result:
        try:
            response = self._client.post(self.url, json=payload)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise _Permanent(f"bad request to {self.url}: {exc}", status=0) from exc
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.config.timeout_s:g}s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"connection error: {type(exc).__name__}: {exc}") from exc

        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(_status_error(response), retry_after=_retry_after(response))
        if not 200 <= status < 300:
            raise _Permanent(_status_error(response), status=status)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Transient(f"malformed response (HTTP {status}): {_excerpt(response)}") from exc
        if not isinstance(text, str):
            raise _Transient(f"malformed response (HTTP {status}): no message content")

        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Result(
            text=text,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            score_probs=_score_probs(choice.get("logprobs")) if payload.get("logprobs") else None,
        )


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def _data_url(path: str) -> str:
    data = Path(path).read_bytes()
    mime = next((mime for magic, mime in _MIME_BY_MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime or 'image/jpeg'};base64,{base64.b64encode(data).decode('ascii')}"


def _backoff_delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(max(0.0, retry_after), RETRY_AFTER_CAP_S)
    # Full jitter: spreads the retries of many concurrent requests instead of stampeding together.
    return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:  # the HTTP-date form
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:ERROR_EXCERPT_CHARS] + ("..." if len(text) > ERROR_EXCERPT_CHARS else "")


def _status_error(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {_excerpt(response)}"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _probability(entry: Any) -> float:
    try:
        value = math.exp(float(entry["logprob"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def _alternatives(entry: dict[str, Any]) -> list[tuple[str, float]]:
    """(token, probability) for an entry's top_logprobs, with the chosen token added if missing."""
    top = entry.get("top_logprobs") or []
    pairs = [(alt["token"], _probability(alt)) for alt in top if isinstance(alt, dict) and isinstance(alt.get("token"), str)]
    if entry["token"] not in {token for token, _ in pairs}:
        pairs.append((entry["token"], _probability(entry)))
    return pairs


def _token_at(entries: list[dict[str, Any]], offset: int) -> int:
    """Index of the token whose text covers character ``offset`` of the joined token texts."""
    consumed = 0
    for index, entry in enumerate(entries):
        consumed += len(entry["token"])
        if consumed > offset:
            return index
    raise ValueError(f"offset {offset} is past the end of the tokens")


def _score_probs(logprobs: Any) -> dict[int, float] | None:
    """P(rating = k) from ``choices[0].logprobs``, or None when there is nothing to read."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    entries = [e for e in logprobs["content"] if isinstance(e, dict) and isinstance(e.get("token"), str)]
    if len(entries) != len(logprobs["content"]):
        return None  # a garbled list: positions would not line up with the text
    offset = find_rating_offset("".join(entry["token"] for entry in entries))
    if offset is None:
        return None
    index = _token_at(entries, offset)
    entry = entries[index]
    chosen = classify_rating_token(entry["token"])
    p_zero = None
    if chosen is not None and chosen.bare_one and index + 1 < len(entries):
        following = _alternatives(entries[index + 1])
        p_zero = sum(prob for token, prob in following if is_zero_continuation(token))
        p_zero = min(1.0, p_zero)
    return rating_distribution(_alternatives(entry), p_zero_after_one=p_zero)
