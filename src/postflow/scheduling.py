"""Scheduling: where a post may go (channel cadence), free slots, and recurring series."""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from postflow._fields import (
    LIMITS,
    channel_names,
    checked_text,
    flag,
    is_id,
    media_urls,
    version,
)
from postflow._time import LATEST, to_utc, zone_of
from postflow.engine import ChangeEngine, future_time, new_correlation_id
from postflow.exceptions import (
    ConflictError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    Problem,
    ValidationFailed,
)
from postflow.models import OFF_CALENDAR_STATES, Channel, Post, Revision, Series, freeze, replace
from postflow.posts import create_data
from postflow.storage import NewEntry, PostQuery

__all__ = ["MAX_AHEAD", "MAX_OCCURRENCES", "MAX_PENDING_OCCURRENCES", "Scheduling"]

MAX_OCCURRENCES = 1000
"""Occurrences one call creates per series at most (a FREQ=MINUTELY rule cannot flood)."""


MAX_PENDING_OCCURRENCES = 100
"""The most drafts one series keeps ahead of now: a long ``ahead`` window on a frequent
rule makes more only as these fall due, never thousands at once."""
MAX_AHEAD = timedelta(days=366)
"""The longest ``ahead`` window a series may have."""

MAX_SUGGESTIONS = 1000
"""The most free slots one :meth:`Scheduling.suggest_slots` call returns."""
MIN_STEP = timedelta(minutes=1)
"""The finest grid :meth:`Scheduling.suggest_slots` searches on."""


class Scheduling:
    """Channel cadence, free slots and recurring series (``ws.scheduling``)."""

    def __init__(self, engine: ChangeEngine) -> None:
        self._engine = engine

    def _channel(self, name: str) -> Channel:
        found = self._engine.storage.get_channel(name) if isinstance(name, str) else None
        if found is None:
            raise NotFound(f"no channel called {name!r}")
        return found

    def future_slot(
        self, post: Post, at: datetime | None, now: datetime
    ) -> tuple[datetime, str, Mapping[str, int]]:
        """Where ``schedule`` puts ``post``: ``at`` (or its occurrence time), which must be
        in the future and keep every cadence rule of its channels; and the slot versions
        of those channels the check read (the write refuses if they moved meanwhile)."""
        storage = self._engine.storage
        if at is None and post.occurrence_at is not None:
            channel = storage.get_channel(post.channels[0])
            at = post.occurrence_at.astimezone(zone_of(channel.timezone if channel else "UTC"))
        utc, zone, _ = future_time(post, at, now)
        problems = []
        guards: dict[str, int] = {}
        for name in post.channels:
            channel = storage.get_channel(name)
            if channel is not None and not channel.cadence.empty:
                guards[name] = storage.slot_version(name)  # read before the check
                problems += self._cadence_problems(channel, utc, exclude=post.id)
        if problems:
            raise ValidationFailed(f"post {post.id}", problems)
        return utc, zone, guards

    def _cadence_problems(self, channel: Channel, at: datetime, *, exclude: int | None,
                          extra: Sequence[datetime] = (),
                          known: Sequence[tuple[datetime, Post]] | None = None
                          ) -> list[Problem]:
        """The rules of ``channel`` that a post at ``at`` would break (and with what)."""
        cadence = channel.cadence
        zone = zone_of(channel.timezone)
        local = at.astimezone(zone)
        problems = []
        if cadence.is_quiet(local.time()):
            problems.append(Problem(
                "cadence-quiet-hours",
                f"{local:%H:%M} is in {channel.name}'s quiet hours "
                f"({cadence.quiet_start:%H:%M}-{cadence.quiet_end:%H:%M} {channel.timezone})",
                channel=channel.name, field="at"))
        if cadence.max_per_day is None and cadence.min_gap is None:
            return problems
        day_start = datetime.combine(local.date(), time(), tzinfo=zone).astimezone(UTC)
        day_end = datetime.combine(local.date() + timedelta(days=1), time(),
                                   tzinfo=zone).astimezone(UTC)
        gap = cadence.min_gap or timedelta(0)
        start, end = min(day_start, at - gap), max(day_end, at + gap + timedelta(seconds=1))
        if known is None:
            nearby = self._engine.storage.list_posts(PostQuery(channel=channel.name, start=start,
                                                       end=end))
        else:  # sorted by time: only the slice around this candidate
            lo = bisect.bisect_left(known, start, key=lambda item: item[0])
            hi = bisect.bisect_left(known, end, key=lambda item: item[0])
            nearby = [post for _, post in known[lo:hi]]
        others = [(p.scheduled_at, f"post {p.id}") for p in nearby
                  if p.id != exclude and p.state not in OFF_CALENDAR_STATES
                  and p.scheduled_at]
        others += [(when, "a suggested slot") for when in extra]
        if cadence.max_per_day is not None:
            same_day = [w for w, _ in others if day_start <= w < day_end]
            if len(same_day) >= cadence.max_per_day:
                problems.append(Problem(
                    "cadence-daily-limit",
                    f"{channel.name} allows {cadence.max_per_day} post(s) a day and "
                    f"{local:%Y-%m-%d} already has {len(same_day)}",
                    channel=channel.name, field="at"))
        if cadence.min_gap is not None:
            clashes = sorted((w, what) for w, what in others if abs(w - at) < gap)
            if clashes:
                when, what = clashes[0]
                problems.append(Problem(
                    "cadence-min-gap",
                    f"{channel.name} needs {gap} between posts and {what} is at "
                    f"{when.astimezone(zone):%Y-%m-%d %H:%M}",
                    channel=channel.name, field="at"))
        return problems

    def suggest_slots(self, channel: str, *, after: datetime | None = None, count: int = 5,
                      step: timedelta = timedelta(minutes=15)) -> list[datetime]:
        """The next ``count`` times after ``after`` (default: now) at which a post on
        ``channel`` breaks none of its cadence rules, in the channel's time zone, on a
        grid of ``step`` (searching up to a year ahead)."""
        found = self._channel(channel)
        if type(count) is not int or not 1 <= count <= MAX_SUGGESTIONS:
            raise ValidationFailed.single(
                "suggest_slots", "bad-count", f"count must be a whole number from 1 to "
                f"{MAX_SUGGESTIONS}, got {count!r}", field="count")
        if not isinstance(step, timedelta) or step < MIN_STEP:
            raise ValidationFailed.single(
                "suggest_slots", "bad-step", f"step must be a timedelta of at least "
                f"{MIN_STEP}, got {step!r}", field="step")
        now = self._engine.clock.now()
        start = now if after is None else max(to_utc(after, field="after",
                                                     subject="suggest_slots")[0], now)
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        candidate = epoch + step * -((epoch - start) // step)  # the next grid point
        if candidate <= start:
            candidate += step
        zone = zone_of(found.timezone)
        slots: list[datetime] = []
        limit = min(start + timedelta(days=366), LATEST)  # never past what is accepted
        # one query for the whole search, not one per step
        margin = (found.cadence.min_gap or timedelta(0)) + timedelta(days=2)
        known = sorted(((p.scheduled_at, p) for p in self._engine.storage.list_posts(PostQuery(
            channel=channel, start=start - margin, end=limit + margin)) if p.scheduled_at),
            key=lambda item: item[0])
        while len(slots) < count and candidate < limit:
            if not self._cadence_problems(found, candidate, exclude=None, extra=slots,
                                          known=known):
                slots.append(candidate)
            candidate += step
        return [s.astimezone(zone) for s in slots]

    def create_series(
        self,
        *,
        author: str,
        text: str,
        channels: Sequence[str],
        rrule: str,
        start: datetime,
        campaign: str | None = None,
        media: Sequence[str] = (),
        ahead: timedelta = timedelta(days=30),
    ) -> tuple[Series, list[Post]]:
        """Repeat a post by an RFC 5545 ``rrule`` (e.g. ``FREQ=WEEKLY;BYDAY=MO``).

        ``start`` (aware) is the first occurrence; occurrences keep its wall-clock time
        in the first channel's time zone across DST changes. Those within ``ahead`` of
        now are created at once, each a draft of its own with its planned day and
        :attr:`~postflow.Post.occurrence_at`; later ones as time passes
        (:meth:`Workspace.create_occurrences`, which the worker runs).
        """

        ws = self._engine
        member = ws.member(author, "create")
        ws.check_action(member, "create", None)
        names = channel_names(channels)
        attached = media_urls(media, "new series")
        ws.validate_content("new series", text, names, campaign)
        utc, _ = to_utc(start, field="start", subject="new series")
        channel = ws.storage.get_channel(names[0])
        zone_name = channel.timezone if channel else "UTC"
        local = utc.astimezone(zone_of(zone_name)).replace(tzinfo=None)
        if not isinstance(ahead, timedelta) or not timedelta(0) < ahead <= MAX_AHEAD:
            raise ValidationFailed.single(
                "new series", "bad-ahead", f"ahead must be a timedelta from 0 to {MAX_AHEAD}, "
                f"got {ahead!r}", field="ahead")
        try:
            if not isinstance(rrule, str) or "\n" in rrule.strip() or \
                    rrule.upper().lstrip().startswith(("DTSTART", "RRULE:DTSTART")):
                raise ValueError("one RRULE line, without DTSTART (start= gives it)")
            if re.search(r"FREQ=(SECONDLY|MINUTELY)", rrule.upper()):
                raise ValueError("posts repeat at most hourly")
            rule, aware = _series_rule(rrule, local, zone_of(zone_name))
            first = rule.after(local.replace(tzinfo=zone_of(zone_name)) if aware else local,
                               inc=True)
            if first is None:
                raise ValueError("it has no occurrence")
        except (ValueError, TypeError, KeyError) as exc:
            raise ValidationFailed.single("new series", "bad-rrule",
                                          f"not a valid RRULE {rrule!r}: {exc}",
                                          field="rrule") from exc
        now = ws.clock.now()
        series = Series(0, author, text, names, rrule.strip(), local, zone_name, ahead,
                        campaign, attached)
        entry = NewEntry("series.create", author, now, new_correlation_id(), data=freeze({
            "rrule": series.rrule, "start": local.isoformat(), "zone": zone_name,
            "channels": list(names)}))
        new = series
        series = ws.commit(entry.correlation_id, lambda: ws.storage.insert_series(new, entry))
        return series, self._extend_series(series, now)

    def list_series(self, *, ended: bool | None = None) -> list[Series]:
        """Every recurring series by id (``ended=False``: running ones only, ``True``:
        ended ones only)."""
        if ended is not None:
            flag(ended, "series", "ended")
        found = self._engine.storage.list_series()
        if ended is None:
            return found
        return [s for s in found if (s.ended_at is not None) == ended]

    def get_series(self, series_id: int) -> Series:
        """The series with that id; :class:`~postflow.NotFound` otherwise (also for
        ``True`` or ``1.0``: ids are ints)."""
        if not is_id(series_id):
            raise NotFound(f"series {series_id!r:.100} does not exist")
        for series in self._engine.storage.list_series():
            if series.id == series_id:
                return series
        raise NotFound(f"series {series_id!r} does not exist")

    def end_series(self, series_id: int, *, by: str, comment: str | None = None,
                   expected_version: int | None = None) -> Series:
        """End a recurring series: no occurrence is created after this (audit action
        ``series.end``). Occurrences already created stay posts of their own. Its
        author, a publisher or an admin may end it; ending it twice is refused."""
        engine = self._engine
        member = engine.member(by, "end series")
        expected_version = version(expected_version, f"series {series_id!r:.100}")
        if comment is not None:
            checked_text(comment, f"series {series_id}", "comment", limit=LIMITS["comment"],
                         required=False)
        for _ in range(20):
            series = self.get_series(series_id)
            if expected_version is not None and series.version != expected_version:
                raise ConflictError(
                    f"series {series_id} is at version {series.version}, not "
                    f"{expected_version}: it changed since that snapshot was read",
                    expected=expected_version, actual=series.version)
            if not ({"publisher", "admin"} & member.roles or member.name == series.author):
                raise PermissionDenied(
                    f"{member.name} may not end series {series_id}: only its author "
                    f"({series.author}), a publisher or an admin may",
                    member=member.name, action="series.end",
                    roles_needed={"publisher", "admin"})
            engine.deny_by_plugins(member, "series.end", None)
            if series.ended_at is not None:
                raise InvalidTransition(
                    f"series {series_id} already ended on {series.ended_at.isoformat()} "
                    f"(by {series.ended_by})")
            now = engine.clock.now()
            ended = replace(series, version=series.version + 1, ended_at=now,
                            ended_by=member.name)
            entry = engine.entry("series.end", member.name, now, None,
                                 {"series": series.id, "rrule": series.rrule},
                                 comment=comment)
            try:
                engine.commit(entry.correlation_id, lambda: engine.storage.save_series(
                    ended, entry, expected_version=series.version))  # noqa: B023
            except ConflictError:
                if expected_version is not None:
                    raise
                continue  # a pass of create_occurrences moved it on: read it again
            return ended
        raise ConflictError(f"series {series_id} kept changing; gave up")

    def create_occurrences(self, now: datetime | None = None) -> list[Post]:
        """Create the occurrences of every recurring series due within its ``ahead``
        window of ``now``; each becomes a draft of its own (the worker calls this)."""
        now = self._engine.clock.now() if now is None else to_utc(
            now, field="now", subject="create_occurrences")[0]
        created: list[Post] = []
        for series in self._engine.storage.list_series():
            created += self._extend_series(series, now)
        return created

    @staticmethod
    def _pending(series: Series, rule: Any, aware: bool, zone: tzinfo, now: datetime) -> int:
        """How many occurrences of ``series`` already exist ahead of ``now`` (counted on
        the rule, up to :data:`MAX_PENDING_OCCURRENCES`)."""
        until = series.created_until
        if until is None or until <= now:
            return 0
        start = now.astimezone(zone) if aware else now.astimezone(zone).replace(tzinfo=None)
        pending = 0
        for value in rule.xafter(start, count=MAX_PENDING_OCCURRENCES, inc=False):
            local = value if aware else value.replace(tzinfo=zone)
            if local.astimezone(UTC) > until:
                break
            pending += 1
        return pending

    def _extend_series(self, series: Series, now: datetime) -> list[Post]:
        if series.ended_at is not None:
            return []  # ended: no more occurrences
        author = self._engine.storage.get_member(series.author)
        if author is None or not author.active:
            return []  # its author left the team: no new occurrences in their name
        zone = zone_of(series.zone)
        rule, aware = _series_rule(series.rrule, series.start, zone)
        # occurrences already in the past are not worth a draft
        first = series.start.replace(tzinfo=zone).astimezone(UTC)
        after = max(series.created_until or first - timedelta(microseconds=1), now)
        horizon = now + series.ahead
        budget = MAX_PENDING_OCCURRENCES - self._pending(series, rule, aware, zone, now)
        if budget <= 0:
            return []  # enough drafts ahead already; more come as these fall due
        posts: list[tuple[Post, Revision, NewEntry]] = []
        seen: set[datetime] = set()
        correlation_id = new_correlation_id()  # one change: all of this pass's occurrences
        start = after.astimezone(zone) if aware else after.astimezone(zone).replace(tzinfo=None)
        for value in rule.xafter(start, count=MAX_OCCURRENCES, inc=False):
            local = value if aware else value.replace(tzinfo=zone)
            at = local.astimezone(UTC)  # the wall clock is kept across DST changes
            if at > horizon or len(posts) >= budget:
                break
            if at in seen or at <= after:  # a DST gap can map two local times to one
                continue
            seen.add(at)
            local = local.replace(tzinfo=None)
            post = Post(0, 1, self._engine.workflow.initial, series.author, series.text,
                        series.channels, 1, now, now, now, series.campaign, local.date(),
                        media=series.media, series_id=series.id, occurrence_at=at)
            revision = Revision(0, 1, series.text, series.channels, series.campaign,
                                series.author, now, series.media)
            data = dict(create_data(series.text, series.channels, series.campaign,
                                    local.date(), series.media))
            data.update(series=series.id, occurrence_at=at.isoformat())
            entry = NewEntry("create", series.author, now, correlation_id, None, None,
                             self._engine.workflow.initial, 1, None, freeze(data))
            posts.append((post, revision, entry))
        if not posts:
            return []
        last = posts[-1][0].occurrence_at
        moved = replace(series, created_until=last, version=series.version + 1)
        try:
            engine = self._engine
            return engine.commit(correlation_id, lambda: engine.storage.add_occurrences(
                moved, series.version, posts))
        except ConflictError:
            return []  # another process created them


def _series_rule(rrule: str, start: datetime, zone: tzinfo) -> tuple[Any, bool]:
    """dateutil's rule from ``start`` (local, naive) in ``zone``: aware when it can be
    (a UTC ``UNTIL`` needs that), else naive local times; and which of the two."""
    from dateutil.rrule import rrulestr

    try:
        return rrulestr(rrule, dtstart=start.replace(tzinfo=zone)), True
    except ValueError:  # e.g. a floating UNTIL
        return rrulestr(rrule, dtstart=start), False
