"""The storage contract every backend implements.

A backend is found by URL scheme through the ``postflow_storage`` hook. The built-in
``memory://`` and ``sqlite:///path`` backends are plugins like any other. One contract
test suite (:mod:`postflow.testing_contract`) runs against every backend.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import attrs

from postflow._fields import MAX_ID
from postflow.models import (
    NO_DATA,
    AuditEntry,
    Campaign,
    Channel,
    Delivery,
    Feed,
    Hold,
    Member,
    PlanningEntry,
    Post,
    Revision,
    Series,
    freeze,
)
from postflow.notices import InboxItem, Notice

__all__ = ["NewEntry", "PostQuery", "SchemaManager", "Storage", "check_cursor_move", "check_page"]


class NewEntry(NamedTuple):
    """An audit entry on its way into storage: an :class:`~postflow.AuditEntry` without
    its id, which the backend assigns. Backends read only these attributes, so an
    ``AuditEntry`` may be passed too (its ``id`` is ignored)."""

    action: str
    actor: str
    at: datetime
    correlation_id: str
    post_id: int | None = None
    from_state: str | None = None
    to_state: str | None = None
    revision: int | None = None
    comment: str | None = None
    data: Mapping[str, Any] = NO_DATA


def _with_series(entry: NewEntry, series_id: int) -> NewEntry:
    """``entry`` (a NewEntry or an AuditEntry) with the new series' id in its data."""
    return NewEntry(entry.action, entry.actor, entry.at, entry.correlation_id,
                    entry.post_id, entry.from_state, entry.to_state, entry.revision,
                    entry.comment, freeze({**entry.data, "series": series_id}))


def _mark_time(notices: Sequence[Notice], at: datetime | None) -> datetime:
    """When :meth:`Storage.enqueue_notifications` records its marks."""
    if at is not None:
        return at
    if notices:
        return max(n.created_at for n in notices)
    return datetime.now(UTC)


def _notice_due(notice: Notice, now: datetime) -> bool:
    """Whether :meth:`Storage.claim_notifications` may take ``notice`` at ``now``."""
    if notice.status == "pending":
        return notice.not_before <= now and (
            notice.next_attempt_at is None or notice.next_attempt_at <= now)
    return notice.status == "sending" and (
        notice.claimed_until is None or notice.claimed_until < now)


def _check_settle_status(status: str) -> None:
    if status not in ("sent", "failed", "pending"):
        raise ValueError(f"a notice is settled as sent, failed or pending, not {status!r}")


def check_cursor_move(consumer: str, position: int, expected: int) -> None:
    """Raise :class:`ValueError` when ``consumer``'s cursor would move back."""
    if position < expected:
        raise ValueError(f"cursor {consumer!r} cannot move back from {expected} to "
                         f"{position}")


def check_page(after_id: object, limit: object) -> None:
    """Raise :class:`ValueError` unless ``after_id`` is an ``int`` >= 0 and ``limit`` is
    ``None`` or an ``int`` >= 0 (bools are not numbers here): every backend's
    :meth:`Storage.audit_log` refuses the same page requests. Both are at most
    :data:`~postflow._fields.MAX_ID` (what SQLite can bind)."""
    if type(after_id) is not int or not 0 <= after_id <= MAX_ID:
        raise ValueError(f"after_id must be a whole number from 0 to {MAX_ID}, "
                         f"got {after_id!r}")
    if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_ID):
        raise ValueError(f"limit must be None or a whole number from 0 to {MAX_ID}, "
                         f"got {limit!r}")


@attrs.frozen
class PostQuery:
    """Which posts :meth:`Storage.list_posts` returns.

    Every given filter must match. ``channel`` matches posts that go out to that
    channel. ``start``/``end`` select posts whose ``scheduled_at`` lies in
    ``[start, end)``. Results are ordered by ``id``, or by ``(scheduled_at, id)`` when a
    time range is given.
    """

    states: frozenset[str] | None = None
    channel: str | None = None
    campaign: str | None = None
    author: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    limit: int | None = None
    offset: int = 0

    @property
    def by_time(self) -> bool:
        """Whether results are ordered by scheduled time."""
        return self.start is not None or self.end is not None


class SchemaManager(abc.ABC):
    """A database's schema version and its migrations, as ``postflow db status|migrate``
    see them; a backend with versioned schemas returns one from the
    :func:`~postflow.hookspecs.postflow_schema` hook.

    It works on the database without opening it as a :class:`Storage` (which an older
    schema may refuse), so the command line stays independent of the backend.
    """

    where: str
    """What messages name: a file's path, or ``host:port/database`` and the schema."""

    current: int
    """The schema version this backend writes."""

    notes: Mapping[int, str]
    """What each schema version adds, by version."""

    backs_up: bool = False
    """Whether :meth:`migrate` can keep a backup copy first."""

    @abc.abstractmethod
    def version(self) -> int | None:
        """The schema version stored in the database, ``None`` when it is no postflow
        database (or an empty one). Changes nothing."""

    @abc.abstractmethod
    def migrate(self, *, backup: bool = True) -> tuple[int, int, str | None]:
        """Migrate the database to :attr:`current` (with ``backup`` and
        :attr:`backs_up``, after a backup copy); ``(version found, version now, where the
        backup is or None)``. Safe to run from two hosts at once."""


class Storage(abc.ABC):
    """Where a workspace keeps posts, the team and the audit trail.

    Guarantees every backend gives:

    * Each write method is atomic: the change and its audit entries are stored
      together or not at all.
    * :meth:`update_post` is a compare-and-set on ``(id, version)``.
    * Audit entries get increasing ids in commit order and are never changed.
    * Snapshots returned are immutable and never change after being returned.
    * Failures of the underlying database raise :class:`~postflow.StorageError`.
    """

    url: str

    # -- team, channels, campaigns -------------------------------------------------

    @abc.abstractmethod
    def save_member(
        self, member: Member, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        """Store a member, appending ``entry`` in the same transaction.

        A compare-and-set like :meth:`update_post`: ``expected_version=0`` inserts
        and refuses a name that exists; a positive ``expected_version`` replaces
        the stored member only at that version; ``None`` inserts or replaces.
        Raises :class:`~postflow.ConflictError` (or :class:`~postflow.NotFound`
        for a missing one) and writes nothing when the check fails.
        """

    @abc.abstractmethod
    def get_member(self, name: str) -> Member | None:
        """The member called ``name``, or ``None``."""

    @abc.abstractmethod
    def list_members(self) -> list[Member]:
        """Every member (active or not), ordered by name."""

    @abc.abstractmethod
    def save_channel(
        self, channel: Channel, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        """Store a channel, appending ``entry`` in the same transaction.

        A compare-and-set like :meth:`update_post`: ``expected_version=0`` inserts
        and refuses a name that exists; a positive ``expected_version`` replaces
        the stored channel only at that version; ``None`` inserts or replaces.
        Raises :class:`~postflow.ConflictError` (or :class:`~postflow.NotFound`
        for a missing one) and writes nothing when the check fails.
        """

    @abc.abstractmethod
    def get_channel(self, name: str) -> Channel | None:
        """The channel called ``name``, or ``None``."""

    @abc.abstractmethod
    def list_channels(self) -> list[Channel]:
        """Every channel, ordered by name."""

    @abc.abstractmethod
    def save_campaign(
        self, campaign: Campaign, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        """Store a campaign, appending ``entry`` in the same transaction.

        A compare-and-set like :meth:`update_post`: ``expected_version=0`` inserts
        and refuses a name that exists; a positive ``expected_version`` replaces
        the stored campaign only at that version; ``None`` inserts or replaces.
        Raises :class:`~postflow.ConflictError` (or :class:`~postflow.NotFound`
        for a missing one) and writes nothing when the check fails.
        """

    @abc.abstractmethod
    def get_campaign(self, name: str) -> Campaign | None:
        """The campaign called ``name``, or ``None``."""

    @abc.abstractmethod
    def list_campaigns(self) -> list[Campaign]:
        """Every campaign, ordered by name."""

    # -- posts ---------------------------------------------------------------------

    @abc.abstractmethod
    def insert_post(
        self, post: Post, revision: Revision, entries: Sequence[NewEntry]
    ) -> Post:
        """Store a new post and its first revision; return it with its new id.

        ``post.id`` and ``revision.post_id`` are ignored: the backend assigns a new id,
        never reused, and stamps it on the post, the revision and every entry.
        """

    @abc.abstractmethod
    def get_post(self, post_id: int) -> Post | None:
        """The stored post, or ``None``."""

    @abc.abstractmethod
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
        """Replace the stored post if its version is still ``expected_version``.

        ``post.version`` must be ``expected_version + 1``; every field of ``post`` is
        stored. ``previous``, when given, is the snapshot ``post`` replaces (as read at
        ``expected_version``): a backend may use it to write only what changed, since a
        successful compare-and-set proves the stored post equals it. Appends
        ``entries`` (and the new ``revision`` and ``deliveries``, if given; deliveries
        replace the stored ones of the same post, channel and revision) in the same
        transaction and
        returns the entries as stored (with their ids; a sequence, which a backend may
        build lazily since most callers never read it). Raises
        :class:`~postflow.ConflictError` when the stored version differs and
        :class:`~postflow.NotFound` when there is no such post; nothing is written then.

        ``slot_guards`` maps channel names to the :meth:`slot_version` the caller read
        before it checked the channel's cadence: each must still be current, and is
        moved on by one in the same transaction, else :class:`~postflow.ConflictError`
        and nothing is written. Two processes scheduling into one channel thus never
        both pass a check that only one of them may pass.
        """

    @abc.abstractmethod
    def slot_version(self, channel: str) -> int:
        """A counter of the posts scheduled onto ``channel`` under a slot guard (see
        :meth:`update_post`); ``0`` when there was none."""

    @abc.abstractmethod
    def list_posts(self, query: PostQuery) -> list[Post]:
        """The posts matching ``query``, in the order it documents."""

    @abc.abstractmethod
    def count_posts(self, query: PostQuery) -> int:
        """How many posts match ``query`` (``limit``/``offset`` ignored)."""

    @abc.abstractmethod
    def revisions(self, post_id: int) -> list[Revision]:
        """Every revision of a post, oldest first (empty for an unknown post)."""

    @abc.abstractmethod
    def get_posts(self, post_ids: Sequence[int]) -> list[Post]:
        """The stored posts among ``post_ids``, in any order (unknown ids are skipped)."""

    @abc.abstractmethod
    def calendar_candidates(
        self, start: datetime, end: datetime | None, first_day: date, last_day: date | None
    ) -> list[tuple[int, int]]:
        """``(id, version)`` of every post that may be on the calendar in a window.

        That is every post whose ``scheduled_at`` lies in ``[start, end)``, every
        ``published`` post without one whose ``state_changed_at`` lies there, and every
        post whose ``planned_for`` lies in ``[first_day, last_day]`` (``None``: no upper
        bound), whatever its state, each once, ordered by id. Reads only an index: the
        calendar fetches the full posts it has not cached with :meth:`get_posts`.
        """

    # -- recurring series ----------------------------------------------------------

    @abc.abstractmethod
    def insert_series(self, series: Series, entry: NewEntry) -> Series:
        """Store a new series (its ``id`` is assigned) with ``entry``; return it."""

    @abc.abstractmethod
    def list_series(self) -> list[Series]:
        """Every series, by id."""

    @abc.abstractmethod
    def save_series(self, series: Series, entry: NewEntry, *, expected_version: int) -> None:
        """Replace the stored series if it is still at ``expected_version`` (``series``
        is one version on), appending ``entry`` in the same transaction; otherwise
        :class:`~postflow.ConflictError` (or :class:`~postflow.NotFound`) and nothing is
        written. Every field is stored, ``ended_at`` and ``ended_by`` included."""

    @abc.abstractmethod
    def add_occurrences(
        self, series: Series, expected_version: int,
        posts: Sequence[tuple[Post, Revision, NewEntry]],
    ) -> list[Post]:
        """Insert occurrence posts and store ``series`` (one version on, its
        ``created_until`` moved) in one transaction, if the stored series is still at
        ``expected_version``; otherwise :class:`~postflow.ConflictError` and nothing is
        written, so two processes never create the same occurrence twice. Posts get ids
        as in :meth:`insert_post`; returns them."""

    # -- publishing ----------------------------------------------------------------

    @abc.abstractmethod
    def instance_id(self) -> str:
        """A random id of this database, made when it was created and never changed.

        Idempotency keys include it, so two databases (staging and production, say)
        posting to one account never send the same key for different posts.
        """

    @abc.abstractmethod
    def rekey(self, entry: NewEntry, *, moved: bool = False) -> str:
        """Give this database a new random :meth:`instance_id`, appending ``entry`` in
        the same transaction; return the new id.

        For a copy of another database (staging made from production): without it
        both would send the same idempotency keys for different posts. With ``moved``,
        the id is kept and the backend only records that the database now lives where
        it is (a move, not a copy), if it keeps track of that.
        """

    @abc.abstractmethod
    def claim_due(
        self, now: datetime, worker: str, until: datetime, limit: int,
        held_channels: frozenset[str], correlation_id: str,
    ) -> list[Post]:
        """Atomically lease up to ``limit`` due posts to ``worker`` until ``until``.

        Due: ``scheduled``, ``scheduled_at <= now``, no lease that is still running
        (``claimed_until`` empty or ``<= now``), and no channel in ``held_channels``;
        earliest first. Each claimed post is stored one version on with ``claimed_by``
        and ``claimed_until`` set (``updated_at`` unchanged) and an audit entry
        ``claim`` by ``worker`` (data: ``claimed_until``), all in one transaction, so
        two workers never claim the same post. Returns the claimed snapshots.
        """

    @abc.abstractmethod
    def claim_post(
        self, post_id: int, now: datetime, worker: str, until: datetime,
        correlation_id: str,
    ) -> Post | None:
        """Atomically lease one ``scheduled`` post to ``worker`` until ``until``, whatever
        its ``scheduled_at`` (publishing it now), unless a lease on it is still running
        (``claimed_until > now``). Stored and recorded as in :meth:`claim_due` (an audit
        entry ``claim``); returns the claimed snapshot, or ``None`` (nothing written) when
        the post is unknown, not ``scheduled`` or leased. Holds are the caller's concern.
        """

    @abc.abstractmethod
    def renew_lease(self, post_id: int, worker: str, until: datetime, now: datetime) -> bool:
        """Extend ``worker``'s running lease on a post to ``until`` (a heartbeat while it
        sends); return whether it did.

        A compare-and-set on the lease itself: it succeeds only while the post is
        ``scheduled``, ``claimed_by == worker`` and ``claimed_until > now``, so it never
        revives a lease that has run out, nor one another worker has taken over since,
        and it never shortens one (``claimed_until`` becomes the later of the two).
        Nothing else changes: not ``version``, not ``updated_at``, and no audit entry is
        written. A snapshot that shows the lease running refuses people's changes
        anyway, and one that shows it run out stays true, since a lease that has run
        out can never be renewed; so keeping the version keeps every other
        compare-and-set (the worker's own result, a person's change) as it was.
        """

    @abc.abstractmethod
    def deliveries(self, post_id: int) -> list[Delivery]:
        """Every delivery of a post (all revisions), by revision then channel."""

    @abc.abstractmethod
    def save_deliveries(
        self, post_id: int, deliveries: Sequence[Delivery], *, worker: str | None,
        now: datetime, entries: Sequence[NewEntry] = (),
    ) -> bool:
        """Insert or replace deliveries by (post, channel, revision), with ``entries``.

        With ``worker``, only while that worker holds the post's lease at ``now``;
        returns ``False`` (writing nothing) when it does not.
        """

    @abc.abstractmethod
    def holds(self) -> list[Hold]:
        """The crisis pauses in force, by scope (``"*"`` first)."""

    @abc.abstractmethod
    def save_hold(self, hold: Hold, entry: NewEntry) -> None:
        """Add or replace the hold on ``hold.scope``, appending ``entry``."""

    @abc.abstractmethod
    def remove_hold(self, scope: str, entry: NewEntry) -> bool:
        """Lift the hold on ``scope`` and append ``entry``; ``False`` (and nothing
        written) when there was none."""

    # -- calendar: planning entries and feeds --------------------------------------

    @abc.abstractmethod
    def save_planning_entries(
        self, entries: Sequence[PlanningEntry], entry: NewEntry, *,
        remove: Sequence[str] = (),
    ) -> None:
        """Insert or replace planning entries by ``uid`` and delete those whose uid is in
        ``remove``, appending ``entry``, all in one transaction.

        Each entry's ``version`` must be 1 for a new ``uid`` or the stored version + 1;
        otherwise :class:`~postflow.ConflictError` is raised and nothing is written.
        Unknown uids in ``remove`` are ignored.
        """

    @abc.abstractmethod
    def list_planning_entries(self) -> list[PlanningEntry]:
        """Every planning entry, ordered by ``uid``."""

    @abc.abstractmethod
    def save_feed(self, feed: Feed, entry: NewEntry, *, expected_version: int | None = None
                  ) -> None:
        """Store a feed, appending ``entry``; a compare-and-set like :meth:`save_member`.

        A ``token_hash`` belongs to at most one feed.
        """

    @abc.abstractmethod
    def get_feed(self, name: str) -> Feed | None:
        """The feed called ``name``, or ``None``."""

    @abc.abstractmethod
    def find_feed(self, token_hash: str) -> Feed | None:
        """The feed whose token hashes to ``token_hash``, or ``None``.

        Looks the hash up through an index: the time taken does not depend on how much
        of a wrong token is right, since callers hash the token first.
        """

    @abc.abstractmethod
    def list_feeds(self) -> list[Feed]:
        """Every feed (revoked ones too), ordered by name."""

    # -- the workflow --------------------------------------------------------------

    @abc.abstractmethod
    def stored_workflow(self) -> Mapping[str, Any] | None:
        """The workflow definition stored with the data, or ``None`` when there is none.

        It is what :meth:`save_workflow` stored, as JSON decodes it (plain dicts, lists,
        strings, numbers, booleans, ``None``): a new object per call that the caller may
        keep or change. Reads one small record: every :func:`postflow.open` calls it.
        """

    @abc.abstractmethod
    def save_workflow(
        self, definition: Mapping[str, Any], entry: NewEntry, *,
        expected: Mapping[str, Any] | None,
    ) -> None:
        """Store a workflow definition (JSON-able), appending ``entry`` in the same
        transaction.

        A compare-and-set on the definition: it is stored only if the stored one still
        equals ``expected`` (``None``: nothing is stored yet); otherwise
        :class:`~postflow.ConflictError` is raised and nothing is written. Posts are not
        touched: checking that they fit the new workflow is the caller's job.
        """

    # -- documents (notification configuration, preferences) -----------------------

    @abc.abstractmethod
    def stored_document(self, name: str) -> Mapping[str, Any] | None:
        """The JSON document stored as ``name``, or ``None``: a new object per call, as
        :meth:`stored_workflow` returns it."""

    @abc.abstractmethod
    def save_document(
        self, name: str, document: Mapping[str, Any] | None, entry: NewEntry, *,
        expected: Mapping[str, Any] | None,
    ) -> None:
        """Store (``None``: delete) the JSON document ``name``, appending ``entry`` in the
        same transaction; a compare-and-set like :meth:`save_workflow` (the stored
        document must still equal ``expected``, ``None`` meaning none is stored), else
        :class:`~postflow.ConflictError` and nothing written."""

    @abc.abstractmethod
    def list_documents(self, prefix: str) -> dict[str, Mapping[str, Any]]:
        """Every stored document whose name starts with ``prefix``, by name."""

    # -- notifications: outbox, marks, inbox ---------------------------------------

    @abc.abstractmethod
    def enqueue_notifications(
        self, notices: Sequence[Notice], *, marks: Sequence[str] = (),
        cursor: tuple[str, int, int] | None = None, at: datetime | None = None,
    ) -> list[Notice]:
        """Queue ``notices`` in the outbox, in one transaction; return those inserted,
        with their ids.

        ``marks`` (the keys of timed events) are recorded (at ``at``; default: the
        newest ``created_at`` of ``notices``, else now); a notice whose ``event_key`` was
        a mark before this call is skipped, and so is one whose ``dedup_key`` is queued
        already. ``cursor`` ``(consumer, position, expected)`` moves that consumer's
        position as :meth:`save_cursor` does: when it is not at ``expected``,
        :class:`~postflow.ConflictError` and nothing is written.
        """

    @abc.abstractmethod
    def has_marks(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` recorded as marks by :meth:`enqueue_notifications`."""

    @abc.abstractmethod
    def claim_notifications(
        self, now: datetime, worker: str, until: datetime, limit: int
    ) -> list[Notice]:
        """Atomically hold due notices for ``worker`` until ``until``; return them.

        Due: ``pending`` with ``not_before <= now`` and ``next_attempt_at`` empty or
        ``<= now``, or ``sending`` with ``claimed_until < now`` (a dead worker's). Oldest
        (lowest id) first, at most ``limit``, except that the unsettled notices of one
        digest group (``recipient``, ``channel``, ``digest`` not ``None``) are claimed
        whole, and only when every one of them is due. Claimed notices become
        ``sending`` with ``claimed_by`` and ``claimed_until``; ``attempts`` is unchanged.
        """

    @abc.abstractmethod
    def settle_notifications(
        self, ids: Sequence[int], worker: str, *, status: str, at: datetime,
        error: str | None = None, next_attempt_at: datetime | None = None,
    ) -> int:
        """Record the outcome of sending the notices ``ids`` that ``worker`` still holds
        (``sending``, ``claimed_by == worker``); return how many changed.

        ``sent`` or ``failed``: settled at ``at`` (``settled_at``), the attempt counted,
        ``last_error`` = ``error``. ``pending``: a retry, ``attempts`` + 1, at
        ``next_attempt_at``, ``last_error`` = ``error``, the claim released. Any other
        status is a :class:`ValueError`.
        """

    @abc.abstractmethod
    def list_notifications(
        self, *, status: str | None = None, recipient: str | None = None,
        after_id: int = 0, limit: int | None = None,
    ) -> list[Notice]:
        """Outbox notices with ``id > after_id``, by id, filtered by ``status`` and
        ``recipient``; at most ``limit`` (paging as in :meth:`audit_log`)."""

    @abc.abstractmethod
    def add_inbox(self, items: Sequence[InboxItem]) -> list[InboxItem]:
        """Store inbox items (ids assigned); one whose ``dedup_key`` is stored already is
        skipped. Returns those inserted."""

    @abc.abstractmethod
    def inbox(self, member: str, *, unread: bool = False, after_id: int = 0,
              limit: int | None = None) -> list[InboxItem]:
        """``member``'s inbox items with ``id > after_id``, newest first (only unread
        ones with ``unread``); at most ``limit``."""

    @abc.abstractmethod
    def mark_read(self, member: str, ids: Sequence[int] | None, at: datetime) -> int:
        """Mark ``member``'s unread items ``ids`` (``None``: all of them) read at ``at``;
        return how many changed. Other members' items are never touched."""

    @abc.abstractmethod
    def prune_notifications(self, before: datetime) -> int:
        """Delete settled outbox notices settled, read inbox items read, and marks made
        before ``before``; return how many rows went."""

    # -- audit ---------------------------------------------------------------------

    @abc.abstractmethod
    def last_change(self) -> tuple[int, datetime | None]:
        """The id and time of the newest audit entry, ``(0, None)`` when there is none.

        Every change appends an entry, so this moves whenever anything changes: the
        calendar's cheap validator. It reads one row.
        """

    @abc.abstractmethod
    def append_audit(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        """Append entries that accompany no other change (comments); return them stored."""

    @abc.abstractmethod
    def history(self, post_id: int) -> list[AuditEntry]:
        """A post's audit entries, oldest first."""

    @abc.abstractmethod
    def audit_log(self, *, after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """All audit entries with ``id > after_id``, oldest first; at most ``limit``.

        ``after_id`` and ``limit`` are whole numbers >= 0 (``limit`` may be ``None``: no
        limit); anything else raises :class:`ValueError` (see :func:`check_page`).
        """

    @abc.abstractmethod
    def cursor(self, consumer: str) -> int:
        """How far ``consumer`` has read the audit trail: the id of the last entry it
        handled, ``0`` when it never saved a position."""

    @abc.abstractmethod
    def save_cursor(self, consumer: str, position: int, *, expected: int) -> None:
        """Move ``consumer``'s position to ``position`` if it is still ``expected``.

        A compare-and-set, so two processes draining one consumer never both advance it
        from the same place: :class:`~postflow.ConflictError` and nothing written when
        the stored position differs. Positions never move backwards (``position <
        expected`` raises :class:`ValueError`). Durable once it returns.
        """

    # -- copying a whole database (``postflow db copy``) ---------------------------

    def export_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every stored row, by table, for :meth:`import_rows` of another backend.

        The rows are in the SQLite backend's encoding (the neutral one: times as ISO
        text, flags as 0/1, structured values as its JSON text), keyed by column name;
        ``postflow_meta`` holds the ``instance_id``, each channel's slot version
        (``slots:CHANNEL``) and each consumer's cursor (``cursor:CONSUMER``). Ids,
        versions and the audit trail's order are kept, so a copy answers every read as
        the original does and change cursors stay valid.
        Backends that cannot copy raise :class:`NotImplementedError` (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot export its rows")

    def import_rows(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
        """Store rows from :meth:`export_rows` (of any backend) in this empty database, in
        one transaction, keeping their ids; return how many rows each table got.

        Raises :class:`~postflow.ConflictError` (writing nothing) when the database holds
        anything already. Columns this backend does not have are dropped. Backends that
        cannot copy raise :class:`NotImplementedError` (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot import rows")

    # -- wake-ups ------------------------------------------------------------------

    def wait_for_change(self, timeout: float, interrupt: threading.Event) -> bool:
        """Wait up to ``timeout`` seconds, less if another process (or this one) writes
        something that may make work due sooner: a post scheduled or rescheduled, a
        retry wait, an outbox notice. ``True`` when woken by such a write (the caller
        then re-computes when to wake), ``False`` when the time is up or ``interrupt``
        was set.

        A hint, never a guarantee: a backend may wake for nothing, and a write may be
        missed (the caller polls anyway). This default hears of no write: it waits on
        ``interrupt`` for the whole ``timeout`` (polling). The PostgreSQL backend
        listens with ``LISTEN/NOTIFY``.
        """
        interrupt.wait(max(0.0, timeout))
        return False

    # -- lifecycle -----------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Further calls may fail."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
