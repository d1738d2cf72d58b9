"""Snapshots of the notification outbox and the in-app inbox (values; see
:mod:`postflow.notifications` for what makes and delivers them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from postflow.models import NO_DATA

__all__ = ["NOTICE_STATES", "InboxItem", "Notice"]

NOTICE_STATES = ("pending", "sending", "sent", "failed")
"""A notice waits (``pending``), is held by a worker (``sending``), or is settled."""


@attrs.frozen
class Notice:
    """One notification for one recipient through one delivery channel (an outbox row).

    ``dedup_key`` is unique in the outbox and is what the channel sees (the email's
    Message-ID, the webhook's ``Idempotency-Key``): a repeat after a crash is
    recognisable as the same message. Notices sharing ``recipient``, ``channel`` and a
    non-``None`` ``digest`` are delivered together as one message once ``not_before``
    has passed for all of them.
    """

    id: int
    """0 before the outbox stored it."""
    dedup_key: str
    event_key: str
    """The event's own key (see :class:`postflow.notifications.Event`)."""
    event: str
    """The event kind: ``post.submitted``, ``approval.overdue`` …"""
    recipient: str
    """A member's name."""
    channel: str
    """A delivery channel's name: ``email``, ``webhook``, ``inbox`` or a plugin's."""
    created_at: datetime
    not_before: datetime
    """Not delivered before this time (quiet hours, digest windows)."""
    payload: Mapping[str, Any] = attrs.field(default=NO_DATA, hash=False)
    """The event's fields, JSON-able."""
    digest: str | None = None
    urgent: bool = False
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    settled_at: datetime | None = None


@attrs.frozen
class InboxItem:
    """A notification in a member's in-app inbox."""

    id: int
    """0 before the inbox stored it."""
    member: str
    dedup_key: str
    event: str
    title: str
    body: str
    created_at: datetime
    post_id: int | None = None
    read_at: datetime | None = None
    payload: Mapping[str, Any] = attrs.field(default=NO_DATA, hash=False)
