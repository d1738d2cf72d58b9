"""Notifications: events from every committed change, rules and preferences, a durable
outbox, delivery channels and the in-app inbox (``ws.notifications``).

STUB: helper H2 replaces this file (see /work/notify-spec.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from postflow.notices import InboxItem

if TYPE_CHECKING:
    from postflow.workspace import Workspace

__all__ = ["Notifications"]


class Notifications:
    """Notification rules, preferences, the outbox and the inbox of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._workspace = workspace

    def inbox(self, member: str, *, unread: bool = False, after_id: int = 0,
              limit: int | None = None) -> list[InboxItem]:
        raise NotImplementedError

    def mark_read(self, member: str, ids: Sequence[int] | None = None) -> int:
        raise NotImplementedError
