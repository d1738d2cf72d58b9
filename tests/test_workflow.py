"""Workflows as data: the default, custom ones from dicts and TOML, validation, the CLI."""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import postflow
from conftest import add_team
from postflow.cli import cli
from postflow.workflow import DEFAULT_WORKFLOW


def default_dict() -> dict[str, Any]:
    """A deep, mutable copy of the default workflow definition."""
    return copy.deepcopy(dict(DEFAULT_WORKFLOW))


def legal_dict() -> dict[str, Any]:
    """The default workflow plus a ``legal`` stage: two of the ``legal`` role, due in 24h."""
    data = default_dict()
    data["name"] = "with_legal"
    data["roles"] = ["legal"]
    data["stages"] = [
        {"name": "editorial", "roles": ["approver"], "quorum": 1, "due": "24h"},
        {"name": "legal", "roles": ["legal"], "quorum": 2, "due": "24h"},
    ]
    return data


def named_legal_dict() -> dict[str, Any]:
    """The default workflow plus a ``legal`` stage needing all of its named members."""
    data = default_dict()
    data["name"] = "named_legal"
    data["stages"] = [
        {"name": "editorial", "roles": ["approver"]},
        {"name": "legal", "members": ["lou", "liz"], "quorum": "all", "due": "2d"},
    ]
    return data


def translation_dict() -> dict[str, Any]:
    """The default workflow plus a ``needs_translation`` state reached from review."""
    data = default_dict()
    data["name"] = "translated"
    data["states"] = [*data["states"], "needs_translation"]
    data["transitions"] = [
        *data["transitions"],
        {"trigger": "request_translation", "source": "review", "dest": "needs_translation",
         "roles": ["approver", "admin"]},
        {"trigger": "translated", "source": "needs_translation", "dest": "review",
         "roles": ["author", "admin"]},
    ]
    return data


LEGAL_TOML = """
name = "with_legal"
initial = "draft"
roles = ["legal"]
states = ["draft", "review", "approved", "scheduled", "published", "failed", "archived"]
edit_returns_to = "draft"
editable = ["draft", "review", "approved", "scheduled", "failed"]
four_eyes = true
approval_state = "review"

[[transitions]]
trigger = "submit"
source = "draft"
dest = "review"
roles = ["author", "admin"]
author_only = true

[[transitions]]
trigger = "approve"
source = "review"
dest = "approved"

[[transitions]]
trigger = "request_changes"
source = "review"
dest = "draft"
roles = ["approver", "admin"]
comment_required = true

[[transitions]]
trigger = "withdraw"
source = "review"
dest = "draft"
roles = ["author", "admin"]
author_only = true

[[transitions]]
trigger = "schedule"
source = "approved"
dest = "scheduled"
roles = ["publisher", "admin"]

[[transitions]]
trigger = "unschedule"
source = "scheduled"
dest = "approved"
roles = ["publisher", "admin"]

[[transitions]]
trigger = "publish"
source = ["scheduled", "approved"]
dest = "published"
roles = ["publisher", "admin"]

[[transitions]]
trigger = "fail"
source = "scheduled"
dest = "failed"
roles = ["publisher", "admin"]

[[transitions]]
trigger = "retry"
source = "failed"
dest = "scheduled"
roles = ["publisher", "admin"]

[[transitions]]
trigger = "archive"
source = ["draft", "review", "approved", "scheduled", "published", "failed"]
dest = "archived"
roles = ["publisher", "admin"]

[[transitions]]
trigger = "restore"
source = "archived"
dest = "draft"
roles = ["publisher", "admin"]

[[stages]]
name = "editorial"
roles = ["approver"]
quorum = 1
due = "24h"

[[stages]]
name = "legal"
roles = ["legal"]
quorum = 2
due = "24h"
"""


def edges_of(workflow: postflow.Workflow) -> set[tuple[str, str, str]]:
    """Every (source, dest, trigger) edge of a workflow, edit edges included."""
    edges = {(s, r.dest, r.trigger) for r in workflow.rules.values() for s in r.sources}
    edges |= {(s, workflow.edit_dest(s), "edit") for s in workflow.editable
              if workflow.edit_dest(s) != s}
    return edges


@pytest.fixture(name="toml_file")
def _toml_file(tmp_path: Path) -> Path:
    """The legal workflow written as a TOML file."""
    path = tmp_path / "legal.toml"
    path.write_text(LEGAL_TOML, encoding="utf-8")
    return path


class TestDefaultWorkflow:
    """Workflow.default()."""

    def test_states(self) -> None:
        """The default workflow has the seven documented states, starting in draft."""
        wf = postflow.Workflow.default()
        assert wf.states == ("draft", "review", "approved", "scheduled", "published",
                             "failed", "archived")
        assert wf.initial == "draft"
        assert wf.approval_state == "review"

    @pytest.mark.parametrize(("trigger", "sources", "dest"), [
        ("submit", {"draft"}, "review"),
        ("approve", {"review"}, "approved"),
        ("request_changes", {"review"}, "draft"),
        ("withdraw", {"review"}, "draft"),
        ("schedule", {"approved"}, "scheduled"),
        ("unschedule", {"scheduled"}, "approved"),
        ("publish", {"scheduled", "approved"}, "published"),
        ("fail", {"scheduled"}, "failed"),
        ("retry", {"failed"}, "scheduled"),
        ("archive", {"draft", "review", "approved", "scheduled", "published", "failed"},
         "archived"),
        ("restore", {"archived"}, "draft"),
    ])
    def test_triggers(self, trigger: str, sources: set[str], dest: str) -> None:
        """Each documented trigger goes from its documented sources to its destination."""
        rule = postflow.Workflow.default().rules[trigger]
        assert set(rule.sources) == sources
        assert rule.dest == dest

    def test_no_other_triggers(self) -> None:
        """The default workflow has exactly the documented triggers and no 'edit'."""
        assert set(postflow.Workflow.default().triggers) == {
            "submit", "approve", "request_changes", "withdraw", "schedule", "unschedule",
            "publish", "fail", "retry", "archive", "restore"}

    def test_rules_and_stage(self) -> None:
        """request_changes needs a comment, submit is author-only, one approver approves."""
        wf = postflow.Workflow.default()
        assert wf.rules["request_changes"].comment_required
        assert wf.rules["submit"].author_only
        assert wf.four_eyes is True
        assert wf.edit_returns_to == "draft"
        (stage,) = wf.stages
        assert (stage.name, stage.roles, stage.quorum) == ("review", frozenset({"approver"}), 1)

    def test_triggers_from(self) -> None:
        """triggers_from lists the triggers leaving a state."""
        wf = postflow.Workflow.default()
        assert set(wf.triggers_from("draft")) == {"submit", "archive"}
        assert set(wf.triggers_from("published")) == {"archive"}

    def test_describe_mentions_every_trigger(self) -> None:
        """describe() names every trigger, the stage and the four-eyes rule."""
        wf = postflow.Workflow.default()
        text = wf.describe()
        for trigger in wf.triggers:
            assert trigger in text
        assert "four-eyes rule: on" in text
        assert "1. review: 1 of approver" in text


class TestFromDict:
    """Workflow.from_dict with custom stages and states."""

    def test_legal_stage(self) -> None:
        """A declared 'legal' role and an M-of-N legal stage with a 24h due time load."""
        wf = postflow.Workflow.from_dict(legal_dict())
        assert "legal" in wf.roles
        assert [s.name for s in wf.stages] == ["editorial", "legal"]
        legal = wf.stages[1]
        assert legal.roles == {"legal"}
        assert legal.quorum == 2
        assert legal.due == timedelta(hours=24)

    def test_quorum_all_named_members(self) -> None:
        """Quorum 'all' over named members needs every one of them."""
        wf = postflow.Workflow.from_dict(named_legal_dict())
        legal = wf.stages[1]
        assert legal.members == {"lou", "liz"}
        assert legal.quorum == 2
        assert legal.due == timedelta(days=2)
        assert legal.eligible("lou", set())
        assert not legal.eligible("ben", {"approver"})

    def test_extra_state(self) -> None:
        """An extra state with its own triggers in and out loads."""
        wf = postflow.Workflow.from_dict(translation_dict())
        assert "needs_translation" in wf.states
        assert wf.dest("request_translation", "review") == "needs_translation"
        assert wf.dest("translated", "needs_translation") == "review"
        assert "request_translation" in wf.triggers_from("review")

    def test_approve_without_stages_gets_default_stage(self) -> None:
        """A workflow with an approve trigger and no stages gets one approver stage."""
        data = default_dict()
        del data["stages"]
        wf = postflow.Workflow.from_dict(data)
        assert [(s.name, s.roles, s.quorum) for s in wf.stages] == [
            ("review", frozenset({"approver"}), 1)]

    def test_same_trigger_from_two_sources_merges(self) -> None:
        """Two entries for one trigger with different sources become one rule."""
        data = default_dict()
        data["transitions"] = [t for t in data["transitions"] if t["trigger"] != "publish"]
        data["transitions"] += [
            {"trigger": "publish", "source": "scheduled", "dest": "published",
             "roles": ["publisher", "admin"]},
            {"trigger": "publish", "source": "approved", "dest": "published",
             "roles": ["publisher", "admin"]},
        ]
        wf = postflow.Workflow.from_dict(data)
        assert set(wf.rules["publish"].sources) == {"scheduled", "approved"}


class TestFromToml:
    """Workflow.from_toml."""

    def test_same_as_dict(self, toml_file: Path) -> None:
        """The TOML file and the equivalent dict load to the same workflow."""
        from_file = postflow.Workflow.from_toml(toml_file)
        from_dict = postflow.Workflow.from_dict(legal_dict())
        for field in ("name", "initial", "states", "rules", "stages", "roles",
                      "edit_returns_to", "editable", "four_eyes", "approval_state"):
            assert getattr(from_file, field) == getattr(from_dict, field), field

    def test_str_path(self, toml_file: Path) -> None:
        """from_toml also takes a string path."""
        assert postflow.Workflow.from_toml(str(toml_file)).name == "with_legal"

    def test_errors_name_the_file(self, tmp_path: Path) -> None:
        """A validation error from a file says which file."""
        path = tmp_path / "bad.toml"
        path.write_text(LEGAL_TOML.replace('dest = "published"', 'dest = "posted"'))
        with pytest.raises(postflow.ConfigError, match=r"bad\.toml") as info:
            postflow.Workflow.from_toml(path)
        assert "'posted'" in str(info.value)


def _bad_unknown_state(d: dict[str, Any]) -> None:
    d["transitions"][0]["dest"] = "reviewing"


def _bad_unknown_source(d: dict[str, Any]) -> None:
    d["transitions"][0]["source"] = "drafted"


def _bad_unreachable(d: dict[str, Any]) -> None:
    d["states"].append("limbo")


def _bad_duplicate_trigger(d: dict[str, Any]) -> None:
    d["transitions"].append({"trigger": "submit", "source": "draft", "dest": "approved",
                             "roles": ["author"]})


def _bad_duplicate_same_rule(d: dict[str, Any]) -> None:
    d["transitions"].append(dict(d["transitions"][0]))


def _bad_stage_role(d: dict[str, Any]) -> None:
    d["stages"].append({"name": "legal", "roles": ["legal"]})


def _bad_transition_role(d: dict[str, Any]) -> None:
    d["transitions"][0]["roles"] = ["writer"]


def _bad_no_approve(d: dict[str, Any]) -> None:
    d["transitions"] = [t for t in d["transitions"] if t["trigger"] != "approve"]


def _bad_top_key(d: dict[str, Any]) -> None:
    d["stagse"] = d.pop("stages")


def _bad_transition_key(d: dict[str, Any]) -> None:
    d["transitions"][0]["destination"] = d["transitions"][0].pop("dest")


def _bad_stage_key(d: dict[str, Any]) -> None:
    d["stages"][0]["quroum"] = 1


def _bad_edit_trigger(d: dict[str, Any]) -> None:
    d["transitions"].append({"trigger": "edit", "source": "approved", "dest": "draft"})


def _bad_all_with_roles(d: dict[str, Any]) -> None:
    d["stages"][0]["quorum"] = "all"


def _bad_quorum_too_big(d: dict[str, Any]) -> None:
    d["stages"] = [{"name": "legal", "members": ["lou", "liz"], "quorum": 3}]


def _bad_quorum_zero(d: dict[str, Any]) -> None:
    d["stages"][0]["quorum"] = 0


def _bad_due(d: dict[str, Any]) -> None:
    d["stages"][0]["due"] = "tomorrow"


def _bad_negative_due(d: dict[str, Any]) -> None:
    d["stages"][0]["due"] = -5


def _bad_initial(d: dict[str, Any]) -> None:
    d["initial"] = "start"


def _bad_edit_returns_to(d: dict[str, Any]) -> None:
    d["edit_returns_to"] = "limbo"


def _bad_stage_names_nobody(d: dict[str, Any]) -> None:
    d["stages"][0]["roles"] = []


def _bad_duplicate_state(d: dict[str, Any]) -> None:
    d["states"].append("draft")


def _bad_four_eyes(d: dict[str, Any]) -> None:
    d["four_eyes"] = "yes"


def _bad_approve_roles(d: dict[str, Any]) -> None:
    next(t for t in d["transitions"] if t["trigger"] == "approve")["roles"] = ["admin"]


def _bad_edit_returns_to_approved(d: dict[str, Any]) -> None:
    d["edit_returns_to"] = "approved"


def _bad_approval_state(d: dict[str, Any]) -> None:
    d["approval_state"] = "draft"


def _bad_duplicate_member(d: dict[str, Any]) -> None:
    d["stages"] = [{"name": "legal", "members": ["lena", "lena"], "quorum": "all"}]


def _bad_infinite_due(d: dict[str, Any]) -> None:
    d["stages"] = [{"name": "review", "roles": ["approver"], "due": float("inf")}]


def _bad_huge_due(d: dict[str, Any]) -> None:
    d["stages"] = [{"name": "review", "roles": ["approver"], "due": "99999999999d"}]


BAD_DEFINITIONS: list[Any] = [
    pytest.param(_bad_edit_returns_to_approved, ["edit_returns_to", "approved again"],
                 id="edit-skips-approval"),
    pytest.param(_bad_approval_state, ["approval_state 'draft'", "source"],
                 id="approval-state-not-approve-source"),
    pytest.param(_bad_duplicate_member, ["named twice"], id="duplicate-member"),
    pytest.param(_bad_infinite_due, ["not a duration"], id="infinite-due"),
    pytest.param(_bad_huge_due, ["not a duration"], id="huge-due"),
    pytest.param(_bad_approve_roles, ["trigger 'approve'", "approval stages"],
                 id="approve-with-roles"),
    pytest.param(_bad_unknown_state, ["unknown state", "'reviewing'"], id="unknown-dest"),
    pytest.param(_bad_unknown_source, ["unknown state", "'drafted'"], id="unknown-source"),
    pytest.param(_bad_unreachable, ["'limbo'", "cannot be reached"], id="unreachable"),
    pytest.param(_bad_duplicate_trigger, ["duplicate trigger 'submit'", "'draft'"],
                 id="duplicate-trigger"),
    pytest.param(_bad_duplicate_same_rule, ["duplicate trigger 'submit'"],
                 id="duplicate-identical"),
    pytest.param(_bad_stage_role, ["stage 'legal'", "unknown role 'legal'"],
                 id="stage-unknown-role"),
    pytest.param(_bad_transition_role, ["trigger 'submit'", "unknown role 'writer'"],
                 id="transition-unknown-role"),
    pytest.param(_bad_no_approve, ["no 'approve' trigger"], id="stages-without-approve"),
    pytest.param(_bad_top_key, ["unknown key", "'stagse'"], id="typo-top-key"),
    pytest.param(_bad_transition_key, ["unknown key", "'destination'"],
                 id="typo-transition-key"),
    pytest.param(_bad_stage_key, ["stage 'review'", "'quroum'"], id="typo-stage-key"),
    pytest.param(_bad_edit_trigger, ["'edit' is reserved"], id="edit-trigger"),
    pytest.param(_bad_all_with_roles, ["quorum 'all'", "named members"],
                 id="quorum-all-with-roles"),
    pytest.param(_bad_quorum_too_big, ["quorum 3", "2 named members"], id="quorum-too-big"),
    pytest.param(_bad_quorum_zero, ["quorum must be a positive number"], id="quorum-zero"),
    pytest.param(_bad_due, ["due", "'tomorrow'", "not a duration"], id="bad-due"),
    pytest.param(_bad_negative_due, ["due", "must be positive"], id="negative-due"),
    pytest.param(_bad_initial, ["initial", "'start'"], id="unknown-initial"),
    pytest.param(_bad_edit_returns_to, ["edit_returns_to", "'limbo'"],
                 id="unknown-edit-returns-to"),
    pytest.param(_bad_stage_names_nobody, ["no eligible roles or members"],
                 id="stage-names-nobody"),
    pytest.param(_bad_duplicate_state, ["listed twice"], id="duplicate-state"),
    pytest.param(_bad_four_eyes, ["'four_eyes'"], id="bad-four-eyes"),
]


class TestValidation:
    """Loading refuses bad definitions with a ConfigError that names the problem."""

    @pytest.mark.parametrize(("mutate", "fragments"), BAD_DEFINITIONS)
    def test_bad_definition(
        self, mutate: Callable[[dict[str, Any]], None], fragments: list[str]
    ) -> None:
        """Each broken definition raises ConfigError whose message names the problem."""
        data = default_dict()
        mutate(data)
        with pytest.raises(postflow.ConfigError) as info:
            postflow.Workflow.from_dict(data)
        for fragment in fragments:
            assert fragment in str(info.value)

    def test_not_a_mapping(self) -> None:
        """A workflow that is not a dict is refused."""
        with pytest.raises(postflow.ConfigError, match="must be a table"):
            postflow.Workflow.from_dict(["draft"])  # type: ignore[arg-type]

    def test_malformed_toml(self, tmp_path: Path) -> None:
        """A file that is not TOML raises ConfigError naming the file."""
        path = tmp_path / "broken.toml"
        path.write_text('name = "x"\n[[transitions]\ntrigger = submit\n')
        with pytest.raises(postflow.ConfigError, match="not valid TOML") as info:
            postflow.Workflow.from_toml(path)
        assert "broken.toml" in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file raises ConfigError saying it cannot be read."""
        with pytest.raises(postflow.ConfigError, match="cannot read") as info:
            postflow.Workflow.from_toml(tmp_path / "nope.toml")
        assert "nope.toml" in str(info.value)

    def test_config_error_is_value_error(self) -> None:
        """ConfigError is both a PostflowError and a ValueError."""
        data = default_dict()
        data["states"].append("limbo")
        with pytest.raises(ValueError):  # noqa: PT011 - the builtin base is the point
            postflow.Workflow.from_dict(data)
        assert issubclass(postflow.ConfigError, postflow.PostflowError)


class TestSharedMachine:
    """One transitions.Machine per Workflow object."""

    def test_machine_is_cached(self) -> None:
        """workflow.machine is the same object every time."""
        wf = postflow.Workflow.default()
        assert wf.machine is wf.machine

    def test_machine_options(self) -> None:
        """The shared machine has no auto transitions and no models."""
        machine = postflow.Workflow.default().machine
        assert not any(name.startswith("to_") for name in machine.events)
        assert machine.models == []

    def test_many_posts_one_machine(self, url: str, make_ws: Callable[..., Any]) -> None:
        """Driving many posts through a workspace keeps one machine holding no post."""
        wf = postflow.Workflow.default()
        ws = make_ws(url, workflow=wf)
        add_team(ws)
        machine = wf.machine
        for i in range(25):
            post = ws.posts.create(author="ana", text=f"post {i}", channels=["acme-x"])
            ws.submit(post.id, by="ana")
            ws.approve(post.id, by="ben")
        gc.collect()
        assert wf.machine is machine
        assert machine.models == []
        assert ws.posts.count(state="approved") == 25

    def test_fire_without_model(self) -> None:
        """fire() moves a state through the shared machine and refuses incomplete approvals."""
        wf = postflow.Workflow.default()
        assert wf.fire("submit", "draft") == "review"
        assert wf.fire("approve", "review", ()) == "review"

    def test_callbacks_added_to_the_machine_still_run(self) -> None:
        """The machine skips only empty callback lists: added callbacks run, in order."""
        wf = postflow.Workflow.default()
        machine = wf.machine
        calls: list[str] = []
        transition = machine.events["submit"].transitions["draft"][0]
        transition.before.append(lambda event: calls.append("before"))
        transition.after.append(lambda event: calls.append(f"after:{event.model.state}"))
        machine.get_state("draft").on_exit.append(lambda event: calls.append("exit"))
        machine.get_state("review").on_enter.append(lambda event: calls.append("enter"))
        assert wf.fire("submit", "draft") == "review"
        assert calls == ["before", "exit", "enter", "after:review"]
        assert wf.fire("approve", "review", ()) == "review"  # a condition still refuses

    def test_state_callbacks_run_without_transition_callbacks(self) -> None:
        """Enter and exit callbacks run when the transition itself has none."""
        wf = postflow.Workflow.default()
        calls: list[str] = []
        wf.machine.get_state("approved").on_exit.append(lambda event: calls.append("exit"))
        wf.machine.get_state("scheduled").on_enter.append(lambda event: calls.append("enter"))
        assert wf.fire("schedule", "approved") == "scheduled"
        assert calls == ["exit", "enter"]

    def test_machine_wide_callbacks_still_run(self) -> None:
        """prepare_event, finalize_event and on_exception set on the machine run as in
        transitions; the fast path is only taken while they are empty."""
        wf = postflow.Workflow.default()
        machine = wf.machine
        calls: list[str] = []
        machine.prepare_event = [lambda event: calls.append(f"prepare:{event.state.name}")]
        machine.finalize_event = [lambda event: calls.append(f"finalize:{event.result}")]
        assert wf.fire("submit", "draft") == "review"
        assert wf.fire("approve", "review", ()) == "review"  # the quorum is not met yet
        assert calls == ["prepare:draft", "finalize:True", "prepare:review", "finalize:True"]
        failing = machine.get_state("scheduled")
        failing.on_enter.append(lambda event: 1 / 0)
        machine.on_exception = [lambda event: calls.append(type(event.error).__name__)]
        assert wf.fire("schedule", "approved") is None
        assert calls[-2:] == ["ZeroDivisionError", "finalize:False"]

    def test_trigger_from_a_wrong_state_is_transitions_error(self) -> None:
        """A trigger not valid in the state raises transitions' own MachineError."""
        from transitions import MachineError

        with pytest.raises(MachineError, match="Can't trigger event schedule from state draft"):
            postflow.Workflow.default().fire("schedule", "draft")

    def test_a_transition_added_to_an_unknown_state_fails_as_in_transitions(self) -> None:
        """A transition added to workflow.machine towards a state it does not have fails
        with transitions' own ValueError, not a KeyError from postflow's fast path."""
        wf = postflow.Workflow.default()
        wf.machine.add_transition("jump", "draft", "nowhere")
        with pytest.raises(ValueError, match="'nowhere' is not a registered state"):
            wf.fire("jump", "draft")

    def test_final_state_callbacks_run(self) -> None:
        """on_final runs when a transition enters a final state."""
        wf = postflow.Workflow.default()
        machine = wf.machine
        machine.get_state("archived").final = True
        calls: list[str] = []
        machine.on_final = [lambda event: calls.append(event.state.name)]
        assert wf.fire("archive", "draft") == "archived"
        assert calls == ["archived"]

    def test_mermaid_has_every_edge(self) -> None:
        """mermaid() contains every transition and edit edge."""
        wf = postflow.Workflow.from_dict(translation_dict())
        text = wf.mermaid()
        assert text.startswith("stateDiagram-v2")
        assert "[*] --> draft" in text
        for source, dest, trigger in edges_of(wf):
            assert f"{source} --> {dest}: {trigger}" in text

    def test_graphviz_has_every_edge(self) -> None:
        """graphviz() contains every transition and edit edge."""
        wf = postflow.Workflow.from_dict(translation_dict())
        text = wf.graphviz()
        assert text.startswith('digraph "translated"')
        assert text.rstrip().endswith("}")
        for source, dest, trigger in edges_of(wf):
            assert f'"{source}" -> "{dest}" [label="{trigger}"];' in text


class TestCustomWorkflowInWorkspace:
    """Custom workflows work end to end through postflow.open(url, workflow=wf)."""

    def test_legal_stage_end_to_end(self, url: str, make_ws: Callable[..., Any],
                                    clock: Any) -> None:
        """Editorial then two legal approvals move the post on; partial approvals wait."""
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(legal_dict()))
        add_team(ws)
        ws.team.add("lou", roles={"legal"})
        ws.team.add("liz", roles={"legal"})
        post = ws.posts.create(author="ana", text="Terms apply", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        assert ws.allowed(post.id, by="lou") == ()
        with pytest.raises(postflow.PermissionDenied, match="stage 'editorial'"):
            ws.approve(post.id, by="lou")
        assert ws.approve(post.id, by="ben").state == "review"
        assert "approve" in ws.allowed(post.id, by="lou")
        assert ws.approve(post.id, by="lou").state == "review"
        done = ws.approve(post.id, by="liz")
        assert done.state == "approved"
        assert [(a.member, a.stage) for a in done.approvals] == [
            ("ben", "editorial"), ("lou", "legal"), ("liz", "legal")]
        assert ws.schedule(post.id, at=clock.now() + timedelta(days=1), by="cy").state \
            == "scheduled"

    def test_named_members_all(self, url: str, make_ws: Callable[..., Any]) -> None:
        """A quorum 'all' stage waits for every named member, whatever their role."""
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(named_legal_dict()))
        add_team(ws)
        ws.team.add("lou", roles={"analyst"})
        ws.team.add("liz", roles={"analyst"})
        post = ws.posts.create(author="ana", text="Named", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        with pytest.raises(postflow.PermissionDenied, match="member lou"):
            ws.approve(post.id, by="bea")
        assert ws.approve(post.id, by="liz").state == "review"
        assert ws.approve(post.id, by="lou").state == "approved"

    def test_extra_state_end_to_end(self, url: str, make_ws: Callable[..., Any]) -> None:
        """Custom triggers fire through ws.fire and show up in ws.allowed."""
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(translation_dict()))
        add_team(ws)
        post = ws.posts.create(author="ana", text="Hallo", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        assert "request_translation" in ws.allowed(post.id, by="ben")
        assert "request_translation" not in ws.allowed(post.id, by="ana")
        moved = ws.fire(post.id, "request_translation", by="ben", comment="needs German",
                        language="de")
        assert moved.state == "needs_translation"
        assert ws.allowed(post.id, by="ana") == ("translated",)
        assert ws.allowed(post.id, by="ben") == ()
        back = ws.fire(post.id, "translated", by="ana")
        assert back.state == "review"
        assert ws.approve(post.id, by="ben").state == "approved"
        entry = next(e for e in ws.history(post.id) if e.action == "request_translation")
        assert (entry.from_state, entry.to_state, entry.comment) == (
            "review", "needs_translation", "needs German")
        assert entry.data["language"] == "de"
        assert postflow.replay(ws.history(post.id)) == ws.posts.get(post.id)

    def test_custom_trigger_permission(self, url: str, make_ws: Callable[..., Any]) -> None:
        """A custom trigger's roles are enforced with PermissionDenied."""
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(translation_dict()))
        add_team(ws)
        post = ws.posts.create(author="ana", text="Hallo", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        with pytest.raises(postflow.PermissionDenied, match="request_translation") as info:
            ws.fire(post.id, "request_translation", by="cy")
        assert "admin, approver" in str(info.value)
        assert ws.posts.get(post.id).state == "review"

    def test_custom_role_for_members(self, url: str, make_ws: Callable[..., Any]) -> None:
        """A role declared by the workflow can be given to members; unknown ones cannot."""
        ws = make_ws(url, workflow=postflow.Workflow.from_dict(legal_dict()))
        assert ws.team.add("lou", roles={"legal"}).roles == {"legal"}
        with pytest.raises(postflow.ValidationFailed, match="unknown role"):
            ws.team.add("max", roles={"lawyer"})

    def test_from_toml_workspace(self, url: str, make_ws: Callable[..., Any],
                                 toml_file: Path) -> None:
        """A workflow loaded from TOML drives a workspace like the dict one."""
        ws = make_ws(url, workflow=postflow.Workflow.from_toml(toml_file))
        add_team(ws)
        ws.team.add("lou", roles={"legal"})
        post = ws.posts.create(author="ana", text="From a file", channels=["acme-x"])
        ws.submit(post.id, by="ana")
        ws.approve(post.id, by="ben")
        stages = ws.stages(post.id)
        assert [(s.name, s.satisfied) for s in stages] == [("editorial", True),
                                                           ("legal", False)]
        assert ws.approve(post.id, by="lou").state == "review"


class TestWorkflowShowCli:
    """`postflow workflow show`."""

    def test_default_text(self) -> None:
        """Without a file it describes the default workflow."""
        result = CliRunner().invoke(cli, ["workflow", "show"])
        assert result.exit_code == 0, result.output
        assert "workflow default" in result.output
        assert "request_changes" in result.output
        assert "comment required" in result.output

    def test_file_text(self, toml_file: Path) -> None:
        """With a file it describes that workflow, stages and due times included."""
        result = CliRunner().invoke(cli, ["workflow", "show", str(toml_file),
                                          "--format", "text"])
        assert result.exit_code == 0, result.output
        assert "workflow with_legal" in result.output
        assert "2. legal: 2 of legal, due 1d" in result.output

    def test_mermaid(self, toml_file: Path) -> None:
        """--format mermaid prints every edge as Mermaid."""
        result = CliRunner().invoke(cli, ["workflow", "show", str(toml_file),
                                          "--format", "mermaid"])
        assert result.exit_code == 0, result.output
        wf = postflow.Workflow.from_toml(toml_file)
        assert result.output.strip() == wf.mermaid()
        assert "review --> approved: approve" in result.output

    def test_graphviz(self) -> None:
        """--format graphviz prints every edge as a digraph."""
        result = CliRunner().invoke(cli, ["workflow", "show", "--format", "graphviz"])
        assert result.exit_code == 0, result.output
        for source, dest, trigger in edges_of(postflow.Workflow.default()):
            assert f'"{source}" -> "{dest}" [label="{trigger}"];' in result.output

    def test_bad_format(self) -> None:
        """An unknown format is a usage error."""
        result = CliRunner().invoke(cli, ["workflow", "show", "--format", "svg"])
        assert result.exit_code == 2
        assert "svg" in result.output

    def test_bad_file(self, tmp_path: Path) -> None:
        """A broken file surfaces as a ConfigError naming the problem."""
        path = tmp_path / "bad.toml"
        path.write_text(LEGAL_TOML.replace('roles = ["legal"]\nstates', "states", 1))
        result = CliRunner().invoke(cli, ["workflow", "show", str(path)])
        assert result.exit_code != 0
        assert isinstance(result.exception, postflow.ConfigError)
        assert "unknown role 'legal'" in str(result.exception)
