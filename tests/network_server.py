"""A local "social network" for the webhook publisher: a threaded HTTP server on 127.0.0.1.

It accepts the webhook's POSTs (honouring ``Expect: 100-continue``), records every
request that reached it whole (the ``Idempotency-Key`` header and the ``post_id`` of the
JSON body) and answers ``200`` with a remote id of its own, after an optional random
delay. Faults are scripted per idempotency key: ``429`` (with ``Retry-After``), ``500``,
``reset`` (the connection is reset after the headers, before any byte of the body) and
``timeout`` (the body is read, then no answer comes).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

FAULTS = ("429", "500", "reset", "timeout")


@attrs.frozen
class Request:
    """One request as the network saw it."""

    key: str
    post_id: int | None
    """From the JSON body; ``None`` when no whole body was read."""
    outcome: str
    """``published`` (answered 2xx), a fault's name, or ``partial`` (the body was cut)."""
    remote_id: str | None = None


class Network:
    """The server: ``start()``, point channels at :attr:`url`, read what it received."""

    def __init__(self, *, delay: tuple[float, float] = (0.0, 0.0),
                 retry_after: int = 1, seed: int | None = None) -> None:
        self.delay = delay
        """Seconds (uniform between the two) the network takes before each 2xx answer."""
        self.retry_after = retry_after
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self._faults: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._release = threading.Event()
        self._serial = 0
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        """Per request path, and ``*`` for all: the most requests handled at once."""
        network = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so that Expect: 100-continue gets its 100

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_expect_100(self) -> bool:
                self.fault = network._next_fault(self.headers.get("Idempotency-Key", ""))
                if self.fault == "reset":
                    self._reset()
                    return False
                return super().handle_expect_100()

            def _reset(self) -> None:
                """Reset the connection (RST) without reading the body."""
                network._record(Request(self.headers.get("Idempotency-Key", ""), None,
                                        "reset"))
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def do_POST(self) -> None:
                network._enter(self.path)
                try:
                    self._post()
                finally:
                    network._leave(self.path)

            def _post(self) -> None:
                key = self.headers.get("Idempotency-Key", "")
                fault = self.__dict__.pop("fault") if "fault" in self.__dict__ \
                    else network._next_fault(key)
                if fault == "reset":  # a client that did not wait for 100 Continue
                    self._reset()
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                self.close_connection = True
                if len(body) < length:  # the client died while sending
                    network._record(Request(key, None, "partial"))
                    return
                document = json.loads(body)
                if document.get("idempotency_key") != key:
                    raise AssertionError(f"body key {document.get('idempotency_key')!r} "
                                         f"is not the header's {key!r}")
                post_id = int(document["post_id"])
                if fault == "timeout":
                    network._record(Request(key, post_id, "timeout"))
                    network._release.wait(30)
                    return
                if fault in ("429", "500"):
                    network._record(Request(key, post_id, fault))
                    answer = b'{"error": "try later"}'
                    self.send_response(int(fault))
                    if fault == "429":
                        self.send_header("Retry-After", str(network.retry_after))
                else:
                    low, high = network.delay
                    if high > 0:
                        time.sleep(network._rng.uniform(low, high))
                    remote_id = network._record_published(key, post_id)
                    answer = json.dumps({"id": remote_id,
                                         "url": f"https://network.example/{remote_id}"}
                                        ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 128

            def handle_error(self, request: Any, client_address: Any) -> None:
                network.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    # -- scripting ---------------------------------------------------------------

    def script(self, key: str, faults: Iterable[str]) -> None:
        """Answer the next requests with ``key`` with these faults, in order, then 200."""
        faults = list(faults)
        assert set(faults) <= set(FAULTS), faults
        with self._lock:
            self._faults[key] = deque(faults)

    def _next_fault(self, key: str) -> str | None:
        with self._lock:
            queue = self._faults.get(key)
            return queue.popleft() if queue else None

    def _enter(self, path: str) -> None:
        with self._lock:
            for where in (path, "*"):
                self.in_flight[where] += 1
                self.peak[where] = max(self.peak[where], self.in_flight[where])

    def _leave(self, path: str) -> None:
        with self._lock:
            for where in (path, "*"):
                self.in_flight[where] -= 1

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _record_published(self, key: str, post_id: int) -> str:
        with self._lock:
            self._serial += 1
            remote_id = f"net-{self._serial}"
            self.requests.append(Request(key, post_id, "published", remote_id))
            return remote_id

    # -- reading -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the webhook channel posts."""
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    def snapshot(self) -> list[Request]:
        """The requests so far (a copy)."""
        with self._lock:
            return list(self.requests)

    def received(self) -> Counter[str]:
        """Per idempotency key: how many requests arrived with their whole body."""
        return Counter(r.key for r in self.snapshot() if r.post_id is not None)

    def attempts(self) -> Counter[str]:
        """Per idempotency key: every request, whole or not."""
        return Counter(r.key for r in self.snapshot())

    def outcomes(self, key: str) -> list[str]:
        """What the network did with each request carrying ``key``, in order."""
        return [r.outcome for r in self.snapshot() if r.key == key]

    # -- life --------------------------------------------------------------------

    def start(self) -> Network:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
