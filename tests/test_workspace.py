"""The public Workspace API on every storage backend."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import postflow
from conftest import add_team
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

Post = postflow.Post
Workspace = postflow.Workspace


def workflow_with(**changes: Any) -> postflow.Workflow:
    """The default workflow with some top-level keys replaced."""
    data = copy.deepcopy(dict(DEFAULT_WORKFLOW))
    data.update(changes)
    return postflow.Workflow.from_dict(data)


TWO_STAGES = {
    "roles": ["legal"],
    "stages": [
        {"name": "editorial", "roles": ["approver"], "due": "24h"},
        {"name": "legal", "roles": ["legal"], "quorum": 2, "due": "48h"},
    ],
}


def draft(ws: Workspace, author: str = "ana", text: str = "Hello world",
          channels: tuple[str, ...] = ("acme-x",), **kwargs: Any) -> Post:
    """A new draft."""
    return ws.posts.create(author=author, text=text, channels=list(channels), **kwargs)


def in_review(ws: Workspace, author: str = "ana", **kwargs: Any) -> Post:
    """A post submitted for review."""
    post = draft(ws, author, **kwargs)
    return ws.submit(post.id, by=author)


def approved(ws: Workspace, author: str = "ana", **kwargs: Any) -> Post:
    """An approved post (default workflow)."""
    post = in_review(ws, author, **kwargs)
    return ws.approve(post.id, by="ben")


def scheduled(ws: Workspace, clock: FixedClock, **kwargs: Any) -> Post:
    """A post scheduled a day from now."""
    post = approved(ws, **kwargs)
    return ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy")


def failed(ws: Workspace, clock: FixedClock) -> Post:
    """A post whose publishing failed."""
    post = scheduled(ws, clock)
    return ws.fire(post.id, "fail", by="cy")


def published(ws: Workspace, clock: FixedClock) -> Post:
    """A published post."""
    post = approved(ws)
    return ws.mark_published(post.id, by="cy")


def archived(ws: Workspace, clock: FixedClock) -> Post:
    """An archived post."""
    post = draft(ws)
    return ws.archive(post.id, by="cy")


SETUPS: dict[str, Callable[[Workspace, FixedClock], Post]] = {
    "draft": lambda ws, clock: draft(ws),
    "review": lambda ws, clock: in_review(ws),
    "approved": lambda ws, clock: approved(ws),
    "scheduled": scheduled,
    "failed": failed,
    "published": published,
    "archived": archived,
}


@pytest.fixture(name="multi")
def _multi(ws: Workspace) -> Workspace:
    """The standard workspace plus max, an author who is also an approver."""
    ws.team.add("max", roles={"author", "approver"})
    return ws


@pytest.fixture(name="make_team_ws")
def _make_team_ws(url: str, make_ws: Callable[..., Workspace]) -> Callable[..., Workspace]:
    """Open a workspace on each backend with a given workflow and the standard team."""

    def make(workflow: postflow.Workflow) -> Workspace:
        ws = make_ws(url, workflow=workflow)
        add_team(ws)
        return ws

    return make


@pytest.fixture(name="legal_ws")
def _legal_ws(make_team_ws: Callable[..., Workspace]) -> Workspace:
    """A workspace whose workflow has an editorial and a two-member legal stage."""
    ws = make_team_ws(workflow_with(**TWO_STAGES))
    ws.team.add("lou", roles={"legal"})
    ws.team.add("liz", roles={"legal"})
    ws.team.add("lee", roles={"legal"})
    return ws


class TestTeam:
    """ws.team: add, update, remove."""

    def test_add_and_get(self, ws: Workspace) -> None:
        """Added members can be read back with their roles and email."""
        member = ws.team.get("ana")
        assert member.roles == {"author"}
        assert member.email == "ana@example.org"
        assert member.active
        assert [m.name for m in ws.team.list()] == sorted(
            ["ana", "aaron", "ben", "bea", "cy", "dee", "al"])

    def test_several_roles(self, ws: Workspace) -> None:
        """A member may hold several roles."""
        ws.team.add("max", roles={"author", "approver", "analyst"})
        assert ws.team.get("max").roles == {"author", "approver", "analyst"}

    def test_add_twice(self, ws: Workspace) -> None:
        """Adding an existing name is refused."""
        with pytest.raises(postflow.ValidationFailed, match="already exists"):
            ws.team.add("ana", roles={"admin"})
        assert ws.team.get("ana").roles == {"author"}

    def test_unknown_role(self, ws: Workspace) -> None:
        """An unknown role is refused, naming it and the known ones."""
        with pytest.raises(postflow.ValidationFailed, match="unknown role") as info:
            ws.team.add("max", roles={"boss"})
        assert "boss" in str(info.value)
        assert "approver" in str(info.value)

    def test_no_roles(self, ws: Workspace) -> None:
        """A member needs at least one role."""
        with pytest.raises(postflow.ValidationFailed, match="at least one role"):
            ws.team.add("max", roles=set())

    def test_update_roles(self, ws: Workspace, clock: FixedClock) -> None:
        """Giving a member a new role lets them fire that role's triggers."""
        post = approved(ws)
        with pytest.raises(postflow.PermissionDenied):
            ws.schedule(post.id, at=clock.now() + timedelta(hours=1), by="ben")
        updated = ws.team.update("ben", roles={"approver", "publisher"}, by="dee")
        assert updated.roles == {"approver", "publisher"}
        assert ws.schedule(post.id, at=clock.now() + timedelta(hours=1),
                           by="ben").state == "scheduled"

    def test_update_email(self, ws: Workspace) -> None:
        """Email can be changed and cleared."""
        assert ws.team.update("ana", email="a@x.org").email == "a@x.org"
        assert ws.team.update("ana", email=None).email is None
        assert ws.team.get("ana").email is None

    def test_removed_member_cannot_act(self, ws: Workspace) -> None:
        """A deactivated member can no longer create, fire triggers or comment."""
        post = draft(ws)
        removed = ws.team.remove("ana", by="dee")
        assert removed.active is False
        assert ws.team.get("ana").active is False
        with pytest.raises(postflow.PermissionDenied, match="no longer an active member"):
            ws.submit(post.id, by="ana")
        with pytest.raises(postflow.PermissionDenied, match="no longer an active member"):
            draft(ws)
        with pytest.raises(postflow.PermissionDenied, match="no longer an active member"):
            ws.comment(post.id, by="ana", text="hi")
        assert ws.posts.get(post.id) == post

    def test_reactivated_member_can_act(self, ws: Workspace) -> None:
        """Setting active=True again restores the member."""
        post = draft(ws)
        ws.team.remove("ana")
        ws.team.update("ana", active=True)
        assert ws.submit(post.id, by="ana").state == "review"

    def test_get_unknown(self, ws: Workspace) -> None:
        """Reading an unknown member raises NotFound."""
        with pytest.raises(postflow.NotFound, match="zed"):
            ws.team.get("zed")

    @pytest.mark.parametrize("call", [
        pytest.param(lambda ws: ws.team.add("max", roles={"author"}, by="ana"), id="add"),
        pytest.param(lambda ws: ws.team.update("ana", roles={"admin"}, by="ana"),
                     id="update-self"),
        pytest.param(lambda ws: ws.team.remove("ben", by="bea"), id="remove"),
        pytest.param(lambda ws: ws.channels.add("acme-fb", network="facebook", by="cy"),
                     id="channel"),
        pytest.param(lambda ws: ws.campaigns.add("fall", by="al"), id="campaign"),
    ])
    def test_changes_by_non_admin(self, ws: Workspace, call: Callable[[Workspace], Any]
                                  ) -> None:
        """Team, channel and campaign changes by a non-admin raise PermissionDenied."""
        before = len(ws.audit_log())
        members, channels, campaigns = ws.team.list(), ws.channels.list(), ws.campaigns.list()
        with pytest.raises(postflow.PermissionDenied, match="admin") as info:
            call(ws)
        assert info.value.action == "manage"
        assert info.value.roles_needed == ("admin",)
        assert len(ws.audit_log()) == before
        assert ws.team.list() == members
        assert ws.channels.list() == channels
        assert ws.campaigns.list() == campaigns

    def test_changes_by_unknown(self, ws: Workspace) -> None:
        """A team change by an unknown name raises PermissionDenied."""
        with pytest.raises(postflow.PermissionDenied, match="'zed' is not a member"):
            ws.team.add("max", roles={"author"}, by="zed")

    def test_changes_by_admin_recorded(self, ws: Workspace) -> None:
        """A team change by an admin records the admin as actor; without by=, 'system'."""
        ws.team.add("max", roles={"author"}, by="dee")
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.actor, entry.post_id) == ("member.add", "dee", None)
        assert entry.data["member"] == "max"
        assert entry.data["roles"] == ("author",)
        ws.team.update("max", roles={"author", "analyst"})
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.actor) == ("member.update", "system")
        assert entry.data["roles"] == ("analyst", "author")


class TestChannelsAndCampaigns:
    """ws.channels and ws.campaigns."""

    def test_channels(self, ws: Workspace) -> None:
        """Channels are stored with network, handle and zone, listed by name."""
        channel = ws.channels.get("acme-li")
        assert (channel.network, channel.handle, channel.timezone) == (
            "linkedin", "acme", "Europe/Berlin")
        assert [c.name for c in ws.channels.list()] == ["acme-li", "acme-x"]

    def test_channel_duplicate(self, ws: Workspace) -> None:
        """A channel name can be used only once."""
        with pytest.raises(postflow.ValidationFailed, match="already exists"):
            ws.channels.add("acme-x", network="x")

    def test_channel_bad_zone(self, ws: Workspace) -> None:
        """An unknown time zone is refused with its own code."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.channels.add("acme-fb", network="facebook", timezone="Mars/Olympus")
        assert info.value.problems[0].code == "unknown-timezone"
        with pytest.raises(postflow.NotFound):
            ws.channels.get("acme-fb")

    def test_channel_bad_name(self, ws: Workspace) -> None:
        """A channel name with spaces is refused."""
        with pytest.raises(postflow.ValidationFailed, match="not a valid name"):
            ws.channels.add("acme fb", network="facebook")

    def test_campaigns(self, ws: Workspace) -> None:
        """Campaigns keep goal and hashtags (with a leading #)."""
        ws.campaigns.add("fall", goal="launch", hashtags=["#Fall", "Acme"], by="dee")
        campaign = ws.campaigns.get("fall")
        assert campaign.goal == "launch"
        assert campaign.hashtags == ("#Fall", "#Acme")
        assert ws.campaigns.get("spring").hashtags == ("#AcmeSpring",)
        assert [c.name for c in ws.campaigns.list()] == ["fall", "spring"]

    def test_unknown_campaign(self, ws: Workspace) -> None:
        """Reading an unknown campaign raises NotFound; a post cannot name one."""
        with pytest.raises(postflow.NotFound):
            ws.campaigns.get("winter")
        with pytest.raises(postflow.ValidationFailed) as info:
            draft(ws, campaign="winter")
        assert info.value.problems[0].code == "unknown-campaign"


class TestPosts:
    """ws.posts.create / get / list / count."""

    def test_create(self, ws: Workspace, clock: FixedClock) -> None:
        """A new post is a version-1, revision-1 draft by its author."""
        post = draft(ws, channels=("acme-x", "acme-li"), campaign="spring",
                     planned_for=date(2030, 2, 1))
        assert (post.version, post.revision, post.state) == (1, 1, "draft")
        assert post.author == "ana"
        assert post.channels == ("acme-x", "acme-li")
        assert post.campaign == "spring"
        assert post.planned_for == date(2030, 2, 1)
        assert post.created_at == clock.now()
        assert post.approvals == ()
        assert ws.posts.get(post.id) == post

    def test_snapshot_is_frozen(self, ws: Workspace) -> None:
        """Snapshots cannot be changed in place."""
        post = draft(ws)
        with pytest.raises(AttributeError):
            post.text = "changed"  # type: ignore[misc]

    def test_ids_are_distinct(self, ws: Workspace) -> None:
        """Every post gets its own id."""
        ids = {draft(ws).id for _ in range(5)}
        assert len(ids) == 5

    def test_get_unknown(self, ws: Workspace) -> None:
        """Reading a missing post raises NotFound naming it."""
        with pytest.raises(postflow.NotFound, match="post 999"):
            ws.posts.get(999)

    def test_create_needs_author_role(self, ws: Workspace) -> None:
        """Members without author or admin cannot create posts."""
        with pytest.raises(postflow.PermissionDenied, match="ben") as info:
            draft(ws, author="ben")
        assert info.value.roles_needed == ("admin", "author")
        assert ws.posts.count() == 0

    def test_create_several_problems(self, ws: Workspace) -> None:
        """Every problem with new content is reported at once."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.create(author="ana", text=" ", channels=["nope", "acme-x", "acme-x"])
        codes = {p.code for p in info.value.problems}
        assert codes == {"empty-text", "unknown-channel", "duplicate-channel"}

    def test_create_no_channels(self, ws: Workspace) -> None:
        """A post needs a channel."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.create(author="ana", text="x", channels=[])
        assert info.value.problems[0].code == "no-channels"

    def test_list_filters(self, ws: Workspace, clock: FixedClock) -> None:
        """list() filters by state, channel, campaign, author and time range; count agrees."""
        a = draft(ws, text="a", channels=("acme-x",), campaign="spring")
        b = in_review(ws, author="aaron", text="b", channels=("acme-li",))
        c = approved(ws, text="c", channels=("acme-x", "acme-li"), campaign="spring")
        d = approved(ws, text="d")
        e = approved(ws, text="e", channels=("acme-li",))
        t0 = clock.now()
        d = ws.schedule(d.id, at=t0 + timedelta(days=2), by="cy")
        e = ws.schedule(e.id, at=t0 + timedelta(days=1), by="cy")

        def ids(**kwargs: Any) -> list[int]:
            return [p.id for p in ws.posts.list(**kwargs)]

        assert ids() == [a.id, b.id, c.id, d.id, e.id]
        assert ids(state="draft") == [a.id]
        assert ids(state=["review", "approved"]) == [b.id, c.id]
        assert ids(channel="acme-li") == [b.id, c.id, e.id]
        assert ids(campaign="spring") == [a.id, c.id]
        assert ids(author="aaron") == [b.id]
        assert ids(author="ana", channel="acme-x") == [a.id, c.id, d.id]
        assert ids(between=(t0, t0 + timedelta(days=3))) == [e.id, d.id]
        assert ids(between=(t0 + timedelta(days=1, seconds=1), None)) == [d.id]
        assert ids(between=(None, t0 + timedelta(days=2))) == [e.id]
        assert ids(state="scheduled", channel="acme-li", between=(t0, None)) == [e.id]
        assert ids(limit=2) == [a.id, b.id]
        assert ids(limit=2, offset=3) == [d.id, e.id]
        assert ws.posts.count() == 5
        assert ws.posts.count(state="scheduled") == 2
        assert ws.posts.count(channel="acme-li") == 3
        assert ws.posts.count(author="ana", campaign="spring") == 2
        assert ws.posts.count(between=(t0, t0 + timedelta(days=1, seconds=1))) == 1
        assert ws.posts.count(campaign="nothing") == 0

    def test_list_unknown_state(self, ws: Workspace) -> None:
        """Filtering on a state the workflow does not have is refused."""
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.posts.list(state="pending")
        assert info.value.problems[0].code == "unknown-state"
        assert "pending" in str(info.value)

    def test_list_bad_range(self, ws: Workspace, clock: FixedClock) -> None:
        """A range whose start is after its end is refused."""
        with pytest.raises(postflow.ValidationFailed, match="start is after end"):
            ws.posts.list(between=(clock.now(), clock.now() - timedelta(days=1)))


TRIGGERS = [
    # (setup state, method, by, extra kwargs, expected state)
    pytest.param("draft", "submit", "ana", {}, "review", id="submit"),
    pytest.param("review", "approve", "ben", {"comment": "ok"}, "approved", id="approve"),
    pytest.param("review", "request_changes", "ben", {"comment": "shorter"}, "draft",
                 id="request_changes"),
    pytest.param("review", "withdraw", "ana", {}, "draft", id="withdraw"),
    pytest.param("approved", "schedule", "cy", {"at": "+1d"}, "scheduled", id="schedule"),
    pytest.param("scheduled", "unschedule", "cy", {}, "approved", id="unschedule"),
    pytest.param("scheduled", "publish", "cy", {}, "published", id="publish-scheduled"),
    pytest.param("approved", "publish", "cy", {}, "published", id="publish-now"),
    pytest.param("published", "archive", "cy", {"comment": "old"}, "archived",
                 id="archive"),
    pytest.param("archived", "restore", "dee", {}, "draft", id="restore"),
    pytest.param("scheduled", "fail", "cy", {}, "failed", id="fail"),
    pytest.param("failed", "retry", "cy", {}, "scheduled", id="retry"),
]


class TestTriggers:
    """Every trigger method and fire(), with the resulting state and audit entry."""

    @pytest.mark.parametrize(("setup", "method", "by", "kwargs", "dest"), TRIGGERS)
    @pytest.mark.parametrize("via", ["method", "fire"])
    def test_trigger(self, ws: Workspace, clock: FixedClock, setup: str, method: str,
                     by: str, kwargs: dict[str, Any], dest: str, via: str) -> None:
        """The trigger moves the post and appends one entry describing the move."""
        post = SETUPS[setup](ws, clock)
        kwargs = dict(kwargs)
        if kwargs.get("at") == "+1d":
            kwargs["at"] = clock.now() + timedelta(days=1)
        clock.advance(minutes=5)
        before = len(ws.history(post.id))
        if via == "fire" or not hasattr(ws, method):
            result = ws.fire(post.id, method, by=by, **kwargs)
        else:  # ws.publish publishes now; ws.mark_published fires the trigger
            name = "mark_published" if method == "publish" else method
            result = getattr(ws, name)(post.id, by=by, **kwargs)
        assert result.state == dest
        assert result.version == post.version + 1
        assert result.updated_at == clock.now()
        assert result.state_changed_at == clock.now()
        assert ws.posts.get(post.id) == result
        history = ws.history(post.id)
        assert len(history) == before + 1
        entry = history[-1]
        assert entry.action == method
        assert entry.actor == by
        assert (entry.from_state, entry.to_state) == (setup, dest)
        assert entry.revision == post.revision
        assert entry.comment == kwargs.get("comment")
        assert entry.correlation_id
        assert entry.at == clock.now()
        assert entry.post_id == post.id
        assert ws.audit_log()[-1] == entry

    def test_fire_extra_data(self, ws: Workspace) -> None:
        """Extra keyword arguments to fire() are stored as the entry's data."""
        post = draft(ws)
        ws.fire(post.id, "submit", by="ana", ticket="SOC-12", urgent=True)
        entry = ws.history(post.id)[-1]
        assert entry.data["ticket"] == "SOC-12"
        assert entry.data["urgent"] is True

    def test_schedule_and_unschedule(self, ws: Workspace, clock: FixedClock) -> None:
        """schedule sets the time; unschedule clears it."""
        post = approved(ws)
        at = clock.now() + timedelta(hours=3)
        post = ws.schedule(post.id, at=at, by="cy")
        assert post.scheduled_at == at
        post = ws.unschedule(post.id, by="cy")
        assert post.scheduled_at is None
        assert post.scheduled_zone is None

    def test_request_changes_voids_approvals(self, legal_ws: Workspace) -> None:
        """Sending a post back to draft voids its partial approvals."""
        post = in_review(legal_ws)
        post = legal_ws.approve(post.id, by="ben")
        assert len(post.approvals) == 1
        post = legal_ws.request_changes(post.id, by="bea", comment="no")
        assert (post.state, post.approvals) == ("draft", ())
        assert legal_ws.history(post.id)[-1].data["approvals_voided"] is True

    def test_restore_voids_approvals(self, ws: Workspace) -> None:
        """Restoring an archived approved post brings it back without approvals."""
        post = approved(ws)
        post = ws.archive(post.id, by="cy")
        assert len(post.approvals) == 1
        post = ws.restore(post.id, by="cy")
        assert (post.state, post.approvals) == ("draft", ())

    def test_admin_may_submit_for_author(self, ws: Workspace) -> None:
        """An admin may fire author-only triggers on someone else's post."""
        post = draft(ws)
        assert ws.submit(post.id, by="dee").state == "review"
        assert ws.withdraw(post.id, by="dee").state == "draft"

    def test_other_author_may_not_submit(self, ws: Workspace) -> None:
        """Another author may not submit or withdraw a post that is not theirs."""
        post = draft(ws)
        with pytest.raises(postflow.PermissionDenied, match="only its author") as info:
            ws.submit(post.id, by="aaron")
        assert "aaron" in str(info.value)
        post = ws.submit(post.id, by="ana")
        with pytest.raises(postflow.PermissionDenied, match="only its author"):
            ws.withdraw(post.id, by="aaron")

    def test_expected_version(self, ws: Workspace) -> None:
        """A write with the current version succeeds; a stale one raises ConflictError."""
        post = draft(ws)
        moved = ws.submit(post.id, by="ana", expected_version=post.version)
        with pytest.raises(postflow.ConflictError, match=f"post {post.id}") as info:
            ws.withdraw(post.id, by="ana", expected_version=post.version)
        assert (info.value.expected, info.value.actual) == (post.version, moved.version)
        assert ws.posts.get(post.id) == moved

    def test_unknown_post(self, ws: Workspace) -> None:
        """Firing on a missing post raises NotFound."""
        with pytest.raises(postflow.NotFound, match="post 42"):
            ws.submit(42, by="ana")

    def test_fire_edit_refused(self, ws: Workspace) -> None:
        """'edit' cannot be fired as a trigger."""
        post = draft(ws)
        with pytest.raises(postflow.InvalidTransition, match=r"ws\.edit\(\)"):
            ws.fire(post.id, "edit", by="ana")


class TestAllowed:
    """ws.allowed per member."""

    def test_author_in_draft(self, ws: Workspace) -> None:
        """The author sees submit and edit on their draft."""
        post = draft(ws)
        assert ws.allowed(post.id, by="ana") == ("submit", "edit")

    def test_other_author_in_draft(self, ws: Workspace) -> None:
        """Another author may do nothing with someone else's draft."""
        post = draft(ws)
        assert ws.allowed(post.id, by="aaron") == ()

    def test_approver_in_review(self, ws: Workspace) -> None:
        """An approver sees approve and request_changes in review."""
        post = in_review(ws)
        assert ws.allowed(post.id, by="ben") == ("approve", "request_changes")

    def test_approver_own_post(self, multi: Workspace) -> None:
        """An approver may not approve their own post (four-eyes)."""
        post = in_review(multi, author="max")
        allowed = multi.allowed(post.id, by="max")
        assert "approve" not in allowed
        assert "request_changes" in allowed
        assert "withdraw" in allowed
        assert "edit" in allowed

    def test_publisher_when_approved(self, ws: Workspace) -> None:
        """A publisher may schedule, publish or archive an approved post."""
        post = approved(ws)
        assert set(ws.allowed(post.id, by="cy")) == {"schedule", "publish", "archive"}

    def test_admin_in_review(self, ws: Workspace) -> None:
        """An admin may send back, withdraw, archive and edit a post in review."""
        post = in_review(ws)
        assert {"request_changes", "withdraw", "archive", "edit"} <= set(
            ws.allowed(post.id, by="dee"))

    def test_analyst_nothing(self, ws: Workspace, clock: FixedClock) -> None:
        """An analyst fires nothing in any state."""
        for make in SETUPS.values():
            post = make(ws, clock)
            assert ws.allowed(post.id, by="al") == ()

    def test_published_no_edit(self, ws: Workspace, clock: FixedClock) -> None:
        """Published posts are not editable, so edit is never allowed."""
        post = published(ws, clock)
        assert ws.allowed(post.id, by="ana") == ()
        assert ws.allowed(post.id, by="dee") == ("archive",)

    def test_already_approved_not_allowed(self, legal_ws: Workspace) -> None:
        """A member who approved this revision is not offered approve again."""
        post = in_review(legal_ws)
        legal_ws.approve(post.id, by="ben")
        legal_ws.approve(post.id, by="lou")
        assert "approve" not in legal_ws.allowed(post.id, by="lou")
        assert "approve" in legal_ws.allowed(post.id, by="liz")

    def test_unknown_member(self, ws: Workspace) -> None:
        """Asking for an unknown member raises PermissionDenied."""
        post = draft(ws)
        with pytest.raises(postflow.PermissionDenied, match="zed"):
            ws.allowed(post.id, by="zed")

    def test_allowed_matches_firing(self, ws: Workspace, clock: FixedClock) -> None:
        """Every trigger allowed() offers can actually be fired by that member."""
        for state, make in SETUPS.items():
            for member in ("ana", "ben", "cy", "dee"):
                post = make(ws, clock)
                for trigger in ws.allowed(post.id, by=member):
                    if trigger == "edit":
                        continue
                    kwargs: dict[str, Any] = {"comment": "because"}
                    if trigger in {"schedule", "retry"}:
                        kwargs["at"] = clock.now() + timedelta(days=2)
                    fresh = make(ws, clock)
                    moved = ws.fire(fresh.id, trigger, by=member, **kwargs)
                    assert moved.version == fresh.version + 1, (state, member, trigger)


class TestApprovalStages:
    """Ordered stages, quorum, due times and the four-eyes rule."""

    def test_legal_cannot_jump_ahead(self, legal_ws: Workspace) -> None:
        """A legal-stage member cannot approve before editorial is complete."""
        post = in_review(legal_ws)
        with pytest.raises(postflow.PermissionDenied, match="stage 'editorial'") as info:
            legal_ws.approve(post.id, by="lou")
        assert "lou" in str(info.value)
        assert legal_ws.posts.get(post.id) == post

    def test_partial_approval_stays_in_review(self, legal_ws: Workspace) -> None:
        """Approvals short of every quorum keep the post in review, recorded."""
        post = in_review(legal_ws)
        post = legal_ws.approve(post.id, by="ben", comment="copy ok")
        assert post.state == "review"
        assert [(a.member, a.stage, a.revision, a.comment) for a in post.approvals] == [
            ("ben", "editorial", 1, "copy ok")]
        entry = legal_ws.history(post.id)[-1]
        assert (entry.action, entry.from_state, entry.to_state) == (
            "approve", "review", "review")
        assert entry.data["stage"] == "editorial"
        post = legal_ws.approve(post.id, by="lou")
        assert post.state == "review"
        post = legal_ws.approve(post.id, by="liz")
        assert post.state == "approved"
        assert [a.stage for a in post.approvals] == ["editorial", "legal", "legal"]

    def test_editorial_once_complete(self, legal_ws: Workspace) -> None:
        """Once editorial is satisfied, another approver cannot approve at legal."""
        post = in_review(legal_ws)
        legal_ws.approve(post.id, by="ben")
        with pytest.raises(postflow.PermissionDenied, match="stage 'legal'"):
            legal_ws.approve(post.id, by="bea")

    def test_quorum_m_of_n(self, make_team_ws: Callable[..., Workspace]) -> None:
        """A 2-of-3 named stage moves on at the second approval."""
        ws = make_team_ws(workflow_with(stages=[
            {"name": "board", "members": ["ben", "bea", "cy"], "quorum": 2}]))
        post = in_review(ws)
        assert ws.approve(post.id, by="cy").state == "review"
        assert ws.approve(post.id, by="bea").state == "approved"
        stages = ws.stages(post.id)
        assert stages[0].approved_by == ("cy", "bea")
        assert stages[0].satisfied

    def test_quorum_all_named(self, make_team_ws: Callable[..., Workspace]) -> None:
        """A quorum 'all' stage needs every named member."""
        ws = make_team_ws(workflow_with(stages=[
            {"name": "board", "members": ["ben", "bea", "cy"], "quorum": "all"}]))
        post = in_review(ws)
        ws.approve(post.id, by="ben")
        assert ws.approve(post.id, by="bea").state == "review"
        assert ws.approve(post.id, by="cy").state == "approved"

    def test_not_named_member(self, make_team_ws: Callable[..., Workspace]) -> None:
        """An approver not named by a members-only stage may not approve."""
        ws = make_team_ws(workflow_with(stages=[
            {"name": "board", "members": ["bea"], "quorum": "all"}]))
        post = in_review(ws)
        with pytest.raises(postflow.PermissionDenied, match="member bea"):
            ws.approve(post.id, by="ben")

    def test_approve_twice(self, legal_ws: Workspace) -> None:
        """The same member cannot approve the same revision twice."""
        post = in_review(legal_ws)
        legal_ws.approve(post.id, by="ben")
        legal_ws.approve(post.id, by="lou")
        with pytest.raises(postflow.ValidationFailed, match="already approved") as info:
            legal_ws.approve(post.id, by="lou")
        assert info.value.problems[0].code == "already-approved"

    def test_due_and_overdue(self, legal_ws: Workspace, clock: FixedClock) -> None:
        """Stage due times run from reaching the stage (the first: entering review; a
        later one: the approval completing the one before); overdue flips when the clock
        passes."""
        post = in_review(legal_ws)
        entered = post.state_changed_at
        stages = legal_ws.stages(post.id)
        assert [s.due_at for s in stages] == [entered + timedelta(hours=24), None]
        assert not any(s.overdue for s in stages)
        clock.advance(hours=23)
        legal_ws.approve(post.id, by="ben")
        reached = clock.now()
        clock.advance(hours=2)
        editorial, legal = legal_ws.stages(post.id)
        assert editorial.satisfied
        assert not editorial.overdue
        assert legal.due_at == reached + timedelta(hours=48)
        assert not legal.overdue
        clock.advance(hours=24)
        assert not legal_ws.stages(post.id)[1].overdue  # 26 h into its 48
        clock.advance(hours=23)
        editorial, legal = legal_ws.stages(post.id)
        assert legal.overdue
        assert legal.needed == 2
        assert legal.eligible_roles == {"legal"}

    def test_edit_in_review_restarts_due_times(
        self, make_team_ws: Callable[..., Workspace], clock: FixedClock
    ) -> None:
        """An edit that keeps the post in review restarts its stages' due times."""
        ws = make_team_ws(workflow_with(edit_returns_to="review", **TWO_STAGES))
        post = in_review(ws)
        clock.advance(hours=20)
        ws.approve(post.id, by="ben")
        edited = ws.edit(post.id, by="ana", text="Second take")
        assert edited.state == "review"
        assert edited.state_changed_at == clock.now()
        editorial, _ = ws.stages(post.id)
        assert editorial.due_at == clock.now() + timedelta(hours=24)
        assert editorial.approved_by == ()
        assert postflow.replay(ws.history(post.id)) == ws.posts.get(post.id)

    def test_overdue_unapproved(self, legal_ws: Workspace, clock: FixedClock) -> None:
        """A stage nobody approved in time is overdue."""
        post = in_review(legal_ws)
        clock.advance(hours=25)
        editorial, legal = legal_ws.stages(post.id)
        assert editorial.overdue
        assert not legal.overdue

    def test_no_due_outside_review(self, legal_ws: Workspace, clock: FixedClock) -> None:
        """A draft has no due times."""
        post = draft(legal_ws)
        clock.advance(days=10)
        assert all(s.due_at is None and not s.overdue for s in legal_ws.stages(post.id))

    def test_four_eyes(self, multi: Workspace) -> None:
        """An author who is also an approver may not approve their own post."""
        post = in_review(multi, author="max")
        with pytest.raises(postflow.PermissionDenied, match="four-eyes") as info:
            multi.approve(post.id, by="max")
        assert "max" in str(info.value)
        assert multi.posts.get(post.id) == post

    def test_four_eyes_off(self, make_team_ws: Callable[..., Workspace]) -> None:
        """With four_eyes=false an author who is also an approver approves their own post."""
        ws = make_team_ws(workflow_with(four_eyes=False))
        ws.team.add("max", roles={"author", "approver"})
        post = in_review(ws, author="max")
        assert "approve" in ws.allowed(post.id, by="max")
        post = ws.approve(post.id, by="max")
        assert post.state == "approved"
        assert post.approvals[0].member == "max"


class TestEditing:
    """ws.edit: revisions, voided approvals, where the post goes."""

    def test_edit_in_draft(self, ws: Workspace) -> None:
        """Editing a draft creates revision 2 and stays in draft."""
        post = draft(ws)
        edited = ws.edit(post.id, by="ana", text="Hello there")
        assert (edited.state, edited.revision, edited.text) == ("draft", 2, "Hello there")
        assert edited.version == post.version + 1
        entry = ws.history(post.id)[-1]
        assert (entry.action, entry.from_state, entry.to_state, entry.revision) == (
            "edit", "draft", "draft", 2)
        assert entry.data["text"] == "Hello there"

    def test_edit_after_approval_back_to_draft(self, ws: Workspace) -> None:
        """Editing an approved post voids approvals and returns it to draft."""
        post = approved(ws)
        assert len(post.approvals) == 1
        edited = ws.edit(post.id, by="ana", text="v2")
        assert (edited.state, edited.revision, edited.approvals) == ("draft", 2, ())
        assert ws.history(post.id)[-1].data["approvals_voided"] is True
        revisions = ws.revisions(post.id)
        assert [(r.number, r.text) for r in revisions] == [(1, "Hello world"), (2, "v2")]
        assert revisions[1].author == "ana"

    def test_edit_returns_to_review(self, make_team_ws: Callable[..., Workspace]) -> None:
        """With edit_returns_to='review', an edited approved post goes back to review."""
        ws = make_team_ws(workflow_with(edit_returns_to="review"))
        post = approved(ws)
        edited = ws.edit(post.id, by="ana", channels=["acme-x", "acme-li"])
        assert (edited.state, edited.revision, edited.approvals) == ("review", 2, ())
        assert edited.channels == ("acme-x", "acme-li")
        again = ws.approve(post.id, by="ben")
        assert again.state == "approved"
        assert [(a.member, a.revision) for a in again.approvals] == [("ben", 2)]

    def test_edit_in_review_with_partial_approval(self, legal_ws: Workspace) -> None:
        """Editing in review voids approvals of revision 1; approvers approve again."""
        post = in_review(legal_ws)
        legal_ws.approve(post.id, by="ben")
        edited = legal_ws.edit(post.id, by="ana", text="v2")
        assert (edited.state, edited.approvals) == ("draft", ())
        legal_ws.submit(post.id, by="ana")
        again = legal_ws.approve(post.id, by="ben")
        assert [(a.member, a.revision) for a in again.approvals] == [("ben", 2)]

    def test_edit_scheduled_clears_time(self, ws: Workspace, clock: FixedClock) -> None:
        """Editing a scheduled post takes it off the schedule."""
        post = scheduled(ws, clock)
        edited = ws.edit(post.id, by="ana", text="late change")
        assert edited.state == "draft"
        assert edited.scheduled_at is None
        assert edited.scheduled_zone is None

    def test_edit_campaign(self, ws: Workspace) -> None:
        """The campaign can be set and cleared by editing."""
        post = draft(ws)
        assert ws.edit(post.id, by="ana", campaign="spring").campaign == "spring"
        assert ws.edit(post.id, by="ana", campaign=None).campaign is None
        assert [r.campaign for r in ws.revisions(post.id)] == [None, "spring", None]

    def test_edit_nothing_changed(self, ws: Workspace) -> None:
        """Editing with nothing changed returns the same version and writes nothing."""
        post = approved(ws)
        before = len(ws.audit_log())
        same = ws.edit(post.id, by="ana", text=post.text, channels=list(post.channels))
        assert same == post
        assert ws.posts.get(post.id) == post
        assert len(ws.audit_log()) == before
        assert len(ws.revisions(post.id)) == 1

    @pytest.mark.parametrize("state", ["published", "archived"])
    def test_edit_final_states(self, ws: Workspace, clock: FixedClock, state: str) -> None:
        """Published and archived posts cannot be edited."""
        post = SETUPS[state](ws, clock)
        with pytest.raises(postflow.InvalidTransition, match="cannot be edited") as info:
            ws.edit(post.id, by="ana", text="too late")
        assert info.value.state == state
        assert ws.posts.get(post.id) == post

    def test_edit_by_other_author(self, ws: Workspace) -> None:
        """Only the post's author (or an admin) may edit it."""
        post = draft(ws)
        with pytest.raises(postflow.PermissionDenied, match="only its author"):
            ws.edit(post.id, by="aaron", text="mine now")
        assert ws.edit(post.id, by="dee", text="admin fix").revision == 2

    def test_edit_validates(self, ws: Workspace) -> None:
        """Edited content is validated like new content."""
        post = draft(ws)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.edit(post.id, by="ana", channels=["acme-tiktok"])
        assert info.value.problems[0].code == "unknown-channel"
        assert ws.posts.get(post.id) == post


class TestPlanAndComment:
    """ws.plan and ws.comment."""

    def test_plan(self, ws: Workspace) -> None:
        """plan() sets planned_for without a new revision, and can clear it."""
        post = draft(ws)
        planned = ws.plan(post.id, on=date(2030, 3, 1), by="cy")
        assert planned.planned_for == date(2030, 3, 1)
        assert (planned.version, planned.revision, planned.state) == (2, 1, "draft")
        entry = ws.history(post.id)[-1]
        assert (entry.action, entry.actor) == ("plan", "cy")
        assert entry.data["planned_for"] == "2030-03-01"
        assert ws.plan(post.id, on=None, by="ana").planned_for is None

    def test_plan_needs_a_date(self, ws: Workspace) -> None:
        """A datetime is not a planned day."""
        post = draft(ws)
        with pytest.raises(postflow.ValidationFailed) as info:
            ws.plan(post.id, on=datetime(2030, 3, 1, tzinfo=UTC), by="ana")
        assert info.value.problems[0].code == "not-a-date"

    def test_comment(self, ws: Workspace) -> None:
        """comment() adds an entry without changing the post."""
        post = in_review(ws)
        entry = ws.comment(post.id, by="al", text="numbers look good")
        assert (entry.action, entry.actor, entry.comment) == (
            "comment", "al", "numbers look good")
        assert entry.from_state == entry.to_state == "review"
        assert ws.posts.get(post.id) == post
        assert ws.history(post.id)[-1].comment == "numbers look good"

    def test_empty_comment(self, ws: Workspace) -> None:
        """An empty comment is refused."""
        post = draft(ws)
        with pytest.raises(postflow.ValidationFailed, match="comment is empty"):
            ws.comment(post.id, by="ben", text="  ")


DENIALS = [
    # (setup state, action, member, roles that would allow it)
    pytest.param("draft", "submit", "ben", ("admin", "author"), id="submit"),
    pytest.param("review", "approve", "aaron", ("approver",), id="approve"),
    pytest.param("review", "request_changes", "ana", ("admin", "approver"),
                 id="request_changes"),
    pytest.param("review", "withdraw", "ben", ("admin", "author"), id="withdraw"),
    pytest.param("approved", "schedule", "ana", ("admin", "publisher"), id="schedule"),
    pytest.param("scheduled", "unschedule", "ben", ("admin", "publisher"),
                 id="unschedule"),
    pytest.param("approved", "publish", "ana", ("admin", "publisher"), id="publish"),
    pytest.param("scheduled", "fail", "al", ("admin", "publisher"), id="fail"),
    pytest.param("failed", "retry", "ana", ("admin", "publisher"), id="retry"),
    pytest.param("draft", "archive", "ana", ("admin", "publisher"), id="archive"),
    pytest.param("archived", "restore", "ben", ("admin", "publisher"), id="restore"),
    pytest.param("draft", "edit", "ben", ("admin", "author"), id="edit"),
    pytest.param("draft", "plan", "ben", ("admin", "author", "publisher"), id="plan"),
]


def attempt(ws: Workspace, clock: FixedClock, post_id: int, action: str, member: str
            ) -> Post:
    """Do ``action`` (a trigger, ``edit`` or ``plan``) on a post as ``member``."""
    if action == "edit":
        return ws.edit(post_id, by=member, text="changed")
    if action == "plan":
        return ws.plan(post_id, on=date(2030, 5, 1), by=member)
    kwargs: dict[str, Any] = {"comment": "x"}
    if action == "schedule":
        kwargs["at"] = clock.now() + timedelta(days=1)
    return ws.fire(post_id, action, by=member, **kwargs)


class TestRolePolicy:
    """The default role policy is enforced with informative PermissionDenied errors."""

    def test_action_roles_table(self) -> None:
        """ACTION_ROLES documents who may create, edit, plan, comment and manage."""
        assert postflow.ACTION_ROLES["create"] == {"author", "admin"}
        assert postflow.ACTION_ROLES["manage"] == {"admin"}
        assert "analyst" in postflow.ACTION_ROLES["comment"]

    @pytest.mark.parametrize(("setup", "action", "member", "roles"), DENIALS)
    def test_denied(self, ws: Workspace, clock: FixedClock, setup: str, action: str,
                    member: str, roles: tuple[str, ...]) -> None:
        """A member lacking the role is refused, and the message says who, what and why."""
        post = SETUPS[setup](ws, clock)
        before = len(ws.audit_log())
        with pytest.raises(postflow.PermissionDenied) as info:
            attempt(ws, clock, post.id, action, member)
        message = str(info.value)
        assert member in message
        assert action in message
        for role in roles:
            assert role in message
        assert info.value.member == member
        assert info.value.action == action
        assert info.value.roles_needed == roles
        assert ws.posts.get(post.id) == post
        assert len(ws.audit_log()) == before

    @pytest.mark.parametrize("call", [
        pytest.param(lambda ws, pid: ws.submit(pid, by="zed"), id="trigger"),
        pytest.param(lambda ws, pid: ws.edit(pid, by="zed", text="x"), id="edit"),
        pytest.param(lambda ws, pid: ws.comment(pid, by="zed", text="x"), id="comment"),
        pytest.param(lambda ws, pid: ws.plan(pid, on=None, by="zed"), id="plan"),
        pytest.param(lambda ws, pid: ws.posts.create(author="zed", text="x",
                                                     channels=["acme-x"]), id="create"),
    ])
    def test_unknown_member(self, ws: Workspace, call: Callable[[Workspace, int], Any]
                            ) -> None:
        """An unknown name is refused with PermissionDenied naming it."""
        post = draft(ws)
        before = len(ws.audit_log())
        with pytest.raises(postflow.PermissionDenied, match="'zed' is not a member"):
            call(ws, post.id)
        assert len(ws.audit_log()) == before
        assert ws.posts.get(post.id) == post


class TestAudit:
    """Every change appends an entry; replaying a post's trail rebuilds it."""

    def test_every_change_appends(self, ws: Workspace, clock: FixedClock) -> None:
        """Each kind of change appends exactly one entry with its action and actor."""
        log = ws.audit_log()
        assert [e.action for e in log] == ["workflow.store"] + ["member.add"] * 7 + [
            "channel.add"] * 2 + ["campaign.add"]

        def expect(action: str, actor: str, call: Callable[[], Any]) -> None:
            before = ws.audit_log()
            call()
            after = ws.audit_log()
            assert after[:-1] == before
            assert (after[-1].action, after[-1].actor) == (action, actor)
            assert after[-1].correlation_id
            assert after[-1].id > before[-1].id

        expect("member.add", "dee", lambda: ws.team.add("max", roles={"author"}, by="dee"))
        expect("member.update", "dee",
               lambda: ws.team.update("max", roles={"admin"}, by="dee"))
        expect("channel.add", "max",
               lambda: ws.channels.add("acme-fb", network="facebook", by="max"))
        expect("campaign.add", "max", lambda: ws.campaigns.add("fall", by="max"))
        box: list[Post] = []
        expect("create", "ana", lambda: box.append(draft(ws)))
        pid = box[0].id
        expect("edit", "ana", lambda: ws.edit(pid, by="ana", text="v2"))
        expect("plan", "ana", lambda: ws.plan(pid, on=date(2030, 1, 9), by="ana"))
        expect("comment", "ben", lambda: ws.comment(pid, by="ben", text="hm"))
        expect("submit", "ana", lambda: ws.submit(pid, by="ana"))
        expect("request_changes", "ben",
               lambda: ws.request_changes(pid, by="ben", comment="fix"))
        expect("submit", "ana", lambda: ws.submit(pid, by="ana"))
        expect("withdraw", "ana", lambda: ws.withdraw(pid, by="ana"))
        expect("submit", "ana", lambda: ws.submit(pid, by="ana"))
        expect("approve", "ben", lambda: ws.approve(pid, by="ben"))
        expect("schedule", "cy",
               lambda: ws.schedule(pid, at=clock.now() + timedelta(days=1), by="cy"))
        expect("unschedule", "cy", lambda: ws.unschedule(pid, by="cy"))
        expect("publish", "cy", lambda: ws.mark_published(pid, by="cy"))
        expect("archive", "cy", lambda: ws.archive(pid, by="cy"))
        expect("restore", "dee", lambda: ws.restore(pid, by="dee"))
        expect("member.update", "system", lambda: ws.team.remove("max"))

    def test_history_oldest_first(self, ws: Workspace) -> None:
        """history() lists only the post's entries, oldest first."""
        a = draft(ws)
        b = draft(ws, text="other")
        ws.submit(a.id, by="ana")
        ws.submit(b.id, by="ana")
        history = ws.history(a.id)
        assert [e.action for e in history] == ["create", "submit"]
        assert all(e.post_id == a.id for e in history)
        assert [e.id for e in history] == sorted(e.id for e in history)

    def test_audit_log_after_id(self, ws: Workspace) -> None:
        """audit_log(after_id=, limit=) pages through the log."""
        log = ws.audit_log()
        assert ws.audit_log(after_id=log[2].id) == log[3:]
        assert ws.audit_log(after_id=log[2].id, limit=2) == log[3:5]

    def test_correlation_ids_differ(self, ws: Workspace) -> None:
        """Separate calls get separate correlation ids."""
        post = draft(ws)
        ws.submit(post.id, by="ana")
        ids = [e.correlation_id for e in ws.history(post.id)]
        assert len(set(ids)) == 2

    def test_entries_are_utc(self, ws: Workspace) -> None:
        """Entry times are aware UTC datetimes."""
        post = draft(ws)
        entry = ws.history(post.id)[0]
        assert entry.at.utcoffset() == timedelta(0)

    def test_replay_needs_create(self, ws: Workspace) -> None:
        """Replaying entries that do not start with 'create' is an error."""
        post = draft(ws)
        ws.submit(post.id, by="ana")
        with pytest.raises(postflow.PostflowError, match="create"):
            postflow.replay(ws.history(post.id)[1:])
        with pytest.raises(postflow.PostflowError, match="no audit entries"):
            postflow.replay([])

    def test_replay_many_paths(self, legal_ws: Workspace, clock: FixedClock) -> None:
        """For posts driven along many paths, replaying the trail equals the stored post."""
        ws = legal_ws

        def tick() -> None:
            clock.advance(minutes=7)

        def changes_and_edit(pid: int) -> None:
            ws.submit(pid, by="ana")
            tick()
            ws.approve(pid, by="ben", comment="copy fine")
            tick()
            ws.request_changes(pid, by="bea", comment="tone")
            tick()
            ws.edit(pid, by="ana", text="toned down", campaign="spring")
            tick()
            ws.comment(pid, by="al", text="watch it")
            ws.submit(pid, by="ana")

        def two_stages_and_schedule(pid: int) -> None:
            ws.plan(pid, on=date(2030, 2, 14), by="ana")
            ws.submit(pid, by="ana")
            tick()
            ws.approve(pid, by="ben")
            ws.approve(pid, by="lou")
            tick()
            ws.approve(pid, by="liz")
            ws.schedule(pid, at=datetime(2030, 2, 14, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")),
                        by="cy")
            tick()
            ws.unschedule(pid, by="cy")
            ws.schedule(pid, at=clock.now() + timedelta(hours=5), by="dee")

        def archive_restore(pid: int) -> None:
            ws.submit(pid, by="ana")
            ws.approve(pid, by="ben")
            ws.approve(pid, by="lou")
            ws.approve(pid, by="lee")
            ws.schedule(pid, at=clock.now() + timedelta(days=3), by="cy")
            tick()
            ws.archive(pid, by="cy", comment="pulled")
            ws.restore(pid, by="cy")
            ws.edit(pid, by="ana", channels=["acme-li"])
            ws.plan(pid, on=None, by="cy")

        def edit_after_schedule(pid: int) -> None:
            ws.submit(pid, by="ana")
            ws.approve(pid, by="bea")
            ws.approve(pid, by="liz")
            ws.approve(pid, by="lee")
            ws.schedule(pid, at=clock.now() + timedelta(days=1), by="cy")
            tick()
            ws.edit(pid, by="ana", text="fixed typo")
            ws.submit(pid, by="ana")
            ws.withdraw(pid, by="ana")

        def published_then_archived(pid: int) -> None:
            ws.submit(pid, by="ana")
            ws.approve(pid, by="ben")
            ws.approve(pid, by="lou")
            ws.approve(pid, by="liz")
            ws.fire(pid, "publish", by="cy", url="https://x.com/acme/1")
            tick()
            ws.archive(pid, by="dee")

        def failed_and_retried(pid: int) -> None:
            ws.submit(pid, by="ana")
            ws.approve(pid, by="ben")
            ws.approve(pid, by="lou")
            ws.approve(pid, by="liz")
            ws.schedule(pid, at=clock.now() + timedelta(minutes=30), by="cy")
            ws.fire(pid, "fail", by="cy", reason="timeout")
            ws.fire(pid, "retry", by="cy")

        paths: list[Callable[[int], None]] = [
            changes_and_edit, two_stages_and_schedule, archive_restore,
            edit_after_schedule, published_then_archived, failed_and_retried]
        ids = []
        for i, path in enumerate(paths):
            post = draft(ws, text=f"post {i}", channels=("acme-x", "acme-li"),
                         planned_for=date(2030, 1, 20) if i % 2 else None)
            path(post.id)
            ids.append(post.id)
        for pid in ids:
            stored = ws.posts.get(pid)
            assert postflow.replay(ws.history(pid)) == stored, stored
        states = {ws.posts.get(pid).state for pid in ids}
        assert states == {"review", "scheduled", "draft", "archived"}


class TestReviewFindings:
    """Behaviour pinned after the independent review (each test failed before its fix)."""

    def test_unschedule_keeps_the_approvals(self, ws: Workspace, clock: FixedClock) -> None:
        """Taking a post off the schedule clears its time but not who approved it."""
        post = scheduled(ws, clock)
        back = ws.unschedule(post.id, by="cy")
        assert back.state == "approved"
        assert back.scheduled_at is None
        assert [a.member for a in back.approvals] == ["ben"]
        assert "approvals_voided" not in ws.history(post.id)[-1].data
        assert postflow.replay(ws.history(post.id)) == back

    def test_reserved_data_keys_are_refused(self, ws: Workspace) -> None:
        """Extra data may not forge the keys the audit trail is replayed from."""
        post = draft(ws)
        with pytest.raises(postflow.ValidationFailed, match="text") as info:
            ws.fire(post.id, "submit", by="ana", text="forged", ticket="T-1")
        assert info.value.problems[0].code == "reserved-data-key"
        assert ws.posts.get(post.id).state == "draft"
        assert len(ws.history(post.id)) == 1
        fired = ws.fire(post.id, "submit", by="ana", ticket="T-1")
        assert ws.history(post.id)[-1].data == {"ticket": "T-1"}
        assert postflow.replay(ws.history(post.id)) == fired

    def test_writer_of_the_current_revision_cannot_approve(self, ws: Workspace) -> None:
        """Four-eyes covers whoever wrote the current revision, not only the author."""
        ws.team.add("max", roles={"approver", "admin"})
        post = draft(ws)
        ws.edit(post.id, by="max", text="Max's words")
        ws.submit(post.id, by="ana")
        with pytest.raises(postflow.PermissionDenied, match="current revision"):
            ws.approve(post.id, by="max")
        assert "approve" not in ws.allowed(post.id, by="max")
        assert ws.approve(post.id, by="ben").state == "approved"
        assert ws.posts.get(post.id).revised_by == "max"

    def test_entering_review_again_starts_a_new_approval_round(
        self, make_team_ws: Callable[..., Workspace]
    ) -> None:
        """A custom trigger back into review voids the old approvals, so approve works."""
        definition = copy.deepcopy(dict(DEFAULT_WORKFLOW))
        definition["transitions"] = [*definition["transitions"], {
            "trigger": "reopen", "source": "approved", "dest": "review",
            "roles": ["approver"]}]
        ws = make_team_ws(postflow.Workflow.from_dict(definition))
        post = approved(ws)
        reopened = ws.fire(post.id, "reopen", by="bea")
        assert reopened.approvals == ()
        assert "approve" in ws.allowed(post.id, by="bea")
        assert ws.approve(post.id, by="bea").state == "approved"
        assert postflow.replay(ws.history(post.id)) == ws.posts.get(post.id)

    def test_unknown_member_message_says_what_was_attempted(self, ws: Workspace) -> None:
        """PermissionDenied for a stranger names who and what."""
        post = in_review(ws)
        with pytest.raises(postflow.PermissionDenied, match=r"'zed'.*approve post") as info:
            ws.approve(post.id, by="zed")
        assert info.value.action == "approve"
        ws.team.remove("bea")
        with pytest.raises(postflow.PermissionDenied, match="no longer an active member"):
            ws.approve(post.id, by="bea")

    @pytest.mark.parametrize(("call", "field"), [
        (lambda ws: ws.team.add("eve", roles=None), "roles"),
        (lambda ws: ws.team.add("eve", roles=[1]), "roles"),
        (lambda ws: ws.campaigns.add("c2", hashtags=[1]), "hashtags"),
        (lambda ws: ws.posts.create(author="ana", text="x", channels=None), "channels"),
        (lambda ws: ws.posts.create(author="ana", text="x", channels=["acme-x"],
                                    campaign=5), "campaign"),
        (lambda ws: ws.posts.list(limit="10"), "limit"),
        (lambda ws: ws.channels.add("c3", network="x", timezone=7), "timezone"),
        (lambda ws: ws.team.add("eve", roles={"author"}, email=3), "email"),
    ], ids=["roles-none", "roles-not-names", "hashtags-not-names", "channels-none",
            "campaign-not-a-name", "limit-text", "timezone-number", "email-number"])
    def test_wrong_types_are_validation_errors(
        self, ws: Workspace, call: Callable[[Workspace], object], field: str
    ) -> None:
        """Arguments of the wrong type give ValidationFailed naming the field, not TypeError."""
        before = len(ws.audit_log())
        with pytest.raises(postflow.ValidationFailed) as info:
            call(ws)
        assert info.value.problems[0].field == field
        assert len(ws.audit_log()) == before

    def test_a_single_name_is_one_name(self, ws: Workspace) -> None:
        """A string where a list of names goes means that one name, never its letters."""
        post = draft(ws)
        edited = ws.edit(post.id, by="ana", channels="acme-li")
        assert edited.channels == ("acme-li",)
        assert ws.campaigns.add("summer", hashtags="SummerSale").hashtags == ("#SummerSale",)
        assert ws.team.add("eve", roles="author").roles == {"author"}

    def test_post_ids_must_be_numbers(self, ws: Workspace) -> None:
        """A post id given as text is not found on any backend."""
        post = draft(ws)
        with pytest.raises(postflow.NotFound):
            ws.posts.get(str(post.id))  # type: ignore[arg-type]
        with pytest.raises(postflow.NotFound):
            ws.submit(str(post.id), by="ana")  # type: ignore[arg-type]

    def test_between_none_none_means_any_scheduled_time(
        self, ws: Workspace, clock: FixedClock
    ) -> None:
        """between=(None, None) lists the scheduled posts only."""
        draft(ws)
        post = scheduled(ws, clock)
        assert [p.id for p in ws.posts.list(between=(None, None))] == [post.id]

    def test_plan_without_change_and_after_publishing(
        self, ws: Workspace, clock: FixedClock
    ) -> None:
        """Planning the same date again writes nothing; a published post's plan is fixed."""
        post = draft(ws, planned_for=date(2030, 3, 1))
        same = ws.plan(post.id, on=date(2030, 3, 1), by="ana")
        assert same.version == post.version
        assert len(ws.history(post.id)) == 1
        done = published(ws, clock)
        with pytest.raises(postflow.InvalidTransition, match="planned date"):
            ws.plan(done.id, on=date(2030, 3, 2), by="cy")

    def test_channels_can_be_updated_and_retired(self, ws: Workspace) -> None:
        """channels.update changes the handle and zone, and a retired channel takes no posts."""
        channel = ws.channels.update("acme-x", handle="@acme_hq", timezone="Europe/Paris",
                                     by="dee")
        assert (channel.handle, channel.timezone) == ("@acme_hq", "Europe/Paris")
        ws.channels.update("acme-x", active=False)
        with pytest.raises(postflow.ValidationFailed) as info:
            draft(ws)
        assert info.value.problems[0].code == "inactive-channel"
        with pytest.raises(postflow.PermissionDenied):
            ws.channels.update("acme-li", handle="x", by="ana")
        assert [e.action for e in ws.audit_log()[-2:]] == ["channel.update", "channel.update"]

    def test_campaigns_can_be_updated(self, ws: Workspace) -> None:
        """campaigns.update changes the goal and hashtags and is audited."""
        campaign = ws.campaigns.update("spring", goal="1,000 sign-ups", hashtags=["Beta"])
        assert (campaign.goal, campaign.hashtags) == ("1,000 sign-ups", ("#Beta",))
        assert ws.campaigns.get("spring") == campaign
        assert ws.audit_log()[-1].action == "campaign.update"


class TestDirectoryVersions:
    """Members, channels and campaigns are versioned snapshots too."""

    def test_updates_bump_the_version(self, ws: Workspace) -> None:
        """Each change of a member, channel or campaign returns version + 1."""
        assert ws.team.get("ana").version == 1
        assert ws.team.update("ana", email="a@example.org").version == 2
        assert ws.team.remove("ana").version == 3
        assert ws.channels.update("acme-x", handle="@x").version == 2
        assert ws.campaigns.update("spring", goal="more").version == 2
        assert ws.team.get("ana").version == 3

    def test_stale_expected_version_conflicts_and_changes_nothing(
        self, ws: Workspace
    ) -> None:
        """An update based on an old snapshot raises ConflictError and writes nothing."""
        old = ws.team.get("ana")
        ws.team.update("ana", roles={"author", "analyst"})
        before = len(ws.audit_log())
        with pytest.raises(postflow.ConflictError, match="member 'ana' is at version 2"):
            ws.team.update("ana", roles={"author"}, expected_version=old.version)
        assert ws.team.get("ana").roles == {"author", "analyst"}
        assert len(ws.audit_log()) == before
        assert ws.team.update("ana", email="x@example.org", expected_version=2).version == 3

    def test_concurrent_updates_without_a_version_both_apply(
        self, url: str, make_ws: Callable[..., Workspace]
    ) -> None:
        """Two workspaces changing different fields of one member both keep their change."""
        first = make_ws(url)
        add_team(first)
        second = make_ws(url) if url != "memory://" else first
        stale = first.team.get
        calls = {"n": 0}

        def get_once_stale(name: str) -> postflow.Member:
            calls["n"] += 1
            member = stale(name)
            if calls["n"] == 2:  # the read the change is based on: let the other win first
                second.team.update("ana", email="new@example.org")
            return member

        first.team.get = get_once_stale  # type: ignore[method-assign]
        merged = first.team.update("ana", roles={"author", "analyst"})
        assert merged.roles == {"author", "analyst"}
        assert merged.email == "new@example.org"
        assert merged.version == 3


class TestActionNames:
    """Audit actions come from a known vocabulary."""

    def test_every_action_is_registered(self, ws: Workspace, clock: FixedClock) -> None:
        """Each entry's action is a workflow trigger or one of postflow.audit's names."""
        from postflow.audit import POST_ACTIONS, TEAM_ACTIONS

        post = scheduled(ws, clock)
        ws.comment(post.id, by="al", text="nice")
        ws.unschedule(post.id, by="cy")
        ws.edit(post.id, by="ana", text="changed")
        ws.plan(post.id, on=date(2030, 2, 1), by="ana")
        ws.team.update("al", email="al@example.org")
        ws.channels.update("acme-x", handle="@x")
        ws.campaigns.update("spring", goal="more")
        known = POST_ACTIONS | TEAM_ACTIONS | set(ws.workflow.triggers)
        actions = {e.action for e in ws.audit_log()}
        assert actions <= known
        assert {"create", "edit", "comment", "plan", "member.add", "member.update",
                "channel.update", "campaign.update"} <= actions
