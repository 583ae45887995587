"""Any server that speaks the OpenAI Chat Completions protocol (vLLM, SGLang, LMDeploy, hosted APIs).

One POST to ``{base_url}/chat/completions`` per conversation, at most ``concurrency`` in flight
over kept-alive HTTP/1.1 connections (reused across batches). The requests run on an asyncio event
loop in one thread of the backend's own, speaking HTTP through ``h11``; the caller's thread only
takes finished answers off a queue, so it can store them while the next requests are on the wire.
Why not a thread per request with httpx: against a server that answers at once that cost 1.1 ms of
CPU per request (httpx's own overhead plus 32 threads fighting for the GIL), this ~0.25 ms, and on
a 2-core machine that difference was most of the app's throughput. Proxies are taken from the
environment (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``) as httpx did, HTTPS through a proxy by
CONNECT; TLS uses the system's certificates (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured), or
certifi's bundle on a system that has none.

Messages: images become ``image_url`` parts holding base64 data URLs (the file's own bytes and
MIME type; encoded once per image within a batch, since rewrites share their seed's image), placed
before the text of the turn that carries them (the first user turn); a turn
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

import asyncio
import base64
import json
import logging
import math
import os
import queue
import random
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

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
IMAGE_CACHE_CHARS = 64 * 2**20  # data URLs kept per batch, so a batch of large distinct images can't hoard memory

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


class _Reply:
    """A finished HTTP response."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: bytes) -> str | None:
        return next((value.decode("latin-1") for key, value in self.headers if key == name), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Connection:
    """One kept-alive HTTP/1.1 connection; used by one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT)

    async def exchange(self, request: h11.Request, body: bytes) -> _Reply:
        self.writer.write(self.protocol.send(request) + self.protocol.send(h11.Data(data=body))
                          + self.protocol.send(h11.EndOfMessage()))
        await self.writer.drain()
        response, chunks = None, []
        while True:
            event = self.protocol.next_event()
            if event is h11.NEED_DATA:
                self.protocol.receive_data(await self.reader.read(65536))  # b"" at EOF: h11 then says what broke
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                return _Reply(response.status_code, response.headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the server closed the connection without answering")
            # h11.InformationalResponse (1xx): wait for the real one

    def reusable(self) -> bool:
        """Ready for the next request: both sides finished cleanly and the server hasn't hung up since."""
        if self.protocol.our_state is not h11.DONE or self.protocol.their_state is not h11.DONE:
            return False
        if self.reader.at_eof() or self.writer.is_closing():
            return False
        self.protocol.start_next_cycle()
        return True

    def close(self) -> None:
        self.writer.close()


class OpenAIBackend:
    def __init__(self, config: BackendConfig) -> None:
        if not config.base_url:
            raise ValueError("an openai endpoint needs a base URL, e.g. http://127.0.0.1:8000/v1")
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        url = urlsplit(self.url)
        self._tls = url.scheme == "https"
        self._url_error = "" if url.scheme in ("http", "https") and url.hostname else "not an http(s) URL"
        try:
            self._address = (url.hostname or "", url.port or (443 if self._tls else 80))
        except ValueError as exc:  # a port that isn't one
            self._address, self._url_error = ("", 0), str(exc)
        headers = [("Host", url.netloc.rsplit("@", 1)[-1]), ("User-Agent", "alignbench"),
                   ("Accept", "application/json"), ("Content-Type", "application/json")]
        if config.api_key:
            headers.append(("Authorization", f"Bearer {config.api_key}"))
        self._target = url.path + (f"?{url.query}" if url.query else "")
        self._proxy = _proxy_for(url.scheme, url.hostname or "")
        if self._proxy and not self._tls:
            self._target = self.url  # a plain-HTTP proxy takes the absolute URL and forwards it
            headers += self._proxy[1]
        self._headers = headers
        self._slots = asyncio.Semaphore(max(1, config.concurrency))
        self._idle: list[_Connection] = []  # touched only on the loop's thread
        # The cache may evict us while another thread is mid-batch: close only once that batch is done.
        self._lock = threading.Lock()
        self._active = 0
        self._closing = False
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

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
            if self.closed:
                raise RuntimeError("this backend has been closed")
            self._active += 1
            loop = self._running_loop()
        finished: queue.SimpleQueue[tuple[int, Result] | None] = queue.SimpleQueue()
        work = asyncio.run_coroutine_threadsafe(self._answer_all(conversations, score_probs, finished.put), loop)
        try:
            while (item := finished.get()) is not None:
                yield item
            work.result()  # a bug in the loop surfaces here rather than as missing answers
        finally:
            work.cancel()  # the caller stopped early (cancel, shutdown, an error): stop sending
            with self._lock:
                self._active -= 1
                close_now = self._closing and self._active == 0
            if close_now:
                self._shut_down()

    def close(self) -> None:
        """Close the connections, now or when the batch in flight finishes."""
        with self._lock:
            self._closing = True
            close_now = self._active == 0
        if close_now:
            self._shut_down()

    # -- the event loop -------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
            self._thread.start()
        return self._loop

    def _shut_down(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._wind_down(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _wind_down(self) -> None:
        # A batch whose caller stopped early may still have requests in flight: end them first.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        while self._idle:
            self._idle.pop().close()

    async def _answer_all(self, conversations: list[list[Message]], score_probs: bool, put) -> None:
        try:
            items = iter(enumerate(conversations))
            images = _DataUrls()

            async def take_turns() -> None:
                for index, conversation in items:
                    async with self._slots:  # shared by every batch on this backend
                        put((index, await self._answer(conversation, score_probs, images)))

            workers = min(max(1, self.config.concurrency), len(conversations))
            await asyncio.gather(*(take_turns() for _ in range(workers)))
        finally:
            put(None)

    # -- one item -------------------------------------------------------------------------------

    async def _answer(self, conversation: list[Message], score_probs: bool, images: _DataUrls) -> Result:
        try:
            payload = self._payload(conversation, score_probs, images)
        except Exception as exc:  # an unreadable image fails its own item only
            return Result(error=f"{type(exc).__name__}: {exc}"[:1000])
        try:
            return await self._post_with_retries(payload)
        except Exception as exc:  # a bug must not take the other items down with it
            logger.exception("chat completion failed unexpectedly")
            return Result(error=f"{type(exc).__name__}: {exc}"[:1000])

    def _payload(self, conversation: list[Message], score_probs: bool, images: _DataUrls | None = None
                 ) -> dict[str, Any]:
        images = images if images is not None else _DataUrls()
        messages: list[dict[str, Any]] = []
        for message in conversation:
            if message.images:
                parts: list[dict[str, Any]] = [
                    {"type": "image_url", "image_url": {"url": images.get(path)}} for path in message.images
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

    async def _post_with_retries(self, payload: dict[str, Any]) -> Result:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = await self._post(payload)
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
                await asyncio.sleep(delay)
                attempt += 1

    async def _post(self, payload: dict[str, Any]) -> Result:
        if self._url_error:
            raise _Permanent(f"bad request to {self.url}: {self._url_error}", status=0)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        request = h11.Request(method="POST", target=self._target,
                              headers=[*self._headers, ("Content-Length", str(len(body)))])
        connection = None
        try:
            connection = await self._connection()
            async with asyncio.timeout(self.config.timeout_s):
                response = await connection.exchange(request, body)
        except TimeoutError as exc:
            raise _Transient(f"timed out after {self.config.timeout_s:g}s") from exc
        except h11.LocalProtocolError as exc:  # we could not even say it (a header with a newline...)
            raise _Permanent(f"bad request to {self.url}: {exc}", status=0) from exc
        except (OSError, h11.RemoteProtocolError) as exc:
            raise _Transient(f"connection error: {type(exc).__name__}: {exc}") from exc
        finally:
            if connection is not None:
                if connection.reusable():
                    self._idle.append(connection)
                else:
                    connection.close()

        status = response.status
        if status == 429 or status >= 500:
            raise _Transient(_status_error(response), retry_after=_retry_after(response))
        if not 200 <= status < 300:
            raise _Permanent(_status_error(response), status=status)
        try:
            data = json.loads(response.body)
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

    async def _connection(self) -> _Connection:
        """A kept-alive connection if one is idle, else a new one (through the proxy, if any)."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.reader.at_eof():
                return connection
            connection.close()
        host, port = self._proxy[0] if self._proxy else self._address
        async with asyncio.timeout(min(self.config.timeout_s, 10.0)):
            if not self._tls:
                return _Connection(*await asyncio.open_connection(host, port))
            if not self._proxy:
                return _Connection(*await asyncio.open_connection(
                    host, port, ssl=_tls_context(), server_hostname=self._address[0]))
            reader, writer = await asyncio.open_connection(host, port)
            try:
                await _tunnel(reader, writer, self._address, self._proxy[1])
                await writer.start_tls(_tls_context(), server_hostname=self._address[0])
            except BaseException:
                writer.close()
                raise
            return _Connection(reader, writer)


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


class _DataUrls:
    """Data URLs by image path for one batch: questions that share an image encode it once."""

    def __init__(self) -> None:
        self._urls: dict[str, str] = {}
        self._chars = 0

    def get(self, path: str) -> str:
        url = self._urls.get(path)
        if url is None:
            url = _data_url(path)
            if self._chars + len(url) > IMAGE_CACHE_CHARS:
                self._urls.clear()
                self._chars = 0
            self._urls[path] = url
            self._chars += len(url)
        return url


def _data_url(path: str) -> str:
    data = Path(path).read_bytes()
    mime = next((mime for magic, mime in _MIME_BY_MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return f"data:{mime or 'image/jpeg'};base64,{base64.b64encode(data).decode('ascii')}"


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """The system's trusted certificates (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured); on a system
    without any (a slim container), certifi's bundle, which httpx brings along."""
    global _tls
    if _tls is None:
        context = ssl.create_default_context()
        if not context.get_ca_certs() and not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
            try:
                import certifi
            except ImportError:  # pragma: no cover - certifi comes with httpx
                pass
            else:
                context.load_verify_locations(certifi.where())
        _tls = context
    return _tls


def _proxy_for(scheme: str, host: str) -> tuple[tuple[str, int], list[tuple[str, str]]] | None:
    """The proxy the environment names for this URL (as httpx and curl read it): its address and
    the Proxy-Authorization header its user:password asks for."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or not host or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = []
    if parts.username:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers.append(("Proxy-Authorization", f"Basic {base64.b64encode(credentials.encode()).decode()}"))
    return (parts.hostname or "", parts.port or 80), headers


async def _tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: tuple[str, int],
                  headers: list[tuple[str, str]]) -> None:
    """CONNECT through a proxy to ``address``; TLS starts on the same stream afterwards."""
    protocol = h11.Connection(h11.CLIENT)
    target = f"{address[0]}:{address[1]}"
    writer.write(protocol.send(h11.Request(method="CONNECT", target=target, headers=[("Host", target), *headers])))
    await writer.drain()
    while True:
        event = protocol.next_event()
        if event is h11.NEED_DATA:
            protocol.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            if not 200 <= event.status_code < 300:
                raise ConnectionRefusedError(f"the proxy refused CONNECT {target}: HTTP {event.status_code}")
            return


def _backoff_delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(max(0.0, retry_after), RETRY_AFTER_CAP_S)
    # Full jitter: spreads the retries of many concurrent requests instead of stampeding together.
    return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


def _retry_after(response: _Reply) -> float | None:
    value = response.header(b"retry-after")
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


def _excerpt(response: _Reply) -> str:
    text = " ".join(response.text.split())
    return text[:ERROR_EXCERPT_CHARS] + ("..." if len(text) > ERROR_EXCERPT_CHARS else "")


def _status_error(response: _Reply) -> str:
    return f"HTTP {response.status}: {_excerpt(response)}"


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
