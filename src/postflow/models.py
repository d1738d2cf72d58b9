"""Immutable snapshots returned by every postflow call."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, NoReturn, TypeVar

import attrs

from postflow._time import zone_of

__all__ = [
    "Approval",
    "AuditEntry",
    "Cadence",
    "Campaign",
    "Channel",
    "Delivery",
    "Feed",
    "Hold",
    "Member",
    "PlanningEntry",
    "Post",
    "Revision",
    "Series",
    "StageStatus",
    "calendar_slot",
]

class FrozenData(dict[str, Any]):
    """A read-only ``dict``: the ``data`` of audit entries.

    Built by :func:`freeze`, whose values are JSON scalars, tuples and further
    ``FrozenData``; every mutating method raises ``TypeError``.
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("audit entry data is read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type[FrozenData], tuple[dict[str, Any]]]:
        return (FrozenData, (dict(self),))


NO_DATA: Mapping[str, Any] = FrozenData()
"""The shared empty ``data`` of audit entries that carry none."""

_T = TypeVar("_T")
_REPLACERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}


def replace(obj: _T, **changes: Any) -> _T:
    """A copy of the attrs instance ``obj`` with ``changes`` (a fast ``attrs.evolve``).

    Internal: it runs on every write, where ``attrs.evolve`` costs more than the rest
    of the bookkeeping. Unlike ``attrs.evolve`` it does not reject unknown names.
    """
    cls = type(obj)
    replacer = _REPLACERS.get(cls)
    if replacer is None:
        replacer = _REPLACERS[cls] = _make_replacer(cls)
    result: _T = replacer(obj, changes)
    return result


def _make_replacer(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    args = ", ".join(
        f"c[{a.name!r}] if {a.name!r} in c else o.{a.name}" for a in attrs.fields(cls)
    )
    namespace: dict[str, Any] = {"cls": cls}
    exec(f"def replacer(o, c):\n    return cls({args})\n", namespace)
    replacer: Callable[[Any, dict[str, Any]], Any] = namespace["replacer"]
    return replacer


RESERVED_DATA_KEYS = frozenset({
    "text", "channels", "campaign", "planned_for", "scheduled_at", "scheduled_zone",
    "approvals_voided", "review_restarted", "stage", "at", "media", "published_urls",
    "retry_at", "claimed_until", "series", "occurrence_at",
})
"""Keys of audit entry data that postflow writes and :func:`postflow.replay` reads."""


ROLES = frozenset({"author", "approver", "publisher", "admin", "analyst"})
"""The built-in roles; workflows may declare more."""


def _frozenset(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


def _tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return values if type(values) is tuple else tuple(values)


def _pairs(values: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    """``values`` as a tuple of ``(stage, member)`` tuples (free for the usual ``()``)."""
    if not values:
        return ()
    pairs = []
    for pair in values:
        stage, member = pair
        pairs.append((stage, member))
    return tuple(pairs)


def owned(post: Post) -> Post:
    """``post`` with its own tuples and read-only mappings (a copy only when a caller
    built it from lists or dicts): what a backend stores must not share them with the
    caller. Snapshots postflow builds already qualify, so this costs a few type checks
    on the write path rather than a converter call per field on every snapshot."""
    if (type(post.channels) is tuple and type(post.media) is tuple
            and type(post.approvals) is tuple and type(post.published_urls) is FrozenData):
        return post
    return attrs.evolve(post, channels=tuple(post.channels), media=tuple(post.media),
                        approvals=tuple(post.approvals),
                        published_urls=freeze(post.published_urls))


def owned_revision(revision: Revision) -> Revision:
    """``revision`` with its own tuples (see :func:`owned`)."""
    if type(revision.channels) is tuple and type(revision.media) is tuple:
        return revision
    return attrs.evolve(revision, channels=tuple(revision.channels),
                        media=tuple(revision.media))


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """``value`` as read-only data: a snapshot never shares a ``dict`` with its caller
    (or with a backend's stored state)."""
    return value if type(value) is FrozenData else freeze(value)


def _json_key(key: object) -> str:
    """``key`` spelled as a JSON object key (``True`` is ``"true"``, ``None`` ``"null"``)."""
    if key is True or key is False or key is None:
        return json.dumps(key)
    return str(key)


def freeze(value: Any) -> Any:
    """``value`` as JSON would carry it, made immutable.

    Mappings become :class:`FrozenData` with string keys, lists and tuples become
    tuples, JSON scalars stay, anything else becomes its ``str()`` (as the SQLite
    backend's JSON encoding does). Audit entry ``data`` is stored this way.
    """
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is FrozenData:
        return value
    if kind is dict:
        return FrozenData({
            k if type(k) is str else _json_key(k): freeze(v) for k, v in value.items()
        })
    if kind is tuple or kind is list:
        return tuple([freeze(v) for v in value])
    if isinstance(value, Mapping):
        return FrozenData({_json_key(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, str | int | float):
        return value
    return str(value)


@attrs.frozen
class Member:
    """A person on the team and the roles they hold."""

    name: str
    roles: frozenset[str] = attrs.field(converter=_frozenset)
    email: str | None = None
    active: bool = True
    version: int = 1

    def __repr__(self) -> str:
        return f"Member({self.name!r}, roles={sorted(self.roles)}, v{self.version})"


@attrs.frozen
class Cadence:
    """A channel's posting rules: at most ``max_per_day`` posts a day, at least
    ``min_gap`` between two, none in the quiet hours ``quiet_start`` to ``quiet_end``
    (local times in the channel's zone; the range may wrap midnight)."""

    max_per_day: int | None = None
    min_gap: timedelta | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None

    def __attrs_post_init__(self) -> None:
        from postflow.exceptions import ConfigError

        if self.max_per_day is not None and (
                not isinstance(self.max_per_day, int) or self.max_per_day < 1):
            raise ConfigError(f"max_per_day must be at least 1, got {self.max_per_day!r}")
        if self.min_gap is not None and (
                not isinstance(self.min_gap, timedelta) or self.min_gap <= timedelta(0)):
            raise ConfigError(f"min_gap must be a positive timedelta, got {self.min_gap!r}")
        if (self.quiet_start is None) != (self.quiet_end is None) or (
                self.quiet_start is not None and self.quiet_start == self.quiet_end):
            raise ConfigError("quiet hours need a start and a different end")
        for value in (self.quiet_start, self.quiet_end):
            if value is not None and (not isinstance(value, time) or value.tzinfo):
                raise ConfigError(f"quiet hours are local times without a zone, got {value!r}")

    @property
    def empty(self) -> bool:
        """Whether the channel has no rules."""
        return self.max_per_day is None and self.min_gap is None and self.quiet_start is None

    def is_quiet(self, local: time) -> bool:
        """Whether the local time ``local`` falls in the quiet hours."""
        start, end = self.quiet_start, self.quiet_end
        if start is None or end is None:
            return False
        local = local.replace(tzinfo=None)
        return start <= local < end if start < end else (local >= start or local < end)


NO_CADENCE = Cadence()


@attrs.frozen
class Channel:
    """An account on a network that posts go out to."""

    name: str
    network: str
    handle: str = ""
    timezone: str = "UTC"
    active: bool = True
    version: int = 1
    publisher: str | None = None
    """The publisher that sends its posts (default: the one registered for ``network``)."""
    settings: Mapping[str, str] = attrs.field(default=NO_DATA, hash=False,
                                              converter=_frozen)
    """Publisher settings, e.g. a webhook's ``url`` and ``secret_env``."""
    cadence: Cadence = NO_CADENCE
    """Posting rules ``schedule`` enforces."""


@attrs.frozen
class Campaign:
    """A named push with a goal and the hashtags it uses."""

    name: str
    goal: str = ""
    hashtags: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    version: int = 1
    active: bool = True
    """``False`` once retired: posts can no longer be created for or moved into it."""


@attrs.frozen
class Approval:
    """One member's approval of one revision at one stage."""

    member: str
    stage: str
    revision: int
    at: datetime
    comment: str | None = None


@attrs.frozen(repr=False)
class Post:
    """A post as stored at ``version``.

    ``scheduled_at`` is UTC; ``scheduled_zone`` the IANA zone it was given in.
    ``approvals`` holds the approvals of the current ``revision`` only; approvals of
    earlier revisions are voided by an edit and remain in the audit trail.
    ``revised_by`` names who wrote the current revision when it was not ``author``.
    """

    id: int
    version: int
    state: str
    author: str
    text: str
    channels: tuple[str, ...]
    revision: int
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime
    campaign: str | None = None
    planned_for: date | None = None
    scheduled_at: datetime | None = None
    scheduled_zone: str | None = None
    approvals: tuple[Approval, ...] = ()
    revised_by: str | None = None
    media: tuple[str, ...] = ()
    published_urls: Mapping[str, str] = attrs.field(default=NO_DATA, hash=False)
    sequence: int = 0
    claimed_by: str | None = None
    """The worker holding this post's publishing lease, if any."""
    claimed_until: datetime | None = None
    """When that lease ends; also the earliest next attempt after a retryable error."""
    series_id: int | None = None
    """The recurring series this post is an occurrence of."""
    occurrence_at: datetime | None = None
    """When this occurrence is meant to go out (UTC); ``schedule`` uses it by default."""
    extra_approvers: tuple[tuple[str, str], ...] = attrs.field(default=(),
                                                              converter=_pairs)
    """``(stage, member)`` pairs: members an escalation made approvers of this post at
    that stage (whatever their roles; the four-eyes rule still applies)."""

    @property
    def scheduled_local(self) -> datetime | None:
        """``scheduled_at`` in the zone it was scheduled in."""
        if self.scheduled_at is None:
            return None
        return self.scheduled_at.astimezone(zone_of(self.scheduled_zone or "UTC"))

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 30 else self.text[:29] + "…"
        return f"<Post {self.id} v{self.version} {self.state} r{self.revision} {text!r}>"


@attrs.frozen
class Revision:
    """The content of a post as of one edit."""

    post_id: int
    number: int
    text: str
    channels: tuple[str, ...]
    campaign: str | None
    author: str
    created_at: datetime
    media: tuple[str, ...] = ()


@attrs.frozen
class AuditEntry:
    """An immutable record of one change.

    Entries written by one call share a ``correlation_id``. ``post_id`` is ``None`` for
    team, channel and campaign changes.
    """

    id: int
    action: str
    actor: str
    at: datetime
    correlation_id: str
    post_id: int | None = None
    from_state: str | None = None
    to_state: str | None = None
    revision: int | None = None
    comment: str | None = None
    data: Mapping[str, Any] = attrs.field(default=NO_DATA, hash=False)


@attrs.frozen
class StageStatus:
    """Where one approval stage stands for a post's current revision."""

    name: str
    needed: int
    approved_by: tuple[str, ...]
    eligible_roles: frozenset[str]
    eligible_members: frozenset[str]
    due_at: datetime | None
    """``reached_at`` + the stage's due time (``None`` without either)."""
    overdue: bool
    reached_at: datetime | None = None
    """When the post reached this stage: when it entered review for the first stage, when
    the approval completing the previous stage's quorum was given for a later one;
    ``None`` while it has not reached it."""

    @property
    def satisfied(self) -> bool:
        """Whether enough eligible members approved."""
        return len(self.approved_by) >= self.needed


OFF_CALENDAR_STATES = frozenset({"archived", "failed"})
"""States whose posts are never on the calendar, planned date or not."""


def calendar_slot(post: Post) -> tuple[str, datetime | date] | None:
    """Where ``post`` sits on the calendar: ``(status, start)``, or ``None`` when it is not
    on it.

    Archived and failed posts are never on it. Any other post with a scheduled time is
    ``CONFIRMED`` then (a post published without a schedule: when it was published);
    one with only a planned date is ``TENTATIVE`` on that day. A post's
    ``sequence`` goes up whenever this value changes.
    """
    return slot_of(post.state, post.scheduled_at, post.planned_for, post.state_changed_at)


def slot_of(
    state: str, scheduled_at: datetime | None, planned_for: date | None,
    state_changed_at: datetime,
) -> tuple[str, datetime | date] | None:
    """:func:`calendar_slot` from the fields it reads (before the post is built)."""
    if state in OFF_CALENDAR_STATES:
        return None
    # any state with a schedule (custom workflows name theirs freely) is confirmed
    at = scheduled_at or (state_changed_at if state == "published" else None)
    if at is not None:
        return ("CONFIRMED", at)
    if planned_for is not None:
        return ("TENTATIVE", planned_for)
    return None


def next_sequence(
    post: Post, state: str, scheduled_at: datetime | None, planned_for: date | None,
    state_changed_at: datetime,
) -> int:
    """``post.sequence``, plus one if these new values move it on the calendar."""
    if state == post.state and scheduled_at == post.scheduled_at and (
            planned_for == post.planned_for):
        return post.sequence
    moved = slot_of(state, scheduled_at, planned_for, state_changed_at) != calendar_slot(post)
    return post.sequence + moved


@attrs.frozen
class PlanningEntry:
    """A tentative entry imported from another calendar (a holiday, a launch).

    ``uid`` is the UID it had there; ``start``/``end`` are UTC instants or, for all-day
    entries, dates (``end`` exclusive). ``sequence`` goes up when its time changes.
    """

    uid: str
    summary: str
    start: datetime | date
    end: datetime | date
    description: str = ""
    category: str = "planning"
    sequence: int = 0
    updated_at: datetime | None = None
    version: int = 1


@attrs.frozen(repr=False)
class Feed:
    """A subscribable calendar feed: a name, its filters, and the hash of its token.

    The token itself is shown once, when the feed is created or rotated; only its
    SHA-256 is stored. A revoked feed keeps its name and filters but has no token.
    """

    name: str
    channels: frozenset[str] = attrs.field(default=frozenset(), converter=_frozenset)
    campaigns: frozenset[str] = attrs.field(default=frozenset(), converter=_frozenset)
    states: frozenset[str] = attrs.field(default=frozenset(), converter=_frozenset)
    authors: frozenset[str] = attrs.field(default=frozenset(), converter=_frozenset)
    token_hash: str | None = None
    created_at: datetime | None = None
    rotated_at: datetime | None = None
    version: int = 1
    planning: bool = True
    """Whether imported planning entries are in the feed (filters apply to posts)."""

    @property
    def revoked(self) -> bool:
        """Whether the feed has no valid token."""
        return self.token_hash is None

    def __repr__(self) -> str:
        status = "revoked" if self.revoked else "active"
        return f"<Feed {self.name!r} {status} v{self.version}>"


DELIVERY_STATES = ("pending", "sending", "sent", "failed", "unconfirmed")
"""What a delivery can be: not tried yet (or waiting to retry), handed to the publisher
(the outcome not yet recorded), sent, failed for good, or of unknown outcome."""


@attrs.frozen
class Delivery:
    """One post's revision on one channel, as far as publishing got."""

    post_id: int
    channel: str
    revision: int
    status: str
    idempotency_key: str
    attempts: int = 0
    remote_id: str | None = None
    url: str | None = None
    last_error: str | None = None
    updated_at: datetime | None = None


@attrs.frozen
class Series:
    """A post that repeats by an RFC 5545 RRULE, in the wall-clock time of ``zone``.

    ``start`` is the first occurrence's local time (naive, in ``zone``); occurrences up
    to ``ahead`` from now are created as posts of their own; ``created_until`` is the
    last occurrence created so far (UTC).
    """

    id: int
    author: str
    text: str
    channels: tuple[str, ...] = attrs.field(converter=_tuple)
    rrule: str
    start: datetime
    zone: str
    ahead: timedelta
    campaign: str | None = None
    media: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    created_until: datetime | None = None
    version: int = 1
    ended_at: datetime | None = None
    """When the series was ended (no occurrences are created after that), or ``None``."""
    ended_by: str | None = None
    """Who ended it."""


@attrs.frozen
class Hold:
    """A crisis pause: all publishing (``scope == "*"``) or one channel's."""

    scope: str
    reason: str
    by: str
    at: datetime
