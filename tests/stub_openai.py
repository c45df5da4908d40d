"""A tiny OpenAI-compatible server on 127.0.0.1, so the real `ChatOpenAI` client can be tested end to end.

It implements `POST /v1/chat/completions` (non-streaming) and behaves as each test programs it: reply with some
content, hang past the client's timeout, answer with an HTTP error, or send a malformed body. Every request it
receives is recorded, so a test can check what the answerer actually sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    """What the next chat completion does: `delay` first, then `status` with `content` (or a raw `body`)."""

    content: str = ""
    status: int = 200
    delay: float = 0.0
    body: str | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """All message contents joined, to assert that passages and question were sent."""
        return "\n".join(str(message.get("content", "")) for message in self.body.get("messages", []))


@dataclass
class StubOpenAI:
    """Start with `start()` (or use as a context manager); `url` is the base URL to give the client."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._released = threading.Event()  # set on stop, so a hanging handler does not outlive the test
        self._lock = threading.Lock()

    # -- programming ---------------------------------------------------------------------------------------

    def reply(self, content: str) -> None:
        self.behaviour = Behaviour(content=content)

    def hang(self, seconds: float, content: str = "too late [1].") -> None:
        self.behaviour = Behaviour(content=content, delay=seconds)

    def fail(self, status: int = 500, message: str = "internal error") -> None:
        self.behaviour = Behaviour(status=status, body=json.dumps({"error": {"message": message, "type": "server"}}))

    def malformed(self, body: str = "this is not JSON") -> None:
        self.behaviour = Behaviour(body=body)

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the stub first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> StubOpenAI:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                with stub._lock:
                    stub.requests.append(
                        RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    behaviour = stub.behaviour
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                if behaviour.delay and stub._released.wait(behaviour.delay):
                    return  # stopped while hanging: just drop the connection
                if behaviour.body is not None:
                    self._send(behaviour.status, behaviour.body)
                    return
                self._send(behaviour.status, json.dumps(_completion(body.get("model", "stub"), behaviour.content)))

            def _send(self, status: int, payload: str) -> None:
                data = payload.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) before the reply

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="stub-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StubOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(model: str, content: str) -> dict[str, Any]:
    """A chat completion in OpenAI's response format."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": max(1, len(content.split())), "total_tokens": 2},
    }
