"""Checks of single input values, shared by the features: names, URLs, zones, settings.

Each returns the checked value or raises :class:`~postflow.ValidationFailed` naming the
subject and field.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, cast

import attrs

from postflow._time import check_day, zone_of
from postflow.exceptions import ConfigError, ValidationFailed
from postflow.models import NO_CADENCE, Cadence, FrozenData, Member, Post

UNSET: Any = object()
"""A default meaning "not given" where ``None`` is a value (e.g. clearing a campaign)."""

LIMITS: Mapping[str, int] = {
    "text": 50_000,
    "comment": 10_000,
    "name": 100,
    "email": 254,
    "handle": 100,
    "goal": 2_000,
    "hashtag": 100,
    "reason": 1_000,
    "setting": 2_048,
    "url": 2_048,
    "items": 100,
}
"""The longest each kind of field may be, in characters (``items``: the most entries of
a list such as a post's channels or media). Documented in docs/concepts.rst."""

_MAX_ITEMS = LIMITS["items"]
_MAX_NAME = LIMITS["name"]

MAX_ID = 2**63 - 1
"""The largest id any backend can store (a signed 64-bit integer)."""

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def visible(value: str) -> bool:
    """Whether ``value`` has a character a reader would see (not only spaces, control,
    format or zero-width characters)."""
    category = unicodedata.category
    return any(category(c) not in _INVISIBLE for c in value)


def checked_text(value: object, subject: str, field: str, *, limit: int,
                 one_line: bool = False, required: bool = True) -> str:
    """``value`` if it is text postflow can store and show: UTF-8 encodable (no lone
    surrogates), at most ``limit`` characters, with something visible (when
    ``required``) and, when ``one_line`` (names, addresses, settings: values that may
    reach a header), no control characters. Otherwise
    :class:`~postflow.ValidationFailed` naming ``field``."""
    if not isinstance(value, str):
        raise ValidationFailed.single(subject, f"bad-{field}",
                                      f"{field} must be text, got {value!r:.100}", field=field)
    if len(value) <= limit and value.isprintable() and (not required or value.strip(" ")):
        # the common case, all in C: printable text has no surrogates, no control or
        # format characters, and no spaces but U+0020 that could leave it blank
        return value
    if len(value) > limit:
        raise ValidationFailed.single(
            subject, "too-long", f"{field} is {len(value):,} characters long; the limit is "
            f"{limit:,}", field=field)
    if _SURROGATE.search(value):
        raise ValidationFailed.single(
            subject, "bad-encoding", f"{field} contains a lone surrogate (not valid "
            "Unicode text)", field=field)
    if one_line and _CONTROL_ONE_LINE.search(value):
        # multi-line text keeps its control characters: the calendar and publishers
        # clean what they cannot carry, and the post is stored as written
        raise ValidationFailed.single(
            subject, "control-character", f"{field} contains a control character (it "
            "must be one line)", field=field)
    if required and not visible(value):
        raise ValidationFailed.single(subject, f"empty-{field}", f"the {field} is empty",
                                      field=field)
    return value


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
    return check_day(value, field="planned_for",
                     subject=f"post {post_id}" if post_id else "new post")


MAX_URL_LENGTH = LIMITS["url"]
"""The longest URL postflow stores (a media URL, a published URL, a webhook's ``url``)."""

MAX_REMOTE_ID_LENGTH = 255
"""The longest remote id (a network's id for a published post) postflow stores."""


def shown_url(value: str) -> str:
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
    shown = shown_url(value) if isinstance(value, str) else repr(value)
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
    """A list of media URLs (see :func:`http_url`), at most ``LIMITS["items"]``."""
    if value == () or value == []:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationFailed.single(subject, "bad-media", "media must be a list of URLs, "
                                      f"got {value!r}", field="media")
    urls = tuple(value)
    if len(urls) > LIMITS["items"]:
        raise ValidationFailed.single(
            subject, "too-many", f"media: {len(urls)} entries; the limit is "
            f"{LIMITS['items']}", field="media")
    return tuple(http_url(url, subject, "media") for url in urls)


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


def is_count(value: object) -> bool:
    """Whether ``value`` is a whole number >= 0 (an ``int``, not a bool) a backend can
    hold: a limit, an offset, a position."""
    return type(value) is int and 0 <= value <= MAX_ID


def is_id(value: object) -> bool:
    """Whether ``value`` can be a stored id: an ``int`` (not a bool or float) that any
    backend can hold."""
    return type(value) is int and 0 < value <= MAX_ID


def flag(value: object, subject: str, field: str) -> bool:
    """``value`` if it is a ``bool`` (a yes/no switch); ``"no"``, ``0`` or ``None`` are
    refused with :class:`~postflow.ValidationFailed` ``bad-<field>``."""
    if type(value) is not bool:
        raise ValidationFailed.single(subject, f"bad-{field}",
                                      f"{field} must be True or False, got {value!r:.100}",
                                      field=field)
    return value


def version(value: object, subject: str, field: str = "expected_version") -> int | None:
    """``None`` or an ``int`` version (not a bool or a float); otherwise
    :class:`~postflow.ValidationFailed` ``bad-version`` naming ``field``."""
    if value is None or (type(value) is int and 0 <= value <= MAX_ID):
        return value
    raise ValidationFailed.single(subject, "bad-version",
                                  f"{field} must be None or a whole number, got {value!r}",
                                  field=field)


_MAX_DATA_DEPTH = 20


def extra_data(value: Mapping[str, Any], subject: str) -> None:
    """Refuse extra audit data (``ws.fire(..., **data)``) postflow could not store alike
    on every backend: every string anywhere in it (nested too) is checked text of at most
    ``LIMITS["text"]`` characters (lines allowed), every text key a one-line name of at
    most ``LIMITS["name"]`` (numbers, bools and ``None`` may be keys: every backend spells
    them as JSON does); nesting is at most 20 deep."""

    def walk(item: object, field: str, depth: int) -> None:
        if depth > _MAX_DATA_DEPTH:
            raise ValidationFailed.single(
                subject, "too-deep", f"{field}: data nested more than {_MAX_DATA_DEPTH} "
                "levels deep", field=field)
        if isinstance(item, str):
            checked_text(item, subject, field, limit=LIMITS["text"], required=False)
        elif isinstance(item, Mapping):
            for key, nested in item.items():
                if isinstance(key, str):
                    checked_text(key, subject, field, limit=LIMITS["name"], one_line=True)
                elif key is not None and not isinstance(key, int | float):
                    # JSON scalars are spelled as JSON spells them; nothing else is a key
                    raise ValidationFailed.single(
                        subject, f"bad-{field}", f"{field}: data keys must be text, got "
                        f"{key!r:.100}", field=field)
                walk(nested, field, depth + 1)
        elif isinstance(item, list | tuple):
            for nested in item:
                walk(nested, field, depth + 1)

    for key, item in value.items():
        checked_text(key, subject, "data", limit=LIMITS["name"], one_line=True)
        walk(item, key, 1)


def name_list(value: object, subject: str, field: str) -> tuple[str, ...]:
    """A name or an iterable of names, as a tuple; anything else is refused.

    At most ``LIMITS["items"]`` names of at most ``LIMITS["name"]`` characters each
    (what a name can be is checked where it is looked up)."""
    names: tuple[Any, ...] | None = None
    if isinstance(value, str):
        names = (value,)
    elif type(value) is tuple or type(value) is list or (
            isinstance(value, Iterable) and not isinstance(value, bytes | Mapping)):
        names = tuple(value)
    if names is not None and all(isinstance(n, str) for n in names):
        if len(names) > _MAX_ITEMS:
            raise ValidationFailed.single(
                subject, "too-many", f"{field}: {len(names)} entries; the limit is "
                f"{_MAX_ITEMS}", field=field)
        if names and max(map(len, names)) > _MAX_NAME:
            raise ValidationFailed.single(
                subject, "too-long", f"{field}: a name of {max(map(len, names)):,} "
                f"characters; the limit is {_MAX_NAME}", field=field)
        return names
    raise ValidationFailed.single(
        subject, f"bad-{field}", f"{field} must be a name or a list of names, got {value!r}",
        field=field)


def channel_names(value: object, subject: str = "new post") -> tuple[str, ...]:
    return name_list(value, subject, "channels")


def hashtag_list(value: object, subject: str) -> tuple[str, ...]:
    tags = name_list(value, subject, "hashtags")
    for tag in tags:
        checked_text(tag, subject, "hashtags", limit=LIMITS["hashtag"], one_line=True,
                     required=False)
        if not visible(tag.strip("#")):
            raise ValidationFailed.single(subject, "bad-hashtags", "a hashtag is empty",
                                          field="hashtags")
    return tuple(t if t.startswith("#") else f"#{t}" for t in tags)


def optional_text(value: object, subject: str, field: str, *, limit: int | None = None,
                  one_line: bool = True) -> str | None:
    """``None`` or checked text (see :func:`checked_text`; it may be empty)."""
    if value is None:
        return None
    return checked_text(value, subject, field, limit=limit or LIMITS.get(field, 2_000),
                        one_line=one_line, required=False)


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
    for key, setting in value.items():
        checked_text(key, subject, "settings", limit=LIMITS["name"], one_line=True)
        checked_text(setting, subject, key, limit=LIMITS["setting"], one_line=True,
                     required=False)
    return FrozenData(value)


def zone_name(name: object, subject: str) -> str:
    try:
        if not isinstance(name, str):
            raise ConfigError(f"a time zone name must be text, got {name!r:.100}")
        zone_of(name)  # refuses names over 100 characters before any file is opened
    except (ConfigError, OSError, ValueError) as exc:
        raise ValidationFailed.single(subject, "unknown-timezone", str(exc),
                                      field="timezone") from exc
    return name


def slug(value: object, what: str) -> str:
    """A name: letters, digits and ``_ . @ -``, at most ``LIMITS["name"]`` long."""
    if not isinstance(value, str) or len(value) > LIMITS["name"] or not _SLUG.fullmatch(value):
        raise ValidationFailed.single(
            what, "bad-name",
            f"{value!r} is not a valid name (letters, digits and _ . @ -)", field="name")
    return value




def check_field_types(settings: attrs.AttrsInstance) -> None:
    """Refuse an attrs settings object whose fields do not have their annotated types.

    ``"false"`` is not a ``bool``, ``True`` is not an ``int``, ``"5"`` is not a number:
    :class:`~postflow.ConfigError` naming the class and field. Understands ``int``,
    ``float`` (an ``int`` will do), ``str``, ``bool``, ``timedelta``, other attrs
    classes and ``X | None``.
    """
    import types
    import typing
    from datetime import timedelta

    cls = type(settings)
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        value = getattr(settings, field.name)
        wanted = hints.get(field.name)
        options = typing.get_args(wanted) if typing.get_origin(wanted) in (
            typing.Union, types.UnionType) else (wanted,)
        if value is None and type(None) in options:
            continue
        ok = False
        for option in options:
            if option is bool:
                ok = type(value) is bool
            elif option is int:
                ok = type(value) is int
            elif option is float:
                ok = type(value) in (int, float)
            elif option in (str, timedelta) or (isinstance(option, type)
                                                and attrs.has(option)):
                ok = isinstance(value, option)
            else:
                ok = True  # a type this check does not know: left to the class
            if ok:
                break
        if not ok:
            names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
            raise ConfigError(f"{cls.__name__}: {field.name} must be {names}, "
                              f"got {value!r}")
