"""A small Mastodon for the tests: the endpoints the publisher uses, on 127.0.0.1.

It serves ``GET /api/v2/instance`` (and ``/api/v1/instance``), ``POST /api/v2/media``
(202: processing), ``GET /api/v1/media/:id`` (206 while processing, then 200),
``POST /api/v1/statuses`` honouring ``Idempotency-Key`` as Mastodon does (a repeated
key returns the status it created and creates nothing, but the key is stored only once
the request that created the status finishes, without a lock: a replay that arrives
while the first request is still being handled creates a second status, as on a real
server), ``GET /api/v1/statuses/:id``, and media files under ``/files/``.
:meth:`FakeMastodon.fail` scripts faults per route.
"""

from __future__ import annotations

import html
import itertools
import json
import struct
import threading
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "mstdn-test-token-4f9c2e"


def _png() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00")) + chunk(b"IEND", b""))


PNG = _png()


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    route: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        """The body as form fields (or JSON, as lists)."""
        if self.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(self.body)
            return {k: v if isinstance(v, list) else [v] for k, v in data.items()}
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass(frozen=True)
class Fault:
    """A scripted answer: ``status`` with a JSON ``body`` and ``headers``; with
    ``stall``, the request is handled normally but never answered, and it only
    finishes (a created status's key is stored) after :meth:`FakeMastodon.finish_stalled`."""

    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False


def _route(method: str, path: str) -> str:
    for prefix in ("/api/v1/media/", "/api/v1/statuses/"):
        if path.startswith(prefix) and len(path) > len(prefix):
            return f"{method} {prefix}:id"
    if path.startswith("/files/"):
        return f"{method} /files"
    return f"{method} {path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.app.handle(self)

    def do_POST(self) -> None:
        self.server.app.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def answer(self, status: int, payload: Any, headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: FakeMastodon


class FakeMastodon:
    """The server, its state (statuses, media, requests seen) and its fault script."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.limits: dict[str, int] = {"max_characters": 500, "max_media_attachments": 4,
                                       "characters_reserved_per_url": 23}
        self.processing_polls = 1
        """How many times ``GET /api/v1/media/:id`` answers "processing" before 200."""
        self.processing_status = 206
        """That answer's status: Mastodon's 206 (Partial Content), or 202 as some servers."""
        self.statuses: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.files: dict[str, tuple[bytes, str]] = {"/files/cat.png": (PNG, "image/png")}
        self.seen: list[Seen] = []
        self._keys: dict[tuple[str, str], str] = {}
        self._polls: dict[str, int] = {}
        self._faults: dict[str, list[Fault]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stalled = 0  # stalled requests that have not stored their key yet
        self._finished = threading.Condition(self._lock)
        self._httpd: _Server | None = None

    # -- control ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeMastodon:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.app = self
        threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop answering and close the port (stalled requests are let go)."""
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def finish_stalled(self) -> None:
        """Let stalled requests finish (unanswered); returns once their statuses' keys
        are stored, so that a request sent next sees them."""
        self._release.set()
        with self._finished:
            if not self._finished.wait_for(lambda: self._stalled == 0, timeout=10):
                raise AssertionError("a stalled request did not finish within 10 s")

    def fail(self, route: str, *faults: Fault) -> None:
        """Answer the next requests to ``route`` (``"POST /api/v1/statuses"``) so."""
        with self._lock:
            self._faults[route].extend(faults)

    def requests(self, route: str) -> list[Seen]:
        """The requests seen on ``route``, in order."""
        return [s for s in self.seen if s.route == route]

    @property
    def routes(self) -> list[str]:
        return [s.route for s in self.seen]

    # -- handling --------------------------------------------------------------------

    def handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        seen = Seen(handler.command, path, _route(handler.command, path),
                    {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.seen.append(seen)
            queue = self._faults.get(seen.route)
            fault = queue.pop(0) if queue else None
        if fault is not None and not fault.stall:
            handler.answer(fault.status, fault.body or {"error": f"scripted {fault.status}"},
                           fault.headers)
            return
        with self._lock:
            status, payload, content_type = self._dispatch(seen)
            if fault is not None:
                self._stalled += 1
        if fault is not None:  # handled, never answered
            self._release.wait(30)
            with self._finished:
                self._store_key(seen, status, payload)
                self._stalled -= 1
                self._finished.notify_all()
            handler.close_connection = True
            return
        self._store_key(seen, status, payload)
        handler.answer(status, payload, content_type=content_type)

    def _store_key(self, seen: Seen, status: int, payload: Any) -> None:
        """Mastodon keeps a status's Idempotency-Key only after creating it, unlocked."""
        key = seen.headers.get("idempotency-key")
        if seen.route == "POST /api/v1/statuses" and status == 200 and key:
            self._keys.setdefault((self.token, key), payload["id"])

    def _dispatch(self, seen: Seen) -> tuple[int, Any, str]:
        route = seen.route
        if route == "GET /api/v2/instance":
            return 200, self._instance(), "application/json"
        if route == "GET /api/v1/instance":
            return 200, {"uri": "127.0.0.1", "title": "Fake Mastodon",
                         "configuration": {"statuses": dict(self.limits)}}, "application/json"
        if route == "GET /files":
            found = self.files.get(seen.path)
            if found is None:
                return 404, b"not here", "text/plain"
            return 200, found[0], found[1]
        if seen.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "The access token is invalid"}, "application/json"
        if route == "POST /api/v2/media":
            return self._upload(seen)
        if route == "GET /api/v1/media/:id":
            return self._media(seen.path.rsplit("/", 1)[1])
        if route == "POST /api/v1/statuses":
            return self._status(seen)
        if route == "GET /api/v1/statuses/:id":
            found = self.statuses.get(seen.path.rsplit("/", 1)[1])
            if found is None:
                return 404, {"error": "Record not found"}, "application/json"
            return 200, found, "application/json"
        return 404, {"error": "Record not found"}, "application/json"

    def _instance(self) -> dict[str, Any]:
        return {
            "domain": "127.0.0.1", "title": "Fake Mastodon", "version": "4.3.0",
            "configuration": {
                "statuses": dict(self.limits),
                "media_attachments": {"supported_mime_types": ["image/png", "image/jpeg"],
                                      "image_size_limit": 16 << 20,
                                      "video_size_limit": 99 << 20},
            },
        }

    def _public(self, media: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in media.items() if k not in ("blob", "content_type",
                                                            "filename", "status_id")}

    def _upload(self, seen: Seen) -> tuple[int, Any, str]:
        message = BytesParser(policy=policy.default).parsebytes(
            b"Content-Type: " + seen.headers.get("content-type", "").encode()
            + b"\r\n\r\n" + seen.body)
        files = [part for part in message.iter_parts()
                 if part.get_param("name", header="content-disposition") == "file"]
        if not files:
            return 422, {"error": "Validation failed: File can't be blank"}, "application/json"
        part = files[0]
        media_id = str(next(self._ids))
        self.media[media_id] = {
            "id": media_id, "type": "image", "url": None, "preview_url": None,
            "description": None, "blob": part.get_payload(decode=True),
            "content_type": part.get_content_type(), "filename": part.get_filename(),
            "status_id": None}
        self._polls[media_id] = self.processing_polls
        if self.processing_polls:
            return 202, self._public(self.media[media_id]), "application/json"
        return self._media(media_id)

    def _media(self, media_id: str) -> tuple[int, Any, str]:
        media = self.media.get(media_id)
        if media is None:
            return 404, {"error": "Record not found"}, "application/json"
        if self._polls[media_id] > 0:
            self._polls[media_id] -= 1
            return self.processing_status, self._public(media), "application/json"
        media["url"] = f"{self.url}/system/media/{media_id}/{media['filename']}"
        return 200, self._public(media), "application/json"

    def _status(self, seen: Seen) -> tuple[int, Any, str]:
        key = seen.headers.get("idempotency-key")
        if key and (self.token, key) in self._keys:  # Mastodon: the status of that key
            return 200, self.statuses[self._keys[self.token, key]], "application/json"
        form = seen.form
        text = (form.get("status") or [""])[0]
        ids = form.get("media_ids[]") or form.get("media_ids") or []
        attached = [self.media[i] for i in ids if i in self.media]
        if len(attached) > self.limits["max_media_attachments"]:
            return 422, {"error": "Cannot attach more than "
                         f"{self.limits['max_media_attachments']} files"}, "application/json"
        if any(m["url"] is None for m in attached):
            return 422, {"error": "Cannot attach files that have not finished processing. "
                         "Try again in a moment!"}, "application/json"
        if not text.strip() and not attached:
            return 422, {"error": "Validation failed: Text can't be blank"}, "application/json"
        status_id = str(110_000_000_000_000_000 + next(self._ids))
        for media in attached:
            media["status_id"] = status_id
        self.statuses[status_id] = {
            "id": status_id, "created_at": datetime.now(UTC).isoformat(),
            "content": f"<p>{html.escape(text)}</p>", "text": text,
            "visibility": (form.get("visibility") or ["public"])[0],
            "url": f"{self.url}/@acme/{status_id}",
            "uri": f"{self.url}/users/acme/statuses/{status_id}",
            "media_attachments": [self._public(m) for m in attached],
            "idempotency_key": key}
        return 200, self.statuses[status_id], "application/json"
