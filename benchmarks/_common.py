"""What every benchmark shares: results, timing, and the team the lifecycle uses.

Timing: ``time.perf_counter``; every figure is the best of ``REPEAT`` runs (the least
disturbed one), except where a module says otherwise (``list_scaling`` reports medians).
Runs of postflow and of its baseline alternate, so background load hits both alike.

Garbage collector: left ENABLED during timed runs (as in production: postflow and the
baselines allocate, and the per-post ``transitions.Machine`` of the baseline makes
reference cycles only the collector frees); ``gc.collect()`` runs before every timed
run so no run pays for the garbage of another. ``--no-gc`` disables it during timed
runs instead (``gc.collect()`` after each).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import postflow

REPEAT = 3

settings: dict[str, Any] = {"gc": True}
"""Process-wide options set by ``__main__`` (``gc``: keep the collector on in runs)."""


def gc_note() -> str:
    """How the garbage collector was handled in timed runs."""
    if settings["gc"]:
        return "gc enabled during runs, gc.collect() before each"
    return "gc disabled during runs (--no-gc), gc.collect() before and after each"


@dataclass
class Figure:
    """One measured number."""

    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Ratio:
    """postflow's figure over a baseline's, with the target it must meet (if any)."""

    name: str
    value: float
    target: float | None = None  # pass when value <= target
    note: str = ""

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.value <= self.target


@dataclass
class Check:
    """A yes/no target (e.g. the index is used)."""

    name: str
    passed: bool
    note: str = ""


@dataclass
class Result:
    """What one benchmark module reports."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes, with the collector handled as documented."""
    gc.collect()
    if not settings["gc"]:
        gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if not settings["gc"]:
            gc.enable()
            gc.collect()


def best_of(
    runs: dict[str, Callable[[], Callable[[], Any]]], repeat: int = REPEAT
) -> dict[str, float]:
    """Best time per name; ``runs[name]()`` sets up (untimed) and returns the timed call.

    The names take turns: a, b, a, b, … so noise spreads evenly over them.
    """
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, setup in runs.items():
            best[name] = min(best[name], timed(setup()))
    return best


NOTIFICATION_RULES: dict[str, Any] = {"rules": [
    {"name": "reviewers hear of submissions", "events": ["post.submitted"],
     "to": ["approvers"], "channels": ["email", "inbox"]},
    {"name": "authors hear of approvals", "events": ["post.approved"], "to": ["author"],
     "channels": ["inbox"]},
    {"name": "admins hear of failures", "events": ["post.failed"], "to": ["role:admin"],
     "channels": ["email"]},
]}
"""The three notification rules every lifecycle runs with (issue 11: configured rules must
not cost the lifecycle its speed; they are routed later, from the change cursor)."""


def open_team(url: str) -> postflow.Workspace:
    """A workspace with the small team of the lifecycle (author, approver, publisher, an
    admin) and three notification rules."""
    ws = postflow.open(url, entry_points=False)
    ws.team.add("ana", roles={"author"}, email="ana@example.org")
    ws.team.add("ben", roles={"approver"}, email="ben@example.org")
    ws.team.add("cy", roles={"publisher"})
    ws.team.add("dee", roles={"admin"}, email="dee@example.org")
    ws.channels.add("acme-x", network="x", handle="@acme")
    ws.notifications.configure(NOTIFICATION_RULES, by="dee")
    return ws


def release(opened: list[postflow.Workspace], n: int) -> None:
    """Check that each workspace in ``opened`` scheduled ``n`` posts, close it, let it go."""
    while opened:
        ws = opened.pop()
        assert ws.posts.count(state="scheduled") == n, "postflow did not schedule every post"
        ws.close()


def texts(n: int) -> list[str]:
    """``n`` distinct post texts of a typical length (~80 characters)."""
    return [f"Post {i}: our spring launch is live, read the story and tell us what you think"
            for i in range(n)]


def future() -> datetime:
    """A schedule time safely in the future of the system clock."""
    return datetime.now(UTC) + timedelta(days=30)


def run_lifecycle(ws: postflow.Workspace, bodies: list[str], at: datetime) -> None:
    """The lifecycle under test: create, submit, approve, schedule, per post."""
    create, submit, approve, schedule = (
        ws.posts.create, ws.submit, ws.approve, ws.schedule)
    for text in bodies:
        post = create(author="ana", text=text, channels=["acme-x"])
        submit(post.id, by="ana")
        approve(post.id, by="ben")
        schedule(post.id, at=at, by="cy")


def us_per(seconds: float, n: int) -> float:
    """Microseconds per item."""
    return seconds / n * 1e6
