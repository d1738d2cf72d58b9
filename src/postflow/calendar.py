"""The content calendar as iCalendar (RFC 5545): exports, feeds, imported planning.

``ws.calendar.ical(...)`` renders the posts on the calendar (scheduled and published
ones at their time, planned ones as tentative all-day events) and the imported planning
entries, one VEVENT per post and channel. The bytes are deterministic for the same data:
UIDs come from post and channel, DTSTAMP and LAST-MODIFIED are the post's last change,
and SEQUENCE is the post's persisted :attr:`~postflow.Post.sequence`.

Each post's events are cached as bytes by post version and the versions of the channels
and campaigns, so a render after a change serialises only what changed. This module is
also the built-in plugin that fills every event (``postflow_calendar_event``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from postflow._fields import LIMITS, check_field_types, checked_text, flag, name_list
from postflow._time import EARLIEST, LATEST, to_utc
from postflow.engine import new_correlation_id
from postflow.exceptions import ConfigError, ValidationFailed
from postflow.hookspecs import hookimpl
from postflow.models import (
    Campaign,
    Channel,
    Feed,
    PlanningEntry,
    Post,
    calendar_slot,
)
from postflow.storage import NewEntry

if TYPE_CHECKING:
    import icalendar

    from postflow.workspace import Workspace

__all__ = [
    "Calendar",
    "CalendarSettings",
    "Feeds",
    "ImportReport",
    "RenderedFeed",
    "SubscriptionLinks",
    "subscription_links",
]

log = logging.getLogger("postflow.calendar")

PRODID = "-//postflow//postflow calendar//EN"
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_FOOTER = b"END:VCALENDAR\r\n"
_MAX_CACHED_POSTS = 200_000


@attrs.frozen
class CalendarSettings:
    """How a workspace renders its calendar.

    ``domain`` ends every UID (``post-<id>-<channel>@<domain>``); ``post_url`` is the
    link to a post in the host app, with ``{id}`` in it; ``event_minutes`` is the
    length given to a post's event; feeds show a rolling window of ``past_days`` before
    today (UTC) and ``future_days`` after it (``None``: everything ahead).
    """

    name: str = "postflow"
    domain: str = "postflow.invalid"
    post_url: str | None = None
    event_minutes: int = 15
    refresh_minutes: int = 60
    past_days: int = 30
    future_days: int | None = None
    planning_category: str = "planning"

    def __attrs_post_init__(self) -> None:
        check_field_types(self)
        problems = []
        if not isinstance(self.name, str) or not self.name.strip():
            problems.append("name must be non-empty text")
        if not isinstance(self.domain, str) or not re.fullmatch(r"[A-Za-z0-9.-]+",
                                                                  self.domain or ""):
            problems.append(f"domain must be a host name, got {self.domain!r}")
        if self.post_url is not None and "{id}" not in self.post_url:
            problems.append(f"post_url must contain {{id}}, got {self.post_url!r}")
        if self.event_minutes < 1 or self.refresh_minutes < 1:
            problems.append("event_minutes and refresh_minutes must be at least 1")
        if self.past_days < 0 or (self.future_days is not None and self.future_days < 0):
            problems.append("past_days and future_days cannot be negative")
        if problems:
            raise ConfigError("calendar settings: " + "; ".join(problems))


@attrs.frozen
class RenderedFeed:
    """A rendered feed and its HTTP validators."""

    body: bytes
    etag: str
    """A strong ETag (quoted SHA-256 of the body, truncated)."""
    last_modified: datetime
    """The latest change of anything rendered, UTC, whole seconds."""


@attrs.frozen
class ImportReport:
    """What :meth:`Calendar.import_ical` did."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    """Entries of the category that the file no longer has (with ``prune=True``)."""
    skipped: tuple[tuple[str, str], ...] = ()
    """``(what, why)`` for each event that was not imported."""
    own: tuple[str, ...] = ()
    """UIDs of events this workspace rendered itself (its posts, ``post-<id>-<channel>@``,
    and its planning entries, ``planning-<digest>@``, with its calendar ``domain``): an
    export imported back is not planned a second time."""


@attrs.frozen
class _Filters:
    channels: frozenset[str] | None = None
    campaigns: frozenset[str] | None = None
    states: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    planning: bool = True

    def admits(self, post: Post) -> bool:
        return (
            (self.states is None or post.state in self.states)
            and (self.campaigns is None or post.campaign in self.campaigns)
            and (self.authors is None or post.author in self.authors)
        )


class _CachedPost:
    """A post's rendered events: bytes per channel, valid for one version of the data."""

    __slots__ = ("events", "key", "last_instant", "post", "sort_key")

    def __init__(self, key: tuple[Any, ...], post: Post, events: dict[str, bytes],
                 sort_key: tuple[datetime, int], last_instant: datetime) -> None:
        self.key = key
        self.post = post
        self.events = events
        self.sort_key = sort_key
        # the last instant that puts it in a window: its time, or its day's last moment
        self.last_instant = last_instant


class Calendar:
    """``ws.calendar``: iCalendar exports, feeds and imported planning entries."""

    def __init__(self, workspace: Workspace, settings: CalendarSettings) -> None:
        self._ws = workspace
        self._settings = settings
        self._lock = threading.RLock()
        self._posts: dict[int, _CachedPost] = {}
        self._planning: dict[str, tuple[int, bytes]] = {}
        self._feeds: dict[str, tuple[tuple[Any, ...], RenderedFeed]] = {}
        self._headers: dict[str, bytes] = {}

    @property
    def settings(self) -> CalendarSettings:
        """How this workspace renders (fixed when it opens: the caches depend on it)."""
        return self._settings

    # -- exports -------------------------------------------------------------------

    def ical(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        channels: Iterable[str] | None = None,
        campaigns: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
        authors: Iterable[str] | None = None,
        planning: bool = True,
        name: str | None = None,
    ) -> bytes:
        """The calendar as iCalendar bytes.

        Posts whose time lies in ``[start, end)`` or whose planned day overlaps it, and
        (unless ``planning=False``) the imported planning entries overlapping it; by
        default the rolling window of the settings. Filters take names and apply to
        posts; an unknown channel, campaign, state or author, or a ``start`` not before
        ``end``, raises :class:`~postflow.ValidationFailed`. ``name`` overrides the
        calendar's name.
        """
        if name is not None and not isinstance(name, str):
            raise ValidationFailed.single("calendar", "bad-name",
                                          f"name must be text, got {name!r}", field="name")
        flag(planning, "calendar", "planning")
        window_start, window_end = self._window(start, end)
        filters = attrs.evolve(self._filters(channels, campaigns, states, authors),
                               planning=planning)
        return self._render(window_start, window_end, filters, name or self.settings.name)

    def _window(
        self, start: datetime | None, end: datetime | None
    ) -> tuple[datetime, datetime | None]:
        subject = "calendar"
        default_start, default_end = self.rolling_window()
        start_utc = default_start if start is None else \
            to_utc(start, field="start", subject=subject)[0]
        end_utc = (default_end if start is None else None) if end is None else \
            to_utc(end, field="end", subject=subject)[0]
        if end_utc is not None and start_utc >= end_utc:
            raise ValidationFailed.single(
                subject, "start-after-end",
                f"start ({start_utc.isoformat()}) must be before end ({end_utc.isoformat()})",
                field="start")
        return start_utc, end_utc

    def rolling_window(self) -> tuple[datetime, datetime | None]:
        """Today (UTC) minus ``past_days`` to today plus ``future_days`` (or open)."""
        today = datetime.combine(self._ws.clock.now().astimezone(UTC).date(), time(),
                                 tzinfo=UTC)
        end = None
        if self.settings.future_days is not None:
            end = today + timedelta(days=self.settings.future_days + 1)
        return today - timedelta(days=self.settings.past_days), end

    def _filters(
        self, channels: Iterable[str] | None, campaigns: Iterable[str] | None,
        states: Iterable[str] | None, authors: Iterable[str] | None,
    ) -> _Filters:
        storage = self._ws.storage
        checks: tuple[tuple[str, Iterable[str] | None, Callable[[str], bool], str, str], ...] = (
            ("channels", channels, lambda n: storage.get_channel(n) is not None,
             "unknown-channel", "channel"),
            ("campaigns", campaigns, lambda n: storage.get_campaign(n) is not None,
             "unknown-campaign", "campaign"),
            ("states", states, lambda n: n in self._ws.workflow.states,
             "unknown-state", "state"),
            ("authors", authors, lambda n: storage.get_member(n) is not None,
             "unknown-author", "member"),
        )
        chosen: dict[str, frozenset[str] | None] = {}
        for field, value, known, code, what in checks:
            if value is None:
                chosen[field] = None
                continue
            listed = name_list(value, "calendar filter", field)
            for name in listed:
                if not isinstance(name, str) or not known(name):
                    raise ValidationFailed.single(
                        "calendar filter", code, f"no {what} called {name!r}", field=field)
            chosen[field] = frozenset(listed) or None
        return _Filters(chosen["channels"], chosen["campaigns"], chosen["states"],
                        chosen["authors"])

    def _render(
        self, start: datetime, end: datetime | None, filters: _Filters, name: str
    ) -> bytes:
        with self._lock:
            return self._render_locked(start, end, filters, name)

    def _render_locked(
        self, start: datetime, end: datetime | None, filters: _Filters, name: str
    ) -> bytes:
        ws = self._ws
        storage = ws.storage
        channels = {c.name: c for c in storage.list_channels()}
        campaigns = {c.name: c for c in storage.list_campaigns()}
        directory = (tuple((c.name, c.version) for c in channels.values()),
                     tuple((c.name, c.version) for c in campaigns.values()))
        first_day = start.date()
        last_day = None if end is None else (end - timedelta(microseconds=1)).date()
        candidates = storage.calendar_candidates(start, end, first_day, last_day)
        cache = self._posts
        missing = [i for i, version in candidates
                   if (hit := cache.get(i)) is None or hit.key != (version, directory)]
        if missing:
            for post in storage.get_posts(missing):
                self._cache_post(post, directory, channels, campaigns)
        chosen: list[tuple[datetime, int, int, str, bytes]] = []
        for post_id, _ in candidates:
            cached = cache.get(post_id)
            if cached is None or not filters.admits(cached.post):
                continue
            sort_key = cached.sort_key
            if cached.last_instant < start or (end is not None and sort_key[0] >= end):
                continue
            for channel, event in cached.events.items():
                if filters.channels is None or channel in filters.channels:
                    chosen.append((sort_key[0], 0, post_id, "", event))
        chosen.extend(self._planning_events(start, end, filters))
        # by time; posts before planning entries at the same time; stable per channel
        chosen.sort(key=lambda item: item[:4])
        if len(cache) > _MAX_CACHED_POSTS:
            cache.clear()
        return b"".join([self._header(name), *(item[4] for item in chosen), _FOOTER])

    def _cache_post(
        self, post: Post, directory: tuple[Any, ...], channels: Mapping[str, Channel],
        campaigns: Mapping[str, Campaign],
    ) -> None:
        slot = calendar_slot(post)
        events: dict[str, bytes] = {}
        sort_key = (datetime.min.replace(tzinfo=UTC), post.id)
        last_instant = sort_key[0]
        if slot is not None and not _representable(slot[1]):
            # stored before postflow refused such dates: left out, never a broken feed
            log.warning("post %s: its calendar date %s is outside what calendars can "
                        "show; it is left out of the calendar", post.id, slot[1])
            slot = None
        if slot is not None:
            start = last_instant = slot[1]  # type: ignore[assignment]
            if not isinstance(start, datetime):
                start = datetime.combine(start, time(), tzinfo=UTC)
                last_instant = start + timedelta(days=1) - timedelta(microseconds=1)
            sort_key = (start, post.id)
            hooks = self._ws.hooks
            icalendar = _icalendar()
            for name in post.channels:
                channel = channels.get(name) or Channel(name, "unknown")
                event = icalendar.Event()
                campaign = campaigns.get(post.campaign) if post.campaign else None
                hooks.calendar_event(self._ws, post, channel, campaign, event)
                if "UID" not in event:
                    raise ConfigError(
                        f"no plugin built the calendar event of post {post.id} on {name!r}: "
                        "is the built-in plugin 'postflow.calendar' blocked?")
                events[name] = event.to_ical()
        self._posts[post.id] = _CachedPost((post.version, directory), post, events, sort_key,
                                           last_instant)

    def _planning_events(
        self, start: datetime, end: datetime | None, filters: _Filters
    ) -> list[tuple[datetime, int, int, str, bytes]]:
        if not filters.planning:
            return []
        rendered = []
        for entry in self._ws.storage.list_planning_entries():
            entry_start, entry_end = _instant(entry.start), _instant(entry.end)
            if entry_end <= start or (end is not None and entry_start >= end):
                continue
            cached = self._planning.get(entry.uid)
            if cached is None or cached[0] != entry.version:
                cached = (entry.version, self._planning_event(entry).to_ical())
                self._planning[entry.uid] = cached
            rendered.append((entry_start, 1, 0, entry.uid, cached[1]))
        return rendered

    def _planning_event(self, entry: PlanningEntry) -> icalendar.Event:
        event: icalendar.Event = _icalendar().Event()
        event.add("uid", f"planning-{_planning_digest(entry.uid)}@{self.settings.domain}")
        event.add("dtstart", entry.start)
        event.add("dtend", entry.end)
        stamp = entry.updated_at or datetime(1970, 1, 1, tzinfo=UTC)
        event.add("dtstamp", stamp)
        event.add("last-modified", stamp)
        event.add("sequence", entry.sequence)
        event.add("summary", text_value(clean_text(entry.summary)))
        if entry.description:
            event.add("description", text_value(clean_text(entry.description)))
        event.add("status", "TENTATIVE")
        event.add("transp", "TRANSPARENT")
        event.add("categories", [clean_text(entry.category)])
        return event

    def _header(self, name: str) -> bytes:
        header = self._headers.get(name)
        if header is None:
            icalendar = _icalendar()
            calendar = icalendar.Calendar()
            calendar.add("version", "2.0")
            calendar.add("prodid", PRODID)
            calendar.add("calscale", "GREGORIAN")
            # TEXT values (RFC 7986): escaped like SUMMARY, never raw
            calendar.add("name", text_value(clean_text(name)))
            calendar.add("x-wr-calname", text_value(clean_text(name)))
            refresh = timedelta(minutes=self.settings.refresh_minutes)
            calendar.add("refresh-interval", refresh, parameters={"VALUE": "DURATION"})
            calendar.add("x-published-ttl", icalendar.vDuration(refresh))
            header = calendar.to_ical()
            assert header.endswith(_FOOTER)
            header = header[: -len(_FOOTER)]
            self._headers[name] = header
        return header

    # -- feeds ---------------------------------------------------------------------

    def render_feed(self, feed: Feed) -> RenderedFeed:
        """The feed's current bytes and validators, re-rendered only when needed.

        Its validators come from storage (the newest audit entry) and the rolling
        window, so a feed whose data did not change is answered from memory.
        """
        key, last_change = self._feed_key(feed)
        with self._lock:
            cached = self._feeds.get(feed.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        window_start, window_end = self.rolling_window()
        filters = _Filters(feed.channels or None, feed.campaigns or None,
                           feed.states or None, feed.authors or None, feed.planning)
        body = self._render(window_start, window_end, filters,
                            f"{self.settings.name}: {feed.name}")
        # the window moves at midnight UTC: events may have left it then
        now = self._ws.clock.now().astimezone(UTC)
        moved = datetime.combine(now.date(), time(), tzinfo=UTC)
        last_modified = max(last_change.astimezone(UTC) if last_change else moved, moved)
        etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
        if cached is not None:
            previous = cached[1]
            # a writer whose clock read came earlier may commit later: never go back,
            # and a changed body always gets a later date than the one clients hold
            last_modified = max(last_modified, previous.last_modified)
            if etag != previous.etag and last_modified <= previous.last_modified:
                last_modified = max(now, previous.last_modified + timedelta(seconds=1))
        rendered = RenderedFeed(body, etag, last_modified.replace(microsecond=0))
        with self._lock:
            self._feeds[feed.name] = (key, rendered)
        return rendered

    def _feed_key(self, feed: Feed) -> tuple[tuple[Any, ...], datetime | None]:
        change_id, change_at = self._ws.storage.last_change()
        return (change_id, self.rolling_window(), feed.channels, feed.campaigns,
                feed.states, feed.authors, feed.planning), change_at

    # -- imports -------------------------------------------------------------------

    def import_ical(
        self, data: bytes | str, *, category: str | None = None, prune: bool = False,
        by: str | None = None,
    ) -> ImportReport:
        """Add the events of another calendar as tentative planning entries.

        Entries are keyed by their UID: importing the same file again changes nothing,
        and an event whose time changed is updated (its SEQUENCE goes up). With
        ``prune=True``, entries of ``category`` that the file no longer has are
        removed. Events without a UID or a start, and recurring events, are skipped and
        reported. The workspace's own events (its posts and planning entries as
        :meth:`ical` renders them, recognised by their UIDs and the calendar's
        ``domain``) are not imported: they are listed in :attr:`ImportReport.own`, so
        importing an export of this workspace adds nothing. Data that is not iCalendar
        raises :class:`~postflow.ValidationFailed` and imports nothing.
        """
        ws = self._ws
        actor = ws.engine.manager(by)
        category = self.settings.planning_category if category is None or category == "" \
            else checked_text(category, "calendar import", "category", limit=LIMITS["name"],
                              one_line=True)
        flag(prune, "calendar import", "prune")
        parsed, skipped = _parse_events(
            data, timedelta(minutes=self.settings.event_minutes))
        stored = {e.uid: e for e in ws.storage.list_planning_entries()}
        events: list[_Parsed] = []
        own: list[str] = []
        echoed: set[str] = set()  # digests of planning entries whose own event is in the file
        for event in parsed:
            kind, key = own_uid(event[0], self.settings.domain)
            if kind is None:
                events.append(event)
                continue
            own.append(event[0])
            if kind == "planning":
                echoed.add(key)
        now = ws.clock.now()
        changed: list[PlanningEntry] = []
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        for uid, summary, description, start, end in events:
            old = stored.get(uid)
            fresh = PlanningEntry(uid, summary, start, end, description, category, 0, now, 1)
            if old is None:
                changed.append(fresh)
                added.append(uid)
                continue
            same = (old.summary, old.description, old.start, old.end, old.category) == (
                summary, description, start, end, category)
            if same:
                unchanged.append(uid)
                continue
            moved = (old.start, old.end) != (start, end)
            changed.append(attrs.evolve(fresh, sequence=old.sequence + int(moved),
                                        version=old.version + 1))
            updated.append(uid)
        in_file = {uid for uid, *_ in events}
        if echoed:  # an entry exported and imported back is still in the file
            in_file |= {uid for uid in stored if _planning_digest(uid) in echoed}
        removed = sorted(uid for uid, old in stored.items()
                         if prune and old.category == category and uid not in in_file)
        if changed or removed:
            entry = NewEntry("calendar.import", actor, now, _correlation(), data={
                "category": category, "added": added, "updated": updated,
                "removed": removed, "skipped": [what for what, _ in skipped]})
            ws.engine.commit(entry.correlation_id, lambda: ws.storage.save_planning_entries(
                changed, entry, remove=removed))
        return ImportReport(tuple(added), tuple(updated), tuple(unchanged), tuple(removed),
                            tuple(skipped), tuple(own))


def _icalendar() -> Any:
    """The ``icalendar`` module, imported on first use: it costs about 0.1 s to import,
    which every CLI command would pay otherwise."""
    import icalendar

    return icalendar


_TEXT_TYPE: list[type] = []


def text_value(text: str) -> Any:
    """``text`` as an iCalendar TEXT value, escaped exactly as RFC 5545 3.3.11 says.

    icalendar 7.3's escaper turns a literal backslash followed by ``N`` into ``\\n``,
    which every reader takes for a line break; this value escapes the backslash first.
    """
    if not _TEXT_TYPE:
        icalendar = _icalendar()

        class RfcText(icalendar.vText):  # type: ignore[misc, name-defined]
            def to_ical(self) -> bytes:
                escaped = (str(self).replace("\\", "\\\\").replace(";", "\\;")
                           .replace(",", "\\,").replace("\n", "\\n"))
                return escaped.encode(self.encoding)

        _TEXT_TYPE.append(RfcText)
    return _TEXT_TYPE[0](text)


def _correlation() -> str:
    return new_correlation_id()


def _representable(value: datetime | date) -> bool:
    """Whether an event at ``value`` (and its end, a day later at most) can be written."""
    day = value.date() if isinstance(value, datetime) else value
    return EARLIEST.date() <= day <= LATEST.date()


def _instant(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(), tzinfo=UTC)


def clean_text(text: str) -> str:
    """``text`` with line breaks as ``\\n`` and no other control characters.

    iCalendar TEXT may not carry raw control characters (RFC 5545 3.3.11); CR and CRLF
    become LF so that the escaper turns every line break into ``\\n``. Leading
    U+FEFF characters are dropped too: readers take one for a byte-order mark.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text).lstrip("\ufeff")


def _summary(post: Post, channel: Channel) -> str:
    first_line = clean_text(post.text).strip().split("\n", 1)[0]
    if len(first_line) > 60:
        cut = first_line[:59]
        if " " in cut[30:]:  # end at a word rather than inside one (or an emoji sequence)
            cut = cut.rsplit(" ", 1)[0]
        first_line = cut.rstrip() + "…"
    return f"[{channel.name}] {first_line}"


def _description(workspace: Workspace, post: Post, channel: Channel,
                 campaign: Campaign | None) -> str:
    lines = [f"State: {post.state}",
             f"Channel: {channel.name} ({channel.network}"
             + (f", {channel.handle})" if channel.handle else ")")]
    if post.campaign:
        goal = f": {campaign.goal}" if campaign and campaign.goal else ""
        lines.append(f"Campaign: {post.campaign}{goal}")
    lines.append(f"Author: {post.author}")
    if post.approvals:
        lines.append("Approved by: " + ", ".join(
            f"{a.member} ({a.stage})" for a in post.approvals))
    template = workspace.calendar.settings.post_url
    if template:
        lines.append(f"Open in postflow: {template.replace('{id}', str(post.id))}")
    return f"{clean_text(post.text)}\n\n{clean_text(chr(10).join(lines))}"


_OWN_UID = re.compile(r"(?:post-(?P<post>\d+)-(?P<channel>[^@\s]+)"
                      r"|planning-(?P<planning>[0-9a-f]{24}))@(?P<domain>[^@\s]+)")


def _planning_digest(uid: str) -> str:
    """What a planning entry's UID becomes in the UID of its rendered event."""
    return hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:24]


def own_uid(uid: str, domain: str) -> tuple[str | None, str]:
    """Whether ``uid`` is one a workspace with calendar ``domain`` renders itself.

    ``("post", "<id>-<channel>")`` for a post's event (``post-<id>-<channel>@domain``),
    ``("planning", "<digest>")`` for a planning entry's (``planning-<digest>@domain``),
    else ``(None, "")``. The domain is compared without regard to case.
    """
    match = _OWN_UID.fullmatch(uid)
    if match is None or match["domain"].lower() != domain.lower():
        return None, ""
    if match["planning"] is not None:
        return "planning", match["planning"]
    return "post", f"{match['post']}-{match['channel']}"


@hookimpl(tryfirst=True)
def postflow_calendar_event(
    workspace: Workspace, post: Post, channel: Channel, campaign: Campaign | None,
    event: icalendar.Event,
) -> None:
    """Fill the standard properties of a post's event on one channel."""
    settings = workspace.calendar.settings
    slot = calendar_slot(post)
    assert slot is not None, "only posts on the calendar are rendered"
    status, start = slot
    event.add("uid", f"post-{post.id}-{channel.name}@{settings.domain}")
    if isinstance(start, datetime):
        event.add("dtstart", start.astimezone(UTC))
        event.add("dtend", start.astimezone(UTC) + timedelta(minutes=settings.event_minutes))
    else:
        event.add("dtstart", start)
        event.add("dtend", start + timedelta(days=1))
    stamp = post.updated_at.astimezone(UTC)
    event.add("dtstamp", stamp)
    event.add("last-modified", stamp)
    event.add("sequence", post.sequence)
    event.add("status", status)
    event.add("transp", "TRANSPARENT")
    event.add("summary", text_value(_summary(post, channel)))
    event.add("description", text_value(_description(workspace, post, channel, campaign)))
    categories = [channel.name, channel.network]
    if post.campaign:
        categories.append(post.campaign)
    event.add("categories", [clean_text(c) for c in categories])
    url = post.published_urls.get(channel.name)
    if url:
        event.add("url", url)
    for media in post.media:
        event.add("attach", media)


# -- feeds ---------------------------------------------------------------------------

@attrs.frozen
class SubscriptionLinks:
    """The links that subscribe a calendar app to a feed (:func:`subscription_links`)."""

    url: str
    """The feed's own URL (``https``, or ``http``): Google Calendar, Thunderbird."""
    webcal: str
    """The same URL as ``webcal://``: the system's calendar app (Apple, Outlook)."""
    google: str | None
    """Google Calendar's "add by URL" link, or ``None`` where Google cannot fetch the
    feed (:attr:`google_note` says why)."""
    google_note: str | None = None
    """Why there is no Google link, to show instead of it."""


_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan")


def unreachable_from_internet(host: str) -> str | None:
    """Why a server on the internet (Google's) can never fetch from ``host``, or ``None``.

    Loopback, private, link-local, shared (CGNAT) and other non-global addresses, and
    names that only resolve locally (``localhost``, one-label names, ``.local``,
    ``.internal``, ``.home.arpa``, ``.lan``), are unreachable. Other names are assumed
    public: whether they resolve, and to what, is not checked.
    """
    import ipaddress  # here: only feed links need it, not every ``import postflow``

    name = host.strip().strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        if not name:
            return "no host"
        if name == "localhost" or name.endswith(".localhost"):
            return "a loopback name"
        if "." not in name:
            return "a local host name"
        if name.endswith(_LOCAL_SUFFIXES):
            return "a name that only resolves locally"
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def subscription_links(base_url: str, token: str) -> SubscriptionLinks:
    """The links of the feed with ``token`` served under ``base_url``.

    The Google Calendar link is left out, with a note saying why, when ``base_url``
    names a loopback, private or local-only host: Google fetches subscribed feeds from
    its own servers, which can never reach it.
    """
    url = f"{base_url.rstrip('/')}/feeds/{token}.ics"
    webcal = "webcal://" + url.split("://", 1)[-1]
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError:  # a malformed authority, e.g. an unclosed IPv6 bracket
        host = ""
    why = unreachable_from_internet(host)
    if why == "no host":
        return SubscriptionLinks(url, webcal, None, f"no Google Calendar link: the base "
                                 f"URL {base_url!r} names no host")
    if why is not None:
        note = (f"no Google Calendar link: Google fetches feeds from its own servers, "
                f"which cannot reach {host} ({why}); serve the feeds at a public https "
                f"address and give that as the base URL")
        return SubscriptionLinks(url, webcal, None, note)
    # the feed's own URL, not webcal://: Google would fetch that over plain http
    google = "https://calendar.google.com/calendar/r?cid=" + urllib.parse.quote(url, safe="")
    return SubscriptionLinks(url, webcal, google)


def hash_token(token: str) -> str:
    """The stored form of a feed token (SHA-256, hex)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def redact(token: str) -> str:
    """A token as it may appear in logs: its first 4 characters."""
    return f"{token[:4]}…"


class Feeds:
    """``ws.feeds``: subscribable calendar feeds, each behind a secret token."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def create(
        self,
        name: str,
        *,
        channels: Iterable[str] = (),
        campaigns: Iterable[str] = (),
        states: Iterable[str] = (),
        authors: Iterable[str] = (),
        planning: bool = True,
        by: str | None = None,
    ) -> tuple[Feed, str]:
        """Create a feed; return it and its token (shown only now: store it safely).

        Empty filters admit every post; ``planning`` adds the imported planning
        entries. The token has 256 random bits.
        """
        from postflow._fields import slug as _slug

        ws = self._ws
        actor = ws.engine.manager(by)
        name = _slug(name, "feed")
        channels, campaigns, states, authors = (
            name_list(value, f"feed {name!r}", field) for field, value in (
                ("channels", channels), ("campaigns", campaigns), ("states", states),
                ("authors", authors)))
        flag(planning, f"feed {name!r}", "planning")
        ws.calendar._filters(channels or None, campaigns or None, states or None,
                             authors or None)
        token = secrets.token_urlsafe(32)
        now = ws.clock.now()
        feed = Feed(name, channels, campaigns, states, authors, hash_token(token), now,
                    planning=planning)
        entry = NewEntry("feed.create", actor, now, _correlation(), data={
            "feed": name, "channels": sorted(feed.channels),
            "campaigns": sorted(feed.campaigns), "states": sorted(feed.states),
            "authors": sorted(feed.authors), "planning": planning})
        ws.engine.insert_new(ws.storage.save_feed, feed, entry, f"feed {name!r}")
        return feed, token

    def rotate(self, name: str, *, by: str | None = None) -> tuple[Feed, str]:
        """Give a feed a new token (the old one stops working); return both."""
        token = secrets.token_urlsafe(32)
        feed = self._change(name, "feed.rotate", by, hash_token(token))
        return feed, token

    def revoke(self, name: str, *, by: str | None = None) -> Feed:
        """Remove a feed's token: subscribers get 404 until it is rotated again."""
        return self._change(name, "feed.revoke", by, None)

    def _change(self, name: str, action: str, by: str | None, token_hash: str | None
                ) -> Feed:
        ws = self._ws
        actor = ws.engine.manager(by)
        feed = self.get(name)
        now = ws.clock.now()
        changed = attrs.evolve(feed, token_hash=token_hash, rotated_at=now,
                               version=feed.version + 1)
        entry = NewEntry(action, actor, now, _correlation(), data={"feed": name})
        ws.engine.commit(entry.correlation_id, lambda: ws.storage.save_feed(
            changed, entry, expected_version=feed.version))
        return changed

    def get(self, name: str) -> Feed:
        """The feed called ``name``; :class:`~postflow.NotFound` otherwise."""
        from postflow.exceptions import NotFound

        feed = self._ws.storage.get_feed(name) if isinstance(name, str) else None
        if feed is None:
            raise NotFound(f"no feed called {name!r}")
        return feed

    def list(self) -> list[Feed]:
        """Every feed, revoked ones too, by name."""
        return self._ws.storage.list_feeds()

    def find(self, token: str) -> Feed | None:
        """The feed ``token`` opens, or ``None`` (unknown, rotated away or revoked).

        The token is hashed before the lookup and the stored hash compared in
        constant time, so the answer takes as long for any wrong token.
        """
        if not isinstance(token, str):
            return None  # type: ignore[unreachable]
        wanted = hash_token(token)
        feed = self._ws.storage.find_feed(wanted)
        if feed is None or feed.token_hash is None:
            return None
        return feed if hmac.compare_digest(feed.token_hash, wanted) else None


# -- reading other calendars ------------------------------------------------------

_Parsed = tuple[str, str, str, datetime | date, datetime | date]


def _parse_events(
    data: bytes | str, default_length: timedelta,
) -> tuple[list[_Parsed], list[tuple[str, str]]]:
    """The importable events of an iCalendar document, and the skipped ones with why."""
    subject = "calendar import"
    try:
        calendars = _icalendar().Calendar.from_ical(data, multiple=True)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ValidationFailed.single(subject, "not-icalendar",
                                      f"not an iCalendar file: {exc}", field="file") from exc
    if not calendars or any(c.name != "VCALENDAR" for c in calendars):
        raise ValidationFailed.single(subject, "not-icalendar",
                                      "not an iCalendar file: no VCALENDAR", field="file")
    events: list[_Parsed] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for calendar in calendars:
        for number, component in enumerate(calendar.walk("VEVENT"), 1):
            summary = clean_text(str(component.get("summary", ""))).strip()
            what = f"event {number}" + (f" ({summary[:40]!r})" if summary else "")
            if "recurrence-id" in component:
                skipped.append((what, "recurrence overrides are not imported"))
                continue
            if any(isinstance(component.get(p), list) for p in ("uid", "summary", "dtstart")):
                skipped.append((what, "it has a property (UID, SUMMARY, DTSTART) twice"))
                continue
            uid = str(component.get("uid", "")).strip()
            if not uid:
                skipped.append((what, "it has no UID"))
                continue
            problem = _text_problem(uid, "UID", _MAX_UID, one_line=True)
            if problem:
                skipped.append((f"event {number}", problem))
                continue
            what = f"event {uid!r}"
            if uid in seen:
                skipped.append((what, "its UID appears twice (recurrence overrides are "
                                      "not imported)"))
                continue
            seen.add(uid)
            if "rrule" in component or "rdate" in component:
                skipped.append((what, "recurring events are not imported"))
                continue
            try:
                start, end = _event_times(component, default_length)
            except (ValueError, TypeError, OverflowError) as exc:
                reason = str(exc) if isinstance(exc, ValueError) else \
                    f"its times cannot be read ({type(exc).__name__}: {exc})"
                skipped.append((what, reason))
                continue
            description = clean_text(str(component.get("description", ""))).strip()
            problem = _text_problem(summary, "SUMMARY", LIMITS["text"]) or _text_problem(
                description, "DESCRIPTION", LIMITS["text"])
            if problem:
                skipped.append((what, problem))
                continue
            events.append((uid, summary or "(untitled)", description, start, end))
    return events, skipped


_MAX_UID = 255
"""The longest event UID imported (longer ones are skipped and reported)."""


def _text_problem(text: str, name: str, limit: int, *, one_line: bool = False
                  ) -> str | None:
    """Why an imported event's ``text`` (its ``name`` property) cannot be stored, or
    ``None``: the same checks as a person's text (:func:`checked_text`)."""
    try:
        checked_text(text, "calendar import", name, limit=limit, one_line=one_line,
                     required=False)
    except ValidationFailed as exc:
        return f"its {name} cannot be stored: {exc.problems[0].message}"
    return None


def _event_times(component: Any, default_length: timedelta
                 ) -> tuple[datetime | date, datetime | date]:
    if "dtstart" not in component:
        raise ValueError("it has no DTSTART")
    start = _aware(component.decoded("dtstart"))
    if "dtend" in component:
        end = _aware(component.decoded("dtend"))
    elif "duration" in component:
        end = start + component.decoded("duration")
        if not isinstance(end, date):
            raise ValueError("its DURATION is not a duration")
    else:
        end = start + (default_length if isinstance(start, datetime) else timedelta(days=1))
    if type(start) is not type(end):
        raise ValueError("DTSTART and DTEND mix a date and a date-time")
    if end < start:
        raise ValueError("it ends before it starts")
    if end == start:  # give it an end: zero-length events show badly
        end = start + (default_length if isinstance(start, datetime) else timedelta(days=1))
    first, last = (start, end) if isinstance(start, datetime) else (
        _instant(start), _instant(end - timedelta(days=1)))
    if not EARLIEST <= first <= last <= LATEST:
        raise ValueError(f"it is out of range (postflow keeps {EARLIEST:%Y-%m-%d} to "
                         f"{LATEST:%Y-%m-%d})")
    return start, end


def _aware(value: object) -> datetime | date:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("it has a floating time (no time zone)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value
    raise ValueError(f"its time {value!r} is not a date or date-time")
