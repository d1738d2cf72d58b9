"""Notification delivery channels: the protocol, the rendered :class:`Message`, and the
built-ins ``email``, ``webhook``, ``inbox`` and ``null``.

A channel is any object with ``configure(settings)`` and ``send(message)``, registered by
a plugin through the ``postflow_register_notification_channels`` hook. ``configure``
gets the channel's ``[channels.NAME]`` table (an empty mapping when there is none) and
raises :class:`~postflow.ConfigError` naming a bad or missing key; ``send`` raises
:class:`~postflow.DeliveryError` when the message did not go out, with
``retryable=True`` when trying again later may succeed. Every message carries its
``dedup_key``: a repeat after a crash (between the receiver's acceptance and the outbox
commit) is the same message for the receiver too (the email's Message-ID, the webhook's
``Idempotency-Key``).

Settings of the built-ins:

``email``
    ``host`` (required), ``port`` (25; 465 with ``ssl``), ``starttls`` (false),
    ``ssl`` (false: implicit TLS), ``cafile`` (a CA bundle to trust for TLS instead of
    the system's), ``username`` and ``password_env`` (the environment variable holding
    the password; read at send time), ``from`` (the sender; the deliverer passes the
    ``from`` of ``[settings]`` when the table has none), ``timeout`` (10 s).
``webhook``
    ``url`` (required, http or https), ``secret_env`` (the environment variable holding
    the HMAC-SHA256 key; the body's signature goes in ``X-Postflow-Signature:
    sha256=<hex>``), ``timeout`` (10 s).
``inbox``, ``null``
    no settings.

This module is a built-in plugin loaded with every workspace: ``smtplib``, ``email``,
``ssl`` and ``http.client`` are imported only when a message is sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from postflow._fields import LIMITS, url_problem, visible
from postflow.exceptions import ConfigError, DeliveryError
from postflow.hookspecs import hookimpl
from postflow.models import Member
from postflow.notices import InboxItem

if TYPE_CHECKING:
    import smtplib
    import ssl
    from email.message import EmailMessage

    from postflow.storage import Storage

__all__ = [
    "EmailChannel",
    "InboxChannel",
    "Message",
    "NotificationChannel",
    "NullChannel",
    "WebhookChannel",
    "postflow_register_notification_channels",
    "webhook_signature",
]

_HOST = re.compile(r"[A-Za-z0-9._:-]{1,253}")
MAX_TIMEOUT = 600.0
"""The longest ``timeout`` a channel setting may name, in seconds."""
_MAX_ANSWER = 64 * 1024
"""Bytes of a webhook's answer read (and thrown away) at most."""


class NotificationChannel(Protocol):
    """A way to deliver a rendered notification (email, webhook, Slack …)."""

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Take the channel's ``[channels.NAME]`` settings; ConfigError on a bad key."""

    def send(self, message: Message) -> None:
        """Deliver ``message``; DeliveryError when it did not go out."""


@attrs.frozen
class Message:
    """One rendered notification for one recipient through one channel.

    A digest is one message for several outbox rows: ``events`` holds each row's
    payload (with its ``event`` kind), oldest first.
    """

    dedup_key: str
    """Stable for the outbox rows it delivers: a repeat is recognisably the same."""
    recipient: Member
    subject: str
    text: str
    html: str | None
    events: tuple[Mapping[str, Any], ...] = attrs.field(hash=False)
    urgent: bool = False
    unsubscribe_url: str | None = None
    """The member's preferences page in the host app (``List-Unsubscribe``)."""
    channel: str = ""
    post_url: str | None = None
    """The post's page in the host app, when the message is about one post."""


# -- settings --------------------------------------------------------------------------


class _Settings:
    """A channel's settings table, checked key by key."""

    def __init__(self, channel: str, settings: Mapping[str, Any], known: Sequence[str]):
        self.channel = channel
        self.settings = settings
        unknown = sorted(f"{k!s:.100}" for k in settings if k not in known)
        if unknown:
            raise ConfigError(f"channels.{channel}: unknown setting {unknown[0]!r} "
                              f"(known: {', '.join(known) or 'none'})")

    def bad(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"channels.{self.channel}.{key} {problem}")

    def text(self, key: str, default: str | None = None, *, required: bool = False
             ) -> str | None:
        value = self.settings.get(key)
        if value is None:
            value = default
        if value is None:
            if required:
                raise ConfigError(f"channels.{self.channel}: the {self.channel} channel "
                                  f"needs the setting {key!r}")
            return None
        if not isinstance(value, str) or not value.isprintable() or not visible(value) \
                or len(value) > LIMITS["setting"]:
            raise self.bad(key, f"must be non-empty printable text of at most "
                           f"{LIMITS['setting']:,} characters, got {value!r:.100}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.settings.get(key, default)
        if not isinstance(value, bool):
            raise self.bad(key, f"must be true or false, got {value!r:.100}")
        return value

    def number(self, key: str, default: float, *, whole: bool = False,
               low: float = 0.0, high: float = float("inf")) -> float:
        value = self.settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or (whole and not isinstance(value, int)) or not low < value <= high:
            kind = "a whole number" if whole else "a number"
            raise self.bad(key, f"must be {kind} above {low:g}"
                           + (f" and at most {high:g}" if high != float("inf") else "")
                           + f", got {value!r:.100}")
        return float(value)

    def env(self, key: str) -> str | None:
        name = self.text(key)
        if name is not None and not name.replace("_", "a").isalnum():
            raise self.bad(key, f"must name an environment variable, got {name!r:.100}")
        return name


def _secret(channel: str, key: str, env: str) -> str:
    """The value of the environment variable ``env`` (named by setting ``key``)."""
    value = os.environ.get(env)
    if not value:
        raise DeliveryError(f"channel {channel!r}: the environment variable {env} (setting "
                            f"{key!r}) is not set", retryable=False)
    return value


class _Watchdog:
    """Shuts the socket of a connection down once the whole call has taken twice the
    channel's ``timeout``: socket timeouts are per read, so a server dripping its
    answer one byte at a time could otherwise hold a delivery pass for hours."""

    def __init__(self, timeout: float, sock: Callable[[], socket.socket | None]) -> None:
        self.seconds = 2 * timeout
        self.fired = False
        self._sock = sock
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self._sock()
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to cut
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def note(self) -> str:
        """What to add to an error's reason when the watchdog cut the call."""
        return f" (the call took over {self.seconds:g} s in all)" if self.fired else ""


def _one_line(value: str, limit: int = 200) -> str:
    """``value`` as one printable line of at most ``limit`` characters (for headers and
    error messages: text from templates or from a remote server)."""
    line = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- email -----------------------------------------------------------------------------


_EMAIL_KEYS = ("host", "port", "starttls", "ssl", "cafile", "username", "password_env",
               "from", "timeout")


@attrs.frozen
class _SmtpTarget:
    host: str
    port: int
    starttls: bool
    ssl: bool
    cafile: str | None
    username: str | None
    password_env: str | None
    sender: str
    timeout: float


class EmailChannel:
    """Sends each message as a ``multipart/alternative`` email (text and, when the
    template has one, HTML) through an SMTP server, with ``smtplib``.

    The ``Message-ID`` is ``<dedup_key@postflow>``; ``List-Unsubscribe`` points at the
    member's preferences page when the message has one. A 5xx refusal is final; a 4xx
    answer, a connection failure, a timeout or a connection dropped during the transfer
    is retryable.
    """

    def __init__(self) -> None:
        self._target: _SmtpTarget | None = None
        self._problem = "channel 'email' is not configured (no [channels.email] table)"

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Check and take the ``[channels.email]`` settings."""
        s = _Settings("email", settings, _EMAIL_KEYS)
        use_ssl = s.flag("ssl")
        starttls = s.flag("starttls")
        if use_ssl and starttls:
            raise s.bad("starttls", "cannot be combined with 'ssl' (implicit TLS)")
        username = s.text("username")
        password_env = s.env("password_env")
        if password_env is not None and username is None:
            raise s.bad("password_env", "needs the setting 'username'")
        sender = s.text("from", "postflow@localhost")
        assert sender is not None
        if "@" not in sender or any(c in sender for c in "\r\n<>,;"):
            raise s.bad("from", f"must be one email address, got {sender!r:.100}")
        host = s.text("host", required=True)
        assert host is not None
        if not _HOST.fullmatch(host):
            raise s.bad("host", f"must be a host name or IP address, got {host!r:.100}")
        self._target = _SmtpTarget(
            host=host, port=int(s.number("port", 465 if use_ssl else 25, whole=True,
                                         high=65535)),
            starttls=starttls, ssl=use_ssl, cafile=s.text("cafile"), username=username,
            password_env=password_env, sender=sender,
            timeout=s.number("timeout", 10, high=MAX_TIMEOUT))

    def compose(self, message: Message) -> EmailMessage:
        """The email for ``message`` (needs the recipient's address)."""
        import email.utils
        from email.message import EmailMessage

        target = self._checked()
        address = self._address(message)
        mail = EmailMessage()
        mail["Subject"] = _one_line(message.subject, 250)
        mail["From"] = target.sender
        mail["To"] = email.utils.formataddr((message.recipient.name, address))
        mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = f"<{message.dedup_key}@postflow>"
        mail["Auto-Submitted"] = "auto-generated"
        if message.urgent:
            mail["Importance"] = "high"
        if message.unsubscribe_url and url_problem(message.unsubscribe_url) is None:
            mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail.set_content(message.text)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        return mail

    @staticmethod
    def _address(message: Message) -> str:
        address = message.recipient.email
        if not address or any(c in address for c in "\r\n<>,; ") or "@" not in address:
            raise DeliveryError(f"member {message.recipient.name!r} has no usable email "
                                "address", retryable=False)
        return address

    def send(self, message: Message) -> None:
        """Send ``message`` through the configured SMTP server."""
        import ssl

        target = self._checked()
        mail = self.compose(message)
        where = f"channel 'email': SMTP {target.host}:{target.port}"
        password = None
        if target.password_env is not None:
            password = _secret("email", "password_env", target.password_env)
        try:
            context = (ssl.create_default_context(cafile=target.cafile)
                       if target.ssl or target.starttls else None)
        except OSError as exc:
            raise DeliveryError(f"{where}: cafile: {exc}", retryable=False) from exc
        client = self._client(target, context)
        with _Watchdog(target.timeout, lambda: getattr(client, "sock", None)) as watchdog:
            self._deliver(client, target, context, mail, password, where, watchdog,
                          self._address(message))

    def _deliver(self, smtp: smtplib.SMTP, target: _SmtpTarget,
                 context: ssl.SSLContext | None, mail: EmailMessage, password: str | None,
                 where: str, watchdog: _Watchdog, address: str) -> None:
        import smtplib

        try:
            smtp.connect(target.host, target.port)
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise self._failure(where + watchdog.note(), "connecting", exc) from exc
        try:
            if target.starttls:
                smtp.ehlo()
                smtp.starttls(context=context)
                smtp.ehlo()
            if target.username is not None and password is not None:
                smtp.login(target.username, password)
            refused = smtp.send_message(mail, target.sender, [address])
            if refused:  # pragma: no cover - one recipient: smtplib raises instead
                raise DeliveryError(f"{where}: refused {refused}", retryable=False)
        except (OSError, smtplib.SMTPException) as exc:
            raise self._failure(where + watchdog.note(), "sending", exc) from exc
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

    @staticmethod
    def _client(target: _SmtpTarget, context: ssl.SSLContext | None) -> smtplib.SMTP:
        """The SMTP client, not yet connected (``connect`` runs under the watchdog)."""
        import smtplib

        client = (smtplib.SMTP_SSL(timeout=target.timeout, context=context) if target.ssl
                  else smtplib.SMTP(timeout=target.timeout))
        # the TLS server name, as SMTP(host) sets it (connecting at once, unwatched)
        client._host = target.host  # type: ignore[attr-defined]
        return client

    @staticmethod
    def _failure(where: str, doing: str, exc: BaseException) -> DeliveryError:
        """The DeliveryError for ``exc``: 5xx answers and TLS certificate or protocol
        problems are final; everything else (4xx, refused or dropped connections,
        timeouts) may pass."""
        import smtplib
        import ssl

        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            answer = "; ".join(f"{code} {_one_line(text.decode('utf-8', 'replace'), 120)}"
                               for code, text in exc.recipients.values())
            return DeliveryError(f"{where}: the recipient was refused ({answer})",
                                 retryable=all(400 <= c < 500 for c in codes))
        if isinstance(exc, smtplib.SMTPResponseException):
            text = exc.smtp_error
            said = _one_line(text.decode("utf-8", "replace") if isinstance(text, bytes)
                             else str(text), 120)
            return DeliveryError(f"{where}: the server answered {exc.smtp_code} {said} "
                                 f"while {doing}", retryable=not 500 <= exc.smtp_code < 600)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryError(f"{where}: {_one_line(str(exc))}", retryable=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(f"{where}: TLS certificate not trusted "
                                 f"({_one_line(str(exc))})", retryable=False)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return DeliveryError(f"{where}: the server closed the connection while "
                                 f"{doing} ({_one_line(str(exc)) or 'no answer'})")
        return DeliveryError(f"{where}: {type(exc).__name__} while {doing} "
                             f"({_one_line(str(exc))})")

    def _checked(self) -> _SmtpTarget:
        if self._target is None:
            raise DeliveryError(self._problem, retryable=False)
        return self._target


# -- webhook ---------------------------------------------------------------------------


def webhook_signature(body: bytes, secret: str | bytes) -> str:
    """The ``X-Postflow-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``
    (the same scheme as the webhook publisher)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


@attrs.frozen
class _HttpTarget:
    scheme: str
    host: str
    port: int | None
    path: str
    secret_env: str | None
    timeout: float

    @property
    def where(self) -> str:
        """The server, never the path or query (they may hold a token)."""
        return (f"channel 'webhook': {self.scheme}://{self.host}"
                + (f":{self.port}" if self.port else ""))


class WebhookChannel:
    """POSTs each message as JSON to ``url``, signed with HMAC-SHA256 when
    ``secret_env`` is set, with ``Idempotency-Key: <dedup_key>``.

    2xx is delivered; 5xx, 408, 429, timeouts and connection failures are retryable;
    3xx (redirects are not followed) and other 4xx are final. Nothing of the answer is
    used but its status code.
    """

    def __init__(self) -> None:
        self._target: _HttpTarget | None = None

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Check and take the ``[channels.webhook]`` settings."""
        s = _Settings("webhook", settings, ("url", "secret_env", "timeout"))
        url = s.text("url", required=True)
        problem = url_problem(url)
        if problem is not None:  # never quote the URL: it may hold a token
            raise s.bad("url", problem)
        assert url is not None
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None
        self._target = _HttpTarget(
            scheme=parts.scheme, host=parts.hostname, port=parts.port,
            path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            secret_env=s.env("secret_env"), timeout=s.number("timeout", 10, high=MAX_TIMEOUT))

    @staticmethod
    def body(message: Message) -> bytes:
        """The JSON document sent for ``message`` (sorted keys, compact, UTF-8)."""
        return json.dumps({
            "dedup_key": message.dedup_key, "recipient": message.recipient.name,
            "channel": message.channel, "subject": message.subject, "text": message.text,
            "html": message.html, "urgent": message.urgent,
            "post_url": message.post_url, "unsubscribe_url": message.unsubscribe_url,
            "events": [dict(e) for e in message.events]},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
            default=str).encode("utf-8")

    def send(self, message: Message) -> None:
        """POST ``message``."""
        import http.client

        from postflow._version import version

        target = self._target
        if target is None:
            raise DeliveryError("channel 'webhook' is not configured (no "
                                "[channels.webhook] table)", retryable=False)
        body = self.body(message)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   "User-Agent": f"postflow/{version()}",
                   "Idempotency-Key": message.dedup_key}
        if target.secret_env is not None:
            headers["X-Postflow-Signature"] = webhook_signature(
                body, _secret("webhook", "secret_env", target.secret_env))
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            conn = http.client.HTTPSConnection(target.host, target.port,
                                               timeout=target.timeout)
        else:
            conn = http.client.HTTPConnection(target.host, target.port,
                                              timeout=target.timeout)
        try:
            with _Watchdog(target.timeout, lambda: conn.sock) as watchdog:
                try:
                    conn.request("POST", target.path, body=body, headers=headers)
                    response = conn.getresponse()
                    status = response.status
                    response.read(_MAX_ANSWER)  # drain a little; the content is not used
                except TimeoutError as exc:
                    raise DeliveryError(f"{target.where}: no answer within "
                                        f"{target.timeout:g} s") from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise DeliveryError(f"{target.where}: {type(exc).__name__} "
                                        f"({_one_line(str(exc), 120)})"
                                        f"{watchdog.note()}") from exc
        finally:
            conn.close()
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in (408, 429)
        raise DeliveryError(f"{target.where}: answered HTTP {status}", retryable=retryable)


# -- inbox and null --------------------------------------------------------------------


class InboxChannel:
    """Writes each message to the recipient's in-app inbox (``ws.inbox(member)``).

    It needs the workspace's storage: the deliverer calls :meth:`bind` with it before
    sending (an unbound inbox channel refuses to send).
    """

    def __init__(self) -> None:
        self._storage: Storage | None = None
        self._clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def configure(self, settings: Mapping[str, Any]) -> None:
        """The inbox has no settings."""
        _Settings("inbox", settings, ())

    def bind(self, storage: Storage, clock: Callable[[], datetime] | None = None) -> None:
        """Deliver into ``storage``, stamping items with ``clock()``."""
        self._storage = storage
        if clock is not None:
            self._clock = clock

    @staticmethod
    def item(message: Message, at: datetime) -> InboxItem:
        """The inbox item for ``message``."""
        kinds = {str(e.get("event", "")) for e in message.events}
        posts = {e.get("post_id") for e in message.events}
        post_id = posts.pop() if len(posts) == 1 else None
        single = len(message.events) == 1
        payload: Mapping[str, Any] = (dict(message.events[0]) if single else
                                      {"events": [dict(e) for e in message.events]})
        return InboxItem(
            id=0, member=message.recipient.name, dedup_key=message.dedup_key,
            event=kinds.pop() if len(kinds) == 1 else "digest",
            title=message.subject, body=message.text, created_at=at,
            post_id=post_id if isinstance(post_id, int) else None, payload=payload)

    def send(self, message: Message) -> None:
        """Add ``message`` to the inbox (a repeat of its dedup key is skipped)."""
        if self._storage is None:
            raise DeliveryError("channel 'inbox' has no storage (the deliverer binds it)",
                                retryable=False)
        self._storage.add_inbox([self.item(message, self._clock())])


class NullChannel:
    """Delivers nothing (benchmarks and tests); counts what it was given."""

    def __init__(self) -> None:
        self.sent = 0

    def configure(self, settings: Mapping[str, Any]) -> None:
        """The null channel has no settings."""
        _Settings("null", settings, ())

    def send(self, message: Message) -> None:
        self.sent += 1


@hookimpl
def postflow_register_notification_channels(
    register: Callable[[str, NotificationChannel], None],
) -> None:
    """postflow's own channels: ``email``, ``webhook``, ``inbox`` and ``null``."""
    register("email", EmailChannel())
    register("webhook", WebhookChannel())
    register("inbox", InboxChannel())
    register("null", NullChannel())
