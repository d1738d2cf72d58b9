"""The calendar feed server: a WSGI app any WSGI server can host.

``feed_app(ws)`` answers ``GET``/``HEAD /feeds/<token>.ics`` with the feed that token
opens (``text/calendar; charset=utf-8``, a strong ETag, Last-Modified, and 304 for
``If-None-Match`` or ``If-Modified-Since``). Unknown, rotated-away and revoked tokens
all get the same 404. Tokens never reach a log in full.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import socketserver
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from postflow.calendar import RenderedFeed, redact

if TYPE_CHECKING:
    from postflow.workspace import Workspace

__all__ = ["bind_error_message", "feed_app", "make_feed_server"]

log = logging.getLogger("postflow.web")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_TOKEN = re.compile(r"^/([A-Za-z0-9_-]{16,128})(?:\.ics)?$")
_NOT_FOUND = b"No such feed.\n"
_CACHE_CONTROL = "private, no-cache"


def feed_app(ws: Workspace, *, prefix: str = "/feeds") -> WSGIApp:
    """A WSGI app serving ``ws``'s feeds at ``<prefix>/<token>.ics``.

    Mounted under a path of its own (Flask's ``DispatcherMiddleware``, a Django view),
    pass ``prefix=""``.
    """
    prefix = prefix.rstrip("/")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        match = _TOKEN.match(path[len(prefix):]) if path.startswith(prefix + "/") else None
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [
                ("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", "0")])
            return [b""]
        feed = ws.feeds.find(match.group(1)) if match else None
        if feed is None:
            log.info("feed request with an unknown token %s: 404",
                     redact(match.group(1)) if match else "(none)")
            start_response("404 Not Found", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(_NOT_FOUND))), ("Cache-Control", "no-store")])
            return [b"" if method == "HEAD" else _NOT_FOUND]
        rendered = ws.calendar.render_feed(feed)
        validators = [
            ("ETag", rendered.etag),
            ("Last-Modified", format_datetime(rendered.last_modified, usegmt=True)),
            ("Cache-Control", _CACHE_CONTROL),
        ]
        if not_modified(environ, rendered):
            log.info("feed %s: 304", feed.name)
            # no Content-Length: RFC 9110 8.6 allows only the 200's length, and servers
            # such as waitress warn that a 304 sent fewer bytes than its Content-Length
            start_response("304 Not Modified", validators)
            return []
        log.info("feed %s: 200 (%d bytes)", feed.name, len(rendered.body))
        start_response("200 OK", [
            ("Content-Type", "text/calendar; charset=utf-8"),
            ("Content-Length", str(len(rendered.body))),
            ("Content-Disposition", f'inline; filename="{feed.name}.ics"'),
            *validators,
        ])
        return [b"" if method == "HEAD" else rendered.body]

    return app


def not_modified(environ: dict[str, Any], rendered: RenderedFeed) -> bool:
    """Whether the request's validators still match (RFC 9110 13.2.2).

    ``If-None-Match`` takes precedence; otherwise ``If-Modified-Since`` is compared at
    whole seconds, and a date that cannot be parsed is ignored.
    """
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        tags = [t.strip() for t in if_none_match.split(",")]
        # weak comparison, as If-None-Match specifies
        return "*" in tags or any(t.removeprefix("W/") == rendered.etag for t in tags)
    if_modified_since = environ.get("HTTP_IF_MODIFIED_SINCE")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return rendered.last_modified <= since.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ServerHandler(ServerHandler):
    """wsgiref's handler, except that a bodiless 304 or 204 gets no ``Content-Length: 0``.

    wsgiref adds that header to every response without a body, but a 304's
    ``Content-Length`` may only be the length of the 200 it stands for (RFC 9110 8.6),
    and a 204 must not have one.
    """

    def finish_content(self) -> None:
        # typeshed declares neither attribute; wsgiref sets both before the body
        status: str = getattr(self, "status", None) or ""
        if not getattr(self, "headers_sent", True) and status[:3] in ("204", "304"):
            self.send_headers()
            return
        super().finish_content()


class _RedactingHandler(WSGIRequestHandler):
    """Logs requests through the ``postflow.web`` logger with the token cut short."""

    def handle(self) -> None:
        """Handle a single HTTP request (as wsgiref does, with :class:`_ServerHandler`)."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error has been sent
            return
        handler = _ServerHandler(self.rfile, self.wfile,  # type: ignore[arg-type]
                                 self.get_stderr(), self.get_environ(), multithread=False)
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref logs through it
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        message = re.sub(r"(?<=[\"\s])/\S*", lambda m: loggable_path(m.group(0)),
                         format % args)
        log.debug("%s %s", self.address_string(), message)


def loggable_path(path: str) -> str:
    """``path`` as it may be logged: decoded as the server decodes it (percent-escapes,
    repeatedly), then cut after ``/feeds/`` and four characters (elsewhere: after the
    first segment and four characters), so no token, or guess at one, reaches a log in
    full."""
    decoded = path.split("?", 1)[0]
    for _ in range(3):
        decoded, before = urllib.parse.unquote(decoded), decoded
        if decoded == before:
            break
    cut = decoded.find("/feeds/")
    if cut >= 0:
        return decoded[:cut + len("/feeds/")] + redact(decoded[cut + len("/feeds/"):])
    _, first, *rest = decoded.split("/", 2)  # elsewhere: the first segment, then 4
    first = first if len(first) <= 24 else redact(first)
    return f"/{first}/{redact(rest[0])}" if rest and rest[0] else f"/{first}"


def make_feed_server(ws: Workspace, host: str = "127.0.0.1", port: int = 8080
                     ) -> WSGIServer:
    """A threaded stdlib HTTP server for :func:`feed_app` (``postflow serve --feeds``).

    A port that is taken, a host that does not resolve or is not an address of this
    machine raise :class:`OSError` (:func:`bind_error_message` words it for people).
    """
    return make_server(host, port, feed_app(ws), server_class=_ThreadingServer,
                       handler_class=_RedactingHandler)


def bind_error_message(exc: OSError, host: str, port: int) -> str:
    """One line saying why the feed server could not listen on ``host:port``."""
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return (f"cannot serve on {where}: host {host!r} is not known ({exc.strerror or exc}); "
                "pass --host with an address or name of this machine")
    if exc.errno == errno.EADDRINUSE:
        return (f"cannot serve on {where}: the port is already in use (another server, or "
                "another 'postflow serve'); pass another --port or stop the other one")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot serve on {where}: {host!r} is not an address of this machine; "
                "pass --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot serve on {where}: permission denied (ports below 1024 need "
                "privileges); pass a --port of 1024 or above")
    return f"cannot serve on {where}: {exc.strerror or exc}"
