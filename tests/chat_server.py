"""A local server speaking the OpenAI Chat Completions protocol, for tests and benchmarks.

    with ChatServer(latency_s=0.1) as server:
        config = BackendConfig(backend="openai", base_url=server.base_url, model_name="fake")
        server.fail_next(2, "429")              # the next two requests get 429 + Retry-After
        server.fail_when(lambda messages, request: "坏" in str(messages), "400")  # always, for those

Everything is adjustable while it runs (thread-safe): ``latency_s``, ``reply`` (a function
``(messages, request_json) -> str``), ``supports_logprobs`` / ``reject_logprobs``,
``top_logprobs`` (a function ``(token, position, text) -> [(token, logprob), ...]``),
``retry_after`` and ``slow_s``. Failure modes:

- ``"429"``: Too Many Requests with ``Retry-After: <retry_after>`` (default "0");
- ``"500"``: Internal Server Error;
- ``"400"``: Bad Request (a permanent error for the client);
- ``"drop"``: close the connection without answering;
- ``"malformed"``: 200 with a body that is not JSON;
- ``"empty"``: 200 with valid JSON but no choices;
- ``"slow"``: answer normally after ``slow_s`` seconds (to trip client timeouts).

Counters: ``requests_received``, ``status_counts`` (by status, "drop" for drops),
``max_concurrency_seen``; ``requests`` keeps every request body and ``request_headers`` their
headers. ``reset()`` clears them.
Pure standard library; HTTP/1.1 keep-alive with Content-Length on every response.
"""

from __future__ import annotations

import json
import math
import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAILURE_MODES = ("429", "500", "400", "drop", "malformed", "empty", "slow")

Reply = Callable[[list[dict[str, Any]], dict[str, Any]], str]
Predicate = Callable[[list[dict[str, Any]], dict[str, Any]], bool]
TopLogprobs = Callable[[str, int, str], list[tuple[str, float]]]


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def echo_reply(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
    """Deterministic: the last user message, quoted."""
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return "回答: " + message_text(last_user)[:50]


def default_top_logprobs(token: str, position: int, text: str) -> list[tuple[str, float]]:
    """Plausible alternatives: a digit spreads its mass over its neighbours, other tokens are
    nearly certain. Logprobs of the listed tokens sum to less than 1 (the rest is elsewhere)."""
    if token.isdigit() and len(token) == 1:
        digit = int(token)
        weights = {digit: 0.6, digit - 1: 0.15, digit + 1: 0.15, digit - 2: 0.04, digit + 2: 0.04}
        return [(str(d), math.log(w)) for d, w in weights.items() if 0 <= d <= 9]
    return [(token, math.log(0.9)), (" ", math.log(0.05))] if token != " " else [(" ", math.log(0.9))]


def char_tokens(text: str) -> list[str]:
    """How the fake server 'tokenizes' a reply: one character per token, so "10" is "1", "0"."""
    return list(text)


@dataclass
class _Rule:
    predicate: Predicate
    mode: str
    remaining: int | None  # None: forever


class ChatServer:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        reply: Reply = echo_reply,
        supports_logprobs: bool = True,
        reject_logprobs: bool = False,
        retry_after: str | None = "0",
        slow_s: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.reply = reply
        self.supports_logprobs = supports_logprobs
        self.reject_logprobs = reject_logprobs  # answer 400 to any request asking for logprobs
        self.retry_after = retry_after  # None: 429 without a Retry-After header
        self.slow_s = slow_s
        self.top_logprobs: TopLogprobs = default_top_logprobs
        self._host, self._port = host, port
        self.tls = tls  # a server-side context: the server speaks HTTPS
        self._lock = threading.Lock()
        self._plan: deque[str] = deque()
        self._rules: list[_Rule] = []
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ChatServer:
        handler = type("Handler", (_Handler,), {"chat": self})
        self._server = _Server((self._host, self._port), handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="chat-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}/v1"

    # -- failures and counters ------------------------------------------------------------------

    def fail_next(self, n: int, mode: str) -> None:
        """The next ``n`` requests (whatever they ask) fail with ``mode``."""
        _check_mode(mode)
        with self._lock:
            self._plan.extend([mode] * n)

    def fail_when(self, predicate: Predicate, mode: str, times: int | None = None) -> None:
        """Requests for which ``predicate(messages, request_json)`` is true fail with ``mode``:
        ``times`` times, or always when ``times`` is None. Checked before ``fail_next``."""
        _check_mode(mode)
        with self._lock:
            self._rules.append(_Rule(predicate, mode, times))

    def reset(self) -> None:
        """Forget planned failures, rules, counters and recorded requests."""
        with self._lock:
            self._plan.clear()
            self._rules.clear()
            self.requests: list[dict[str, Any]] = []
            self.request_headers: list[dict[str, str]] = []
            self.requests_received = 0
            self.status_counts: Counter[str] = Counter()
            self.max_concurrency_seen = 0

    def _begin(self, request: dict[str, Any], headers: dict[str, str]) -> str | None:
        """Record a request and decide its fate: a failure mode, or None to answer normally."""
        messages = request.get("messages") or []
        with self._lock:
            self.requests.append(request)
            self.request_headers.append(headers)
            self.requests_received += 1
            self._in_flight += 1
            self.max_concurrency_seen = max(self.max_concurrency_seen, self._in_flight)
            for rule in self._rules:
                if rule.remaining != 0 and rule.predicate(messages, request):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.mode
            return self._plan.popleft() if self._plan else None

    def _end(self, status: str) -> None:
        with self._lock:
            self._in_flight -= 1
            self.status_counts[status] += 1

    # -- the answer -----------------------------------------------------------------------------

    def _completion(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = request.get("messages") or []
        text = self.reply(messages, request)
        choice: dict[str, Any] = {
            "index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None,
        }
        if request.get("logprobs") and self.supports_logprobs:
            choice["logprobs"] = {"content": self._logprobs(text, int(request.get("top_logprobs") or 0))}
        prompt_chars = sum(len(message_text(m)) for m in messages)
        return {
            "id": f"chatcmpl-{self.requests_received}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", ""),
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_chars, "completion_tokens": len(char_tokens(text)),
                      "total_tokens": prompt_chars + len(char_tokens(text))},
        }

    def _logprobs(self, text: str, top_n: int) -> list[dict[str, Any]]:
        content = []
        for position, token in enumerate(char_tokens(text)):
            alternatives = self.top_logprobs(token, position, text)
            chosen = dict(alternatives).get(token, math.log(0.5))
            content.append({
                "token": token, "logprob": chosen, "bytes": list(token.encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alternatives[:top_n]],
            })
        return content


def _check_mode(mode: str) -> None:
    if mode not in FAILURE_MODES:
        raise ValueError(f"unknown failure mode {mode!r}: one of {FAILURE_MODES}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 drops SYNs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections too, so their handler threads finish with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    chat: ChatServer
    protocol_version = "HTTP/1.1"  # keep-alive: every response carries Content-Length
    disable_nagle_algorithm = True  # headers and body go in separate writes: don't wait for ACKs

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._send(400, {"error": {"message": "request body is not JSON"}})
            return
        mode = self.chat._begin(request, dict(self.headers.items()))
        self._accounted = False
        try:
            if self.chat.latency_s:
                time.sleep(self.chat.latency_s)
            if mode is None and request.get("logprobs") and self.chat.reject_logprobs:
                mode = "400"
            self._respond(mode, request)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout) before we answered
        finally:
            self._account("drop")

    def _account(self, status: str) -> None:
        # Counted before the answer leaves: a client that has its answer sees the counters updated.
        if not getattr(self, "_accounted", True):
            self._accounted = True
            self.chat._end(status)

    def _respond(self, mode: str | None, request: dict[str, Any]) -> None:
        if mode == "drop":
            self.close_connection = True  # closing without a word: the client sees a disconnect
            self._account("drop")
        elif mode == "429":
            headers = {"Retry-After": self.chat.retry_after} if self.chat.retry_after is not None else {}
            self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, headers)
        elif mode == "500":
            self._send(500, {"error": {"message": "internal error"}})
        elif mode == "400":
            self._send(400, {"error": {"message": "bad request: the server refuses this one"}})
        elif mode == "malformed":
            self._send_bytes(200, b'{"choices": [{"message": {"content": "trunc')
        elif mode == "empty":
            self._send(200, {"id": "chatcmpl-empty", "choices": []})
        else:
            if mode == "slow":
                time.sleep(self.chat.slow_s)
            self._send(200, self.chat._completion(request))

    def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_bytes(code, json.dumps(payload, ensure_ascii=False).encode(), headers)

    def _send_bytes(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._account(str(code))
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class ConnectProxy:
    """An HTTP proxy that only tunnels (CONNECT host:port, then bytes both ways), as corporate
    proxies do for HTTPS. ``tunnels`` lists the targets it was asked for."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, name="connect-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)
