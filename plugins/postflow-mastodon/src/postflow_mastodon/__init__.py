"""Publish postflow posts to Mastodon through its statuses API.

Install the distribution and postflow finds it through the ``postflow`` entry-point
group; it registers the publisher ``mastodon``, which sends the posts of every channel
on the network ``mastodon`` (or naming ``publisher="mastodon"``). Channel settings:

``base_url``
    The server, ``https://mastodon.example`` (plain ``http`` only for localhost).
``token_env``
    The environment variable holding the account's access token (scopes
    ``write:statuses`` and ``write:media``). The token itself is never stored, logged
    or put into an error message.
``visibility`` (optional)
    ``public``, ``unlisted``, ``private`` or ``direct``; default: the account's own.

Before the first post to a server the publisher reads ``GET /api/v2/instance`` once
(cached on the publisher) for the character limit, the characters reserved per URL and
the most media a status may carry, counts the text the way Mastodon does
(:func:`count_characters`) and refuses a post over either limit with a
:class:`~postflow.PermanentError`, before any upload. It then fetches each media URL,
uploads it to ``POST /api/v2/media`` (waiting on ``GET /api/v1/media/:id`` while the
server processes it) and creates the status with ``POST /api/v1/statuses``, sending the
delivery's idempotency key as the ``Idempotency-Key`` header.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import mimetypes
import os
import posixpath
import re
import ssl
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import unquote, urlencode, urljoin, urlsplit

from postflow import OutcomeUnknownError, PermanentError, PublishError, RetryableError, hookimpl
from postflow.models import Channel
from postflow.publishing import Outgoing, Published, Publisher

__all__ = [
    "InstanceLimits",
    "MastodonPlugin",
    "MastodonPublisher",
    "Settings",
    "count_characters",
    "grapheme_count",
    "postflow_register_publishers",
    "retry_after",
]

try:
    __version__ = version("postflow-mastodon")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

log = logging.getLogger("postflow_mastodon")

VISIBILITIES = frozenset({"public", "unlisted", "private", "direct"})
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_API_BODY_LIMIT = 4 << 20
_MAX_WAIT = 86400.0  # a day: a longer wait is surely a bad header
_USER_AGENT = f"postflow-mastodon/{__version__}"


# -- counting as Mastodon does -----------------------------------------------------------

# Mastodon (app/validators/status_length_validator.rb) replaces every URL matched by
# FetchLinkCardService::URL_PATTERN (twitter-text's URL rules, http/https only) by
# characters_reserved_per_url characters, then every mention matched by
# Account::MENTION_RE by "@" and its username, and counts grapheme clusters.
_LATIN = "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0300-\u036f\u1e00-\u1eff"
_CYRILLIC = "\u0400-\u04ff"
_PATH_CHARS = rf"A-Za-z0-9{_LATIN}{_CYRILLIC}!*';:=+,.$/%#\[\]\-\u2013_~&|@()"
_QUERY_CHARS = r"A-Za-z0-9!?*'();:&=+$/%#\[\]\-_.,~|@"
_URL = re.compile(
    r"(?<![A-Za-z0-9@\uff20$#\uff03])"  # twitter-text's valid_url_preceding_chars
    r"https?://"
    r"(?:[^\W_](?:[\w-]*[^\W_])?\.)+"  # subdomains and domain
    r"(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)"  # a top-level domain (not checked against IANA's list)
    r"(?::\d{1,5})?"
    rf"(?:/[{_PATH_CHARS}]*)?"
    rf"(?:\?[{_QUERY_CHARS}]*)?",
    re.IGNORECASE,
)
_URL_END = re.compile(rf"[A-Za-z0-9=_#/+\-&{_LATIN}{_CYRILLIC}]")
_MENTION = re.compile(
    r"(?<![=/\w])@((?i:[a-z0-9_]+(?:[.-]+[a-z0-9_]+)*))(?:@\w+(?:[.-]+\w+)*)?"
)
_RUBY_WHITESPACE = " \t\n\v\f\r\x00"


def _url_length(url: str) -> int:
    """How much of a matched URL twitter-text keeps: no trailing punctuation, and a
    closing parenthesis only when it closes one opened in the URL."""
    end = len(url)
    while end:
        last = url[end - 1]
        if last == ")" and url.count("(", 0, end) >= url.count(")", 0, end):
            break
        if _URL_END.match(last):
            break
        end -= 1
    return end


def count_characters(text: str, characters_reserved_per_url: int = 23) -> int:
    """The length of ``text`` as a Mastodon server counts it against its limit.

    Leading and trailing whitespace is stripped; every http(s) URL counts
    ``characters_reserved_per_url``; a mention ``@user@domain`` counts as ``@user``;
    the rest counts in grapheme clusters (:func:`grapheme_count`).
    """
    stripped = text.strip(_RUBY_WHITESPACE)
    placeholder = "x" * characters_reserved_per_url

    def url(match: re.Match[str]) -> str:
        found = match.group()
        keep = _url_length(found)
        return placeholder + found[keep:]

    countable = _URL.sub(url, stripped)
    countable = _MENTION.sub(lambda m: "@" + m.group(1), countable)
    return grapheme_count(countable)


def _hangul(cp: int) -> str:
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return "L"
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return "V"
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return "T"
    if 0xAC00 <= cp <= 0xD7A3:
        return "LV" if (cp - 0xAC00) % 28 == 0 else "LVT"
    return ""


def _kind(ch: str) -> str:
    cp = ord(ch)
    if ch == "\r":
        return "CR"
    if ch == "\n":
        return "LF"
    if cp == 0x200D:
        return "ZWJ"
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return "RI"
    hangul = _hangul(cp)
    if hangul:
        return hangul
    category = unicodedata.category(ch)
    if (category in ("Mn", "Me", "Mc") or cp == 0x200C or 0x1F3FB <= cp <= 0x1F3FF
            or 0xE0020 <= cp <= 0xE007F):
        return "Extend"
    if category in ("Cc", "Zl", "Zp"):
        return "Control"
    if category == "So":
        return "Pictographic"
    return "Other"


_HANGUL_JOINS = {("L", "L"), ("L", "V"), ("L", "LV"), ("L", "LVT"), ("LV", "V"),
                 ("LV", "T"), ("V", "V"), ("V", "T"), ("LVT", "T"), ("T", "T")}


def grapheme_count(text: str) -> int:
    """The number of user-perceived characters (extended grapheme clusters) in ``text``.

    Follows the rules of Unicode's UAX #29 that matter for posts: CR LF, combining
    marks, emoji modifiers and tags, variation selectors, zero-width-joiner emoji
    sequences, flag pairs and Hangul syllables each form one cluster.
    """
    count = 0
    previous = ""
    base = ""  # the kind of the current cluster's first code point
    odd_flags = False  # an unpaired regional indicator ends the text so far
    for ch in text:
        kind = _kind(ch)
        if not previous:
            joins = False
        elif previous == "CR" and kind == "LF":
            joins = True
        elif previous in ("CR", "LF", "Control") or kind in ("CR", "LF", "Control"):
            joins = False
        elif (previous, kind) in _HANGUL_JOINS or kind in ("Extend", "ZWJ"):
            joins = True
        elif previous == "ZWJ" and kind == "Pictographic":
            joins = base == "Pictographic"
        elif previous == "RI" and kind == "RI":
            joins = odd_flags
        else:
            joins = False
        if not joins:
            count += 1
            base = kind
        odd_flags = kind == "RI" and not (joins and previous == "RI")
        previous = kind
    return count


# -- the server's limits -----------------------------------------------------------------


@dataclass(frozen=True)
class InstanceLimits:
    """What a server allows in one status, as its instance endpoint reports it."""

    max_characters: int = 500
    characters_reserved_per_url: int = 23
    max_media_attachments: int = 4
    image_size_limit: int | None = None
    video_size_limit: int | None = None
    source: str = "defaults"
    """The endpoint the values came from (Mastodon's defaults fill what it left out)."""

    @classmethod
    def from_instance(cls, data: Mapping[str, Any], source: str) -> InstanceLimits:
        """Read ``configuration.statuses`` and ``configuration.media_attachments``."""
        config = _mapping(data.get("configuration"))
        statuses = _mapping(config.get("statuses"))
        media = _mapping(config.get("media_attachments"))
        default = cls()
        return cls(
            max_characters=_positive(statuses.get("max_characters"))
            or _positive(data.get("max_toot_chars")) or default.max_characters,
            characters_reserved_per_url=_count(statuses.get("characters_reserved_per_url"),
                                               default.characters_reserved_per_url),
            max_media_attachments=_count(statuses.get("max_media_attachments"),
                                         default.max_media_attachments),
            image_size_limit=_positive(media.get("image_size_limit")),
            video_size_limit=_positive(media.get("video_size_limit")),
            source=source,
        )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _positive(value: object) -> int | None:
    """``value`` if it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _count(value: object, default: int) -> int:
    """``value`` if it is an integer of at least zero, else ``default``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return value


# -- channel settings --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """A channel's Mastodon settings, checked."""

    channel: str
    base_url: str
    token_env: str
    visibility: str | None = None

    @property
    def host(self) -> str:
        """The server's host (and port), for messages."""
        return urlsplit(self.base_url).netloc

    @classmethod
    def of(cls, channel: Channel) -> Settings:
        """The settings of ``channel``; :class:`~postflow.PermanentError` if unusable."""
        settings = channel.settings
        where = f"channel {channel.name!r}"
        raw = str(settings.get("base_url") or "").strip()
        if not raw:
            raise PermanentError(f"{where} has no base_url setting (the Mastodon server, "
                                 "e.g. https://mastodon.social)")
        parts = urlsplit(raw)
        try:
            _ = parts.port
        except ValueError as exc:
            raise PermanentError(f"{where}: base_url {raw!r} has a bad port") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentError(f"{where}: base_url must be an https:// URL, got {raw!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise PermanentError(f"{where}: base_url must be a plain server URL, "
                                 f"got {raw!r}")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise PermanentError(f"{where}: base_url must use https (the access token "
                                 f"travels with every request), got {raw!r}")
        base_url = f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
        token_env = str(settings.get("token_env") or "").strip()
        if not token_env:
            raise PermanentError(f"{where} has no token_env setting (the environment "
                                 "variable holding the Mastodon access token)")
        visibility = str(settings.get("visibility") or "").strip() or None
        if visibility is not None and visibility not in VISIBILITIES:
            raise PermanentError(f"{where}: visibility must be one of "
                                 f"{', '.join(sorted(VISIBILITIES))}, got {visibility!r}")
        return cls(channel.name, base_url, token_env, visibility)

    def token(self) -> str:
        """The access token from the environment; PermanentError naming the variable."""
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            raise PermanentError(f"channel {self.channel!r}: the environment variable "
                                 f"{self.token_env} (its Mastodon access token) is not set")
        return token


# -- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def error_text(self) -> str:
        """The server's error message (Mastodon's ``{"error": ...}``) or the body's start."""
        try:
            data = self.json()
        except ValueError:
            data = None
        if isinstance(data, Mapping) and isinstance(data.get("error"), str):
            text = data["error"]
            if isinstance(data.get("error_description"), str):
                text += f" ({data['error_description']})"
            return str(text)
        text = self.body[:300].decode("utf-8", "replace").strip()
        return " ".join(text.split()) or "(no body)"


class _NotSent(Exception):
    """The connection failed before the whole request went out."""


class _Unanswered(Exception):
    """The request went out but no complete answer came back."""


_TLS: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _send(method: str, url: str, headers: Mapping[str, str], body: bytes | None,
          timeout: float, limit: int = _API_BODY_LIMIT) -> _Response:
    """One request on a fresh connection; errors say whether the request went out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout, context=_tls())
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        try:
            conn.request(method, target, body=body, headers={"User-Agent": _USER_AGENT,
                                                             **headers})
        except (OSError, http.client.HTTPException) as exc:
            raise _NotSent(_describe(exc)) from exc
        try:
            response = conn.getresponse()
            data = response.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise _Unanswered(_describe(exc)) from exc
        return _Response(response.status, response.headers, data)
    finally:
        conn.close()


def _http_date(value: str) -> datetime | None:
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _server_now(headers: Message) -> datetime:
    return _http_date(headers.get("Date") or "") or datetime.now(UTC)


def retry_after(headers: Message) -> float | None:
    """Seconds to wait after a 429: the later of ``Retry-After`` (seconds or a date)
    and ``X-RateLimit-Reset`` (Mastodon's ISO 8601 time), measured from the answer's
    ``Date``, at most a day; ``None`` when neither is usable."""
    now = _server_now(headers)
    waits: list[float] = []
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            waits.append(float(value))
        except ValueError:
            at = _http_date(value)
            if at is not None:
                waits.append((at - now).total_seconds())
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if reset:
        try:
            at = datetime.fromisoformat(reset)
        except ValueError:
            pass
        else:
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            waits.append((at - now).total_seconds())
    usable = [w for w in waits if math.isfinite(w)]
    return min(max(0.0, *usable), _MAX_WAIT) if usable else None


def _multipart(field: str, filename: str, content_type: str, data: bytes
               ) -> tuple[bytes, str]:
    boundary = f"postflow-{uuid.uuid4().hex}"
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


def _filename(url: str) -> str:
    name = posixpath.basename(unquote(urlsplit(url).path))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[-100:]
    return safe or "media"


# -- the publisher -----------------------------------------------------------------------


class MastodonPublisher:
    """Sends posts to Mastodon servers: one status per post and channel.

    ``timeout`` bounds every network wait (seconds); media the server processes in the
    background are polled every ``poll_interval`` seconds, for at most ``media_wait``;
    a media file larger than ``max_media_bytes`` (or than the server's own limit) is
    refused.

    :meth:`check` never sends anything. Mastodon stores a status's ``Idempotency-Key``
    only once it has created the status, without a lock, so a repeat that arrives while
    the first request is still being handled creates a second status. ``check`` answers
    from what this publisher saw (the status the server returned for the key), and
    otherwise says "not published" (so that the worker sends the status again, with the
    same key) only when that is safe: at least ``replay_after`` seconds after this
    publisher last sent the key (the first request can no longer be in flight) and
    within ``replay_window`` seconds of its first send (the server still knows the key:
    Mastodon keeps it an hour). Otherwise the outcome stays unknown. Media uploaded for
    a key are reused when the key is sent again, never uploaded twice.
    """

    def __init__(self, *, timeout: float = 30.0, poll_interval: float = 1.0,
                 media_wait: float = 120.0, max_media_bytes: int = 100 << 20,
                 replay_window: float = 50 * 60.0, replay_after: float = 5 * 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.media_wait = media_wait
        self.max_media_bytes = max_media_bytes
        self.replay_window = replay_window
        self.replay_after = replay_after
        self.monotonic = monotonic
        """The clock ``replay_after`` and ``replay_window`` are measured on (seconds)."""
        self._lock = threading.Lock()
        self._instance_lock = threading.Lock()  # held while reading an instance
        self._instances: dict[str, InstanceLimits] = {}
        self._sent: dict[tuple[str, str], tuple[float, float]] = {}  # first, last send
        self._answers: dict[tuple[str, str], Published] = {}
        self._uploaded: dict[tuple[str, str], dict[str, str]] = {}  # media URL -> id

    def __repr__(self) -> str:
        return f"<MastodonPublisher servers={sorted(self._instances)}>"

    # -- limits ----------------------------------------------------------------------

    def limits(self, base_url: str) -> InstanceLimits:
        """The server's limits, read from its instance endpoint on first use."""
        with self._instance_lock:
            cached = self._instances.get(base_url)
            if cached is None:
                cached = self._instances[base_url] = self._read_instance(base_url)
            return cached

    def _read_instance(self, base_url: str) -> InstanceLimits:
        host = urlsplit(base_url).netloc
        path = "/api/v2/instance"
        response = self._get_instance(base_url, path)
        if response.status == 404:  # a server older than Mastodon 4.0
            path = "/api/v1/instance"
            response = self._get_instance(base_url, path)
        if response.status == 404:
            raise PermanentError(f"{host} has no instance endpoint: is {base_url} a "
                                 "Mastodon server?")
        if response.status != 200:
            raise self._failure(response, host, f"reading its limits ({path})", None)
        try:
            data = response.json()
        except ValueError as exc:
            raise RetryableError(f"{host} answered {path} with something that is not "
                                 "JSON") from exc
        if not isinstance(data, Mapping):
            raise PermanentError(f"{host} does not look like a Mastodon server ({path} "
                                 "is not an object)")
        limits = InstanceLimits.from_instance(data, path)
        log.info("%s allows %s characters (URLs count %s) and %s media per status", host,
                 limits.max_characters, limits.characters_reserved_per_url,
                 limits.max_media_attachments)
        return limits

    def _get_instance(self, base_url: str, path: str) -> _Response:
        try:
            return _send("GET", base_url + path, {"Accept": "application/json"}, None,
                         self.timeout)
        except (_NotSent, _Unanswered) as exc:
            raise RetryableError(f"could not read {urlsplit(base_url).netloc}'s limits "
                                 f"({path}): {exc}") from exc

    def refusal(self, item: Outgoing, limits: InstanceLimits, host: str) -> str | None:
        """Why the server would refuse ``item`` (too long, too many media), or ``None``."""
        length = count_characters(item.text, limits.characters_reserved_per_url)
        if length > limits.max_characters:
            return (f"the post is {length} characters as Mastodon counts them (each URL "
                    f"{limits.characters_reserved_per_url}, mentions without their "
                    f"domain), over {host}'s limit of {limits.max_characters}")
        if len(item.media) > limits.max_media_attachments:
            return (f"the post has {len(item.media)} media attachments, over {host}'s "
                    f"limit of {limits.max_media_attachments}")
        return None

    # -- publishing ------------------------------------------------------------------

    def publish(self, item: Outgoing) -> Published:
        """Create the status for ``item``: check limits, upload media, post the text."""
        settings = Settings.of(item.channel)
        token = settings.token()
        limits = self.limits(settings.base_url)
        problem = self.refusal(item, limits, settings.host)
        if problem:
            raise PermanentError(problem)
        key = (settings.base_url, item.idempotency_key)
        media_ids = [self._upload_once(settings, token, key, url, limits)
                     for url in item.media]
        return self._post_status(settings, token, item, media_ids)

    def _upload_once(self, settings: Settings, token: str, key: tuple[str, str], url: str,
                     limits: InstanceLimits) -> str:
        """The media id of ``url`` for ``key``: uploaded before for it, or now."""
        with self._lock:
            known = self._uploaded.get(key, {}).get(url)
        if known is not None:
            return known
        media_id = self._upload(settings, token, url, limits)
        with self._lock:
            self._uploaded.setdefault(key, {})[url] = media_id
        return media_id

    def check(self, item: Outgoing) -> Published | None:
        """Whether the status of ``item`` exists, found out without sending anything.

        The status the server returned for the key, if this publisher saw it; ``None``
        (not published: send it again, with the same key) once the first request can no
        longer be in flight and while the server still knows the key; otherwise an
        :class:`~postflow.OutcomeUnknownError` (a restarted worker, too early, too late),
        for the worker to ask again later or a person to settle with
        ``ws.resolve_delivery``.
        """
        settings = Settings.of(item.channel)
        key = (settings.base_url, item.idempotency_key)
        with self._lock:
            answer = self._answers.get(key)
            sent = self._sent.get(key)
        if answer is not None:
            return answer
        if sent is None:
            raise OutcomeUnknownError(
                f"this worker did not send the status to {settings.host}, and Mastodon "
                "cannot look a status up by its Idempotency-Key: check the account")
        first, last = sent
        now = self.monotonic()
        if now - last < self.replay_after:
            raise OutcomeUnknownError(
                f"the status went to {settings.host} {now - last:.0f} s ago and may still "
                "be being created (Mastodon stores its Idempotency-Key only after that): "
                f"not sent again before {self.replay_after:g} s have passed")
        if now - first > self.replay_window:
            raise OutcomeUnknownError(
                f"the status went to {settings.host} {(now - first) / 60:.0f} min ago, too "
                "long for its Idempotency-Key to be trusted: check the account")
        return None  # a resend with the key returns the status if the first created one

    def _remember(self, base_url: str, key: str) -> None:
        now = self.monotonic()
        with self._lock:
            for old in [k for k, (first, _) in self._sent.items()
                        if now - first > self.replay_window]:
                del self._sent[old]
                self._answers.pop(old, None)
                self._uploaded.pop(old, None)
            first, _ = self._sent.get((base_url, key), (now, now))
            self._sent[base_url, key] = (first, now)

    def _post_status(self, settings: Settings, token: str, item: Outgoing,
                     media_ids: Sequence[str]) -> Published:
        fields = [("status", item.text)]
        if settings.visibility:
            fields.append(("visibility", settings.visibility))
        fields += [("media_ids[]", media_id) for media_id in media_ids]
        headers = {"Authorization": f"Bearer {token}",
                   "Idempotency-Key": item.idempotency_key,
                   "Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json"}
        self._remember(settings.base_url, item.idempotency_key)
        try:
            response = _send("POST", settings.base_url + "/api/v1/statuses", headers,
                             urlencode(fields).encode(), self.timeout)
        except _NotSent as exc:
            raise RetryableError(f"could not send the status to {settings.host}: {exc}"
                                 ) from exc
        except _Unanswered as exc:
            raise OutcomeUnknownError(
                f"{settings.host} did not answer after the status was sent ({exc}); "
                f"Idempotency-Key {item.idempotency_key}") from exc
        if response.status != 200:
            raise self._failure(response, settings.host, "the status", "write:statuses")
        try:
            status = response.json()
            remote_id = str(status["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise OutcomeUnknownError(f"{settings.host} accepted the status but its answer "
                                      "names no status id") from exc
        url = status.get("url") or status.get("uri")
        log.info("post %s published to %s as status %s", item.post_id, settings.host,
                 remote_id)
        published = Published(remote_id, str(url) if url else None)
        with self._lock:  # what check() answers for this key from now on
            self._answers[settings.base_url, item.idempotency_key] = published
        return published

    # -- media -----------------------------------------------------------------------

    def _upload(self, settings: Settings, token: str, url: str, limits: InstanceLimits
                ) -> str:
        data, content_type = self._fetch(url, limits)
        body, form_type = _multipart("file", _filename(url), content_type, data)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": form_type,
                   "Accept": "application/json"}
        try:
            response = _send("POST", settings.base_url + "/api/v2/media", headers, body,
                             self.timeout)
        except (_NotSent, _Unanswered) as exc:
            # at worst the server keeps an unattached file, which it deletes in a day
            raise RetryableError(f"could not upload {url} to {settings.host}: {exc}"
                                 ) from exc
        if response.status not in (200, 202):
            raise self._failure(response, settings.host, f"the upload of {url}",
                                "write:media")
        media = self._media(response, settings.host)
        media_id = str(media["id"])
        if response.status == 202 or not media.get("url"):
            self._await_processing(settings, token, media_id, url)
        return media_id

    @staticmethod
    def _media(response: _Response, host: str) -> Mapping[str, Any]:
        try:
            media = response.json()
        except ValueError:
            media = None
        if not isinstance(media, Mapping) or media.get("id") in (None, ""):
            raise RetryableError(f"{host} answered an upload without a media id")
        return media

    def _await_processing(self, settings: Settings, token: str, media_id: str, url: str
                          ) -> None:
        """Poll ``GET /api/v1/media/:id`` until the file has a URL (bounded)."""
        deadline = time.monotonic() + self.media_wait
        delay = self.poll_interval
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        while True:
            if time.monotonic() + delay > deadline:
                raise RetryableError(f"{settings.host} was still processing {url} (media "
                                     f"{media_id}) after {self.media_wait:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            try:
                response = _send("GET", f"{settings.base_url}/api/v1/media/{media_id}",
                                 headers, None, self.timeout)
            except (_NotSent, _Unanswered) as exc:
                raise RetryableError(f"could not ask {settings.host} about media "
                                     f"{media_id}: {exc}") from exc
            if response.status in (202, 206):
                continue
            if response.status != 200:
                raise self._failure(response, settings.host,
                                    f"the processing of {url} (media {media_id})",
                                    "write:media")
            if self._media(response, settings.host).get("url"):
                return

    def _fetch(self, url: str, limits: InstanceLimits) -> tuple[bytes, str]:
        """The bytes and MIME type of a media URL (following up to 5 redirects)."""
        current = url
        for _ in range(6):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise PermanentError(f"media {current!r} is not an http(s) URL")
            try:
                response = _send("GET", current, {"Accept": "*/*"}, None, self.timeout,
                                 limit=self.max_media_bytes)
            except (_NotSent, _Unanswered) as exc:
                raise RetryableError(f"could not fetch media {current}: {exc}") from exc
            location = response.headers.get("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                current = urljoin(current, location)
                continue
            if response.status == 200:
                break
            what = f"media {current} could not be fetched (HTTP {response.status})"
            if response.status == 429 or response.status >= 500:
                raise RetryableError(what, retry_after=retry_after(response.headers)
                                     if response.status == 429 else None)
            raise PermanentError(what)
        else:
            raise PermanentError(f"media {url} redirects too often")
        content_type = (response.headers.get_content_type()
                        if response.headers.get("Content-Type") else "")
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(_filename(current))[0] or \
                "application/octet-stream"
        kind = content_type.split("/", 1)[0]
        limit = limits.image_size_limit if kind == "image" else \
            limits.video_size_limit if kind in ("video", "audio") else None
        size = len(response.body)
        if size > self.max_media_bytes or (limit is not None and size > limit):
            most = min(x for x in (limit, self.max_media_bytes) if x is not None)
            raise PermanentError(f"media {url} is over the {most} bytes allowed "
                                 f"for {kind} files")
        return response.body, content_type

    # -- answers ---------------------------------------------------------------------

    @staticmethod
    def _failure(response: _Response, host: str, what: str, scope: str | None
                 ) -> PublishError:
        """The error for an answer that is not a success."""
        status = response.status
        text = response.error_text()
        if status == 429:
            wait = retry_after(response.headers)
            return RetryableError(f"{host} rate-limited {what} (HTTP 429"
                                  + (f", retry after {wait:.0f} s)" if wait is not None
                                     else ")"), retry_after=wait)
        if status >= 500 or status == 408:
            return RetryableError(f"{host} failed {what}: HTTP {status} {text}")
        if status in (401, 403) and scope:
            return PermanentError(f"{host} refused the access token for {what} (HTTP "
                                  f"{status}: {text}): token revoked or lacks {scope}")
        if status == 422:
            return PermanentError(f"{host} rejected {what}: {text}")
        return PermanentError(f"{host} answered HTTP {status} to {what}: {text}")


# -- registration ------------------------------------------------------------------------


@hookimpl
def postflow_register_publishers(register: Callable[[str, Publisher], None]) -> None:
    """Register a :class:`MastodonPublisher` as ``mastodon`` (one per workspace)."""
    register("mastodon", MastodonPublisher())


class MastodonPlugin:
    """An in-process plugin registering a configured publisher under ``name``.

    >>> ws = postflow.open(url, plugins=[MastodonPlugin(MastodonPublisher(timeout=10))],
    ...                    entry_points=False)  # doctest: +SKIP
    """

    def __init__(self, publisher: MastodonPublisher | None = None,
                 name: str = "mastodon") -> None:
        self.publisher = publisher or MastodonPublisher()
        self.name = name

    @hookimpl
    def postflow_register_publishers(self, register: Callable[[str, Publisher], None]
                                     ) -> None:
        """Register :attr:`publisher` as :attr:`name`."""
        register(self.name, self.publisher)
