"""The floor under the memory lifecycle: only the work no design can avoid.

``python -m benchmarks.floor`` times, per post, what any implementation of postflow's
lifecycle on ``memory://`` must do at the least: the same three fires through the
shared ``transitions`` machine (through ``machine.events[t].trigger(carrier)``), one
new frozen ``Post`` and one stored ``AuditEntry`` per step, the state index, a lock.
No permissions, validation, revisions, audit data, correlation ids, cache or retries.

It prints the floor next to the plain-``transitions`` baseline of
:mod:`benchmarks.lifecycle_memory`: the gap between the floor and postflow is what
postflow's bookkeeping costs, the gap between the floor and the baseline is all the
room there is for it under the 1.0x target. A diagnostic, not a target.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime

import postflow
from benchmarks.lifecycle_memory import transitions_baseline
from postflow.models import Approval, AuditEntry, Post
from postflow.storage import NewEntry

N = 10_000


class _Carrier:
    __slots__ = ("approvals", "state")


def floor(n: int) -> float:
    """Seconds for ``n`` posts through create, submit, approve, schedule at the floor."""
    machine = postflow.Workflow.default().machine
    posts: dict[int, Post] = {}
    audit: list[AuditEntry] = []
    by_state: dict[str, set[int]] = {s: set() for s in ("draft", "review", "approved",
                                                        "scheduled")}
    ids, audit_ids, lock = itertools.count(1), itertools.count(1), threading.Lock()

    def fire(trigger: str, state: str, approvals: tuple[Approval, ...]) -> str:
        carrier = _Carrier()
        carrier.state, carrier.approvals = state, approvals
        machine.events[trigger].trigger(carrier)
        return carrier.state

    def step(post: Post, trigger: str, actor: str, approve: bool = False) -> Post:
        now = datetime.now(UTC)
        approvals = post.approvals
        if approve:
            approvals = (*approvals, Approval(actor, "review", post.revision, now))
        dest = fire(trigger, post.state, approvals)
        new = Post(post.id, post.version + 1, dest, post.author, post.text, post.channels,
                   post.revision, post.created_at, now, now, approvals=approvals)
        entry = NewEntry(trigger, actor, now, "c", post.id, post.state, dest, post.revision)
        with lock:
            posts[post.id] = new
            by_state[post.state].discard(post.id)
            by_state[dest].add(post.id)
            audit.append(AuditEntry(next(audit_ids), *entry))
        return new

    start = time.perf_counter()
    for _ in range(n):
        now = datetime.now(UTC)
        with lock:
            post = Post(next(ids), 1, "draft", "ana", "hello", ("x",), 1, now, now, now)
            posts[post.id] = post
            by_state["draft"].add(post.id)
            audit.append(AuditEntry(next(audit_ids), "create", "ana", now, "c", post.id))
        post = step(post, "submit", "ana")
        post = step(post, "approve", "ben", approve=True)
        step(post, "schedule", "cy")
    return time.perf_counter() - start


def _baseline(n: int) -> float:
    start = time.perf_counter()
    transitions_baseline(n)
    return time.perf_counter() - start


def main() -> None:
    """Print the floor and the baseline, best of three each."""
    floor_us = min(floor(N) for _ in range(3)) / N * 1e6
    base_us = min(_baseline(N) for _ in range(3)) / N * 1e6
    print(f"floor (essential work only)        {floor_us:8.1f} µs/post")
    print(f"transitions, one Machine per post  {base_us:8.1f} µs/post")
    print(f"room for postflow's bookkeeping    {base_us - floor_us:8.1f} µs/post")


if __name__ == "__main__":
    main()
