"""Helpers for testing code that uses postflow.

>>> from postflow.testing import FixedClock, RecordingPlugin
>>> clock = FixedClock()
>>> recorder = RecordingPlugin()
>>> ws = postflow.open("memory://", clock=clock, plugins=[recorder])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import attrs

from postflow._time import to_utc
from postflow.hookspecs import hookimpl
from postflow.models import AuditEntry, Post

__all__ = ["FixedClock", "RecordedTransition", "RecordingPlugin"]


class FixedClock:
    """A clock that stands still until told to move.

    Starts at ``start`` (default 2030-01-01 09:00 UTC) and returns that instant from
    :meth:`now` until :meth:`advance` or :meth:`set` moves it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (to_utc(start, field="start", subject="FixedClock")[0] if start
                     else datetime(2030, 1, 1, 9, 0, tzinfo=UTC))

    def now(self) -> datetime:
        """The clock's current instant (UTC)."""
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or ``timedelta(**kwargs)``; return the new time."""
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (aware)."""
        self._now = to_utc(instant, field="instant", subject="FixedClock")[0]

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()})"


@attrs.frozen
class RecordedTransition:
    """One committed transition seen by :class:`RecordingPlugin`."""

    post: Post
    previous: Post
    trigger: str
    actor: str
    entries: tuple[AuditEntry, ...]


class RecordingPlugin:
    """A plugin that records every committed transition, and can veto on demand.

    Pass it to ``postflow.open(..., plugins=[recorder])``; read :attr:`transitions`.
    Set :attr:`veto` to an exception to have every transition refused with it.
    """

    def __init__(self) -> None:
        self.transitions: list[RecordedTransition] = []
        self.veto: Exception | None = None

    @property
    def triggers(self) -> list[str]:
        """The triggers recorded, in order."""
        return [t.trigger for t in self.transitions]

    @hookimpl
    def postflow_before_transition(self, trigger: str) -> None:
        """Raise :attr:`veto` if set."""
        if self.veto is not None:
            raise self.veto

    @hookimpl
    def postflow_after_transition(
        self, post: Post, previous: Post, trigger: str, actor: str,
        entries: Sequence[AuditEntry],
    ) -> None:
        """Record the transition."""
        self.transitions.append(RecordedTransition(post, previous, trigger, actor,
                                                   tuple(entries)))
