"""Fixtures: a real HTTP server on 127.0.0.1 standing in for Slack, a fixed clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from postflow.testing import FixedClock


class Hook:
    """An incoming-webhook stand-in: records each POST, answers ``status`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                hook.requests.append((self.path, dict(self.headers), body))
                if hook.delay:
                    threading.Event().wait(hook.delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                answer = b"ok" if status == 200 else b"no_service"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.requests]


@pytest.fixture(name="hook")
def _hook() -> Iterator[Hook]:
    hook = Hook()
    hook.thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture(name="clock")
def _clock() -> FixedClock:
    return FixedClock()
