"""The shared state machine retains nothing per post (weak references and gc).

DESIGN.md: ONE ``transitions.Machine(model=None)`` per workflow, fired per post on a
throw-away carrier, never ``add_model``. ``Machine(model=None)`` registers no model
(``transitions`` only calls ``add_model`` when ``model`` is truthy), so
``machine.models`` must stay empty however many posts go through it, no carrier or
``EventData`` may outlive its call, and every snapshot a caller drops must be freed
once the workspace lets go of it.
"""

from __future__ import annotations

import gc
import weakref
from datetime import timedelta
from pathlib import Path

import pytest
from transitions import EventData

import postflow
import postflow.workflow
from conftest import add_team
from postflow.models import FrozenData
from postflow.testing import FixedClock

POSTS = 200


def _carrier_types() -> tuple[type, ...]:
    """The classes of what the machine fires on (not its own states and transitions)."""
    return (postflow.workflow._Carrier,)


def _drive(ws: postflow.Workspace, clock: FixedClock, n: int) -> list[postflow.Post]:
    """Take ``n`` posts through the default workflow; return every snapshot returned."""
    at = clock.now() + timedelta(days=1)
    seen = []
    for i in range(n):
        post = ws.posts.create(author="ana", text=f"post {i}", channels=["acme-x"])
        seen.append(post)
        seen.append(ws.submit(post.id, by="ana"))
        if i % 3 == 0:  # some go round the loop once more
            seen.append(ws.request_changes(post.id, by="ben", comment="shorter"))
            seen.append(ws.submit(post.id, by="ana"))
        seen.append(ws.approve(post.id, by="ben"))
        seen.append(ws.schedule(post.id, at=at, by="cy"))
    return seen


def _alive(types: tuple[type, ...]) -> list[object]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, types)]


def test_machine_holds_no_models_or_carriers(ws: postflow.Workspace, clock: FixedClock) -> None:
    machine = ws.workflow.machine
    assert machine.models == []
    _drive(ws, clock, POSTS)
    assert machine.models == []
    assert _alive((*_carrier_types(), EventData)) == []


def test_old_snapshots_are_freed_while_the_workspace_lives(
    ws: postflow.Workspace, clock: FixedClock
) -> None:
    created = ws.posts.create(author="ana", text="hello", channels=["acme-x"])
    submitted = ws.submit(created.id, by="ana")
    refs = [weakref.ref(created), weakref.ref(submitted)]
    approved = ws.approve(created.id, by="ben")
    approval_ref = weakref.ref(approved.approvals[0])
    latest = ws.schedule(created.id, at=clock.now() + timedelta(days=1), by="cy")
    del created, submitted, approved
    gc.collect()
    assert [r() for r in refs] == [None, None]
    # the approval lives on in the newest snapshot, and only there
    assert approval_ref() is latest.approvals[0]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_nothing_outlives_the_workspace_but_the_workflow(
    backend: str, tmp_path: Path, clock: FixedClock
) -> None:
    workflow = postflow.Workflow.default()  # kept alive: its machine must not pin posts
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'p.db'}"
    ws = postflow.open(url, workflow=workflow, clock=clock, entry_points=False)
    add_team(ws)
    seen = _drive(ws, clock, POSTS)
    refs = [weakref.ref(p) for p in seen]
    refs += [weakref.ref(a) for p in seen for a in p.approvals]
    assert workflow.machine.models == []
    recent = getattr(ws, "_recent", None)  # the workspace's cache of recent snapshots
    if recent is not None:
        recent.clear()
    ws.close()
    del ws, seen
    gc.collect()
    alive = [r() for r in refs if r() is not None]
    assert alive == []
    assert workflow.machine.models == []
    assert _alive(_carrier_types()) == []


def test_audit_trail_is_not_walked_by_the_collector(clock: FixedClock) -> None:
    """memory:// keeps its audit trail as plain tuples, which the garbage collector
    stops tracking: every full collection would otherwise walk several entries and
    their data dicts per post. What stays tracked per post is its snapshot, its
    approval and its approvals tuple: revisions and each post's history are tuples of
    plain values too."""
    ws = postflow.open("memory://", clock=clock, entry_points=False)
    add_team(ws)
    ws.posts.create(author="ana", text="warm-up", channels=["acme-x"])
    gc.collect()
    before = len(gc.get_objects())
    _drive(ws, clock, POSTS)
    ws.engine.recent.clear()
    assert _alive((postflow.AuditEntry,)) == []
    assert len(_alive((FrozenData,))) < 10  # the team's and channels', not per entry
    tracked_per_post = (len(gc.get_objects()) - before) / POSTS
    assert tracked_per_post < 5, tracked_per_post
    assert len(ws.history(2)) == 6
    assert len(ws.audit_log()) > 4 * POSTS
    assert [r.number for r in ws.revisions(2)] == [1]


def test_a_long_history_keeps_its_order(ws: postflow.Workspace) -> None:
    """A post's history is a tuple while short and a list once long: the switch loses
    and reorders nothing, and revisions read back whole."""
    post = ws.posts.create(author="ana", text="one", channels=["acme-x"])
    for i in range(150):
        ws.comment(post.id, by="ben", text=f"note {i}")
    ws.edit(post.id, by="ana", text="two")
    history = ws.history(post.id)
    assert [e.comment for e in history[1:151]] == [f"note {i}" for i in range(150)]
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert history[-1].action == "edit"
    assert [(r.number, r.text, r.channels) for r in ws.revisions(post.id)] == [
        (1, "one", ("acme-x",)), (2, "two", ("acme-x",))]


def test_update_returns_entries_that_read_like_a_list(
    ws: postflow.Workspace, clock: FixedClock
) -> None:
    """update_post returns the entries as stored: they index, slice, compare and print
    like the list history() returns (memory:// builds them only when read)."""
    post = ws.posts.create(author="ana", text="hello", channels=["acme-x"])
    submitted = postflow.models.replace(post, version=2, state="review")
    entry = postflow.storage.NewEntry("submit", "ana", clock.now(), "c-1", post.id,
                                      "draft", "review", 1, None, {"why": ["a", 1]})
    returned = ws.storage.update_post(submitted, expected_version=1, entries=[entry])
    stored = ws.history(post.id)[1:]
    assert len(returned) == 1
    assert returned == stored
    assert list(returned) == stored
    assert returned[-1] == stored[0]
    assert returned[0:1] == stored
    assert returned[0].data == {"why": ("a", 1)}
    with pytest.raises(TypeError):
        returned[0].data["why"] = 2  # type: ignore[index]
    assert repr(returned) == repr(stored)
