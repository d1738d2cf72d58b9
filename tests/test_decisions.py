"""What the hardening issue asked to decide, pinned: allowed() agrees with firing under a
worker's lease, snapshots never alias stored state, approvals of members who left keep
counting, and a copied database gets its own idempotency keys."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import postflow
from conftest import add_team
from postflow.models import Channel, Post, Revision
from postflow.testing import FixedClock

POSTFLOW = Path(sys.executable).parent / "postflow"


def scheduled(ws: postflow.Workspace, clock: FixedClock) -> postflow.Post:
    post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
    ws.submit(post.id, by="ana")
    ws.approve(post.id, by="ben")
    return ws.schedule(post.id, at=clock.now() + timedelta(minutes=5), by="cy")


class TestAllowedUnderALease:
    """While a worker holds a post, allowed() lists nothing, as firing refuses."""

    def test_allowed_agrees_with_firing(self, ws: postflow.Workspace,
                                        clock: FixedClock) -> None:
        """Every listed trigger would fire; under a lease none is listed."""
        post = scheduled(ws, clock)
        assert "unschedule" in ws.allowed(post.id, by="cy")
        clock.advance(minutes=10)
        [claimed] = ws.storage.claim_due(clock.now(), "w1", clock.now() + timedelta(
            minutes=5), 5, frozenset(), "c1")
        assert ws.allowed(post.id, by="cy") == ()
        with pytest.raises(postflow.InvalidTransition, match="being published by w1"):
            ws.unschedule(post.id, by="cy")
        clock.advance(minutes=6)  # the lease ran out
        assert "unschedule" in ws.allowed(claimed.id, by="cy")


class TestNoAliasing:
    """Snapshots own their values: a caller's list or dict never becomes stored state."""

    def test_a_callers_list_and_dict_are_copied(self, url: str, make_ws: object,
                                                clock: FixedClock) -> None:
        """Mutating what was passed in changes nothing stored, on every backend."""
        ws = make_ws(url)  # type: ignore[operator]
        add_team(ws)
        channels = ["acme-x"]
        settings = {"url": "https://hooks.example/x"}
        now = clock.now()
        post = ws.storage.insert_post(
            Post(0, 1, "draft", "ana", "hi", channels, 1, now, now, now),  # type: ignore[arg-type]
            Revision(0, 1, "hi", channels, None, "ana", now),  # type: ignore[arg-type]
            [postflow.AuditEntry(0, "create", "ana", now, "c", None)])
        channels.append("acme-li")
        assert ws.posts.get(post.id).channels == ("acme-x",)
        ws.channels.add("hook", network="x", publisher="webhook", settings=settings)
        settings["url"] = "https://evil.example/"
        assert ws.channels.get("hook").settings["url"] == "https://hooks.example/x"
        with pytest.raises(TypeError):
            ws.channels.get("hook").settings["url"] = "x"  # type: ignore[index]
        assert isinstance(Channel("c", "x", settings={"a": "b"}).settings, dict)


class TestApprovalsOfMembersWhoLeft:
    """An approval keeps counting after its approver leaves the team: it was valid when
    given, and the trail says who gave it."""

    def test_the_approval_still_counts(self, url: str, make_ws: object) -> None:
        """With a quorum of two, ben approves and leaves; bea's approval completes it."""
        ws = make_ws(url, workflow=postflow.Workflow.from_dict({  # type: ignore[operator]
            "extends": "default", "name": "two",
            "stages": [{"name": "review", "roles": ["approver"], "quorum": 2}]}))
        add_team(ws)
        post = ws.posts.create(author="ana", text="Launch", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.team.remove("ben")
        assert ws.approve(post.id, by="bea").state == "approved"
        with pytest.raises(postflow.PermissionDenied, match="no longer an active member"):
            ws.approve(ws.posts.create(author="ana", text="x", channels=["acme-x"]).id,
                       by="ben")


class TestCopiedDatabases:
    """A copy of a database is noticed, and ``postflow db rekey`` gives it its own keys."""

    def test_copy_is_noticed_and_rekeyed(self, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
        """The copy warns until rekeyed; then its keys differ from the original's."""
        prod = tmp_path / "prod" / "social.db"
        prod.parent.mkdir()
        with postflow.open(f"sqlite:///{prod}", entry_points=False) as ws:
            ws.team.add("dee", roles={"admin"})
            original = ws.storage.instance_id()
        staging = tmp_path / "staging.db"
        shutil.copy(prod, staging)
        with caplog.at_level(logging.WARNING, logger="postflow"), postflow.open(
                f"sqlite:///{staging}", entry_points=False) as ws:
            assert ws.storage.instance_id() == original
        assert "postflow db rekey" in caplog.text
        done = subprocess.run([str(POSTFLOW), "db", "rekey", "--db", f"sqlite:///{staging}",
                               "--by", "dee"], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="postflow"), postflow.open(
                f"sqlite:///{staging}", entry_points=False) as ws:
            assert ws.storage.instance_id() != original
            assert ws.publishing.key(1, "acme-x", 1) != postflow.publishing.idempotency_key(
                1, "acme-x", 1, original)
            assert ws.audit_log()[-1].action == "db.rekey"
        assert "rekey" not in caplog.text

    def test_a_moved_file_keeps_its_keys(self, tmp_path: Path) -> None:
        """``rekey --moved`` keeps the id and stops the warning."""
        first = tmp_path / "a.db"
        with postflow.open(f"sqlite:///{first}", entry_points=False) as ws:
            ws.team.add("dee", roles={"admin"})
            original = ws.storage.instance_id()
        moved = tmp_path / "b.db"
        first.rename(moved)
        with postflow.open(f"sqlite:///{moved}", entry_points=False) as ws:
            ws.rekey(by="dee", moved=True)
            assert ws.storage.instance_id() == original
        with postflow.open(f"sqlite:///{moved}", entry_points=False) as ws:
            ws.storage.instance_id()
            assert ws.storage.copied_from is None  # type: ignore[attr-defined]

    def test_rekey_needs_an_admin(self, ws: postflow.Workspace) -> None:
        """Only an admin may change the keys."""
        before = ws.storage.instance_id()
        with pytest.raises(postflow.PermissionDenied):
            ws.rekey(by="cy")
        assert ws.storage.instance_id() == before
