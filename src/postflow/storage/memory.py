"""``memory://``: an in-process, indexed backend (the data goes when the process ends)."""

from __future__ import annotations

import bisect
import itertools
import json
import operator
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, overload

import attrs

from postflow.exceptions import ConflictError, NotFound
from postflow.hookspecs import hookimpl
from postflow.models import (
    NO_DATA,
    AuditEntry,
    Campaign,
    Channel,
    Delivery,
    Feed,
    FrozenData,
    Hold,
    Member,
    PlanningEntry,
    Post,
    Revision,
    Series,
    freeze,
    owned,
    replace,
)
from postflow.notices import InboxItem, Notice
from postflow.storage import (
    NewEntry,
    PostQuery,
    Storage,
    _check_settle_status,
    _mark_time,
    _notice_due,
    _with_series,
    check_cursor_move,
    check_page,
)

__all__ = ["MemoryStorage"]

_Key = tuple[datetime, int]
_Row = tuple[Any, ...]
"""An audit entry as kept here: AuditEntry's fields in order, ``data`` as its items.

Tuples of strings, numbers and datetimes are untracked by the garbage collector, so
a long audit trail costs nothing at each full collection, where AuditEntry objects
and their data dicts (several per post) would be walked every time.
"""


def _entry(row: _Row) -> AuditEntry:
    data = row[10]
    return AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                      row[9], FrozenData(data) if data else NO_DATA)


class _StoredEntries(Sequence[AuditEntry]):
    """The entries one write stored, built as :class:`AuditEntry` when read."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[_Row]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> AuditEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[AuditEntry]: ...

    def __getitem__(self, index: int | slice) -> AuditEntry | list[AuditEntry]:
        if isinstance(index, slice):
            return [_entry(row) for row in self._rows[index]]
        return _entry(self._rows[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


class MemoryStorage(Storage):
    """Posts in dicts, with indexes by state, channel, author, campaign and time.

    One lock makes every write atomic, so several threads may share an instance.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._lock = threading.Lock()
        self._cursors: dict[str, int] = {}
        self._slots: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._audit_ids = itertools.count(1)
        self._members: dict[str, Member] = {}
        self._channels: dict[str, Channel] = {}
        self._campaigns: dict[str, Campaign] = {}
        self._posts: dict[int, Post] = {}
        # a post's revisions as tuples of plain values, which the collector stops
        # tracking (see _revision_row); Revision objects are built when read
        self._revisions: dict[int, tuple[_RevisionRow, ...]] = {}
        self._audit: list[_Row] = []
        # a post's entries as a tuple, which the collector stops tracking like the rows
        # it holds; a list once it is long, so that appending stays cheap
        self._history: dict[int, tuple[_Row, ...] | list[_Row]] = {}
        self._by_state: dict[str, set[int]] = defaultdict(set)
        self._by_channel: dict[str, set[int]] = defaultdict(set)
        self._by_author: dict[str, set[int]] = defaultdict(set)
        self._by_campaign: dict[str, set[int]] = defaultdict(set)
        # (scheduled_at, id) per state, kept sorted, for time-range queries
        self._timeline: dict[str, list[_Key]] = defaultdict(list)
        self._planned: dict[int, date] = {}
        self._planning: dict[str, PlanningEntry] = {}
        self._feeds: dict[str, Feed] = {}
        self._feeds_by_token: dict[str, str] = {}
        self._deliveries: dict[int, dict[tuple[str, int], Delivery]] = defaultdict(dict)
        self._holds: dict[str, Hold] = {}
        self._series: dict[int, Series] = {}
        self._instance = secrets.token_hex(8)
        self._series_ids = itertools.count(1)
        self._workflow: str | None = None  # the stored definition, as JSON text
        self._documents: dict[str, str] = {}  # name -> JSON text
        self._outbox: dict[int, Notice] = {}
        self._outbox_keys: set[str] = set()
        self._unsettled: set[int] = set()  # ids of pending or sending notices
        self._outbox_ids = itertools.count(1)
        self._marks: dict[str, datetime] = {}
        self._inbox: dict[int, InboxItem] = {}
        self._inbox_keys: set[str] = set()
        self._inbox_ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"MemoryStorage({len(self._posts)} posts)"

    # -- team, channels, campaigns -------------------------------------------------

    def save_member(
        self, member: Member, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        with self._lock:
            _check_version(self._members.get(member.name), expected_version,
                           "member", member.name)
            self._members[member.name] = member
            self._append([entry])

    def get_member(self, name: str) -> Member | None:
        return self._members.get(name)

    def list_members(self) -> list[Member]:
        with self._lock:
            return sorted(self._members.values(), key=lambda m: m.name)

    def save_channel(
        self, channel: Channel, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        with self._lock:
            _check_version(self._channels.get(channel.name), expected_version,
                           "channel", channel.name)
            self._channels[channel.name] = channel
            self._append([entry])

    def get_channel(self, name: str) -> Channel | None:
        return self._channels.get(name)

    def list_channels(self) -> list[Channel]:
        with self._lock:
            return sorted(self._channels.values(), key=lambda c: c.name)

    def save_campaign(
        self, campaign: Campaign, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        with self._lock:
            _check_version(self._campaigns.get(campaign.name), expected_version,
                           "campaign", campaign.name)
            self._campaigns[campaign.name] = campaign
            self._append([entry])

    def get_campaign(self, name: str) -> Campaign | None:
        return self._campaigns.get(name)

    def list_campaigns(self) -> list[Campaign]:
        with self._lock:
            return sorted(self._campaigns.values(), key=lambda c: c.name)

    # -- posts ---------------------------------------------------------------------

    def insert_series(self, series: Series, entry: NewEntry) -> Series:
        with self._lock:
            stored = replace(series, id=next(self._series_ids))
            self._series[stored.id] = stored
            self._append([_with_series(entry, stored.id)])
            return stored

    def list_series(self) -> list[Series]:
        with self._lock:
            return [self._series[i] for i in sorted(self._series)]

    def save_series(self, series: Series, entry: NewEntry, *, expected_version: int) -> None:
        with self._lock:
            stored = self._series.get(series.id)
            if stored is None:
                raise NotFound(f"series {series.id} does not exist")
            if stored.version != expected_version:
                raise ConflictError(f"series {series.id} is at version {stored.version}, "
                                    f"not {expected_version}", expected=expected_version,
                                    actual=stored.version)
            self._series[series.id] = series
            self._append([entry])

    def add_occurrences(
        self, series: Series, expected_version: int,
        posts: Sequence[tuple[Post, Revision, NewEntry]],
    ) -> list[Post]:
        with self._lock:
            stored = self._series.get(series.id)
            if stored is None or stored.version != expected_version:
                raise ConflictError(
                    f"series {series.id} changed since it was read",
                    expected=expected_version, actual=None if stored is None
                    else stored.version)
            self._series[series.id] = series
            return [self._insert_post(p, r, [e]) for p, r, e in posts]

    def insert_post(
        self, post: Post, revision: Revision, entries: Sequence[NewEntry]
    ) -> Post:
        with self._lock:
            return self._insert_post(post, revision, entries)

    def _insert_post(
        self, post: Post, revision: Revision, entries: Sequence[NewEntry]
    ) -> Post:
        post_id = next(self._ids)
        if type(post.channels) is not tuple or type(post.media) is not tuple or type(
                post.approvals) is not tuple or type(post.published_urls) is not FrozenData:
            post = owned(post)  # the caller's lists or dicts must not become ours
        post = replace(post, id=post_id)
        self._posts[post_id] = post
        self._revisions[post_id] = (_revision_row(revision, post_id),)
        self._index(post)
        self._append(entries, post_id)
        return post

    def get_post(self, post_id: int) -> Post | None:
        return self._posts.get(post_id)

    def update_post(
        self,
        post: Post,
        *,
        expected_version: int,
        entries: Sequence[NewEntry],
        revision: Revision | None = None,
        previous: Post | None = None,
        deliveries: Sequence[Delivery] = (),
        slot_guards: Mapping[str, int] = NO_DATA,
    ) -> Sequence[AuditEntry]:
        with self._lock:
            stored = self._posts.get(post.id)
            if stored is None:
                raise NotFound(f"post {post.id} does not exist")
            if stored.version != expected_version:
                raise ConflictError(
                    f"post {post.id} is at version {stored.version}, "
                    f"not {expected_version}: it changed since it was read",
                    post_id=post.id, expected=expected_version, actual=stored.version,
                )
            if slot_guards:
                slots = self._slots
                for channel, version in slot_guards.items():
                    if slots.get(channel, 0) != version:
                        raise ConflictError(
                            f"post {post.id}: channel {channel!r} was scheduled onto "
                            "since its cadence was checked", post_id=post.id)
                for channel in slot_guards:
                    slots[channel] = slots.get(channel, 0) + 1
            if type(post.channels) is not tuple or type(post.media) is not tuple or type(
                    post.approvals) is not tuple or type(post.published_urls) is not FrozenData:
                post = owned(post)  # the caller's lists or dicts must not become ours
            self._reindex(stored, post)
            self._posts[post.id] = post
            if revision is not None:
                self._revisions[post.id] += (_revision_row(revision, post.id),)
            if deliveries:
                self._put_deliveries(post.id, deliveries)
            return _StoredEntries(self._append(entries))

    # -- publishing ----------------------------------------------------------------

    def instance_id(self) -> str:
        return self._instance

    def rekey(self, entry: NewEntry, *, moved: bool = False) -> str:
        with self._lock:
            if not moved:
                self._instance = secrets.token_hex(8)
            self._append([entry])
            return self._instance

    # -- change consumers ----------------------------------------------------------

    def slot_version(self, channel: str) -> int:
        return self._slots.get(channel, 0)

    def cursor(self, consumer: str) -> int:
        return self._cursors.get(consumer, 0)

    def save_cursor(self, consumer: str, position: int, *, expected: int) -> None:
        check_cursor_move(consumer, position, expected)
        with self._lock:
            stored = self._cursors.get(consumer, 0)
            if stored != expected:
                raise ConflictError(f"cursor {consumer!r} is at {stored}, not {expected}")
            self._cursors[consumer] = position

    def claim_due(
        self, now: datetime, worker: str, until: datetime, limit: int,
        held_channels: frozenset[str], correlation_id: str,
    ) -> list[Post]:
        with self._lock:
            line = self._timeline.get("scheduled", [])
            claimed: list[Post] = []
            for _at, post_id in line[: bisect.bisect_right(line, (now, float("inf")))]:
                if len(claimed) >= limit:
                    break
                post = self._posts[post_id]
                if (post.claimed_until is not None and post.claimed_until > now) or (
                        held_channels.intersection(post.channels)):
                    continue
                new = replace(post, version=post.version + 1, claimed_by=worker,
                              claimed_until=until)
                self._posts[post_id] = new
                self._append([NewEntry("claim", worker, now, correlation_id, post_id,
                                       post.state, post.state, post.revision, None,
                                       freeze({"claimed_until": until.isoformat()}))])
                claimed.append(new)
            return claimed

    def claim_post(
        self, post_id: int, now: datetime, worker: str, until: datetime,
        correlation_id: str,
    ) -> Post | None:
        with self._lock:
            post = self._posts.get(post_id)
            if post is None or post.state != "scheduled" or (
                    post.claimed_until is not None and post.claimed_until > now):
                return None
            new = replace(post, version=post.version + 1, claimed_by=worker,
                          claimed_until=until)
            self._posts[post_id] = new
            self._append([NewEntry("claim", worker, now, correlation_id, post_id,
                                   post.state, post.state, post.revision, None,
                                   freeze({"claimed_until": until.isoformat()}))])
            return new

    def renew_lease(self, post_id: int, worker: str, until: datetime, now: datetime) -> bool:
        with self._lock:
            post = self._posts.get(post_id)
            if post is None or post.state != "scheduled" or post.claimed_by != worker or (
                    post.claimed_until is None or post.claimed_until <= now):
                return False
            if until > post.claimed_until:
                self._posts[post_id] = replace(post, claimed_until=until)
            return True

    def deliveries(self, post_id: int) -> list[Delivery]:
        with self._lock:
            found = self._deliveries.get(post_id, {})
            return [found[k] for k in sorted(found, key=lambda k: (k[1], k[0]))]

    def save_deliveries(
        self, post_id: int, deliveries: Sequence[Delivery], *, worker: str | None,
        now: datetime, entries: Sequence[NewEntry] = (),
    ) -> bool:
        with self._lock:
            if worker is not None:
                post = self._posts.get(post_id)
                if post is None or post.claimed_by != worker or (
                        post.claimed_until is None or post.claimed_until <= now):
                    return False
            self._put_deliveries(post_id, deliveries)
            self._append(entries)
            return True

    def _put_deliveries(self, post_id: int, deliveries: Sequence[Delivery]) -> None:
        stored = self._deliveries[post_id]
        for delivery in deliveries:
            stored[(delivery.channel, delivery.revision)] = delivery

    def holds(self) -> list[Hold]:
        with self._lock:
            return [self._holds[s] for s in sorted(self._holds, key=lambda s: (s != "*", s))]

    def save_hold(self, hold: Hold, entry: NewEntry) -> None:
        with self._lock:
            self._holds[hold.scope] = hold
            self._append([entry])

    def remove_hold(self, scope: str, entry: NewEntry) -> bool:
        with self._lock:
            if self._holds.pop(scope, None) is None:
                return False
            self._append([entry])
            return True

    def list_posts(self, query: PostQuery) -> list[Post]:
        with self._lock:
            posts = [self._posts[i] for i in self._select(query)]
        stop = None if query.limit is None else query.offset + query.limit
        return posts[query.offset : stop]

    def count_posts(self, query: PostQuery) -> int:
        with self._lock:
            return sum(1 for _ in self._select(query))

    def _select(self, query: PostQuery) -> Iterable[int]:
        candidates: list[set[int]] = []
        if query.states is not None:
            candidates.append(set().union(*(self._by_state.get(s, ()) for s in query.states)))
        for index, key in (
            (self._by_channel, query.channel),
            (self._by_author, query.author),
            (self._by_campaign, query.campaign),
        ):
            if key is not None:
                candidates.append(index.get(key, set()))
        if query.by_time:
            in_range: list[_Key] = []
            states = query.states if query.states is not None else self._timeline.keys()
            for state in states:
                line = self._timeline.get(state, [])
                lo = 0 if query.start is None else bisect.bisect_left(line, (query.start, 0))
                hi = len(line) if query.end is None else bisect.bisect_left(line, (query.end, 0))
                in_range.extend(line[lo:hi])
            in_range.sort()
            others = sorted(candidates, key=len)
            return [i for _, i in in_range if all(i in c for c in others)]
        if not candidates:
            return sorted(self._posts)
        smallest, *others = sorted(candidates, key=len)
        return sorted(i for i in smallest if all(i in c for c in others))

    def _index(self, post: Post) -> None:
        self._by_state[post.state].add(post.id)
        self._by_author[post.author].add(post.id)
        if post.campaign is not None:
            self._by_campaign[post.campaign].add(post.id)
        for channel in post.channels:
            self._by_channel[channel].add(post.id)
        if post.scheduled_at is not None:
            bisect.insort(self._timeline[post.state], (post.scheduled_at, post.id))
        if post.planned_for is not None:
            self._planned[post.id] = post.planned_for

    def _reindex(self, old: Post, new: Post) -> None:
        """Move ``new`` into the indexes ``old`` was in, touching only changed keys."""
        if old.author != new.author or old.campaign != new.campaign or (
            old.channels != new.channels
        ):
            self._unindex(old)
            self._index(new)
            return
        if old.planned_for != new.planned_for:
            if new.planned_for is None:
                self._planned.pop(new.id, None)
            else:
                self._planned[new.id] = new.planned_for
        if old.state != new.state:
            self._by_state[old.state].discard(old.id)
            self._by_state[new.state].add(new.id)
        if old.scheduled_at != new.scheduled_at or old.state != new.state:
            self._untime(old)
            if new.scheduled_at is not None:
                bisect.insort(self._timeline[new.state], (new.scheduled_at, new.id))

    def _untime(self, post: Post) -> None:
        if post.scheduled_at is not None:
            line = self._timeline[post.state]
            at = bisect.bisect_left(line, (post.scheduled_at, post.id))
            if at < len(line) and line[at] == (post.scheduled_at, post.id):
                del line[at]

    def _unindex(self, post: Post) -> None:
        self._by_state[post.state].discard(post.id)
        self._by_author[post.author].discard(post.id)
        if post.campaign is not None:
            self._by_campaign[post.campaign].discard(post.id)
        for channel in post.channels:
            self._by_channel[channel].discard(post.id)
        self._untime(post)
        self._planned.pop(post.id, None)

    def get_posts(self, post_ids: Sequence[int]) -> list[Post]:
        posts = self._posts
        return [posts[i] for i in post_ids if i in posts]

    def calendar_candidates(
        self, start: datetime, end: datetime | None, first_day: date, last_day: date | None
    ) -> list[tuple[int, int]]:
        with self._lock:
            ids: set[int] = set()
            for line in self._timeline.values():
                lo = bisect.bisect_left(line, (start, 0))
                hi = len(line) if end is None else bisect.bisect_left(line, (end, 0))
                ids.update(i for _, i in line[lo:hi])
            ids.update(i for i, day in self._planned.items()
                       if day >= first_day and (last_day is None or day <= last_day))
            posts = self._posts
            for i in self._by_state.get("published", ()):
                post = posts[i]
                if post.scheduled_at is None and start <= post.state_changed_at and (
                        end is None or post.state_changed_at < end):
                    ids.add(i)
            return [(i, posts[i].version) for i in sorted(ids)]

    def save_planning_entries(
        self, entries: Sequence[PlanningEntry], entry: NewEntry, *,
        remove: Sequence[str] = (),
    ) -> None:
        with self._lock:
            for planned in entries:
                stored = self._planning.get(planned.uid)
                expected = 1 if stored is None else stored.version + 1
                if planned.version != expected:
                    raise ConflictError(
                        f"planning entry {planned.uid!r} is at version "
                        f"{0 if stored is None else stored.version}: it changed since it "
                        "was read", expected=planned.version - 1,
                        actual=0 if stored is None else stored.version)
            for planned in entries:
                self._planning[planned.uid] = planned
            for uid in remove:
                self._planning.pop(uid, None)
            self._append([entry])

    def list_planning_entries(self) -> list[PlanningEntry]:
        with self._lock:
            return [self._planning[uid] for uid in sorted(self._planning)]

    def save_feed(self, feed: Feed, entry: NewEntry, *, expected_version: int | None = None
                  ) -> None:
        with self._lock:
            stored = self._feeds.get(feed.name)
            _check_version(stored, expected_version, "feed", feed.name)
            owner = self._feeds_by_token.get(feed.token_hash or "")
            if owner is not None and owner != feed.name:
                raise ConflictError(f"feed {feed.name!r}: that token belongs to another feed")
            if stored is not None and stored.token_hash is not None:
                del self._feeds_by_token[stored.token_hash]
            if feed.token_hash is not None:
                self._feeds_by_token[feed.token_hash] = feed.name
            self._feeds[feed.name] = feed
            self._append([entry])

    def get_feed(self, name: str) -> Feed | None:
        return self._feeds.get(name)

    def find_feed(self, token_hash: str) -> Feed | None:
        name = self._feeds_by_token.get(token_hash)
        return None if name is None else self._feeds.get(name)

    def list_feeds(self) -> list[Feed]:
        with self._lock:
            return [self._feeds[name] for name in sorted(self._feeds)]

    def revisions(self, post_id: int) -> list[Revision]:
        with self._lock:
            return [Revision(*row) for row in self._revisions.get(post_id, ())]

    # -- the workflow --------------------------------------------------------------

    def stored_workflow(self) -> Mapping[str, Any] | None:
        text = self._workflow
        return None if text is None else dict(json.loads(text))

    def save_workflow(
        self, definition: Mapping[str, Any], entry: NewEntry, *,
        expected: Mapping[str, Any] | None,
    ) -> None:
        text = json.dumps(definition, sort_keys=True)
        with self._lock:
            stored = None if self._workflow is None else json.loads(self._workflow)
            if stored != (None if expected is None else json.loads(json.dumps(expected))):
                raise ConflictError(
                    "the stored workflow changed since it was read"
                    if stored is not None else "no workflow was stored when it was read")
            self._workflow = text
            self._append([entry])

    # -- documents -----------------------------------------------------------------

    def stored_document(self, name: str) -> Mapping[str, Any] | None:
        text = self._documents.get(name)
        return None if text is None else dict(json.loads(text))

    def save_document(
        self, name: str, document: Mapping[str, Any] | None, entry: NewEntry, *,
        expected: Mapping[str, Any] | None,
    ) -> None:
        text = None if document is None else json.dumps(document, sort_keys=True)
        with self._lock:
            stored = self._documents.get(name)
            if (None if stored is None else json.loads(stored)) != (
                    None if expected is None else json.loads(json.dumps(expected))):
                raise ConflictError(f"document {name!r} changed since it was read")
            if text is None:
                self._documents.pop(name, None)
            else:
                self._documents[name] = text
            self._append([entry])

    def list_documents(self, prefix: str) -> dict[str, Mapping[str, Any]]:
        with self._lock:
            return {name: dict(json.loads(self._documents[name]))
                    for name in sorted(self._documents) if name.startswith(prefix)}

    # -- notifications -------------------------------------------------------------

    def enqueue_notifications(
        self, notices: Sequence[Notice], *, marks: Sequence[str] = (),
        cursor: tuple[str, int, int] | None = None, at: datetime | None = None,
    ) -> list[Notice]:
        if cursor is not None:
            check_cursor_move(*cursor)
        marked_at = _mark_time(notices, at)
        with self._lock:
            if cursor is not None:
                stored = self._cursors.get(cursor[0], 0)
                if stored != cursor[2]:
                    raise ConflictError(f"cursor {cursor[0]!r} is at {stored}, not "
                                        f"{cursor[2]}")
            known = {n.event_key for n in notices if n.event_key in self._marks}
            for key in marks:
                self._marks.setdefault(key, marked_at)
            inserted = []
            for notice in notices:
                if notice.event_key in known or notice.dedup_key in self._outbox_keys:
                    continue
                stored_notice = attrs.evolve(notice, id=next(self._outbox_ids),
                                             payload=freeze(notice.payload))
                self._outbox[stored_notice.id] = stored_notice
                self._outbox_keys.add(notice.dedup_key)
                if stored_notice.status in ("pending", "sending"):
                    self._unsettled.add(stored_notice.id)
                inserted.append(stored_notice)
            if cursor is not None:
                self._cursors[cursor[0]] = cursor[1]
            return inserted

    def has_marks(self, keys: Sequence[str]) -> set[str]:
        with self._lock:
            return {key for key in keys if key in self._marks}

    def claim_notifications(
        self, now: datetime, worker: str, until: datetime, limit: int
    ) -> list[Notice]:
        with self._lock:
            outbox = self._outbox
            open_ids = sorted(self._unsettled)
            groups: dict[tuple[str, str, str], list[Notice]] = defaultdict(list)
            for i in open_ids:
                notice = outbox[i]
                if notice.digest is not None:
                    groups[(notice.recipient, notice.channel, notice.digest)].append(notice)
            taken: list[Notice] = []
            seen: set[tuple[str, str, str]] = set()
            for i in open_ids:
                if len(taken) >= limit:
                    break
                notice = outbox[i]
                if notice.digest is None:
                    if _notice_due(notice, now):
                        taken.append(notice)
                    continue
                group = (notice.recipient, notice.channel, notice.digest)
                if group in seen:
                    continue
                seen.add(group)
                members = groups[group]
                if all(_notice_due(n, now) for n in members):
                    taken.extend(members)
            claimed = []
            for notice in taken:
                held = replace(notice, status="sending", claimed_by=worker,
                               claimed_until=until)
                outbox[notice.id] = held
                claimed.append(held)
            return claimed

    def settle_notifications(
        self, ids: Sequence[int], worker: str, *, status: str, at: datetime,
        error: str | None = None, next_attempt_at: datetime | None = None,
    ) -> int:
        _check_settle_status(status)
        with self._lock:
            changed = 0
            for i in dict.fromkeys(ids):
                notice = self._outbox.get(i)
                if notice is None or notice.status != "sending" or notice.claimed_by != worker:
                    continue
                if status == "pending":
                    notice = replace(notice, status="pending", attempts=notice.attempts + 1,
                                     next_attempt_at=next_attempt_at, last_error=error,
                                     claimed_by=None, claimed_until=None)
                else:
                    notice = replace(notice, status=status, attempts=notice.attempts + 1,
                                     last_error=error, claimed_until=None, settled_at=at)
                    self._unsettled.discard(i)
                self._outbox[i] = notice
                changed += 1
            return changed

    def list_notifications(
        self, *, status: str | None = None, recipient: str | None = None,
        after_id: int = 0, limit: int | None = None,
    ) -> list[Notice]:
        check_page(after_id, limit)
        with self._lock:
            found = [n for i, n in sorted(self._outbox.items()) if i > after_id
                     and (status is None or n.status == status)
                     and (recipient is None or n.recipient == recipient)]
        return found if limit is None else found[:limit]

    def add_inbox(self, items: Sequence[InboxItem]) -> list[InboxItem]:
        with self._lock:
            inserted = []
            for item in items:
                if item.dedup_key in self._inbox_keys:
                    continue
                stored = attrs.evolve(item, id=next(self._inbox_ids),
                                      payload=freeze(item.payload))
                self._inbox[stored.id] = stored
                self._inbox_keys.add(item.dedup_key)
                inserted.append(stored)
            return inserted

    def inbox(self, member: str, *, unread: bool = False, after_id: int = 0,
              limit: int | None = None) -> list[InboxItem]:
        check_page(after_id, limit)
        with self._lock:
            found = [item for i, item in sorted(self._inbox.items(), reverse=True)
                     if i > after_id and item.member == member
                     and (not unread or item.read_at is None)]
        return found if limit is None else found[:limit]

    def mark_read(self, member: str, ids: Sequence[int] | None, at: datetime) -> int:
        with self._lock:
            chosen = self._inbox.keys() if ids is None else [
                i for i in dict.fromkeys(ids) if i in self._inbox]
            changed = 0
            for i in list(chosen):
                item = self._inbox[i]
                if item.member == member and item.read_at is None:
                    self._inbox[i] = replace(item, read_at=at)
                    changed += 1
            return changed

    def prune_notifications(self, before: datetime) -> int:
        with self._lock:
            gone = [i for i, n in self._outbox.items()
                    if n.settled_at is not None and n.status in ("sent", "failed")
                    and n.settled_at < before]
            for i in gone:
                self._outbox_keys.discard(self._outbox.pop(i).dedup_key)
            read = [i for i, item in self._inbox.items()
                    if item.read_at is not None and item.read_at < before]
            for i in read:
                self._inbox_keys.discard(self._inbox.pop(i).dedup_key)
            marks = [key for key, at in self._marks.items() if at < before]
            for key in marks:
                del self._marks[key]
            return len(gone) + len(read) + len(marks)

    # -- audit ---------------------------------------------------------------------

    def append_audit(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        with self._lock:
            return [_entry(row) for row in self._append(entries)]

    def _append(self, entries: Iterable[NewEntry], post_id: int | None = None) -> list[_Row]:
        rows = []
        for entry in entries:
            data = entry.data
            row = (
                next(self._audit_ids), entry.action, entry.actor, entry.at,
                entry.correlation_id, entry.post_id if post_id is None else post_id,
                entry.from_state, entry.to_state, entry.revision, entry.comment,
                # frozen the way AuditEntry.data is, then kept as its items
                tuple((data if type(data) is FrozenData else freeze(data)).items())
                if data else None,
            )
            self._audit.append(row)
            if row[5] is not None:
                history = self._history.get(row[5], ())
                if isinstance(history, list):
                    history.append(row)
                elif len(history) < _SHORT_HISTORY:
                    self._history[row[5]] = (*history, row)
                else:
                    self._history[row[5]] = [*history, row]
            rows.append(row)
        return rows

    def last_change(self) -> tuple[int, datetime | None]:
        audit = self._audit
        if not audit:
            return (0, None)
        last = audit[-1]
        return (last[0], last[3])

    def history(self, post_id: int) -> list[AuditEntry]:
        with self._lock:
            return [_entry(row) for row in self._history.get(post_id, ())]

    def audit_log(self, *, after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        check_page(after_id, limit)
        with self._lock:
            start = bisect.bisect_right(self._audit, after_id, key=operator.itemgetter(0))
            stop = None if limit is None else start + limit
            return [_entry(row) for row in self._audit[start:stop]]

    def close(self) -> None:
        """Nothing to release: the data lives as long as this object."""


def _check_version(
    stored: Member | Channel | Campaign | Feed | None, expected: int | None, what: str, name: str
) -> None:
    if expected is None:
        return
    if expected == 0:
        if stored is not None:
            raise ConflictError(f"{what} {name!r} already exists")
        return
    if stored is None:
        raise NotFound(f"no {what} called {name!r}")
    if stored.version != expected:
        raise ConflictError(
            f"{what} {name!r} is at version {stored.version}, not {expected}: it changed "
            "since it was read", expected=expected, actual=stored.version)


@hookimpl(trylast=True)
def postflow_storage(url: str) -> Storage | None:
    """Open ``memory://`` URLs."""
    if url == "memory://" or url.startswith("memory://"):
        return MemoryStorage(url)
    return None


_SHORT_HISTORY = 64
"""Entries of one post kept as a tuple; a longer history is a list."""

_RevisionRow = tuple[int, int, str, tuple[str, ...], "str | None", str, datetime,
                     tuple[str, ...]]


def _revision_row(revision: Revision, post_id: int) -> _RevisionRow:
    """``revision`` of post ``post_id`` as plain values, in ``Revision``'s field order
    (copies of the caller's sequences: nothing the caller holds becomes ours)."""
    return (post_id, revision.number, revision.text, tuple(revision.channels),
            revision.campaign, revision.author, revision.created_at, tuple(revision.media))
