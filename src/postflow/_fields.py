"""Checks of single input values, shared by the features: names, URLs, zones, settings.

Each returns the checked value or raises :class:`~postflow.ValidationFailed` naming the
subject and field.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, cast

from postflow._time import zone_of
from postflow.exceptions import ConfigError, ValidationFailed
from postflow.models import NO_CADENCE, Cadence, FrozenData, Member, Post

UNSET: Any = object()
"""A default meaning "not given" where ``None`` is a value (e.g. clearing a campaign)."""

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


def roles_text(member: Member) -> str:
    return ", ".join(sorted(member.roles)) or "none"


def planned_date(value: object, post_id: int | None) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationFailed.single(
            f"post {post_id}" if post_id else "new post", "not-a-date",
            f"planned_for must be a date (a day, not a time), got {value!r}",
            field="planned_for")
    return value


MAX_URL_LENGTH = 2048
"""The longest URL postflow stores (a media URL, a published URL, a webhook's ``url``)."""

MAX_REMOTE_ID_LENGTH = 255
"""The longest remote id (a network's id for a published post) postflow stores."""


def redact_url(value: str) -> str:
    """``value`` for a message: its query and fragment (which may hold a token) hidden,
    control characters escaped and at most 120 characters kept."""
    head = value.split("?", 1)[0].split("#", 1)[0]
    if len(head) < len(value):
        head += "?..."
    return repr(head[:120] + ("..." if len(head) > 120 else ""))


def url_problem(value: object) -> str | None:
    """Why ``value`` is not an absolute http(s) URL postflow may store, or ``None``.

    Refused: anything but text, an empty host, a scheme other than http and https
    (``javascript:``, ``data:``), spaces and every control or other non-printable
    character (a CR or LF would break the lines of an iCalendar feed or an HTTP header),
    and more than :data:`MAX_URL_LENGTH` characters.
    """
    if not isinstance(value, str):
        return f"must be text, got {type(value).__name__}"
    if len(value) > MAX_URL_LENGTH:
        return f"is {len(value)} characters long, over the limit of {MAX_URL_LENGTH}"
    if not value.isprintable() or " " in value:
        return "contains a space or a control character"
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def remote_id_problem(value: object) -> str | None:
    """Why ``value`` is not a remote id postflow may store (text of 1 to
    :data:`MAX_REMOTE_ID_LENGTH` printable characters), or ``None``."""
    if not isinstance(value, str):
        return f"must be text, got {type(value).__name__}"
    if not value or len(value) > MAX_REMOTE_ID_LENGTH:
        return f"must be 1 to {MAX_REMOTE_ID_LENGTH} characters, got {len(value)}"
    if not value.isprintable():
        return "contains a control character"
    return None


def http_url(value: object, subject: str, field: str) -> str:
    """An absolute http(s) URL of at most :data:`MAX_URL_LENGTH` characters, without
    spaces or control characters, or a refusal (the message never quotes the query)."""
    problem = url_problem(value)
    if problem is None:
        return cast(str, value)
    shown = redact_url(value) if isinstance(value, str) else repr(value)
    code = "bad-url" if field == "url" else f"bad-{field}-url"
    raise ValidationFailed.single(subject, code,
                                  f"{field} must be http(s) URLs, got {shown}: {problem}",
                                  field=field)


def remote_id(value: object, subject: str, field: str = "remote_id") -> str:
    """A remote id (see :func:`remote_id_problem`), or a refusal naming ``field``."""
    problem = remote_id_problem(value)
    if problem is None:
        return cast(str, value)
    raise ValidationFailed.single(subject, f"bad-{field}", f"{field} {problem}",
                                  field=field)


def media_urls(value: object, subject: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationFailed.single(subject, "bad-media", "media must be a list of URLs, "
                                      f"got {value!r}", field="media")
    return tuple(http_url(url, subject, "media") for url in value)


def merged_published_urls(value: object, post: Post) -> FrozenData:
    """``post.published_urls`` with ``value`` (channel -> URL) merged in, checked."""
    subject = f"post {post.id}"
    if not isinstance(value, Mapping):
        raise ValidationFailed.single(subject, "bad-urls", "urls must map channels to URLs, "
                                      f"got {value!r}", field="urls")
    merged = dict(post.published_urls)
    for channel, url in value.items():
        if channel not in post.channels:
            raise ValidationFailed.single(
                subject, "unknown-channel", f"post {post.id} does not go out to {channel!r}",
                channel=str(channel), field="urls")
        merged[channel] = http_url(url, subject, "urls")
    return FrozenData(merged)


def is_id(value: object) -> bool:
    return type(value) is int


def name_list(value: object, subject: str, field: str) -> tuple[str, ...]:
    """A name or an iterable of names, as a tuple; anything else is refused."""
    if isinstance(value, str):
        return (value,)
    if type(value) is tuple or type(value) is list:
        names = tuple(value)
        if all(type(n) is str for n in names):
            return names
    if isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        names = tuple(value)
        if all(isinstance(n, str) for n in names):
            return names
    raise ValidationFailed.single(
        subject, f"bad-{field}", f"{field} must be a name or a list of names, got {value!r}",
        field=field)


def channel_names(value: object, subject: str = "new post") -> tuple[str, ...]:
    return name_list(value, subject, "channels")


def hashtag_list(value: object, subject: str) -> tuple[str, ...]:
    tags = name_list(value, subject, "hashtags")
    if not all(t.strip("#").strip() for t in tags):
        raise ValidationFailed.single(subject, "bad-hashtags", "a hashtag is empty",
                                      field="hashtags")
    return tuple(t if t.startswith("#") else f"#{t}" for t in tags)


def optional_text(value: object, subject: str, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationFailed.single(subject, f"bad-{field}",
                                  f"{field} must be text, got {value!r}", field=field)


def cadence_value(value: object, subject: str) -> Cadence:
    if value is None:
        return NO_CADENCE
    if not isinstance(value, Cadence):
        raise ValidationFailed.single(subject, "bad-cadence",
                                      f"cadence must be a postflow.Cadence, got {value!r}",
                                      field="cadence")
    return value


def cadence_data(cadence: Cadence) -> dict[str, Any]:
    return {"max_per_day": cadence.max_per_day,
            "min_gap_seconds": cadence.min_gap.total_seconds() if cadence.min_gap else None,
            "quiet": [cadence.quiet_start.isoformat(), cadence.quiet_end.isoformat()]
            if cadence.quiet_start and cadence.quiet_end else None}


def publisher_settings(value: object, subject: str) -> FrozenData:
    """Publisher settings: a mapping of text to text."""
    if value is None:
        return FrozenData()
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationFailed.single(subject, "bad-settings",
                                      f"settings must map text to text, got {value!r}",
                                      field="settings")
    return FrozenData(value)


def zone_name(name: object, subject: str) -> str:
    try:
        if not isinstance(name, str):
            raise ConfigError(f"a time zone name must be text, got {name!r}")
        zone_of(name)
    except ConfigError as exc:
        raise ValidationFailed.single(subject, "unknown-timezone", str(exc),
                                      field="timezone") from exc
    return name


def slug(value: object, what: str) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise ValidationFailed.single(
            what, "bad-name",
            f"{value!r} is not a valid name (letters, digits and _ . @ -)", field="name")
    return value


