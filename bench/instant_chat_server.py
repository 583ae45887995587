"""A cheap Chat Completions server for the runs benchmark, in a process of its own.

    with InstantChatServer(reply="好", latency_s=0.1) as server:
        ... server.base_url ...

It speaks real HTTP/1.1 (keep-alive, Content-Length) on 127.0.0.1, reads and JSON-parses every
request to ``/v1/chat/completions`` and answers a completion built the same way as the tests'
``tests/chat_server.ChatServer`` (logprobs too, when asked), but built once at start and sent as
the same pre-encoded bytes each time. Standard-library asyncio, one process: the benchmark
measures the app, so the fake model should cost the 2 cores as little as it can, and it must not
share the benchmark process's GIL. What it doesn't do: failure modes and counters (the tests'
server has those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def completion_bodies(reply: str) -> tuple[bytes, bytes]:
    """The answer without and with logprobs, as the tests' server would build them."""
    sys.path.insert(0, str(ROOT))
    from tests.chat_server import ChatServer

    server = ChatServer(reply=lambda messages, request: reply)
    request = {"model": "m", "messages": []}
    plain = server._completion(request)
    with_logprobs = server._completion({**request, "logprobs": True, "top_logprobs": 20})
    return (json.dumps(plain, ensure_ascii=False).encode(), json.dumps(with_logprobs, ensure_ascii=False).encode())


def _response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def serve(port: int, reply: str, latency_s: float) -> None:
    plain, with_logprobs = (_response("200 OK", body) for body in completion_bodies(reply))
    not_found = _response("404 Not Found", b'{"error": {"message": "no such route"}}')
    not_json = _response("400 Bad Request", b'{"error": {"message": "request body is not JSON"}}')

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, header_block = head.partition(b"\r\n")
                length = 0
                for line in header_block.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if latency_s:
                    await asyncio.sleep(latency_s)
                if not request_line.split(b" ")[1].rstrip(b"/").endswith(b"/chat/completions"):
                    writer.write(not_found)
                else:
                    try:
                        request = json.loads(body)
                    except ValueError:
                        writer.write(not_json)
                    else:
                        writer.write(with_logprobs if request.get("logprobs") else plain)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class InstantChatServer:
    """Runs ``serve`` in a child process; ``cpu_seconds()`` is what it has used so far."""

    def __init__(self, *, reply: str, latency_s: float = 0.0) -> None:
        self.reply, self.latency_s = reply, latency_s
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> InstantChatServer:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--reply", self.reply, "--latency", str(self.latency_s)],
            stdout=subprocess.PIPE, text=True)
        port = int(self.process.stdout.readline())
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="好")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.reply, args.latency))
    except KeyboardInterrupt:
        pass
