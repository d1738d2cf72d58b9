"""The workflow lives with its data: stored at the first open, used by later opens,
compared normalised, changed only explicitly; ``extends``; the ``editable`` default."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import postflow
from conftest import add_team
from postflow import ConfigError, Storage, ValidationFailed, Workflow
from postflow import workflow_store as store
from postflow.models import Approval
from postflow.storage import NewEntry
from postflow.storage import sqlite as sqlite_backend
from postflow.storage.sqlite import SCHEMA_VERSION, SQLiteStorage
from postflow.testing import FixedClock
from postflow.workflow import DEFAULT_WORKFLOW

LEGAL_TOML = """\
extends = "default"
roles = ["legal"]
[[stages]]
name = "legal"
roles = ["legal"]
"""
"""A legal stage after the default's editorial one: five lines."""

MakeWs = Callable[..., postflow.Workspace]


@pytest.fixture(name="legal")
def _legal(tmp_path: Path) -> Workflow:
    path = tmp_path / "legal.toml"
    path.write_text(LEGAL_TOML, encoding="utf-8")
    return Workflow.from_toml(path)


@pytest.fixture(name="db_url")
def _db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'social.db'}"


def snapshot(storage: Storage) -> tuple[Any, ...]:
    """Everything a refused call must leave as it was."""
    posts = storage.list_posts(postflow.PostQuery())
    return (storage.stored_workflow(), [(p.id, p.version, p.state) for p in posts],
            storage.last_change())


def team_with_legal(ws: postflow.Workspace) -> None:
    add_team(ws)
    ws.team.add("lou", roles={"legal"})


class TestNormalisedDefinition:
    """``Workflow.to_dict``: the normalised, JSON-able form a database stores."""

    @pytest.mark.parametrize("workflow", [
        Workflow.default(),
        Workflow.from_dict({**DEFAULT_WORKFLOW, "stages": [
            {"name": "editorial", "roles": ["approver"], "quorum": 2, "due": "24h"},
            {"name": "sign_off", "members": ["dee", "lou"], "quorum": "all", "due": 90},
        ]}),
        Workflow.from_dict({"states": ["a", "b"], "transitions": [
            {"trigger": "go", "source": "*", "dest": "b"}]}),
    ], ids=["default", "stages", "no-approval"])
    def test_round_trips_and_is_json(self, workflow: Workflow) -> None:
        """from_dict(w.to_dict()).to_dict() == w.to_dict(), through JSON too."""
        definition = workflow.to_dict()
        assert Workflow.from_dict(definition).to_dict() == definition
        assert json.loads(json.dumps(definition)) == definition
        assert Workflow.from_dict(definition).same_definition(workflow)

    def test_defaults_are_filled(self) -> None:
        """A sparse definition and its spelled-out equivalent are the same workflow."""
        sparse = Workflow.from_dict({"states": ["draft", "done"], "transitions": [
            {"trigger": "finish", "source": "draft", "dest": "done"}]})
        assert sparse.to_dict() == {
            "name": "custom", "initial": "draft", "states": ["draft", "done"], "roles": [],
            "transitions": [{"trigger": "finish", "source": ["draft"], "dest": "done",
                             "roles": ["admin"], "author_only": False,
                             "comment_required": False}],
            "stages": [], "approval_state": None, "edit_returns_to": "draft",
            "editable": ["draft", "done"], "four_eyes": True,
        }

    def test_differences_are_short_and_readable(self, legal: Workflow) -> None:
        """What one workflow changes against another, one line each."""
        assert Workflow.default().differences(legal) == [
            "name: 'default' -> 'custom'", "roles added: legal", "stages added: legal"]
        changed = Workflow.from_dict({**DEFAULT_WORKFLOW, "transitions": [
            *(t for t in DEFAULT_WORKFLOW["transitions"] if t["trigger"] != "restore"),
            {"trigger": "restore", "source": "archived", "dest": "draft", "roles": ["admin"]},
        ]})
        assert Workflow.default().differences(changed) == [
            "trigger 'restore' changed: roles ['admin', 'publisher'] -> ['admin']"]
        assert Workflow.default().differences(Workflow.default()) == []


class TestExtends:
    """``extends``: a workflow as the changes to another."""

    def test_five_line_legal_stage(self, legal: Workflow) -> None:
        """The default's states and transitions, plus a legal stage after review."""
        default = Workflow.default()
        assert len(LEGAL_TOML.splitlines()) == 5
        assert legal.states == default.states
        assert legal.rules == default.rules
        assert [s.name for s in legal.stages] == ["review", "legal"]
        assert "legal" in legal.roles

    def test_legal_stage_is_required(self, make_ws: MakeWs, legal: Workflow) -> None:
        """Approval needs the legal stage too."""
        ws = make_ws("memory://", workflow=legal)
        team_with_legal(ws)
        ws.channels.add("acme-ig", network="instagram")
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        assert ws.approve(post.id, by="ben").state == "review"
        assert ws.approve(post.id, by="lou").state == "approved"

    def test_overrides_by_trigger_and_stage_name(self) -> None:
        """A trigger or stage of the base's name replaces it; new states are added."""
        workflow = Workflow.from_dict({
            "extends": "default", "name": "strict",
            "states": ["legal_hold"],
            "transitions": [
                {"trigger": "restore", "source": "archived", "dest": "draft",
                 "roles": ["admin"]},
                {"trigger": "hold", "source": "review", "dest": "legal_hold"},
                {"trigger": "release", "source": "legal_hold", "dest": "review"},
            ],
            "stages": [{"name": "review", "roles": ["approver"], "quorum": 2}],
        })
        assert workflow.name == "strict"
        assert workflow.states[-1] == "legal_hold"
        assert workflow.rules["restore"].roles == frozenset({"admin"})
        assert list(workflow.rules)[-2:] == ["hold", "release"]
        assert [(s.name, s.quorum) for s in workflow.stages] == [("review", 2)]
        assert "legal_hold" in workflow.editable

    def test_path_relative_to_the_extending_file(self, tmp_path: Path) -> None:
        """A path in ``extends`` is relative to the file that names it, and chains."""
        (tmp_path / "base").mkdir()
        (tmp_path / "base" / "legal.toml").write_text(LEGAL_TOML, encoding="utf-8")
        (tmp_path / "team.toml").write_text(
            'extends = "base/legal.toml"\nname = "team"\nfour_eyes = false\n',
            encoding="utf-8")
        workflow = Workflow.from_toml(tmp_path / "team.toml")
        assert (workflow.name, workflow.four_eyes) == ("team", False)
        assert [s.name for s in workflow.stages] == ["review", "legal"]

    def test_unknown_name_is_refused(self) -> None:
        """An ``extends`` naming no built-in workflow says so and lists the known ones."""
        with pytest.raises(ConfigError, match=r"unknown workflow 'standard'.*default"):
            Workflow.from_dict({"extends": "standard"})

    def test_missing_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "child.toml"
        path.write_text('extends = "nope.toml"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=r"nope\.toml.*cannot read it"):
            Workflow.from_toml(path)

    def test_cycle_is_refused(self, tmp_path: Path) -> None:
        """a.toml extends b.toml extends a.toml: refused, naming the cycle."""
        (tmp_path / "a.toml").write_text('extends = "b.toml"\n', encoding="utf-8")
        (tmp_path / "b.toml").write_text('extends = "a.toml"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=r"cycle: .*a\.toml -> .*b\.toml -> .*a\.toml"):
            Workflow.from_toml(tmp_path / "a.toml")

    def test_non_utf8_file_is_a_config_error(self, tmp_path: Path) -> None:
        """A workflow file in Latin-1 is refused with ConfigError naming the file."""
        path = tmp_path / "latin1.toml"
        path.write_bytes('name = "Stra\u00dfe"\n'.encode("latin-1"))
        with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8"):
            Workflow.from_toml(path)

    def test_non_utf8_extended_file_is_a_config_error(self, tmp_path: Path) -> None:
        (tmp_path / "base.toml").write_bytes(b'name = "caf\xe9"\n')
        (tmp_path / "child.toml").write_text('extends = "base.toml"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=r"base\.toml: not UTF-8"):
            Workflow.from_toml(tmp_path / "child.toml")


class TestEditableDefault:
    """Leaving ``editable`` out never makes published or archived posts editable."""

    def test_default_workflow(self) -> None:
        assert Workflow.default().editable == frozenset(
            {"draft", "review", "approved", "scheduled", "failed"})

    def test_left_out(self) -> None:
        data = {k: v for k, v in DEFAULT_WORKFLOW.items() if k != "editable"}
        assert Workflow.from_dict(data).editable == Workflow.default().editable

    def test_published_post_is_not_editable(self, make_ws: MakeWs) -> None:
        data = {k: v for k, v in DEFAULT_WORKFLOW.items() if k != "editable"}
        ws = make_ws("memory://", workflow=Workflow.from_dict(data))
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        ws.fire(post.id, "publish", by="cy")
        with pytest.raises(postflow.InvalidTransition, match="published"):
            ws.edit(post.id, by="ana", text="changed")


class TestStoredAtOpen:
    """The first open stores the workflow; later ones use it."""

    def test_new_database_stores_the_given_workflow(self, make_ws: MakeWs, url: str,
                                                    legal: Workflow) -> None:
        ws = make_ws(url, workflow=legal)
        assert ws.storage.stored_workflow() == legal.to_dict()
        assert [(e.action, e.actor) for e in ws.audit_log()] == [("workflow.store", "system")]

    def test_new_database_stores_the_default(self, make_ws: MakeWs, url: str) -> None:
        ws = make_ws(url)
        assert ws.storage.stored_workflow() == Workflow.default().to_dict()
        stored = store.stored_workflow(ws.storage)
        assert stored is not None
        assert stored.same_definition(Workflow.default())

    def test_headline_bug_reopened_without_workflow_keeps_the_legal_stage(
            self, make_ws: MakeWs, db_url: str, legal: Workflow) -> None:
        """Made with a legal stage, reopened without workflow=: one editorial approval
        does not approve the post; the legal one does."""
        ws = make_ws(db_url, workflow=legal)
        team_with_legal(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.close()

        again = make_ws(db_url)
        assert again.workflow.same_definition(legal)
        assert again.approve(post.id, by="ben").state == "review"
        assert again.approve(post.id, by="lou").state == "approved"

    def test_reopen_with_the_same_workflow(self, make_ws: MakeWs, db_url: str,
                                           legal: Workflow, tmp_path: Path) -> None:
        """The same definition spelled differently (no extends, keys in another order)
        opens."""
        make_ws(db_url, workflow=legal).close()
        spelled_out = dict(reversed(list(legal.to_dict().items())))
        make_ws(db_url, workflow=Workflow.from_dict(spelled_out))

    def test_a_stored_definition_missing_a_defaulted_key_still_opens(
            self, make_ws: MakeWs, db_url: str) -> None:
        """An older release's stored form, without keys a newer one fills in, is the
        same workflow."""
        make_ws(db_url).close()
        db = sqlite3.connect(db_url[len("sqlite:///"):])
        definition = json.loads(db.execute("SELECT definition FROM workflow").fetchone()[0])
        del definition["four_eyes"], definition["roles"], definition["stages"][0]["due"]
        db.execute("UPDATE workflow SET definition = ?", (json.dumps(definition),))
        db.commit()
        db.close()
        make_ws(db_url, workflow=Workflow.default())

    def test_memory_store_is_always_new(self, make_ws: MakeWs, legal: Workflow) -> None:
        make_ws("memory://", workflow=legal)
        assert make_ws("memory://").workflow.same_definition(Workflow.default())

    def test_conflicting_workflow_is_refused(self, make_ws: MakeWs, db_url: str,
                                             legal: Workflow) -> None:
        """Opening with another workflow names both and what differs; nothing changes."""
        ws = make_ws(db_url, workflow=legal)
        before = snapshot(ws.storage)
        ws.close()
        with pytest.raises(ConfigError) as info:
            make_ws(db_url, workflow=Workflow.default())
        message = str(info.value)
        assert isinstance(info.value, store.WorkflowMismatch)
        assert "workflow 'custom'" in message
        assert "workflow 'default'" in message
        assert "stages removed: legal" in message
        assert "roles removed: legal" in message
        assert "postflow workflow apply" in message
        assert snapshot(make_ws(db_url).storage) == before

    def test_a_refused_open_closes_the_storage(self, db_url: str, legal: Workflow,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        postflow.open(db_url, workflow=legal, entry_points=False).close()
        closed: list[str] = []
        original = SQLiteStorage.close
        monkeypatch.setattr(SQLiteStorage, "close",
                            lambda self: (closed.append(self.url), original(self))[1])
        with pytest.raises(ConfigError):
            postflow.open(db_url, entry_points=False, workflow=Workflow.default())
        assert closed == [db_url]

    def test_opening_reads_only_the_stored_definition(
            self, make_ws: MakeWs, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Opening a database with a stored workflow lists no posts."""
        ws = make_ws(db_url)
        add_team(ws)
        ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        ws.close()

        def no_listing(*args: object, **kwargs: object) -> None:
            raise AssertionError("open listed posts")

        monkeypatch.setattr(SQLiteStorage, "list_posts", no_listing)
        make_ws(db_url)


class TestApplyWorkflow:
    """Changing the stored workflow is explicit and checked."""

    def test_apply_stores_records_and_is_used(self, make_ws: MakeWs, url: str,
                                              legal: Workflow) -> None:
        ws = make_ws(url)
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        result = ws.apply_workflow(legal, by="dee", comment="legal sign-off from now on")
        assert result.changes == ("name: 'default' -> 'custom'", "roles added: legal",
                                  "stages added: legal")
        assert ws.workflow is legal
        assert ws.storage.stored_workflow() == legal.to_dict()
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.actor, entry.comment) == (
            "workflow.apply", "dee", "legal sign-off from now on")
        assert entry.data["workflow"] == "custom"
        assert entry.data["previous"] == "default"
        assert list(entry.data["changes"]) == list(result.changes)
        ws.team.add("lou", roles={"legal"})
        ws.submit(post.id, by="ana")
        assert ws.approve(post.id, by="ben").state == "review"

    def test_applying_the_stored_workflow_changes_nothing(self, make_ws: MakeWs,
                                                          url: str) -> None:
        ws = make_ws(url)
        add_team(ws)
        before = ws.storage.last_change()
        assert ws.apply_workflow(Workflow.default(), by="dee").changes == ()
        assert ws.storage.last_change() == before

    def test_orphaning_posts_is_refused(self, make_ws: MakeWs, url: str,
                                        legal: Workflow) -> None:
        """A workflow without a state or stage posts are in is refused naming them."""
        ws = make_ws(url, workflow=legal)
        team_with_legal(ws)
        first = ws.posts.create(author="ana", text="one", channels=["acme-x"])
        second = ws.posts.create(author="ana", text="two", channels=["acme-x"])
        ws.submit(second.id, by="ana")
        ws.approve(second.id, by="ben")
        ws.approve(second.id, by="lou")
        smaller = Workflow.from_dict({
            "name": "tiny", "states": ["idea", "approved"], "transitions": [
                {"trigger": "approve", "source": "idea", "dest": "approved"}],
            "stages": [{"name": "review", "roles": ["approver"]}]})
        before = snapshot(ws.storage)
        with pytest.raises(ValidationFailed) as info:
            ws.apply_workflow(smaller, by="dee")
        message = str(info.value)
        assert f"post {first.id} is in state 'draft'" in message
        assert f"post {second.id} has approvals at stage(s) 'legal'" in message
        assert "workflow 'tiny'" in message
        assert snapshot(ws.storage) == before
        assert ws.workflow is legal

    def test_state_rename_map(self, make_ws: MakeWs, url: str) -> None:
        """``mapping`` moves posts to the renamed state, each with an audit entry."""
        ws = make_ws(url)
        add_team(ws)
        post = ws.posts.create(author="ana", text="hi", channels=["acme-x"])
        other = ws.posts.create(author="ana", text="other", channels=["acme-x"])
        ws.submit(other.id, by="ana")
        renamed = json.loads(json.dumps(Workflow.default().to_dict())
                             .replace('"draft"', '"idea"'))
        renamed["name"] = "ideas"
        new = Workflow.from_dict(renamed)
        with pytest.raises(ValidationFailed, match=f"post {post.id} is in state 'draft'"):
            ws.apply_workflow(new, by="dee")
        result = ws.apply_workflow(new, by="dee", mapping={"draft": "idea"})
        assert result.renamed_posts == (post.id,)
        assert "states added: idea" in result.changes
        moved = ws.posts.get(post.id)
        assert (moved.state, moved.version) == ("idea", post.version + 1)
        entry = ws.history(post.id)[-1]
        assert (entry.action, entry.from_state, entry.to_state) == (
            "workflow.apply", "draft", "idea")
        assert postflow.replay(ws.history(post.id)) == moved
        assert ws.posts.get(other.id).state == "review"
        assert ws.submit(post.id, by="ana").state == "review"

    def test_mapping_to_an_unknown_state_is_refused(self, make_ws: MakeWs) -> None:
        ws = make_ws("memory://")
        add_team(ws)
        before = snapshot(ws.storage)
        with pytest.raises(ValidationFailed, match="'limbo'"):
            ws.apply_workflow(Workflow.default(), by="dee", mapping={"draft": "limbo"})
        assert snapshot(ws.storage) == before

    @pytest.mark.parametrize("by", ["ana", "nobody"])
    def test_only_admins_apply(self, make_ws: MakeWs, legal: Workflow, by: str) -> None:
        ws = make_ws("memory://")
        add_team(ws)
        before = snapshot(ws.storage)
        with pytest.raises(postflow.PermissionDenied, match=by):
            ws.apply_workflow(legal, by=by)
        assert snapshot(ws.storage) == before

    def test_reopen_uses_the_applied_one(self, make_ws: MakeWs, db_url: str,
                                         legal: Workflow) -> None:
        ws = make_ws(db_url)
        add_team(ws)
        ws.apply_workflow(legal, by="dee")
        ws.close()
        assert make_ws(db_url).workflow.same_definition(legal)


class TestSchema3Databases:
    """Files from before stored workflows (schema 3) are migrated to schema 4."""

    def make_v3(self, path: Path, monkeypatch: pytest.MonkeyPatch,
                states: dict[str, tuple[str, ...]]) -> None:
        """A schema-3 file with one post per ``state: approval stages``."""
        with monkeypatch.context() as patch:
            patch.setattr(sqlite_backend, "SCHEMA_VERSION", 3)
            storage = SQLiteStorage(f"sqlite:///{path}")
            clock = FixedClock()
            for state, stages in states.items():
                post = postflow.Post(0, 1, state, "ana", "hi", ("acme-x",), 1, clock.now(),
                                     clock.now(), clock.now(), approvals=tuple(
                                         Approval(f"m{i}", s, 1, clock.now())
                                         for i, s in enumerate(stages)))
                storage.insert_post(post, postflow.Revision(0, 1, "hi", ("acme-x",), None,
                                                            "ana", clock.now()),
                                    [NewEntry("create", "ana", clock.now(), "c", None,
                                              None, state, 1)])
            assert storage.schema_version() == 3
            storage.close()

    def test_posts_that_fit_get_the_default(self, make_ws: MakeWs, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "old.db"
        self.make_v3(path, monkeypatch, {"draft": (), "approved": ("review",)})
        ws = make_ws(f"sqlite:///{path}")
        assert ws.storage.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
        assert ws.storage.stored_workflow() == Workflow.default().to_dict()
        entry = ws.audit_log()[-1]
        assert (entry.action, entry.actor) == ("workflow.store", "system")

    @pytest.mark.parametrize("states", [
        {"draft": (), "legal_review": ()},
        {"published": ("review", "legal")},
    ], ids=["state", "stage"])
    def test_posts_that_do_not_fit_need_the_workflow_once(
            self, make_ws: MakeWs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            states: dict[str, tuple[str, ...]]) -> None:
        path = tmp_path / "old.db"
        url = f"sqlite:///{path}"
        self.make_v3(path, monkeypatch, states)
        with pytest.raises(ConfigError, match="postflow workflow apply FILE") as info:
            make_ws(url)
        assert isinstance(info.value, store.WorkflowNotStored)
        storage = SQLiteStorage(url)
        assert storage.schema_version() == SCHEMA_VERSION
        assert storage.stored_workflow() is None
        storage.close()
        # the default does not fit either
        with pytest.raises(ValidationFailed, match=r"post [12] "):
            make_ws(url, workflow=Workflow.default())
        right = Workflow.from_dict({
            "extends": "default", "name": "legal", "roles": ["legal"],
            "states": ["legal_review"],
            "transitions": [{"trigger": "to_legal", "source": "review",
                             "dest": "legal_review"}],
            "stages": [{"name": "legal", "roles": ["legal"]}]})
        make_ws(url, workflow=right).close()
        assert make_ws(url).workflow.same_definition(right)

    def test_without_posts_the_first_open_stores(self, make_ws: MakeWs, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 legal: Workflow) -> None:
        path = tmp_path / "old.db"
        self.make_v3(path, monkeypatch, {})
        assert make_ws(f"sqlite:///{path}", workflow=legal).workflow is legal
        assert make_ws(f"sqlite:///{path}").workflow.same_definition(legal)


class TestCommandLineHelpers:
    """What ``postflow workflow apply`` will call to read its options and report."""

    def test_parse_mapping(self) -> None:
        assert store.parse_mapping(["draft=idea", " review = check "]) == {
            "draft": "idea", "review": "check"}
        assert store.parse_mapping([]) == {}

    @pytest.mark.parametrize(("items", "fragment"), [
        (["draft"], "'draft': expected OLD=NEW"),
        (["=idea"], "'=idea': expected OLD=NEW"),
        (["draft=idea", "draft=plan"], "'draft' is renamed twice"),
    ])
    def test_parse_mapping_refuses(self, items: list[str], fragment: str) -> None:
        with pytest.raises(ConfigError, match=fragment):
            store.parse_mapping(items)

    def test_describe_applied(self, make_ws: MakeWs, legal: Workflow) -> None:
        ws = make_ws("memory://")
        add_team(ws)
        assert store.describe_applied(ws.apply_workflow(legal, by="dee")) == (
            "workflow 'custom' applied\n  name: 'default' -> 'custom'\n"
            "  roles added: legal\n  stages added: legal")
        assert "nothing changed" in store.describe_applied(
            ws.apply_workflow(legal, by="dee"))


class TestApplyingAStageToApprovedPosts:
    """A workflow that adds an approval stage never lets posts approved without it go
    out: apply refuses them, or sends them back for it with ``reopen``."""

    @staticmethod
    def legal() -> Workflow:
        return Workflow.from_dict({"extends": "default", "name": "legal",
                                   "roles": ["legal"],
                                   "stages": [{"name": "legal", "roles": ["legal"]}]})

    def test_refused_then_reopened(self, url: str, make_ws: Any, clock: FixedClock) -> None:
        """Approved and scheduled posts are named; reopen puts them back in review,
        off the schedule, where the legal approval is still needed."""
        ws = make_ws(url)
        add_team(ws)
        ws.team.add("lena", roles={"admin"})
        ids = []
        for n in range(2):
            post = ws.posts.create(author="ana", text=f"Post {n}", channels=["acme-x"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
            ids.append(post.id)
        ws.schedule(ids[0], at=clock.now() + timedelta(hours=1), by="cy")
        before = ws.audit_log()
        with pytest.raises(postflow.ValidationFailed) as caught:
            ws.apply_workflow(self.legal(), by="dee")
        assert [p.code for p in caught.value.problems] == ["needs-approval"] * 2
        assert f"post {ids[0]} is 'scheduled'" in str(caught.value)
        assert ws.audit_log() == before
        result = ws.apply_workflow(self.legal(), by="dee", reopen=True)
        assert sorted(result.reopened_posts) == ids
        for post_id in ids:
            post = ws.posts.get(post_id)
            assert (post.state, post.scheduled_at) == ("review", None)
            assert [a.stage for a in post.approvals] == ["review"]
        ws.team.add("leo", roles={"legal"})
        assert ws.approve(ids[0], by="leo").state == "approved"
        assert ws.history(ids[1])[-1].data["reopened"] is True
