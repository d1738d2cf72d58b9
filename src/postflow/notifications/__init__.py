"""Notifications: events from every committed change, rules and preferences, a durable
outbox, delivery channels and the in-app inbox (``ws.notifications``).

Routing reads the audit trail through the change cursor ``"notifications"``, so a change
is never missed even when the process dies right after its commit; notices wait in the
outbox (with a dedup key per event, recipient and channel) until a delivery pass sends
them.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from postflow._fields import LIMITS, MAX_ID, checked_text, flag, is_id
from postflow._time import to_utc
from postflow.engine import new_correlation_id
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from postflow.models import freeze
from postflow.notices import NOTICE_STATES, InboxItem, Notice
from postflow.notifications.config import (
    MAX_CONFIG_SIZE,
    NotificationConfig,
    Preferences,
    Vocabulary,
    parse_config,
    parse_preferences,
)
from postflow.notifications.events import EVENT_KINDS, Event, events_from
from postflow.notifications.routing import PREFERENCES_PREFIX, route
from postflow.storage import NewEntry, check_page

if TYPE_CHECKING:
    from postflow.workspace import Workspace

__all__ = [
    "CONFIG_DOCUMENT",
    "EVENT_KINDS",
    "Event",
    "NotificationConfig",
    "Notifications",
    "NotifyReport",
    "Preferences",
    "events_from",
]

CONFIG_DOCUMENT = "notifications"
"""The storage document holding the configuration."""
CONFIGURE_ACTION = "notifications.configure"
PREFERENCES_ACTION = "notifications.preferences"
_MAX_ATTEMPTS = 5
_MAX_DELIVERY_PASSES = 100
_MAX_IDS = 10_000


@attrs.frozen
class NotifyReport:
    """What :meth:`Notifications.run_once` did."""

    routed: int
    """Notices queued from changes."""
    scanned: int
    """Notices queued by the deadline scan."""
    deliveries: tuple[Any, ...]
    """The delivery passes' reports."""
    pruned: int


class Notifications:
    """Notification rules, preferences, the outbox and the inbox of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._workspace = workspace
        self._cached: tuple[Mapping[str, Any] | None, NotificationConfig] | None = None

    # -- configuration -------------------------------------------------------------

    def vocabulary(self) -> Vocabulary:
        """The members, roles, channels and stages a configuration may name now."""
        ws = self._workspace
        return Vocabulary(
            members={m.name for m in ws.storage.list_members()},
            roles=ws.workflow.roles,
            channels=set(ws.hooks.register_notification_channels()),
            stages={s.name for s in ws.workflow.stages})

    def configure(self, config: Mapping[str, Any] | str | Path, *, by: str) -> None:
        """Validate and store the configuration (a dict, TOML text or a TOML file);
        ``by`` must be an active admin. :class:`~postflow.ConfigError` names the problem."""
        if isinstance(config, Path):
            try:
                with config.open("rb") as file:  # a bounded read: /dev/zero is a path too
                    data = file.read(MAX_CONFIG_SIZE + 1)
                config = data.decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read notification configuration: {exc}") from exc
        self._admin(by, "configure notifications")
        parsed = parse_config(config, self.vocabulary())
        channels = self._workspace.hooks.register_notification_channels()
        for name, settings in parsed.channels.items():
            try:
                channels[name].configure(settings)
            except ConfigError as exc:
                raise ConfigError(f"[channels.{name}]: {exc}") from exc
            except Exception as exc:  # a plugin's bug is still a refusal, not a crash
                raise ConfigError(f"[channels.{name}]: the channel failed to check its "
                                  f"settings: {type(exc).__name__}: {exc!s:.200}") from exc
        document = parsed.to_dict()
        self._save(CONFIG_DOCUMENT, document, CONFIGURE_ACTION, by,
                   {"rules": len(parsed.rules), "escalations": len(parsed.escalations)})

    def config(self) -> NotificationConfig:
        """The stored configuration (no rules when none is stored)."""
        document = self._workspace.storage.stored_document(CONFIG_DOCUMENT)
        if document is None:
            return NotificationConfig()
        cached = self._cached
        if cached is not None and cached[0] == document:
            return cached[1]
        config = parse_config(document)
        self._cached = (document, config)
        return config

    def set_preferences(self, member: str, preferences: Mapping[str, Any], *, by: str) -> None:
        """Validate and store ``member``'s preferences; ``by`` is the member or an admin."""
        self._member(member)
        parsed = parse_preferences(member, preferences, Vocabulary(
            channels=set(self._workspace.hooks.register_notification_channels())))
        actor = self._workspace.engine.member(by, "set notification preferences")
        if by != member and "admin" not in actor.roles:
            raise PermissionDenied(f"{by} may not change the notification preferences of "
                                   f"{member}: only they or an admin may",
                                   member=by, action="set_preferences")
        self._save(PREFERENCES_PREFIX + member, parsed.to_dict(), PREFERENCES_ACTION, by,
                   {"member": member})

    def preferences(self, member: str) -> Preferences:
        """``member``'s preferences (the defaults when they set none)."""
        self._member(member)
        document = self._workspace.storage.stored_document(PREFERENCES_PREFIX + member)
        return Preferences() if document is None else parse_preferences(member, document)

    # -- routing, the deadline scan, delivery ---------------------------------------

    def route(self, now: datetime | None = None) -> int:
        """Turn committed changes into outbox notices; return how many were queued."""
        return route(self._workspace, self.config(), self._now(now))

    def scan(self, now: datetime | None = None) -> int:
        """Queue the timed events (due soon, overdue …) and escalations due at ``now``."""
        if importlib.util.find_spec("postflow.notifications.deadlines") is None:
            return 0
        from postflow.notifications import deadlines

        return int(deadlines.scan(self, self._now(now)))

    def deliver(self, now: datetime | None = None, *, worker: str | None = None,
                limit: int = 100) -> Any:
        """One delivery pass over the due notices (a ``DeliveryReport``)."""
        from postflow.notifications import delivery

        now = self._now(now)
        worker = _worker(worker, "deliver")
        if type(limit) is not int or not 1 <= limit <= MAX_ID:
            raise ValidationFailed.single("deliver", "bad-limit", "limit must be a whole "
                                          f"number from 1 to {MAX_ID}, got {limit!r:.100}",
                                          field="limit")
        return delivery.deliver(self, now, worker=worker, limit=limit)

    def run_once(self, now: datetime | None = None, *, worker: str | None = None
                 ) -> NotifyReport:
        """Route, scan, deliver until nothing is due, and prune old rows."""
        now = self._now(now)
        worker = _worker(worker, "run_once")
        routed = self.route(now)
        scanned = self.scan(now)
        reports = []
        for _ in range(_MAX_DELIVERY_PASSES):
            report = self.deliver(now, worker=worker)
            reports.append(report)
            if not getattr(report, "claimed", 0):
                break
        pruned = self._workspace.storage.prune_notifications(now - self.config().retention)
        return NotifyReport(routed, scanned, tuple(reports), pruned)

    # -- reading ---------------------------------------------------------------------

    def outbox(self, *, status: str | None = None, recipient: str | None = None,
               limit: int | None = None) -> list[Notice]:
        """Outbox notices, oldest first, filtered by ``status`` and ``recipient``."""
        if status is not None and (not isinstance(status, str) or status not in NOTICE_STATES):
            raise ValidationFailed.single(
                "outbox", "bad-status", f"status must be None or one of "
                f"{', '.join(NOTICE_STATES)}, got {status!r:.100}", field="status")
        if recipient is not None:
            checked_text(recipient, "outbox", "recipient", limit=LIMITS["name"],
                         one_line=True)
        _page("outbox", 0, limit)
        return self._workspace.storage.list_notifications(status=status, recipient=recipient,
                                                          limit=limit)

    def inbox(self, member: str, *, unread: bool = False, after_id: int = 0,
              limit: int | None = None) -> list[InboxItem]:
        """``member``'s in-app notifications, newest first."""
        self._member(member)
        flag(unread, "inbox", "unread")
        _page("inbox", after_id, limit)
        return self._workspace.storage.inbox(member, unread=unread, after_id=after_id,
                                             limit=limit)

    def mark_read(self, member: str, ids: Sequence[int] | None = None) -> int:
        """Mark ``member``'s items ``ids`` (all when ``None``) read; how many changed."""
        self._member(member)
        return self._workspace.storage.mark_read(member, _ids(ids),
                                                 self._workspace.clock.now())

    # -- helpers ---------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        if now is None:
            return self._workspace.clock.now()
        return to_utc(now, field="now", subject="notifications")[0]

    def _member(self, name: str) -> None:
        if not isinstance(name, str) or len(name) > LIMITS["name"] or not name.isprintable() \
                or self._workspace.storage.get_member(name) is None:
            raise NotFound(f"no member called {name!r:.100}")

    def _admin(self, by: str, what: str) -> None:
        member = self._workspace.engine.member(by, what)
        if "admin" not in member.roles:
            raise PermissionDenied(f"{by} may not {what}: needs the role admin",
                                   member=by, action=what, roles_needed={"admin"})

    def _save(self, name: str, document: Mapping[str, Any], action: str, by: str,
              data: Mapping[str, Any]) -> None:
        ws = self._workspace
        storage = ws.storage
        correlation_id = new_correlation_id()
        for _ in range(_MAX_ATTEMPTS):
            expected = storage.stored_document(name)
            entry = NewEntry(action, by, ws.clock.now(), correlation_id, data=freeze(data))
            try:
                ws.engine.commit(correlation_id, functools.partial(
                    storage.save_document, name, document, entry, expected=expected))
            except ConflictError:
                continue
            return
        raise ConflictError(f"the stored {name!r} keeps changing; try again")


def _worker(worker: object, subject: str) -> str | None:
    """``None`` (this process's name) or a worker name: one line of at most
    ``LIMITS["name"]`` characters."""
    if worker is None:
        return None
    return checked_text(worker, subject, "worker", limit=LIMITS["name"], one_line=True)


def _page(subject: str, after_id: object, limit: object) -> None:
    """Refuse a bad ``after_id`` or ``limit`` with ValidationFailed ``bad-page``."""
    try:
        check_page(after_id, limit)
    except ValueError as exc:
        field = "after_id" if str(exc).startswith("after_id") else "limit"
        raise ValidationFailed.single(subject, "bad-page", f"{exc!s:.200}",
                                      field=field) from exc


def _ids(ids: object) -> list[int] | None:
    """``None`` (every item) or a list of inbox item ids (ints a backend can hold; not
    bools, floats or text), at most 10,000 of them."""
    if ids is None:
        return None
    if isinstance(ids, str | bytes | Mapping) or not isinstance(ids, Iterable):
        raise ValidationFailed.single("mark_read", "bad-ids", "ids must be None or a list "
                                      f"of item ids, got {ids!r:.100}", field="ids")
    chosen = []
    for i in ids:
        if not is_id(i):
            raise ValidationFailed.single("mark_read", "bad-ids", "ids must be whole "
                                          f"numbers from 1 to {MAX_ID}, got {i!r:.100}",
                                          field="ids")
        chosen.append(i)
        if len(chosen) > _MAX_IDS:
            raise ValidationFailed.single("mark_read", "too-many", f"ids: more than "
                                          f"{_MAX_IDS:,}; mark fewer at a time",
                                          field="ids")
    return chosen
