"""Reading every committed change through a durable cursor over the audit trail.

The audit trail is already a transactional record of every change: each write stores its
entries in the change's own transaction, with ids in commit order. A consumer (the
notification outbox, a search index, a metrics exporter) keeps a position in that trail,
stored in the same database, and moves it forward only after it handled what it read. A
process that dies after a commit, or in the middle of handling, loses nothing: the next
reader starts from the saved position. Delivery is at least once; a consumer that must
act exactly once keys its own work on the entries' ids or correlation ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from postflow._fields import MAX_ID, is_id
from postflow.engine import ChangeEngine
from postflow.exceptions import ConflictError, ValidationFailed
from postflow.models import AuditEntry
from postflow.storage import check_page

__all__ = ["Changes", "group_by_call"]

_CONSUMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")

Handler = Callable[[Sequence[AuditEntry]], None]
"""Called with the entries of one call (one correlation id), oldest first."""


def group_by_call(entries: Sequence[AuditEntry]) -> list[list[AuditEntry]]:
    """Consecutive entries sharing a correlation id, as one list per call."""
    groups: list[list[AuditEntry]] = []
    for entry in entries:
        if groups and groups[-1][0].correlation_id == entry.correlation_id:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    return groups


class Changes:
    """Durable consumers of the audit trail (``ws.changes``)."""

    def __init__(self, engine: ChangeEngine) -> None:
        self._engine = engine

    def log(self, *, after_id: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Every audit entry with ``id > after_id``, oldest first (at most ``limit``);
        :class:`~postflow.ValidationFailed` for a bad ``after_id`` or ``limit``."""
        try:
            check_page(after_id, limit)
        except ValueError as exc:
            raise ValidationFailed.single("audit_log", "bad-page", str(exc),
                                          field="limit" if "limit" in str(exc)
                                          else "after_id") from exc
        return self._engine.storage.audit_log(after_id=after_id, limit=limit)

    def position(self, consumer: str) -> int:
        """The id of the last entry ``consumer`` handled (0: none yet)."""
        return self._engine.storage.cursor(_consumer(consumer))

    def pending(self, consumer: str, *, limit: int = 500) -> list[list[AuditEntry]]:
        """The calls ``consumer`` has not handled yet, oldest first, grouped by call.

        At most ``limit`` entries, except that one call is never split: a call the limit
        cut is left for the next read, or read whole when it is the first.
        """
        if type(limit) is not int or not 1 <= limit <= MAX_ID:
            raise ValidationFailed.single("changes", "bad-limit",
                                          f"limit must be a whole number from 1 to {MAX_ID}, "
                                          f"got {limit!r}", field="limit")
        storage = self._engine.storage
        after = storage.cursor(_consumer(consumer))
        while True:
            entries = storage.audit_log(after_id=after, limit=limit)
            groups = group_by_call(entries)
            if len(entries) < limit:
                return groups
            if len(groups) > 1:
                groups.pop()  # the limit may have cut it: read it whole next time
                return groups
            limit = min(limit * 2, MAX_ID)  # one call larger than the limit: read all of it

    def acknowledge(self, consumer: str, entries: Sequence[AuditEntry]) -> int:
        """Move ``consumer`` past ``entries`` (which it handled); return the position.

        :class:`~postflow.ConflictError` when another process moved it meanwhile.
        """
        name = _consumer(consumer)
        given: object = entries
        if isinstance(given, str | bytes) or not isinstance(given, Sequence) or not all(
                isinstance(e, AuditEntry) and is_id(e.id) for e in given):
            raise ValidationFailed.single(
                "changes", "bad-entries", "entries must be a list of the AuditEntry objects "
                f"read from pending(), got {entries!r:.200}", field="entries")
        storage = self._engine.storage
        current = storage.cursor(name)
        position = max((e.id for e in entries), default=current)
        if position > current:
            storage.save_cursor(name, position, expected=current)
        return max(position, current)

    def consume(self, consumer: str, handler: Handler, *, limit: int = 500) -> int:
        """Hand every unhandled call to ``handler``, moving the cursor after each.

        Returns how many calls were handled. An exception from ``handler`` stops the
        pass with the cursor before the failed call, so it is offered again. When two
        processes drain one consumer, the one that loses the compare-and-set stops.
        """
        handled = 0
        while True:
            groups = self.pending(consumer, limit=limit)
            if not groups:
                return handled
            for group in groups:
                handler(group)
                try:
                    self.acknowledge(consumer, group)
                except ConflictError:
                    return handled
                handled += 1


def _consumer(name: object) -> str:
    if not isinstance(name, str) or not _CONSUMER.fullmatch(name):
        raise ValidationFailed.single(
            "changes", "bad-consumer",
            f"a consumer name is 1-100 letters, digits and _ . : -, got {name!r}",
            field="consumer")
    return name
