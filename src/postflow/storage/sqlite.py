"""``sqlite:///path``: the embedded default (stdlib ``sqlite3``, WAL).

Every write is one ``BEGIN IMMEDIATE`` transaction, so several processes can share a
file: SQLite serialises the writers and the compare-and-set on ``version`` catches a
writer whose snapshot is stale. ``sqlite:///relative.db`` is relative to the working
directory, ``sqlite:////abs/path.db`` absolute.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

from postflow._urls import redact_url
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    MigrationRequired,
    NotFound,
    StorageError,
)
from postflow.hookspecs import hookimpl
from postflow.models import (
    NO_CADENCE,
    NO_DATA,
    Approval,
    AuditEntry,
    Cadence,
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
    replace,
)
from postflow.notices import InboxItem, Notice
from postflow.storage import (
    NewEntry,
    PostQuery,
    SchemaManager,
    Storage,
    _check_settle_status,
    _mark_time,
    _notice_due,
    _with_series,
    check_cursor_move,
    check_page,
)

__all__ = ["MIGRATION_NOTES", "SCHEMA_VERSION", "SQLiteStorage", "migrate_file",
           "stored_schema_version"]

log = logging.getLogger("postflow")

SCHEMA_VERSION = 6
"""The schema this postflow writes; older files are migrated forward on open (unless
opened with ``?migrate=no``)."""

_SCHEMA_V1 = """
CREATE TABLE postflow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE members (
    name TEXT PRIMARY KEY, roles TEXT NOT NULL, email TEXT, active INTEGER NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE channels (
    name TEXT PRIMARY KEY, network TEXT NOT NULL, handle TEXT NOT NULL,
    timezone TEXT NOT NULL, active INTEGER NOT NULL, version INTEGER NOT NULL);
CREATE TABLE campaigns (
    name TEXT PRIMARY KEY, goal TEXT NOT NULL, hashtags TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL, state TEXT NOT NULL, author TEXT NOT NULL,
    text TEXT NOT NULL, channels TEXT NOT NULL, revision INTEGER NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, state_changed_at TEXT NOT NULL,
    campaign TEXT, planned_for TEXT, scheduled_at TEXT, scheduled_zone TEXT,
    approvals TEXT NOT NULL, revised_by TEXT);
CREATE INDEX posts_state_time ON posts (state, scheduled_at, id);
CREATE INDEX posts_time ON posts (scheduled_at, id);
CREATE INDEX posts_author ON posts (author, id);
CREATE INDEX posts_campaign ON posts (campaign, id);
CREATE TABLE post_channels (
    channel TEXT NOT NULL, post_id INTEGER NOT NULL, PRIMARY KEY (channel, post_id)
) WITHOUT ROWID;
CREATE TABLE revisions (
    post_id INTEGER NOT NULL, number INTEGER NOT NULL, text TEXT NOT NULL,
    channels TEXT NOT NULL, campaign TEXT, author TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (post_id, number)) WITHOUT ROWID;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, post_id INTEGER, action TEXT NOT NULL,
    actor TEXT NOT NULL, at TEXT NOT NULL, correlation_id TEXT NOT NULL,
    from_state TEXT, to_state TEXT, revision INTEGER, comment TEXT, data TEXT);
CREATE INDEX audit_post ON audit (post_id, id);
"""

_SCHEMA_V2 = """
ALTER TABLE posts ADD COLUMN media TEXT NOT NULL DEFAULT '[]';
ALTER TABLE posts ADD COLUMN published_urls TEXT NOT NULL DEFAULT '{}';
ALTER TABLE posts ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE revisions ADD COLUMN media TEXT NOT NULL DEFAULT '[]';
CREATE INDEX posts_planned ON posts (planned_for, id);
CREATE TABLE planning_entries (
    uid TEXT PRIMARY KEY, summary TEXT NOT NULL, start TEXT NOT NULL, end TEXT NOT NULL,
    description TEXT NOT NULL, category TEXT NOT NULL, sequence INTEGER NOT NULL,
    updated_at TEXT, version INTEGER NOT NULL);
CREATE TABLE feeds (
    name TEXT PRIMARY KEY, filters TEXT NOT NULL, token_hash TEXT UNIQUE,
    created_at TEXT, rotated_at TEXT, version INTEGER NOT NULL);
"""


_SCHEMA_V3 = """
ALTER TABLE posts ADD COLUMN claimed_by TEXT;
ALTER TABLE posts ADD COLUMN claimed_until TEXT;
ALTER TABLE channels ADD COLUMN publisher TEXT;
ALTER TABLE channels ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE channels ADD COLUMN cadence TEXT NOT NULL DEFAULT '{}';
ALTER TABLE posts ADD COLUMN series_id INTEGER;
ALTER TABLE posts ADD COLUMN occurrence_at TEXT;
CREATE TABLE series (
    id INTEGER PRIMARY KEY AUTOINCREMENT, author TEXT NOT NULL, text TEXT NOT NULL,
    channels TEXT NOT NULL, rrule TEXT NOT NULL, start TEXT NOT NULL, zone TEXT NOT NULL,
    ahead_seconds REAL NOT NULL, campaign TEXT, media TEXT NOT NULL, created_until TEXT,
    version INTEGER NOT NULL);
CREATE TABLE deliveries (
    post_id INTEGER NOT NULL, channel TEXT NOT NULL, revision INTEGER NOT NULL,
    status TEXT NOT NULL, idempotency_key TEXT NOT NULL, attempts INTEGER NOT NULL,
    remote_id TEXT, url TEXT, last_error TEXT, updated_at TEXT,
    PRIMARY KEY (post_id, channel, revision)) WITHOUT ROWID;
CREATE TABLE holds (scope TEXT PRIMARY KEY, reason TEXT NOT NULL, by_member TEXT NOT NULL,
    at TEXT NOT NULL);
"""


def _run_script(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """Media, published URLs, the calendar's tables, and each post's calendar sequence
    as its audit trail implies (what :func:`postflow.replay` would compute)."""
    from postflow.audit import replay
    from postflow.exceptions import PostflowError

    _run_script(db, _SCHEMA_V2)
    for (post_id,) in db.execute("SELECT id FROM posts").fetchall():
        rows = db.execute(f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE post_id = ? "
                          "ORDER BY id", (post_id,)).fetchall()
        try:
            sequence = replay(_entry(r) for r in rows).sequence
        except (PostflowError, KeyError, ValueError, TypeError):
            continue  # a trail replay cannot read: the post keeps sequence 0
        if sequence:
            db.execute("UPDATE posts SET sequence = ? WHERE id = ?", (sequence, post_id))


_SCHEMA_V4 = """
CREATE TABLE IF NOT EXISTS workflow (
    id INTEGER PRIMARY KEY CHECK (id = 1), definition TEXT NOT NULL);
"""


def _migrate_to_4(db: sqlite3.Connection) -> None:
    """The stored workflow. A database with posts gets the default workflow stored if
    every post's state, and the stage of every approval it carries, exist in it; if
    not (it was used with another workflow), nothing is stored and opening it needs
    that workflow once. A database without posts stores nothing: its next open stores
    the workflow it is opened with, as a new one does."""
    from postflow.workflow import Workflow

    _run_script(db, _SCHEMA_V4)  # safe to run twice, as every migration from 4 on
    if db.execute("SELECT 1 FROM workflow").fetchone() is not None or db.execute(
            "SELECT 1 FROM posts LIMIT 1").fetchone() is None:
        return
    default = Workflow.default()
    states = {r[0] for r in db.execute("SELECT DISTINCT state FROM posts")}
    if not states <= set(default.states):
        return
    stage_names = {stage.name for stage in default.stages}
    for (approvals,) in db.execute("SELECT DISTINCT approvals FROM posts "
                                   "WHERE approvals != '[]'"):
        if any(a[1] not in stage_names for a in json.loads(approvals)):
            return
    definition = default.to_dict()
    db.execute("INSERT INTO workflow VALUES (1, ?)", (_to_json(definition),))
    db.execute(_INSERT_AUDIT, (
        None, "workflow.store", "system", datetime.now(UTC).isoformat(), "migration-4",
        None, None, None, "stored by the schema 4 migration: every post fits the default",
        _to_json({"workflow": default.name})))


# -- migration of schema 5: ended series, retired campaigns ----------------
# Kept in a function of its own (and safe to run twice: it adds only missing columns) so
# that a file another build migrated this way stays valid.

_CLI_WORKFLOW_COLUMNS = (
    ("series", "ended_at", "TEXT"),
    ("series", "ended_by", "TEXT"),
    ("campaigns", "active", "INTEGER NOT NULL DEFAULT 1"),
)


def _migrate_series_end_campaign_active(db: sqlite3.Connection) -> None:
    """Series can be ended (``ended_at``, ``ended_by``); campaigns retired (``active``)."""
    for table, column, kind in _CLI_WORKFLOW_COLUMNS:
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


# -- migration of schema 6: notifications, escalation approvers -----------
# Safe to run twice, like the one of schema 5: tables and indexes only if missing, the
# column only if missing.

_SCHEMA_V6 = """
CREATE TABLE IF NOT EXISTS documents (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE,
    event_key TEXT NOT NULL, event TEXT NOT NULL, recipient TEXT NOT NULL,
    channel TEXT NOT NULL, created_at TEXT NOT NULL, not_before TEXT NOT NULL,
    payload TEXT NOT NULL, digest TEXT, urgent INTEGER NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_at TEXT, last_error TEXT, claimed_by TEXT,
    claimed_until TEXT, settled_at TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, not_before);
CREATE INDEX IF NOT EXISTS outbox_digest ON outbox (recipient, channel, digest);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, member TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL, title TEXT NOT NULL,
    body TEXT NOT NULL, created_at TEXT NOT NULL, post_id INTEGER, read_at TEXT,
    payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_member ON inbox (member, id);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;
"""


def _migrate_to_6(db: sqlite3.Connection) -> None:
    """Stored documents, the notification outbox, marks and inbox, and each post's
    escalation approvers (``posts.extra_approvers``, none for existing posts)."""
    _run_script(db, _SCHEMA_V6)
    present = {r[1] for r in db.execute("PRAGMA table_info(posts)")}
    if "extra_approvers" not in present:
        db.execute("ALTER TABLE posts ADD COLUMN extra_approvers TEXT NOT NULL DEFAULT '[]'")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _migrate_to_2,  # media, published URLs, calendar
    3: lambda db: _run_script(db, _SCHEMA_V3),  # leases, publishers, deliveries, holds
    4: _migrate_to_4,  # the stored workflow
    5: _migrate_series_end_campaign_active,  # ended series, retired campaigns
    6: _migrate_to_6,  # notifications, escalation approvers
}
"""``MIGRATIONS[n]`` upgrades a schema at version ``n - 1`` to ``n`` (inside a transaction).

A new file is created at version 1 and migrated forward, so every migration runs in
every test that opens a fresh database.
"""

MIGRATION_NOTES: dict[int, str] = {
    2: "media, published URLs, the calendar's tables and sequences",
    3: "publishing leases, publishers, cadence, deliveries, holds, recurring series",
    4: "the stored workflow",
    5: "ended series, retired campaigns",
    6: "notification outbox, inbox and documents, escalation approvers",
}
"""What each migration adds, as ``postflow db status`` lists it."""

_SERIES_COLUMNS = (
    "id, author, text, channels, rrule, start, zone, ahead_seconds, campaign, media, "
    "created_until, version, ended_at, ended_by"
)
_POST_COLUMNS = (
    "id, version, state, author, text, channels, revision, created_at, updated_at, "
    "state_changed_at, campaign, planned_for, scheduled_at, scheduled_zone, approvals, "
    "revised_by, media, published_urls, sequence, claimed_by, claimed_until, series_id, "
    "occurrence_at, extra_approvers"
)
_NEW_POST_COLUMNS = _POST_COLUMNS.removesuffix(", extra_approvers")
"""The columns a new post without escalation approvers is inserted with."""
_AUDIT_COLUMNS = (
    "id, post_id, action, actor, at, correlation_id, from_state, to_state, revision, "
    "comment, data"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (post_id, action, actor, at, correlation_id, from_state, to_state, "
    "revision, comment, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

class _LastEncoded:
    """Remembers the text of the last value it encoded.

    One write formats the same objects several times (the call's ``now`` as
    ``updated_at``, ``state_changed_at`` and the entry's ``at``; a post's channels for
    the post and its revision; approvals carried from one snapshot to the next). The
    cache holds a reference to the value, so an identity match is always that value.
    """

    __slots__ = ("_encode", "_last")

    def __init__(self, encode: Callable[[Any], str]) -> None:
        self._encode = encode
        self._last: tuple[object, str] = (object(), "")

    def __call__(self, value: Any) -> str:
        last = self._last
        if last[0] is value:
            return last[1]
        text = self._encode(value)
        self._last = (value, text)
        return text


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


_to_json = json.JSONEncoder(
    sort_keys=True, default=_json_default, separators=(",", ":")
).encode


def _approvals_text(approvals: tuple[Approval, ...]) -> str:
    if not approvals:
        return "[]"
    return json.dumps([[a.member, a.stage, a.revision, a.at.isoformat(), a.comment]
                       for a in approvals])
_from_ts = datetime.fromisoformat


def split_url(url: str) -> tuple[str, dict[str, bool]]:
    """``sqlite:///path?migrate=no`` -> (``sqlite:///path``, ``{"migrate": False}``).

    The one option is ``migrate`` (``yes``/``no``, default ``yes``): ``no`` refuses to
    open a file with an older schema instead of migrating it."""
    if "?" not in url:
        return url, {}
    base, query = url.split("?", 1)
    options: dict[str, bool] = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key != "migrate" or value.lower() not in {"yes", "no", "true", "false", "1", "0"}:
            raise ConfigError(f"unknown sqlite URL option {part!r} in {url!r} "
                              "(known: migrate=yes|no)")
        options["migrate"] = value.lower() in {"yes", "true", "1"}
    return base, options


_SURROGATE = re.compile("[\ud800-\udfff]")


def path_from_url(url: str) -> str:
    """The file path in a ``sqlite:///path`` URL."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a sqlite URL (expected sqlite:///path): {redact_url(url)!r}")
    path = url[len("sqlite:///"):]
    if not path:
        raise ConfigError(f"sqlite URL without a file path: {redact_url(url)!r}")
    if "\x00" in path or _SURROGATE.search(path):
        raise ConfigError(f"the path in sqlite URL {redact_url(url)!r:.300} contains a NUL "
                          "character or a lone surrogate: no file can have that name")
    return path


class SQLiteStorage(Storage):
    """A postflow database in one SQLite file."""

    def __init__(self, url: str, *, timeout: float = 30.0, migrate: bool | None = None
                 ) -> None:
        base, options = split_url(url)
        self.url = base
        self.path = path_from_url(base)
        self.migrate = options.get("migrate", True) if migrate is None else migrate
        """Whether an older schema is migrated on open; otherwise opening such a file
        raises :class:`~postflow.MigrationRequired`."""
        self._lock = threading.RLock()
        # Members, channels and campaigns by (table, name); emptied whenever another
        # connection commits (PRAGMA data_version moves), so it is never stale.
        self._directory: dict[tuple[str, str], Any] = {}
        self._data_version = -1
        # used under self._lock only, and they go with this object
        self._ts = _LastEncoded(datetime.isoformat)
        self._channels_json = _LastEncoded(json.dumps)
        self._approvals_json = _LastEncoded(_approvals_text)
        self._update_statements: dict[tuple[str, ...], str] = {}
        self._instance: str | None = None
        self.copied_from: str | None = None
        """Where this file was made, when it is not where it is now (a copy or a move)."""
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            self._prepare_schema()
            # WAL only once the file is known to be ours: switching a foreign
            # database to WAL would rewrite its header.
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: SQLite refused WAL mode (journal_mode is %s); concurrent "
                            "readers will wait for writers", self.path, mode)
            self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StorageError(
                f"{self.path} is not a usable postflow database: {exc}"
            ) from exc
        except StorageError:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.path!r})"

    # -- schema --------------------------------------------------------------------

    def _prepare_schema(self) -> None:
        with self._write() as db:
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                _run_script(db, _SCHEMA_V1)
                db.execute("INSERT INTO postflow_meta VALUES ('schema_version', '1')")
                tables.add("postflow_meta")
            if "postflow_meta" not in tables:
                raise StorageError(
                    f"{self.path} is a SQLite database but not a postflow one "
                    f"(it has tables {', '.join(sorted(tables))} and no postflow_meta)"
                )
            row = db.execute(
                "SELECT value FROM postflow_meta WHERE key = 'schema_version'").fetchone()
            if row is None or not str(row[0]).isdigit() or int(row[0]) < 1:
                raise StorageError(f"{self.path}: postflow_meta has no valid schema_version")
            found = int(row[0])
            if found < SCHEMA_VERSION and not self.migrate:
                raise MigrationRequired(
                    f"{self.path} has schema version {found}; this postflow uses "
                    f"{SCHEMA_VERSION}. Run 'postflow db migrate' (it keeps a backup copy) "
                    "before using it", found=found, current=SCHEMA_VERSION)
            if found > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} was written by a newer postflow (schema version {found}; "
                    f"this postflow knows up to {SCHEMA_VERSION}): upgrade postflow"
                )
            for target in range(found + 1, SCHEMA_VERSION + 1):
                if target not in MIGRATIONS:
                    raise StorageError(
                        f"{self.path}: no migration from schema version {target - 1} to "
                        f"{target}")
                MIGRATIONS[target](db)
                db.execute("UPDATE postflow_meta SET value = ? WHERE key = 'schema_version'",
                           (str(target),))

    def schema_version(self) -> int:
        """The schema version stored in the file."""
        rows = self._read("SELECT value FROM postflow_meta WHERE key = 'schema_version'")
        return int(rows[0][0])

    def _write(self) -> _WriteTransaction:
        """``with self._write() as db:`` runs the block in one IMMEDIATE transaction."""
        return _WriteTransaction(self)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except UnicodeEncodeError:
                # a lone surrogate cannot be stored, so no row can equal it: the same
                # empty answer memory:// gives, not sqlite3's encoding error
                return []
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: read failed: {exc}") from exc

    def _append(
        self, db: sqlite3.Connection, entries: Sequence[NewEntry], post_id: int | None = None
    ) -> list[AuditEntry]:
        stored = []
        for e in entries:
            entry_post = e.post_id if post_id is None else post_id
            data = freeze(e.data) if e.data else NO_DATA  # what is stored is what returns
            cursor = db.execute(_INSERT_AUDIT, (
                entry_post, e.action, e.actor, self._ts(e.at), e.correlation_id, e.from_state,
                e.to_state, e.revision, e.comment, _to_json(data) if data else None))
            assert cursor.lastrowid is not None
            stored.append(AuditEntry(
                cursor.lastrowid, e.action, e.actor, e.at, e.correlation_id, entry_post,
                e.from_state, e.to_state, e.revision, e.comment, data))
        return stored

    # -- team, channels, campaigns -------------------------------------------------

    def save_member(
        self, member: Member, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        with self._write() as db:
            _check_version(db, "members", member.name, expected_version, "member")
            db.execute("INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?)",
                       (member.name, json.dumps(sorted(member.roles)), member.email,
                        int(member.active), member.version))
            self._append(db, [entry])
        self._directory.pop(("members", member.name), None)

    def get_member(self, name: str) -> Member | None:
        member: Member | None = self._lookup("members", name, _member)
        return member

    def _lookup(self, table: str, name: str, build: Callable[[Any], Any]) -> Any:
        key = (table, name)
        with self._lock:
            try:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
                if version != self._data_version:
                    self._directory.clear()
                    self._data_version = version
                elif key in self._directory:
                    return self._directory[key]
                row = self._db.execute(
                    f"SELECT * FROM {table} WHERE name = ?", (name,)).fetchone()
            except UnicodeEncodeError:
                return None  # a lone surrogate: nothing stored can have that name
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: read failed: {exc}") from exc
            value = build(row) if row else None
            self._directory[key] = value
            return value

    def list_members(self) -> list[Member]:
        return [_member(r) for r in self._read("SELECT * FROM members ORDER BY name")]

    def save_channel(
        self, channel: Channel, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        with self._write() as db:
            _check_version(db, "channels", channel.name, expected_version, "channel")
            db.execute("INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (channel.name, channel.network, channel.handle, channel.timezone,
                        int(channel.active), channel.version, channel.publisher,
                        _urls_json(channel.settings), _cadence_json(channel.cadence)))
            self._append(db, [entry])
        self._directory.pop(("channels", channel.name), None)

    def get_channel(self, name: str) -> Channel | None:
        channel: Channel | None = self._lookup("channels", name, _channel)
        return channel

    def list_channels(self) -> list[Channel]:
        return [_channel(r) for r in self._read("SELECT * FROM channels ORDER BY name")]

    def save_campaign(
        self, campaign: Campaign, entry: NewEntry, *, expected_version: int | None = None
    ) -> None:
        with self._write() as db:
            _check_version(db, "campaigns", campaign.name, expected_version, "campaign")
            db.execute("INSERT OR REPLACE INTO campaigns (name, goal, hashtags, version, "
                       "active) VALUES (?, ?, ?, ?, ?)",
                       (campaign.name, campaign.goal, json.dumps(list(campaign.hashtags)),
                        campaign.version, int(campaign.active)))
            self._append(db, [entry])
        self._directory.pop(("campaigns", campaign.name), None)

    def get_campaign(self, name: str) -> Campaign | None:
        campaign: Campaign | None = self._lookup("campaigns", name, _campaign)
        return campaign

    def list_campaigns(self) -> list[Campaign]:
        return [_campaign(r) for r in self._read(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns "
                                                   "ORDER BY name")]

    # -- posts ---------------------------------------------------------------------

    def insert_series(self, series: Series, entry: NewEntry) -> Series:
        with self._write() as db:
            cursor = db.execute(
                f"INSERT INTO series ({_SERIES_COLUMNS}) VALUES "
                "(NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._series_row(series)[1:])
            assert cursor.lastrowid is not None
            stored = replace(series, id=cursor.lastrowid)
            self._append(db, [_with_series(entry, stored.id)])
            return stored

    def _series_row(self, s: Series) -> tuple[Any, ...]:
        return (s.id, s.author, s.text, json.dumps(list(s.channels)), s.rrule,
                s.start.isoformat(), s.zone, s.ahead.total_seconds(), s.campaign,
                json.dumps(list(s.media)),
                self._ts(s.created_until) if s.created_until else None, s.version,
                self._ts(s.ended_at) if s.ended_at else None, s.ended_by)

    def list_series(self) -> list[Series]:
        return [_decoded("series", lambda r: Series(
            r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], datetime.fromisoformat(r[5]),
            r[6], timedelta(seconds=r[7]), r[8], tuple(json.loads(r[9])),
            _from_ts(r[10]) if r[10] else None, r[11], _from_ts(r[12]) if r[12] else None,
            r[13]), r)
                for r in self._read(f"SELECT {_SERIES_COLUMNS} FROM series ORDER BY id")]

    def save_series(self, series: Series, entry: NewEntry, *, expected_version: int) -> None:
        with self._write() as db:
            row = db.execute("SELECT version FROM series WHERE id = ?",
                             (series.id,)).fetchone()
            if row is None:
                raise NotFound(f"series {series.id} does not exist")
            if row[0] != expected_version:
                raise ConflictError(f"series {series.id} is at version {row[0]}, not "
                                    f"{expected_version}", expected=expected_version,
                                    actual=row[0])
            values = self._series_row(series)
            db.execute(f"UPDATE series SET ({_SERIES_COLUMNS}) = "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id = ?",
                       (*values, series.id))
            self._append(db, [entry])

    def add_occurrences(
        self, series: Series, expected_version: int,
        posts: Sequence[tuple[Post, Revision, NewEntry]],
    ) -> list[Post]:
        with self._write() as db:
            row = self._series_row(series)
            cursor = db.execute(
                "UPDATE series SET created_until = ?, version = ? WHERE id = ? AND "
                "version = ?", (row[10], series.version, series.id, expected_version))
            if cursor.rowcount != 1:
                raise ConflictError(f"series {series.id} changed since it was read",
                                    expected=expected_version)
            return [self._insert_post(db, p, r, [e]) for p, r, e in posts]

    def insert_post(
        self, post: Post, revision: Revision, entries: Sequence[NewEntry]
    ) -> Post:
        with self._write() as db:
            return self._insert_post(db, post, revision, entries)

    def _insert_post(
        self, db: sqlite3.Connection, post: Post, revision: Revision,
        entries: Sequence[NewEntry],
    ) -> Post:
        # extra_approvers only when there are any (the column's default is "none"),
        # which is what every new post has
        extra = (_pairs_json(post.extra_approvers),) if post.extra_approvers else ()
        cursor = db.execute(
            f"INSERT INTO posts ({_POST_COLUMNS if extra else _NEW_POST_COLUMNS}) "
            "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            f"{', ?' if extra else ''})",
            (post.version, post.state, post.author, post.text,
             self._channels_json(post.channels), post.revision,
             self._ts(post.created_at), self._ts(post.updated_at),
             self._ts(post.state_changed_at), *self._mutable_tail(post),
             post.revised_by, _media_json(post.media), _urls_json(post.published_urls),
             post.sequence, post.claimed_by,
             self._ts(post.claimed_until) if post.claimed_until else None,
             post.series_id,
             self._ts(post.occurrence_at) if post.occurrence_at else None, *extra),
        )
        post_id = cursor.lastrowid
        assert post_id is not None
        db.executemany("INSERT INTO post_channels VALUES (?, ?)",
                       [(c, post_id) for c in post.channels])
        self._insert_revision(db, post_id, revision)
        self._append(db, entries, post_id)
        return replace(post, id=post_id)

    def get_post(self, post_id: int) -> Post | None:
        rows = self._read(f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ?", (post_id,))
        return _post(rows[0]) if rows else None

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
    ) -> list[AuditEntry]:
        columns, values = self._changed_columns(post, previous, expected_version)
        with self._write() as db:
            for channel, version in slot_guards.items() if slot_guards else ():
                key = f"slots:{channel}"
                moved = db.execute(
                    "UPDATE postflow_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
                    " WHERE key = ? AND CAST(value AS INTEGER) = ?", (key, version))
                if moved.rowcount != 1 and (version != 0 or db.execute(
                        # the channel's first schedule: no row yet stands for version 0
                        "INSERT OR IGNORE INTO postflow_meta VALUES (?, '1')", (key,)
                ).rowcount != 1):
                    raise ConflictError(
                        f"post {post.id}: channel {channel!r} was scheduled onto since its "
                        "cadence was checked", post_id=post.id)
            cursor = db.execute(self._update_sql(columns),
                                (*values, post.id, expected_version))
            if cursor.rowcount != 1:
                row = db.execute("SELECT version FROM posts WHERE id = ?",
                                 (post.id,)).fetchone()
                if row is None:
                    raise NotFound(f"post {post.id} does not exist")
                raise ConflictError(
                    f"post {post.id} is at version {row[0]}, not {expected_version}: "
                    "it changed since it was read",
                    post_id=post.id, expected=expected_version, actual=row[0],
                )
            if revision is not None:
                self._insert_revision(db, post.id, revision)
            if deliveries:
                self._put_deliveries(db, deliveries)
            if "channels" in columns:
                old = {r[0] for r in db.execute(
                    "SELECT channel FROM post_channels WHERE post_id = ?", (post.id,))}
                if old != set(post.channels):
                    db.execute("DELETE FROM post_channels WHERE post_id = ?", (post.id,))
                    db.executemany("INSERT INTO post_channels VALUES (?, ?)",
                                   [(c, post.id) for c in post.channels])
            return self._append(db, entries)

    def _changed_columns(
        self, post: Post, previous: Post | None, expected_version: int
    ) -> tuple[tuple[str, ...], list[Any]]:
        """The columns to SET and their values: all of them, or (when ``previous`` is the
        snapshot being replaced) only those that differ, so that unchanged indexed
        columns cost no index maintenance."""
        old = previous if previous is not None and previous.version == expected_version \
            else None
        columns = ["version", "updated_at"]
        values: list[Any] = [post.version, self._ts(post.updated_at)]
        if old is None or post.state != old.state:
            columns.append("state")
            values.append(post.state)
        if old is None or post.state_changed_at != old.state_changed_at:
            columns.append("state_changed_at")
            values.append(self._ts(post.state_changed_at))
        if old is None or post.campaign != old.campaign:
            columns.append("campaign")
            values.append(post.campaign)
        if old is None or post.planned_for != old.planned_for:
            columns.append("planned_for")
            values.append(post.planned_for.isoformat() if post.planned_for else None)
        if old is None or (post.scheduled_at, post.scheduled_zone) != (
            old.scheduled_at, old.scheduled_zone
        ):
            columns += ("scheduled_at", "scheduled_zone")
            values += (self._ts(post.scheduled_at) if post.scheduled_at else None,
                       post.scheduled_zone)
        if old is None or post.approvals != old.approvals:
            columns.append("approvals")
            values.append(self._approvals_json(post.approvals))
        if old is None or (post.text, post.channels, post.revision, post.revised_by,
                           post.media) != (
            old.text, old.channels, old.revision, old.revised_by, old.media
        ):
            columns += ("text", "channels", "revision", "revised_by", "media")
            values += (post.text, self._channels_json(post.channels), post.revision,
                       post.revised_by, _media_json(post.media))
        if old is None or post.published_urls != old.published_urls:
            columns.append("published_urls")
            values.append(_urls_json(post.published_urls))
        if old is None or post.sequence != old.sequence:
            columns.append("sequence")
            values.append(post.sequence)
        if old is None or (post.series_id, post.occurrence_at) != (
                old.series_id, old.occurrence_at):
            columns += ("series_id", "occurrence_at")
            values += (post.series_id,
                       self._ts(post.occurrence_at) if post.occurrence_at else None)
        if old is None or post.extra_approvers != old.extra_approvers:
            columns.append("extra_approvers")
            values.append(_pairs_json(post.extra_approvers))
        if old is None or (post.claimed_by, post.claimed_until) != (
                old.claimed_by, old.claimed_until):
            columns += ("claimed_by", "claimed_until")
            values += (post.claimed_by,
                       self._ts(post.claimed_until) if post.claimed_until else None)
        return tuple(columns), values

    def _update_sql(self, columns: tuple[str, ...]) -> str:
        sql = self._update_statements.get(columns)
        if sql is None:
            assignments = ", ".join(f"{column} = ?" for column in columns)
            sql = f"UPDATE posts SET {assignments} WHERE id = ? AND version = ?"
            self._update_statements[columns] = sql
        return sql


    def _mutable_tail(self, post: Post) -> tuple[Any, ...]:
        return (
            post.campaign,
            post.planned_for.isoformat() if post.planned_for else None,
            self._ts(post.scheduled_at) if post.scheduled_at else None,
            post.scheduled_zone,
            self._approvals_json(post.approvals),
        )

    def _insert_revision(
        self, db: sqlite3.Connection, post_id: int, revision: Revision
    ) -> None:
        db.execute("INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
            post_id, revision.number, revision.text, self._channels_json(revision.channels),
            revision.campaign, revision.author, self._ts(revision.created_at),
            _media_json(revision.media)))

    def _where(self, query: PostQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.states is not None:
            states = sorted(query.states)
            clauses.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        if query.channel is not None:
            clauses.append("id IN (SELECT post_id FROM post_channels WHERE channel = ?)")
            params.append(query.channel)
        if query.campaign is not None:
            clauses.append("campaign = ?")
            params.append(query.campaign)
        if query.author is not None:
            clauses.append("author = ?")
            params.append(query.author)
        if query.start is not None:
            clauses.append("scheduled_at >= ?")
            params.append(query.start.isoformat())
        if query.end is not None:
            clauses.append("scheduled_at < ?")
            params.append(query.end.isoformat())
        if query.by_time:
            clauses.append("scheduled_at IS NOT NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return where, params

    def list_posts(self, query: PostQuery) -> list[Post]:
        sql, params = self.list_sql(query)
        return [_post(r) for r in self._read(sql, params)]

    def list_sql(self, query: PostQuery) -> tuple[str, list[Any]]:
        """The SELECT :meth:`list_posts` runs (for EXPLAIN QUERY PLAN in tests)."""
        where, params = self._where(query)
        order = " ORDER BY scheduled_at, id" if query.by_time else " ORDER BY id"
        sql = f"SELECT {_POST_COLUMNS} FROM posts{where}{order}"
        if query.limit is not None or query.offset:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, -1 if query.limit is None else query.limit, query.offset]
        return sql, params

    def count_posts(self, query: PostQuery) -> int:
        where, params = self._where(query)
        return int(self._read(f"SELECT count(*) FROM posts{where}", params)[0][0])

    def explain(self, sql: str, params: Sequence[Any]) -> list[str]:
        """SQLite's query plan for ``sql`` (one line per step)."""
        return [str(r[-1]) for r in self._read(f"EXPLAIN QUERY PLAN {sql}", params)]

    def revisions(self, post_id: int) -> list[Revision]:
        rows = self._read(
            "SELECT post_id, number, text, channels, campaign, author, created_at, media "
            "FROM revisions WHERE post_id = ? ORDER BY number", (post_id,))
        return [_decoded("revisions", lambda r: Revision(
            r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], _from_ts(r[6]),
            tuple(json.loads(r[7]))), r) for r in rows]

    def get_posts(self, post_ids: Sequence[int]) -> list[Post]:
        posts: list[Post] = []
        ids = list(post_ids)
        for at in range(0, len(ids), 500):  # under SQLite's limit on parameters
            chunk = ids[at:at + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._read(f"SELECT {_POST_COLUMNS} FROM posts WHERE id IN ({marks})",
                              chunk)
            posts.extend(_post(r) for r in rows)
        return posts

    def calendar_candidates(
        self, start: datetime, end: datetime | None, first_day: date, last_day: date | None
    ) -> list[tuple[int, int]]:
        timed = "scheduled_at >= ?" + ("" if end is None else " AND scheduled_at < ?")
        published = "state = 'published' AND scheduled_at IS NULL AND " + timed.replace(
            "scheduled_at", "state_changed_at")
        planned = "planned_for >= ?" + ("" if last_day is None else " AND planned_for <= ?")
        window = [start.astimezone(UTC).isoformat()]
        if end is not None:
            window.append(end.astimezone(UTC).isoformat())
        days = [first_day.isoformat()]
        if last_day is not None:
            days.append(last_day.isoformat())
        rows = self._read(
            f"SELECT id, version FROM posts WHERE {timed} "
            f"UNION SELECT id, version FROM posts WHERE {published} "
            f"UNION SELECT id, version FROM posts WHERE {planned} ORDER BY id",
            [*window, *window, *days])
        return [(r[0], r[1]) for r in rows]

    def slot_version(self, channel: str) -> int:
        rows = self._read("SELECT value FROM postflow_meta WHERE key = ?",
                          (f"slots:{channel}",))
        return int(rows[0][0]) if rows else 0

    # -- change consumers ----------------------------------------------------------

    def cursor(self, consumer: str) -> int:
        rows = self._read("SELECT value FROM postflow_meta WHERE key = ?",
                          (f"cursor:{consumer}",))
        return int(rows[0][0]) if rows else 0

    def save_cursor(self, consumer: str, position: int, *, expected: int) -> None:
        check_cursor_move(consumer, position, expected)
        key = f"cursor:{consumer}"
        with self._write() as db:
            row = db.execute("SELECT value FROM postflow_meta WHERE key = ?",
                             (key,)).fetchone()
            stored = int(row[0]) if row else 0
            if stored != expected:
                raise ConflictError(f"cursor {consumer!r} is at {stored}, not {expected}")
            db.execute("INSERT OR REPLACE INTO postflow_meta VALUES (?, ?)",
                       (key, str(position)))

    # -- publishing ----------------------------------------------------------------

    def instance_id(self) -> str:
        if self._instance is None:
            here = str(Path(self.path).resolve()) if self.path != ":memory:" else ""
            with self._write() as db:
                db.execute("INSERT OR IGNORE INTO postflow_meta VALUES ('instance_id', ?)",
                           (secrets.token_hex(8),))
                db.execute("INSERT OR IGNORE INTO postflow_meta VALUES ('instance_path', ?)",
                           (here,))
                row = db.execute("SELECT value FROM postflow_meta "
                                 "WHERE key = 'instance_id'").fetchone()
                made_at = db.execute("SELECT value FROM postflow_meta "
                                     "WHERE key = 'instance_path'").fetchone()[0]
            self._instance = str(row[0])
            self.copied_from = made_at if made_at and here and made_at != here else None
            if self.copied_from:
                log.warning(
                    "%s was made at %s: if it is a copy that posts to the same accounts, "
                    "give it its own idempotency keys with 'postflow db rekey'; if it was "
                    "moved, say so with 'postflow db rekey --moved'", self.path,
                    self.copied_from)
        return self._instance

    def rekey(self, entry: NewEntry, *, moved: bool = False) -> str:
        here = str(Path(self.path).resolve()) if self.path != ":memory:" else ""
        new = self.instance_id() if moved else secrets.token_hex(8)
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO postflow_meta VALUES ('instance_id', ?)",
                       (new,))
            db.execute("INSERT OR REPLACE INTO postflow_meta VALUES ('instance_path', ?)",
                       (here,))
            self._append(db, [entry])
        self._instance, self.copied_from = new, None
        return new

    def claim_due(
        self, now: datetime, worker: str, until: datetime, limit: int,
        held_channels: frozenset[str], correlation_id: str,
    ) -> list[Post]:
        now_text = self._ts(now)
        held = sorted(held_channels)
        not_held = "" if not held else (
            " AND NOT EXISTS (SELECT 1 FROM post_channels c WHERE c.post_id = posts.id "
            f"AND c.channel IN ({', '.join('?' * len(held))}))")
        data = _to_json({"claimed_until": until.isoformat()})
        with self._write() as db:
            rows = db.execute(
                f"SELECT {_POST_COLUMNS} FROM posts WHERE state = 'scheduled' "
                "AND scheduled_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
                f"{not_held} ORDER BY scheduled_at, id LIMIT ?",
                (now_text, now_text, *held, limit)).fetchall()
            claimed = []
            for row in rows:
                post = self._take(db, _post(row), now_text, worker, until, correlation_id,
                                  data)
                if post is not None:
                    claimed.append(post)
            return claimed

    def _take(self, db: sqlite3.Connection, post: Post, now_text: str, worker: str,
              until: datetime, correlation_id: str, data: str) -> Post | None:
        """Lease ``post`` as read to ``worker``: guarded by everything the claim decided
        on (its version, state and the lease it saw), so a worker finishing the post, or
        renewing its lease, and a claim taking it over never both succeed."""
        seen = self._ts(post.claimed_until) if post.claimed_until else None
        if db.execute("UPDATE posts SET version = ?, claimed_by = ?, claimed_until = ? "
                      "WHERE id = ? AND version = ? AND state = 'scheduled' "
                      "AND claimed_by IS ? AND claimed_until IS ?",
                      (post.version + 1, worker, self._ts(until), post.id, post.version,
                       post.claimed_by, seen)).rowcount != 1:
            return None
        db.execute(_INSERT_AUDIT, (post.id, "claim", worker, now_text, correlation_id,
                                   post.state, post.state, post.revision, None, data))
        return replace(post, version=post.version + 1, claimed_by=worker,
                       claimed_until=until)

    def claim_post(
        self, post_id: int, now: datetime, worker: str, until: datetime,
        correlation_id: str,
    ) -> Post | None:
        now_text = self._ts(now)
        data = _to_json({"claimed_until": until.isoformat()})
        with self._write() as db:
            row = db.execute(
                f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ? AND state = 'scheduled' "
                "AND (claimed_until IS NULL OR claimed_until <= ?)",
                (post_id, now_text)).fetchone()
            if row is None:
                return None
            return self._take(db, _post(row), now_text, worker, until, correlation_id, data)

    def renew_lease(self, post_id: int, worker: str, until: datetime, now: datetime) -> bool:
        with self._write() as db:
            return db.execute(
                "UPDATE posts SET claimed_until = max(claimed_until, ?) WHERE id = ? "
                "AND state = 'scheduled' AND claimed_by = ? AND claimed_until > ?",
                (self._ts(until), post_id, worker, self._ts(now))).rowcount == 1

    def deliveries(self, post_id: int) -> list[Delivery]:
        rows = self._read("SELECT * FROM deliveries WHERE post_id = ? "
                          "ORDER BY revision, channel", (post_id,))
        return [_decoded("deliveries", lambda r: Delivery(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
            _from_ts(r[9]) if r[9] else None), r) for r in rows]

    def save_deliveries(
        self, post_id: int, deliveries: Sequence[Delivery], *, worker: str | None,
        now: datetime, entries: Sequence[NewEntry] = (),
    ) -> bool:
        with self._write() as db:
            if worker is not None:
                row = db.execute("SELECT claimed_by, claimed_until FROM posts WHERE id = ?",
                                 (post_id,)).fetchone()
                if row is None or row[0] != worker or not row[1] or \
                        _from_ts(row[1]) <= now:
                    return False
            self._put_deliveries(db, deliveries)
            self._append(db, entries)
            return True

    def _put_deliveries(self, db: sqlite3.Connection, deliveries: Sequence[Delivery]) -> None:
        db.executemany("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(d.post_id, d.channel, d.revision, d.status, d.idempotency_key,
                         d.attempts, d.remote_id, d.url, d.last_error,
                         self._ts(d.updated_at) if d.updated_at else None) for d in deliveries])

    def holds(self) -> list[Hold]:
        rows = self._read("SELECT scope, reason, by_member, at FROM holds "
                          "ORDER BY scope != '*', scope")
        return [_decoded("holds", lambda r: Hold(r[0], r[1], r[2], _from_ts(r[3])), r)
                for r in rows]

    def save_hold(self, hold: Hold, entry: NewEntry) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?)",
                       (hold.scope, hold.reason, hold.by, self._ts(hold.at)))
            self._append(db, [entry])

    def remove_hold(self, scope: str, entry: NewEntry) -> bool:
        with self._write() as db:
            if db.execute("DELETE FROM holds WHERE scope = ?", (scope,)).rowcount == 0:
                return False
            self._append(db, [entry])
            return True

    # -- calendar: planning entries and feeds --------------------------------------

    def save_planning_entries(
        self, entries: Sequence[PlanningEntry], entry: NewEntry, *,
        remove: Sequence[str] = (),
    ) -> None:
        with self._write() as db:
            for planned in entries:
                row = db.execute("SELECT version FROM planning_entries WHERE uid = ?",
                                 (planned.uid,)).fetchone()
                stored = 0 if row is None else row[0]
                if planned.version != stored + 1:
                    raise ConflictError(
                        f"planning entry {planned.uid!r} is at version {stored}: it changed "
                        "since it was read", expected=planned.version - 1, actual=stored)
                db.execute(
                    "INSERT OR REPLACE INTO planning_entries VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (planned.uid, planned.summary, _slot_text(planned.start),
                     _slot_text(planned.end), planned.description, planned.category,
                     planned.sequence,
                     self._ts(planned.updated_at) if planned.updated_at else None,
                     planned.version))
            db.executemany("DELETE FROM planning_entries WHERE uid = ?",
                           [(uid,) for uid in remove])
            self._append(db, [entry])

    def list_planning_entries(self) -> list[PlanningEntry]:
        rows = self._read("SELECT uid, summary, start, end, description, category, "
                          "sequence, updated_at, version FROM planning_entries ORDER BY uid")
        return [_decoded("planning_entries", lambda r: PlanningEntry(
            r[0], r[1], _slot(r[2]), _slot(r[3]), r[4], r[5], r[6],
            _from_ts(r[7]) if r[7] else None, r[8]), r) for r in rows]

    def save_feed(self, feed: Feed, entry: NewEntry, *, expected_version: int | None = None
                  ) -> None:
        filters = json.dumps({
            "channels": sorted(feed.channels), "campaigns": sorted(feed.campaigns),
            "states": sorted(feed.states), "authors": sorted(feed.authors),
            "planning": feed.planning})
        with self._write() as db:
            _check_version(db, "feeds", feed.name, expected_version, "feed")
            owner = db.execute("SELECT name FROM feeds WHERE token_hash = ?",
                               (feed.token_hash,)).fetchone()
            if feed.token_hash is not None and owner is not None and owner[0] != feed.name:
                raise ConflictError(f"feed {feed.name!r}: that token belongs to another feed")
            db.execute("INSERT OR REPLACE INTO feeds VALUES (?, ?, ?, ?, ?, ?)", (
                feed.name, filters, feed.token_hash,
                self._ts(feed.created_at) if feed.created_at else None,
                self._ts(feed.rotated_at) if feed.rotated_at else None, feed.version))
            self._append(db, [entry])

    def get_feed(self, name: str) -> Feed | None:
        rows = self._read("SELECT * FROM feeds WHERE name = ?", (name,))
        return _feed(rows[0]) if rows else None

    def find_feed(self, token_hash: str) -> Feed | None:
        rows = self._read("SELECT * FROM feeds WHERE token_hash = ?", (token_hash,))
        return _feed(rows[0]) if rows else None

    def list_feeds(self) -> list[Feed]:
        return [_feed(r) for r in self._read("SELECT * FROM feeds ORDER BY name")]

    # -- audit ---------------------------------------------------------------------

    def stored_workflow(self) -> Mapping[str, Any] | None:
        rows = self._read("SELECT definition FROM workflow WHERE id = 1")
        return dict(json.loads(rows[0][0])) if rows else None

    def save_workflow(
        self, definition: Mapping[str, Any], entry: NewEntry, *,
        expected: Mapping[str, Any] | None,
    ) -> None:
        text = _to_json(definition)
        with self._write() as db:
            row = db.execute("SELECT definition FROM workflow WHERE id = 1").fetchone()
            stored = None if row is None else json.loads(row[0])
            if stored != (None if expected is None else json.loads(_to_json(expected))):
                raise ConflictError(
                    "the stored workflow changed since it was read"
                    if stored is not None else "no workflow was stored when it was read")
            db.execute("INSERT OR REPLACE INTO workflow VALUES (1, ?)", (text,))
            self._append(db, [entry])

    # -- documents -----------------------------------------------------------------

    def stored_document(self, name: str) -> Mapping[str, Any] | None:
        rows = self._read("SELECT name, body FROM documents WHERE name = ?", (name,))
        return _document(rows[0]) if rows else None

    def save_document(
        self, name: str, document: Mapping[str, Any] | None, entry: NewEntry, *,
        expected: Mapping[str, Any] | None,
    ) -> None:
        text = None if document is None else _to_json(document)
        with self._write() as db:
            row = db.execute("SELECT name, body FROM documents WHERE name = ?",
                             (name,)).fetchone()
            stored = None if row is None else _document(row)
            if stored != (None if expected is None else json.loads(_to_json(expected))):
                raise ConflictError(f"document {name!r} changed since it was read")
            if text is None:
                db.execute("DELETE FROM documents WHERE name = ?", (name,))
            else:
                db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?)", (name, text))
            self._append(db, [entry])

    def list_documents(self, prefix: str) -> dict[str, Mapping[str, Any]]:
        rows = self._read("SELECT name, body FROM documents WHERE substr(name, 1, ?) = ? "
                          "ORDER BY name", (len(prefix), prefix))
        return {r[0]: _document(r) for r in rows if r[0].startswith(prefix)}

    # -- notifications -------------------------------------------------------------

    def enqueue_notifications(
        self, notices: Sequence[Notice], *, marks: Sequence[str] = (),
        cursor: tuple[str, int, int] | None = None, at: datetime | None = None,
    ) -> list[Notice]:
        if cursor is not None:
            check_cursor_move(*cursor)
        marked_at = _utc(_mark_time(notices, at))
        with self._write() as db:
            if cursor is not None:
                key = f"cursor:{cursor[0]}"
                row = db.execute("SELECT value FROM postflow_meta WHERE key = ?",
                                 (key,)).fetchone()
                stored = int(row[0]) if row else 0
                if stored != cursor[2]:
                    raise ConflictError(f"cursor {cursor[0]!r} is at {stored}, not "
                                        f"{cursor[2]}")
                db.execute("INSERT OR REPLACE INTO postflow_meta VALUES (?, ?)",
                           (key, str(cursor[1])))
            known = {k for k in {n.event_key for n in notices}
                     if db.execute("SELECT 1 FROM marks WHERE key = ?", (k,)).fetchone()}
            db.executemany("INSERT OR IGNORE INTO marks VALUES (?, ?)",
                           [(k, marked_at) for k in marks])
            inserted = []
            for n in notices:
                if n.event_key in known:
                    continue
                payload = freeze(n.payload)
                cur = db.execute(
                    f"INSERT OR IGNORE INTO outbox ({_OUTBOX_COLUMNS}) VALUES "
                    "(NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (n.dedup_key, n.event_key, n.event, n.recipient, n.channel,
                     _utc(n.created_at), _utc(n.not_before), _to_json(payload), n.digest,
                     int(n.urgent), n.status, n.attempts, _utc_or_none(n.next_attempt_at),
                     n.last_error, n.claimed_by, _utc_or_none(n.claimed_until),
                     _utc_or_none(n.settled_at)))
                if cur.rowcount == 1:
                    assert cur.lastrowid is not None
                    inserted.append(replace(n, id=cur.lastrowid, payload=payload))
            return inserted

    def has_marks(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        for at in range(0, len(unique), 500):
            chunk = unique[at:at + 500]
            rows = self._read(f"SELECT key FROM marks WHERE key IN "
                              f"({', '.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    def claim_notifications(
        self, now: datetime, worker: str, until: datetime, limit: int
    ) -> list[Notice]:
        now_text, until_text = _utc(now), _utc(until)
        with self._write() as db:
            rows = db.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE (status = 'pending' AND "
                "not_before <= ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)) OR "
                "(status = 'sending' AND (claimed_until IS NULL OR claimed_until < ?)) "
                "ORDER BY id", (now_text, now_text, now_text))
            taken: list[Notice] = []
            seen: set[tuple[str, str, str]] = set()
            for row in rows:
                if len(taken) >= limit:
                    break
                notice = _notice(row)
                if notice.digest is None:
                    taken.append(notice)
                    continue
                group = (notice.recipient, notice.channel, notice.digest)
                if group in seen:
                    continue
                seen.add(group)
                members = [_notice(r) for r in db.execute(
                    f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE recipient = ? AND "
                    "channel = ? AND digest = ? AND status IN ('pending', 'sending') "
                    "ORDER BY id", group).fetchall()]
                if all(_notice_due(n, now) for n in members):
                    taken.extend(members)
            rows.close()
            db.executemany("UPDATE outbox SET status = 'sending', claimed_by = ?, "
                           "claimed_until = ? WHERE id = ?",
                           [(worker, until_text, n.id) for n in taken])
            return [replace(n, status="sending", claimed_by=worker, claimed_until=until)
                    for n in taken]

    def settle_notifications(
        self, ids: Sequence[int], worker: str, *, status: str, at: datetime,
        error: str | None = None, next_attempt_at: datetime | None = None,
    ) -> int:
        _check_settle_status(status)
        unique = list(dict.fromkeys(ids))
        with self._write() as db:
            params: list[tuple[Any, ...]]
            if status == "pending":
                sql = ("UPDATE outbox SET status = 'pending', attempts = attempts + 1, "
                       "next_attempt_at = ?, last_error = ?, claimed_by = NULL, "
                       "claimed_until = NULL WHERE id = ? AND status = 'sending' AND "
                       "claimed_by = ?")
                params = [(_utc_or_none(next_attempt_at), error, i, worker) for i in unique]
            else:
                sql = ("UPDATE outbox SET status = ?, attempts = attempts + 1, "
                       "last_error = ?, claimed_until = NULL, settled_at = ? WHERE id = ? "
                       "AND status = 'sending' AND claimed_by = ?")
                params = [(status, error, _utc(at), i, worker) for i in unique]
            changed = 0
            for values in params:
                changed += db.execute(sql, values).rowcount
            return changed

    def list_notifications(
        self, *, status: str | None = None, recipient: str | None = None,
        after_id: int = 0, limit: int | None = None,
    ) -> list[Notice]:
        check_page(after_id, limit)
        where: list[str] = ["id > ?"]
        params: list[Any] = [after_id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if recipient is not None:
            where.append("recipient = ?")
            params.append(recipient)
        rows = self._read(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE "
                          f"{' AND '.join(where)} ORDER BY id LIMIT ?",
                          (*params, -1 if limit is None else limit))
        return [_notice(r) for r in rows]

    def add_inbox(self, items: Sequence[InboxItem]) -> list[InboxItem]:
        with self._write() as db:
            inserted = []
            for item in items:
                payload = freeze(item.payload)
                cur = db.execute(
                    f"INSERT OR IGNORE INTO inbox ({_INBOX_COLUMNS}) VALUES "
                    "(NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (item.member, item.dedup_key, item.event, item.title, item.body,
                     _utc(item.created_at), item.post_id, _utc_or_none(item.read_at),
                     _to_json(payload)))
                if cur.rowcount == 1:
                    assert cur.lastrowid is not None
                    inserted.append(replace(item, id=cur.lastrowid, payload=payload))
            return inserted

    def inbox(self, member: str, *, unread: bool = False, after_id: int = 0,
              limit: int | None = None) -> list[InboxItem]:
        check_page(after_id, limit)
        rows = self._read(
            f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE member = ? AND id > ?"
            f"{' AND read_at IS NULL' if unread else ''} ORDER BY id DESC LIMIT ?",
            (member, after_id, -1 if limit is None else limit))
        return [_inbox_item(r) for r in rows]

    def mark_read(self, member: str, ids: Sequence[int] | None, at: datetime) -> int:
        with self._write() as db:
            if ids is None:
                return int(db.execute("UPDATE inbox SET read_at = ? WHERE member = ? AND "
                                      "read_at IS NULL", (_utc(at), member)).rowcount)
            changed = 0
            for i in dict.fromkeys(ids):
                changed += db.execute("UPDATE inbox SET read_at = ? WHERE id = ? AND "
                                      "member = ? AND read_at IS NULL",
                                      (_utc(at), i, member)).rowcount
            return changed

    def prune_notifications(self, before: datetime) -> int:
        cut = _utc(before)
        with self._write() as db:
            return int(
                db.execute("DELETE FROM outbox WHERE status IN ('sent', 'failed') AND "
                           "settled_at < ?", (cut,)).rowcount
                + db.execute("DELETE FROM inbox WHERE read_at IS NOT NULL AND "
                             "read_at < ?", (cut,)).rowcount
                + db.execute("DELETE FROM marks WHERE at < ?", (cut,)).rowcount)

    def append_audit(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        with self._write() as db:
            return self._append(db, entries)

    def last_change(self) -> tuple[int, datetime | None]:
        rows = self._read("SELECT id, at FROM audit ORDER BY id DESC LIMIT 1")
        return (rows[0][0], _from_ts(rows[0][1])) if rows else (0, None)

    def history(self, post_id: int) -> list[AuditEntry]:
        rows = self._read(
            f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE post_id = ? ORDER BY id", (post_id,))
        return [_entry(r) for r in rows]

    def audit_log(self, *, after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        check_page(after_id, limit)
        rows = self._read(
            f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, -1 if limit is None else limit))
        return [_entry(r) for r in rows]

    # -- copying --------------------------------------------------------------------

    def export_rows(self) -> dict[str, list[dict[str, Any]]]:
        rows: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            try:
                self._db.execute("BEGIN")  # one consistent snapshot of every table
                try:
                    for table in [r[0] for r in self._db.execute(
                            "SELECT name FROM sqlite_master WHERE type = 'table' "
                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]:
                        cur = self._db.execute(f'SELECT * FROM "{table}"')
                        names = [d[0] for d in cur.description]
                        found = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
                        if table == "postflow_meta":
                            found = [r for r in found if r["key"] == "instance_id"
                                     or str(r["key"]).startswith(("slots:", "cursor:"))]
                        rows[table] = found
                finally:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: export failed: {exc}") from exc
        return rows

    def import_rows(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._write() as db:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'")]
            for table in tables:
                if table != "postflow_meta" and db.execute(
                        f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None:
                    raise ConflictError(f"{self.path} is not empty (table {table} has rows): "
                                        "copy into a new database only")
            for table, table_rows in rows.items():
                if table not in tables or not table_rows:
                    continue
                columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
                if table == "postflow_meta":
                    db.executemany("INSERT OR REPLACE INTO postflow_meta VALUES (?, ?)",
                                   [(r["key"], r["value"]) for r in table_rows])
                    counts[table] = len(table_rows)
                    continue
                names = [c for c in columns if c in table_rows[0]]
                db.executemany(
                    f'INSERT INTO "{table}" ({", ".join(names)}) '
                    f"VALUES ({', '.join('?' for _ in names)})",
                    [tuple(r.get(c) for c in names) for r in table_rows])
                counts[table] = len(table_rows)
        self._instance = None
        return counts

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _WriteTransaction:
    """Holds the storage lock and a write transaction; commits, or rolls back on error.

    SQLite errors inside the block surface as :class:`~postflow.StorageError`.
    """

    __slots__ = ("_storage",)

    def __init__(self, storage: SQLiteStorage) -> None:
        self._storage = storage

    def __enter__(self) -> sqlite3.Connection:
        storage = self._storage
        storage._lock.acquire()
        try:
            storage._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            storage._lock.release()
            raise StorageError(f"{storage.path}: cannot start a write: {exc}") from exc
        except BaseException:
            storage._lock.release()
            raise
        return storage._db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        storage = self._storage
        db = storage._db
        try:
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                    return
                except sqlite3.Error as error:
                    _rollback(db)
                    raise StorageError(f"{storage.path}: commit failed: {error}") from error
            _rollback(db)
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"{storage.path}: write failed: {exc}") from exc
            if isinstance(exc, UnicodeEncodeError):  # checked before it gets here, normally
                raise StorageError(f"{storage.path}: write failed: text that is not valid "
                                   "Unicode (a lone surrogate)") from exc
        finally:
            storage._lock.release()


def _check_version(
    db: sqlite3.Connection, table: str, name: str, expected: int | None, what: str
) -> None:
    if expected is None:
        return
    row = db.execute(f"SELECT version FROM {table} WHERE name = ?", (name,)).fetchone()
    if expected == 0:
        if row is not None:
            raise ConflictError(f"{what} {name!r} already exists")
        return
    if row is None:
        raise NotFound(f"no {what} called {name!r}")
    if row[0] != expected:
        raise ConflictError(
            f"{what} {name!r} is at version {row[0]}, not {expected}: it changed since it "
            "was read", expected=expected, actual=row[0])


T = TypeVar("T")


def _decoded(table: str, decode: Callable[[Sequence[Any]], T], row: Sequence[Any]) -> T:
    """``decode(row)``, or a :class:`~postflow.StorageError` naming the table and the row
    when what is stored cannot be read (bad JSON, a bad timestamp, a missing key)."""
    try:
        return decode(row)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        key = row[0] if row else "?"
        raise StorageError(f"damaged row in table {table!r} (first column {key!r}): "
                           f"{type(exc).__name__}: {exc}") from exc


def _post(r: Sequence[Any]) -> Post:
    return _decoded("posts", _post_unchecked, r)


def _feed(r: Sequence[Any]) -> Feed:
    return _decoded("feeds", _feed_unchecked, r)


def _entry(r: Sequence[Any]) -> AuditEntry:
    return _decoded("audit", _entry_unchecked, r)


def _member(r: Sequence[Any]) -> Member:
    return _decoded("members", _member_unchecked, r)


def _channel(r: Sequence[Any]) -> Channel:
    return _decoded("channels", _channel_unchecked, r)


def _campaign(r: Sequence[Any]) -> Campaign:
    return _decoded("campaigns", _campaign_unchecked, r)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


def _post_unchecked(r: Sequence[Any]) -> Post:
    return Post(
        r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], _from_ts(r[7]),
        _from_ts(r[8]), _from_ts(r[9]), r[10],
        date.fromisoformat(r[11]) if r[11] else None,
        _from_ts(r[12]) if r[12] else None, r[13],
        tuple(Approval(a[0], a[1], a[2], _from_ts(a[3]), a[4]) for a in json.loads(r[14]))
        if r[14] != "[]" else (),
        r[15], tuple(json.loads(r[16])) if r[16] != "[]" else (),
        FrozenData(json.loads(r[17])) if r[17] != "{}" else NO_DATA, r[18], r[19],
        _from_ts(r[20]) if r[20] else None, r[21], _from_ts(r[22]) if r[22] else None,
        tuple((p[0], p[1]) for p in json.loads(r[23])) if r[23] != "[]" else (),
    )


def _pairs_json(pairs: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([list(p) for p in pairs]) if pairs else "[]"


def _media_json(media: tuple[str, ...]) -> str:
    return json.dumps(list(media)) if media else "[]"


def _urls_json(urls: Mapping[str, str]) -> str:
    return json.dumps(dict(urls), sort_keys=True) if urls else "{}"


def _slot_text(value: datetime | date) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else \
        value.isoformat()


def _slot(text: str) -> datetime | date:
    return _from_ts(text) if "T" in text else date.fromisoformat(text)


def _feed_unchecked(r: Sequence[Any]) -> Feed:
    filters = json.loads(r[1])
    return Feed(r[0], filters["channels"], filters["campaigns"], filters["states"],
                filters["authors"], r[2], _from_ts(r[3]) if r[3] else None,
                _from_ts(r[4]) if r[4] else None, r[5], filters.get("planning", True))


def _entry_unchecked(r: Sequence[Any]) -> AuditEntry:
    return AuditEntry(
        r[0], r[2], r[3], _from_ts(r[4]), r[5], r[1], r[6], r[7], r[8], r[9],
        freeze(json.loads(r[10])) if r[10] else NO_DATA)


def _member_unchecked(r: Sequence[Any]) -> Member:
    return Member(r[0], frozenset(json.loads(r[1])), r[2], bool(r[3]), r[4])


def _channel_unchecked(r: Sequence[Any]) -> Channel:
    return Channel(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6],
                   FrozenData(json.loads(r[7])) if r[7] != "{}" else NO_DATA,
                   _cadence(r[8]))


def _cadence_json(cadence: Cadence) -> str:
    if cadence.empty:
        return "{}"
    return json.dumps({
        "max_per_day": cadence.max_per_day,
        "min_gap_seconds": cadence.min_gap.total_seconds() if cadence.min_gap else None,
        "quiet": [cadence.quiet_start.isoformat(), cadence.quiet_end.isoformat()]
        if cadence.quiet_start and cadence.quiet_end else None}, sort_keys=True)


def _cadence(text: str) -> Cadence:
    if text == "{}":
        return NO_CADENCE
    data = json.loads(text)
    quiet = data.get("quiet") or (None, None)
    return Cadence(data.get("max_per_day"),
                   timedelta(seconds=data["min_gap_seconds"])
                   if data.get("min_gap_seconds") else None,
                   time.fromisoformat(quiet[0]) if quiet[0] else None,
                   time.fromisoformat(quiet[1]) if quiet[1] else None)


_CAMPAIGN_COLUMNS = "name, goal, hashtags, version, active"


def _campaign_unchecked(r: Sequence[Any]) -> Campaign:
    return Campaign(r[0], r[1], tuple(json.loads(r[2])), r[3], bool(r[4]))


_OUTBOX_COLUMNS = (
    "id, dedup_key, event_key, event, recipient, channel, created_at, not_before, payload, "
    "digest, urgent, status, attempts, next_attempt_at, last_error, claimed_by, "
    "claimed_until, settled_at"
)
_INBOX_COLUMNS = (
    "id, member, dedup_key, event, title, body, created_at, post_id, read_at, payload"
)


def _utc(value: datetime) -> str:
    """An aware time as UTC ISO text, which sorts as the times do."""
    return value.astimezone(UTC).isoformat()


def _utc_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _ts_or_none(text: str | None) -> datetime | None:
    return _from_ts(text) if text else None


def _data(text: str) -> Mapping[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return freeze(data) if data else NO_DATA


def _notice_unchecked(r: Sequence[Any]) -> Notice:
    return Notice(r[0], r[1], r[2], r[3], r[4], r[5], _from_ts(r[6]), _from_ts(r[7]),
                  _data(r[8]), r[9], bool(r[10]), r[11], r[12], _ts_or_none(r[13]), r[14],
                  r[15], _ts_or_none(r[16]), _ts_or_none(r[17]))


def _notice(r: Sequence[Any]) -> Notice:
    return _decoded("outbox", _notice_unchecked, r)


def _inbox_item(r: Sequence[Any]) -> InboxItem:
    return _decoded("inbox", lambda r: InboxItem(
        r[0], r[1], r[2], r[3], r[4], r[5], _from_ts(r[6]), r[7], _ts_or_none(r[8]),
        _data(r[9])), r)


def _document(r: Sequence[Any]) -> dict[str, Any]:
    def decode(r: Sequence[Any]) -> dict[str, Any]:
        body = json.loads(r[1])
        if not isinstance(body, dict):
            raise TypeError(f"expected a JSON object, got {type(body).__name__}")
        return body
    return _decoded("documents", decode, r)


class SQLiteSchema(SchemaManager):
    """The schema version and migrations of a SQLite file (``postflow db
    status|migrate``): a migration keeps a backup copy of the file first."""

    backs_up = True

    def __init__(self, path: str) -> None:
        self.where = path
        self.current = SCHEMA_VERSION
        self.notes = MIGRATION_NOTES

    def version(self) -> int | None:
        return stored_schema_version(self.where)

    def migrate(self, *, backup: bool = True) -> tuple[int, int, str | None]:
        found, now, copy = migrate_file(self.where, backup=backup)
        return found, now, None if copy is None else str(copy)


@hookimpl(trylast=True)
def postflow_schema(url: str) -> SchemaManager | None:
    """The schema of ``sqlite:///path`` files."""
    if not url.startswith("sqlite:"):
        return None
    path = path_from_url(split_url(url)[0])
    return None if path == ":memory:" else SQLiteSchema(path)


@hookimpl(trylast=True)
def postflow_storage(url: str) -> Storage | None:
    """Open ``sqlite:///path`` URLs, creating the file if needed."""
    if not url.startswith("sqlite:"):
        return None
    path = path_from_url(split_url(url)[0])
    if path != ":memory:":
        parent = Path(path).parent
        if not parent.exists():
            raise StorageError(f"cannot create {path}: folder {parent} does not exist")
    return SQLiteStorage(url)


def stored_schema_version(path: str) -> int | None:
    """The schema version of the postflow file at ``path``, read without changing it
    (``None`` for a file that is not a postflow database or does not exist)."""
    if not Path(path).exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT value FROM postflow_meta "
                         "WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return int(row[0]) if row is not None and str(row[0]).isdigit() else None


def migrate_file(path: str, *, backup: bool = True) -> tuple[int, int, Path | None]:
    """Migrate the postflow file at ``path`` to :data:`SCHEMA_VERSION`.

    With ``backup`` (and only when there is something to migrate), a consistent copy of
    the file is written first next to it, named ``<file>.schema<N>-<UTC time>.bak``.
    Returns ``(version found, version now, backup path or None)``.
    """
    found = stored_schema_version(path)
    if found is None:
        raise StorageError(f"{path} is not a postflow database")
    copy: Path | None = None
    if found < SCHEMA_VERSION and backup:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        copy = Path(f"{path}.schema{found}-{stamp}.bak")
        source = sqlite3.connect(path)
        target = sqlite3.connect(str(copy))
        try:
            with target:
                source.backup(target)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot back up {path} to {copy}: {exc}") from exc
        finally:
            target.close()
            source.close()
    SQLiteStorage(f"sqlite:///{path}", migrate=True).close()
    return found, max(found, SCHEMA_VERSION), copy
