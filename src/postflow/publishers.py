"""The built-in publishers: ``dry-run`` (sends nothing) and ``webhook`` (signed JSON POST).

A channel selects one with ``publisher="dry-run"`` or ``publisher="webhook"``; its
``settings`` configure it:

``dry-run``
    ``path``: a JSON Lines file that gets one line per publish (else the file named by
    ``POSTFLOW_DRY_RUN_FILE``; with neither, the line is logged at INFO on the logger
    ``postflow.publishers``).

``webhook``
    ``url`` (http or https, required); ``secret_env``: the environment variable holding
    the HMAC-SHA256 signing secret (no setting, no signature); ``timeout``: seconds to
    wait for the answer (default 10); ``deadline``: seconds the whole call may take,
    connecting, sending and reading included (default :data:`DEFAULT_DEADLINE`, 20).

The webhook sends ``Expect: 100-continue`` and holds the body back until the receiver
agrees (or stays silent for :attr:`WebhookPublisher.continue_wait` seconds), so a
connection lost before the body went out is a safe retry, and one lost after it is an
unknown outcome that is never resent blindly.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import io
import json
import logging
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import attrs

from postflow._fields import remote_id_problem, shown_url, url_problem
from postflow.exceptions import OutcomeUnknownError, PermanentError, RetryableError
from postflow.hookspecs import hookimpl
from postflow.publishing import Outgoing, Published, Publisher

if TYPE_CHECKING:
    import http.client

    from _typeshed import WriteableBuffer

__all__ = [
    "DEFAULT_DEADLINE",
    "DRY_RUN_ENV",
    "DryRunPublisher",
    "WebhookPublisher",
    "parse_retry_after",
    "postflow_register_publishers",
    "signature",
]

log = logging.getLogger("postflow.publishers")

DRY_RUN_ENV = "POSTFLOW_DRY_RUN_FILE"
"""The environment variable naming the dry-run file when a channel has no ``path``."""

DEFAULT_DEADLINE = 20.0
"""Seconds a webhook call may take in all (connect, send, read) without a ``deadline``
setting: the longest one publish can keep a worker busy."""

_MAX_LINE = 65536
_MAX_BODY = 1 << 20
_STATUS = re.compile(rb"HTTP/\d\.\d\s+(\d{3})")


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


# -- dry-run ---------------------------------------------------------------------------


class DryRunPublisher:
    """Records what would be sent, as one JSON line per publish; contacts nothing."""

    def path_for(self, item: Outgoing) -> str | None:
        """The JSONL file for ``item``: the channel's ``path``, else ``$POSTFLOW_DRY_RUN_FILE``."""
        path = item.channel.settings.get("path") or os.environ.get(DRY_RUN_ENV)
        return os.path.expanduser(path) if path else None

    def publish(self, item: Outgoing) -> Published:
        """Append (or log) the line for ``item``."""
        line = _dumps({
            "post_id": item.post_id, "revision": item.revision, "channel": item.channel.name,
            "network": item.channel.network, "text": item.text, "media": list(item.media),
            "links": list(item.links), "idempotency_key": item.idempotency_key,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds")}) + b"\n"
        path = self.path_for(item)
        if path is None:
            log.info("dry-run: %s", line[:-1].decode("utf-8"))
        else:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:  # one write of the whole line: appends of other processes never split it
                    written = os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise RetryableError(f"dry-run file {path}: {exc}") from exc
            if written != len(line):
                raise RetryableError(f"dry-run file {path}: short write ({written} of "
                                     f"{len(line)} bytes)")
        return Published(f"dry-run-{item.idempotency_key}")

    def check(self, item: Outgoing) -> Published | None:
        """Whether ``item``'s key is in the dry-run file (``None`` without a file)."""
        path = self.path_for(item)
        if path is None:
            return None
        needle = item.idempotency_key
        try:
            with open(path, "rb") as lines:
                for raw in lines:
                    if needle.encode() not in raw:
                        continue
                    try:
                        found = json.loads(raw)
                    except ValueError:  # a torn line (a write in progress)
                        continue
                    if isinstance(found, dict) and found.get("idempotency_key") == needle:
                        return Published(f"dry-run-{needle}")
        except FileNotFoundError:
            return None
        return None


# -- webhook ---------------------------------------------------------------------------


def signature(body: bytes, secret: str | bytes) -> str:
    """The ``X-Postflow-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (seconds or an HTTP date), or ``None``."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


@attrs.frozen
class _Target:
    """A webhook channel's settings, checked."""

    channel: str
    scheme: str
    host: str
    port: int | None
    path: str
    timeout: float
    deadline: float
    secret: str | None

    @property
    def where(self) -> str:
        """The channel and the server, never the path (it may hold a token)."""
        port = f":{self.port}" if self.port else ""
        return f"channel {self.channel!r}: webhook {self.scheme}://{self.host}{port}"

    @classmethod
    def of(cls, item: Outgoing) -> _Target:
        name, settings = item.channel.name, item.channel.settings
        url = settings.get("url")

        def bad(message: str) -> PermanentError:
            return PermanentError(f"channel {name!r}: {message}")

        if not url:
            raise bad("the webhook publisher needs the setting 'url'")
        # a URL that cannot be sent fails for good, at once; the message never quotes
        # the URL (its path or query may hold a token)
        problem = url_problem(url)
        if problem is not None:
            raise bad(f"setting 'url' {problem}")
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        assert parts.hostname is not None  # url_problem checked it

        def seconds(setting: str, default: str) -> float:
            try:
                value = float(settings.get(setting, default))
            except ValueError:
                value = -1.0
            if not 0 < value < float("inf"):
                raise bad(f"setting {setting!r} must be a positive number of seconds, "
                          f"got {settings.get(setting)!r}")
            return value

        timeout = seconds("timeout", "10")
        deadline = seconds("deadline", f"{DEFAULT_DEADLINE:g}")
        secret = None
        env = settings.get("secret_env")
        if env:
            secret = os.environ.get(env)
            if not secret:
                raise bad(f"the environment variable {env} (setting 'secret_env') is not "
                          "set")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(name, parts.scheme, parts.hostname, port, path, timeout, deadline, secret)


class _DeadlinePassed(TimeoutError):
    """The call's overall deadline passed."""


class _Clock:
    """A call's deadline: what is left of it, as a socket timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        """At most ``cap`` seconds, and no more than is left; raises once none is."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed(f"the deadline of {self.seconds:g} s passed")
        return min(cap, left)

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def describe(self, exc: BaseException) -> str:
        if self.passed() and not isinstance(exc, _DeadlinePassed):
            return f"the deadline of {self.seconds:g} s passed ({_describe(exc)})"
        return _describe(exc)


class _SocketReader(io.RawIOBase):
    """A socket's incoming bytes; unlike ``socket.makefile`` it survives a timeout.

    Every read waits at most :attr:`wait` seconds and never past the call's deadline,
    so a receiver dripping one byte at a time cannot stretch the call.
    """

    def __init__(self, sock: socket.socket, clock: _Clock, wait: float) -> None:
        self._sock = sock
        self._clock = clock
        self.wait = wait

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(self._clock.left(self.wait))
        return self._sock.recv_into(buffer)


class _Replay(io.RawIOBase):
    """``head`` again, then the rest of a buffered reader."""

    def __init__(self, head: bytes, rest: io.BufferedReader[Any]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        return self._rest.readinto1(view)


class _FileSocket:
    """What ``HTTPResponse`` needs of a socket: ``makefile``, answering ``file``."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def makefile(self, mode: str) -> BinaryIO:
        return self._file


class _NoExpect(Exception):
    """The receiver answered 417 to ``Expect: 100-continue``."""


class WebhookPublisher:
    """POSTs each post as signed JSON to the channel's ``url``.

    Failures are classified by whether the body went out: any failure before it did is
    a :class:`~postflow.RetryableError`; a timeout, reset or empty answer after it is an
    :class:`~postflow.OutcomeUnknownError`. 2xx is published, 429/503 and other 5xx are
    retried (honouring ``Retry-After``), 3xx (redirects are not followed) and other 4xx
    are a :class:`~postflow.PermanentError` (408 is retried: the request was not
    received whole).
    """

    def __init__(self, *, connect_timeout: float = 5.0, continue_wait: float = 1.0) -> None:
        self.connect_timeout = connect_timeout
        """Seconds to connect (and complete TLS)."""
        self.continue_wait = continue_wait
        """Seconds to wait for ``100 Continue`` before sending the body anyway."""

    @staticmethod
    def body(item: Outgoing) -> bytes:
        """The JSON document sent for ``item`` (sorted keys, compact, UTF-8)."""
        return _dumps({
            "post_id": item.post_id, "revision": item.revision, "channel": item.channel.name,
            "network": item.channel.network, "text": item.text, "media": list(item.media),
            "links": list(item.links), "idempotency_key": item.idempotency_key,
            "scheduled_at": item.scheduled_at.isoformat() if item.scheduled_at else None})

    def publish(self, item: Outgoing) -> Published:
        """POST ``item``; return the receiver's ``id`` and ``url`` (else the key)."""
        from postflow._version import version

        target = _Target.of(item)
        body = self.body(item)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   "User-Agent": f"postflow/{version()}",
                   "Idempotency-Key": item.idempotency_key}
        if target.secret is not None:
            headers["X-Postflow-Signature"] = signature(body, target.secret)
        clock = _Clock(target.deadline)  # one deadline for the whole call, 417 included
        try:
            return self._post(target, item, body, headers, clock, expect=True)
        except _NoExpect:
            return self._post(target, item, body, headers, clock, expect=False)

    def _connect(self, target: _Target, clock: _Clock) -> socket.socket:
        """A connected socket (TLS done for https), within the deadline."""
        port = target.port or (443 if target.scheme == "https" else 80)
        sock = socket.create_connection((target.host, port),
                                        timeout=clock.left(self.connect_timeout))
        if target.scheme == "https":
            import ssl  # only for https webhooks: it is slow to import

            try:
                sock.settimeout(clock.left(self.connect_timeout))  # the whole handshake
                context = ssl.create_default_context()
                context.set_alpn_protocols(["http/1.1"])
                return context.wrap_socket(sock, server_hostname=target.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _post(self, target: _Target, item: Outgoing, body: bytes, headers: dict[str, str],
              clock: _Clock, *, expect: bool) -> Published:
        import http.client  # only when a webhook publishes

        conn = http.client.HTTPConnection(target.host, target.port)
        try:
            try:
                conn.sock = sock = self._connect(target, clock)
                conn.putrequest("POST", target.path)
                for name, value in headers.items():
                    conn.putheader(name, value)
                if expect:
                    conn.putheader("Expect", "100-continue")
                sock.settimeout(clock.left(target.timeout))
                conn.endheaders()  # the headers only
            except (OSError, http.client.HTTPException) as exc:
                raise RetryableError(f"{target.where}: the request could not be sent "
                                     f"({clock.describe(exc)})") from exc
            reader = io.BufferedReader(_SocketReader(sock, clock, target.timeout))
            early = self._await_continue(reader, target, clock) if expect else b""
            if not early:
                try:
                    sock.settimeout(clock.left(target.timeout))
                    sock.sendall(body)
                except OSError as exc:
                    raise RetryableError(f"{target.where}: the connection failed before the "
                                         f"body was sent ({clock.describe(exc)})") from exc
            file = io.BufferedReader(_Replay(early, reader)) if early else reader
            response = http.client.HTTPResponse(cast(socket.socket, _FileSocket(file)),
                                                method="POST")
            try:
                response.begin()
            except (OSError, http.client.HTTPException) as exc:
                if early:
                    raise RetryableError(f"{target.where}: a broken answer before the body "
                                         f"was sent ({clock.describe(exc)})") from exc
                raise OutcomeUnknownError(
                    f"{target.where}: no answer after the post was sent "
                    f"({clock.describe(exc)}); it may have been published") from exc
            try:
                data = response.read(_MAX_BODY)
            except (OSError, http.client.HTTPException):
                data = b""  # the status is what counts
            return _classify(target, item, response.status, response.headers, data,
                             sent=not early)
        finally:
            conn.close()

    def _await_continue(self, reader: io.BufferedReader[Any], target: _Target,
                        clock: _Clock) -> bytes:
        """Wait for ``100 Continue``: ``b""`` to send the body, or the status line of a
        final answer given before it; a connection closed meanwhile, or the deadline
        passing, is retryable (the body has not gone out)."""
        raw = cast(_SocketReader, reader.raw)
        try:
            raw.wait = self.continue_wait
            try:
                if not reader.peek(1):
                    raise ConnectionResetError("closed by the receiver")
            except TimeoutError:
                if clock.passed():
                    raise
                return b""  # the receiver ignores Expect: send the body anyway
            raw.wait = target.timeout
            line = reader.readline(_MAX_LINE)
            match = _STATUS.match(line)
            status = int(match.group(1)) if match else 0
            if status == 100:
                while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                return b""
        except OSError as exc:
            raise RetryableError(f"{target.where}: the connection failed before the body "
                                 f"was sent ({clock.describe(exc)})") from exc
        if status == 417:
            raise _NoExpect
        return line


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _excerpt(data: bytes, limit: int = 200) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    if not text:
        return ""
    return ": " + (text if len(text) <= limit else text[:limit] + "...")


def _classify(target: _Target, item: Outgoing, status: int, headers: http.client.HTTPMessage,
              data: bytes, *, sent: bool) -> Published:
    """The result of an answer with ``status``, or the error it means."""
    where = f"{target.where} answered HTTP {status}"
    if 200 <= status < 300 and not sent:
        # a success for a post whose body it never received cannot be believed
        raise RetryableError(f"{where} before the body was sent")
    if 200 <= status < 300:
        remote_id, url = item.idempotency_key, None
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            if isinstance(answer.get("id"), str | int) and not isinstance(answer["id"], bool):
                remote_id = str(answer["id"])
            if answer.get("url") is not None:
                url = answer["url"]
        # the receiver's answer is checked like a person's input: it is stored and shown
        problem = remote_id_problem(remote_id)
        if problem is None and url is not None:
            problem = url_problem(url)
            field = "url"
        else:
            field = "id"
        if problem is not None:
            raise OutcomeUnknownError(
                f"{where}, but the {field!r} of its answer {problem}; the post was probably "
                "published: look at the receiver, then settle it with resolve_delivery")
        return Published(remote_id, url)
    if status in (429, 503):
        raise RetryableError(where + _excerpt(data),
                             retry_after=parse_retry_after(headers.get("Retry-After")))
    if 500 <= status < 600 or status == 408:
        raise RetryableError(where + _excerpt(data))
    if 300 <= status < 400:
        location = headers.get("Location")
        raise PermanentError(f"{where}: redirects are not followed"
                             + (f" (to {shown_url(location)})" if location else "")
                             + "; set the channel's 'url' to the final address")
    if 400 <= status < 500:
        raise PermanentError(where + _excerpt(data))
    if sent:
        raise OutcomeUnknownError(f"{where}, which is not a final answer; the post may "
                                  "have been published")
    raise RetryableError(f"{where} before the body was sent")


@hookimpl
def postflow_register_publishers(register: Callable[[str, Publisher], None]) -> None:
    """Register ``dry-run`` and ``webhook``."""
    register("dry-run", DryRunPublisher())
    register("webhook", WebhookPublisher())
