"""The Python calls behind the workflow CLI: publishing now, marking published, ending a
series, the approval queue, retiring campaigns, and opening SQLite without migrating."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import postflow
from conftest import add_team
from postflow.cli.demo import DEMO_WORKFLOW
from postflow.storage.sqlite import SCHEMA_VERSION, migrate_file, stored_schema_version
from postflow.testing import FixedClock
from postflow.workflow import Workflow
from test_publishing import Network

MakeWs = Callable[..., postflow.Workspace]


@pytest.fixture(name="network")
def _network() -> Network:
    return Network()


@pytest.fixture(name="pws")
def _pws(url: str, make_ws: MakeWs, network: Network) -> postflow.Workspace:
    ws = make_ws(url, plugins=[network])
    add_team(ws)
    return ws


def approved(ws: postflow.Workspace, channels: tuple[str, ...] = ("acme-x",)) -> postflow.Post:
    post = ws.posts.create(author="ana", text="Launch https://acme.example",
                           channels=list(channels))
    ws.submit(post.id, by="ana")
    return ws.approve(post.id, by="ben")


class TestPublishNow:
    def test_approved_post_goes_out_once_through_claim_and_deliveries(
            self, pws: postflow.Workspace, network: Network, clock: FixedClock) -> None:
        post = approved(pws, ("acme-x", "acme-li"))
        outcome = pws.publish(post.id, by="cy")
        assert outcome.result == "published"
        stored = pws.posts.get(post.id)
        assert stored.state == "published"
        assert stored.scheduled_at == clock.now()
        assert sorted(network.sent()) == [post.id, post.id]
        assert {d.status for d in pws.deliveries(post.id)} == {"sent"}
        actions = [e.action for e in pws.history(post.id)]
        assert actions[-3:] == ["publish_now", "claim", "publish"]
        assert postflow.replay(pws.history(post.id)) == stored
        with pytest.raises(postflow.InvalidTransition, match="published"):
            pws.publish(post.id, by="cy")
        assert len(network.calls) == 2

    def test_scheduled_post_is_published_before_its_time(
            self, pws: postflow.Workspace, network: Network, clock: FixedClock) -> None:
        post = approved(pws)
        pws.schedule(post.id, at=clock.now() + timedelta(days=3), by="cy")
        assert pws.publish(post.id, by="dee").result == "published"
        assert pws.posts.get(post.id).scheduled_at == clock.now()
        clock.advance(days=4)
        assert pws.publish_due(worker="w") == []  # nothing left to send
        assert network.sent() == [post.id]

    def test_failure_leaves_the_post_failed_like_the_worker(
            self, pws: postflow.Workspace, network: Network) -> None:
        post = approved(pws)
        network.script["acme-x"] = [postflow.PermanentError("duplicate content")]
        outcome = pws.publish(post.id, by="cy")
        assert outcome.result == "failed"
        assert pws.posts.get(post.id).state == "failed"
        assert "duplicate content" in str(pws.deliveries(post.id)[0].last_error)

    @pytest.mark.parametrize("by", ["ana", "ben", "al", "nobody"])
    def test_only_publishers_and_admins(self, pws: postflow.Workspace, network: Network,
                                        by: str) -> None:
        post = approved(pws)
        before = pws.posts.get(post.id)
        with pytest.raises(postflow.PermissionDenied):
            pws.publish(post.id, by=by)
        assert pws.posts.get(post.id) == before
        assert network.calls == []

    def test_draft_and_paused_are_refused_with_nothing_sent(
            self, pws: postflow.Workspace, network: Network) -> None:
        draft = pws.posts.create(author="ana", text="Hi", channels=["acme-x"])
        with pytest.raises(postflow.InvalidTransition, match="approved or scheduled"):
            pws.publish(draft.id, by="cy")
        post = approved(pws)
        pws.pause(by="cy", reason="crisis", channels=["acme-x"])
        with pytest.raises(postflow.InvalidTransition, match="paused"):
            pws.publish(post.id, by="cy")
        assert pws.posts.get(post.id).state == "approved"
        with pytest.raises(postflow.NotFound):
            pws.publish(999, by="cy")
        assert network.calls == []

    def test_mark_published_sends_nothing(self, pws: postflow.Workspace,
                                          network: Network) -> None:
        post = approved(pws)
        marked = pws.mark_published(post.id, by="cy", urls={"acme-x": "https://x/1"})
        assert marked.state == "published"
        assert marked.published_urls == {"acme-x": "https://x/1"}
        assert network.calls == []
        assert pws.history(post.id)[-1].action == "publish"


class TestSeriesEnd:
    def test_ended_series_creates_no_more_occurrences(
            self, ws: postflow.Workspace, clock: FixedClock) -> None:
        series, first = ws.posts.create_series(
            author="ana", text="Tip", channels=["acme-x"], rrule="FREQ=DAILY",
            start=clock.now() + timedelta(hours=1), ahead=timedelta(days=2))
        assert first
        ended = ws.scheduling.end_series(series.id, by="ana", comment="campaign over")
        assert ended.ended_at == clock.now()
        assert ended.ended_by == "ana"
        assert ws.scheduling.list_series(ended=True) == [ended]
        assert ws.scheduling.list_series(ended=False) == []
        clock.advance(days=5)
        assert ws.create_occurrences() == []
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.data["series"], entry.comment) == (
            "series.end", series.id, "campaign over")
        with pytest.raises(postflow.InvalidTransition, match="already ended"):
            ws.scheduling.end_series(series.id, by="dee")
        with pytest.raises(postflow.NotFound):
            ws.scheduling.end_series(999, by="dee")

    def test_others_may_not_end_it(self, ws: postflow.Workspace, clock: FixedClock) -> None:
        series, _ = ws.posts.create_series(
            author="ana", text="Tip", channels=["acme-x"], rrule="FREQ=DAILY",
            start=clock.now() + timedelta(hours=1))
        with pytest.raises(postflow.PermissionDenied):
            ws.scheduling.end_series(series.id, by="ben")
        assert ws.scheduling.get_series(series.id).ended_at is None


class TestApprovalQueue:
    def test_waits_at_its_stage_on_eligible_members(
            self, make_ws: MakeWs, url: str, clock: FixedClock) -> None:
        ws = make_ws(url, workflow=Workflow.from_dict(DEMO_WORKFLOW))
        add_team(ws)
        ws.team.add("lena", roles={"legal"})
        post = ws.posts.create(author="ana", text="Hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        entered = clock.now()
        [waiting] = ws.approvals()
        assert (waiting.post_id, waiting.stage, waiting.waiting_on, waiting.since) == (
            post.id, "editorial", ("bea", "ben"), entered)
        assert waiting.due_at == entered + timedelta(hours=24)
        assert not waiting.overdue
        clock.advance(hours=25)
        assert ws.approvals(overdue=True)[0].overdue
        ws.approve(post.id, by="ben")
        [waiting] = ws.approvals()
        assert (waiting.stage, waiting.approved_by, waiting.waiting_on) == (
            "legal", (), ("lena",))
        assert ws.approvals(member="ben") == []
        assert [w.post_id for w in ws.approvals(member="lena")] == [post.id]
        with pytest.raises(postflow.NotFound):
            ws.approvals(member="nobody")
        ws.approve(post.id, by="lena")
        assert ws.approvals() == []

    def test_retired_members_and_the_author_are_not_waited_on(
            self, ws: postflow.Workspace) -> None:
        ws.team.add("ava", roles={"author", "approver"})
        post = ws.posts.create(author="ava", text="Hi", channels=["acme-x"])
        ws.submit(post.id, by="ava")
        ws.team.remove("bea")
        assert ws.approvals()[0].waiting_on == ("ben",)


class TestRetiring:
    def test_retired_campaign_refuses_new_posts_but_keeps_its_own(
            self, ws: postflow.Workspace) -> None:
        post = ws.posts.create(author="ana", text="Hi", channels=["acme-x"],
                               campaign="spring")
        retired = ws.campaigns.remove("spring", by="dee")
        assert retired.active is False
        assert ws.campaigns.get("spring").active is False
        with pytest.raises(postflow.ValidationFailed, match="inactive-campaign"):
            ws.posts.create(author="ana", text="Hi", channels=["acme-x"], campaign="spring")
        assert ws.edit(post.id, by="ana", text="Hi again").campaign == "spring"
        assert ws.audit_log()[-2].data["active"] is False

    def test_retired_channel(self, ws: postflow.Workspace) -> None:
        assert ws.channels.remove("acme-li", by="dee").active is False
        with pytest.raises(postflow.ValidationFailed, match="inactive-channel"):
            ws.posts.create(author="ana", text="Hi", channels=["acme-li"])


class TestOpeningWithoutMigrating:
    def old_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "old.db"
        postflow.open(f"sqlite:///{path}", entry_points=False).close()
        db = sqlite3.connect(path)
        with db:
            db.execute("UPDATE postflow_meta SET value = '3' WHERE key = 'schema_version'")
        db.close()
        return path

    def test_migrate_no_refuses_an_older_file_and_changes_nothing(
            self, tmp_path: Path) -> None:
        path = self.old_file(tmp_path)
        with pytest.raises(postflow.MigrationRequired, match="postflow db migrate") as info:
            postflow.open(f"sqlite:///{path}?migrate=no", entry_points=False)
        assert (info.value.found, info.value.current) == (3, SCHEMA_VERSION)
        assert stored_schema_version(str(path)) == 3
        ws = postflow.open(f"sqlite:///{path}", entry_points=False)  # embedding: migrates
        ws.close()
        assert stored_schema_version(str(path)) == SCHEMA_VERSION

    def test_migrate_file_backs_up_first(self, tmp_path: Path) -> None:
        path = self.old_file(tmp_path)
        found, now, backup = migrate_file(str(path))
        assert (found, now) == (3, SCHEMA_VERSION)
        assert backup is not None
        assert stored_schema_version(str(backup)) == 3
        assert migrate_file(str(path)) == (SCHEMA_VERSION, SCHEMA_VERSION, None)

    def test_unknown_url_option_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(postflow.ConfigError, match="migrate=yes"):
            postflow.open(f"sqlite:///{tmp_path / 'x.db'}?foo=1", entry_points=False)
