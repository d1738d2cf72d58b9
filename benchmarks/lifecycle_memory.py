"""Lifecycle per post on ``memory://`` against plain ``transitions``.

postflow: ``posts.create`` then ``submit``, ``approve`` and ``schedule`` per post on
``postflow.open("memory://", entry_points=False)`` with a team of three (author,
approver, publisher) and one channel: permissions, audit trail, hooks, indexes.

Baseline: what a hand-rolled app on ``transitions`` does at the least, one
``Machine(model=obj, …, auto_transitions=False)`` per post and the three state changes,
nothing stored, nothing checked.

Target: postflow ≤ 1.0x the baseline.
"""

from __future__ import annotations

from collections.abc import Callable

from transitions import Machine

import postflow
from benchmarks._common import (
    Figure,
    Ratio,
    Result,
    best_of,
    future,
    gc_note,
    open_team,
    release,
    run_lifecycle,
    texts,
    us_per,
)

NAME = "lifecycle_memory"
TARGET = 1.0

STATES = ["draft", "review", "approved", "scheduled"]
TRANSITIONS = [
    {"trigger": "submit", "source": "draft", "dest": "review"},
    {"trigger": "approve", "source": "review", "dest": "approved"},
    {"trigger": "schedule", "source": "approved", "dest": "scheduled"},
]


class _Doc:
    """The baseline's model: a bare object the Machine decorates."""

    state: str


def transitions_baseline(n: int) -> None:
    """``n`` posts, one Machine each, three state changes."""
    for _ in range(n):
        doc = _Doc()
        Machine(model=doc, states=STATES, transitions=TRANSITIONS, initial="draft",
                auto_transitions=False)
        doc.submit()
        doc.approve()
        doc.schedule()
        assert doc.state == "scheduled"


def run(quick: bool) -> Result:
    n = 1_000 if quick else 10_000
    bodies = texts(n)
    at = future()
    opened: list[postflow.Workspace] = []

    def postflow_run() -> Callable[[], None]:
        # An earlier run's workspace is checked and let go first: kept alive, its posts
        # would make every full collection of the later runs (both sides) walk them.
        release(opened, n)
        ws = open_team("memory://")
        opened.append(ws)
        return lambda: run_lifecycle(ws, bodies, at)

    def baseline_run() -> Callable[[], None]:
        return lambda: transitions_baseline(n)

    best = best_of({"transitions": baseline_run, "postflow": postflow_run})
    release(opened, n)
    pf, base = us_per(best["postflow"], n), us_per(best["transitions"], n)
    return Result(
        NAME,
        figures=[
            Figure("postflow memory:// lifecycle", pf, "µs/post",
                   f"{n} posts, create+submit+approve+schedule"),
            Figure("transitions Machine per post", base, "µs/post",
                   f"{n} posts, 3 state changes"),
        ],
        ratios=[Ratio("postflow / transitions", pf / base, TARGET)],
        notes=[f"best of 3 runs; {gc_note()}"],
    )
