"""Workflows as data: states, triggers, who may fire them, and approval stages.

A :class:`Workflow` is loaded from a dict or a TOML file and validated on load. It owns
ONE shared :class:`transitions.Machine` (``model=None``) that every post of every
workspace using the workflow is fired through, carried by a throw-away object.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import attrs
from transitions import Event, EventData, Machine, State, Transition

from postflow._time import parse_duration
from postflow.exceptions import ConfigError
from postflow.models import ROLES, Approval, StageStatus

__all__ = ["BUILTIN_WORKFLOWS", "DEFAULT_WORKFLOW", "Stage", "TransitionRule", "Workflow",
           "workflow_diff"]

EDIT = "edit"
"""The generated trigger editing fires; workflows may not define it themselves."""

DEFAULT_WORKFLOW: Mapping[str, Any] = {
    "name": "default",
    "initial": "draft",
    "states": ["draft", "review", "approved", "scheduled", "published", "failed", "archived"],
    "edit_returns_to": "draft",
    "editable": ["draft", "review", "approved", "scheduled", "failed"],
    "four_eyes": True,
    "approval_state": "review",
    "transitions": [
        {"trigger": "submit", "source": "draft", "dest": "review",
         "roles": ["author", "admin"], "author_only": True},
        {"trigger": "approve", "source": "review", "dest": "approved"},
        {"trigger": "request_changes", "source": "review", "dest": "draft",
         "roles": ["approver", "admin"], "comment_required": True},
        {"trigger": "withdraw", "source": "review", "dest": "draft",
         "roles": ["author", "admin"], "author_only": True},
        {"trigger": "schedule", "source": "approved", "dest": "scheduled",
         "roles": ["publisher", "admin"]},
        {"trigger": "unschedule", "source": "scheduled", "dest": "approved",
         "roles": ["publisher", "admin"]},
        {"trigger": "publish", "source": ["scheduled", "approved"], "dest": "published",
         "roles": ["publisher", "admin"]},
        {"trigger": "fail", "source": "scheduled", "dest": "failed",
         "roles": ["publisher", "admin"]},
        {"trigger": "retry", "source": "failed", "dest": "scheduled",
         "roles": ["publisher", "admin"]},
        {"trigger": "archive",
         "source": ["draft", "review", "approved", "scheduled", "published", "failed"],
         "dest": "archived", "roles": ["publisher", "admin"]},
        {"trigger": "restore", "source": "archived", "dest": "draft",
         "roles": ["publisher", "admin"]},
    ],
    "stages": [{"name": "review", "roles": ["approver"], "quorum": 1}],
}

BUILTIN_WORKFLOWS: Mapping[str, Mapping[str, Any]] = {"default": DEFAULT_WORKFLOW}
"""The workflows ``extends`` may name (besides a path to a TOML file)."""

NOT_EDITABLE_BY_DEFAULT = frozenset({"published", "archived"})
"""States a workflow that leaves ``editable`` out does not make editable."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS = {
    "name", "initial", "states", "transitions", "stages", "roles", "edit_returns_to",
    "editable", "four_eyes", "approval_state",
}
_EXTENDING_KEYS = _TOP_KEYS | {"extends"}
_TRANSITION_KEYS = {"trigger", "source", "dest", "roles", "author_only", "comment_required"}
_STAGE_KEYS = {"name", "roles", "members", "quorum", "due"}


@attrs.frozen
class Stage:
    """An approval stage: who may approve, how many must, and by when.

    ``quorum`` is the number of distinct eligible approvals needed. A member is
    eligible when they hold one of ``roles`` or are named in ``members`` (or, for one
    post, in its :attr:`~postflow.Post.extra_approvers`). ``due`` is measured from the
    moment the post reached the stage (see :meth:`Workflow.stage_status`).
    """

    name: str
    roles: frozenset[str] = frozenset()
    members: frozenset[str] = frozenset()
    quorum: int = 1
    due: timedelta | None = None

    def eligible(self, member: str, roles: Iterable[str]) -> bool:
        """Whether a member with ``roles`` may approve at this stage."""
        return member in self.members or not self.roles.isdisjoint(roles)


@attrs.frozen
class TransitionRule:
    """One trigger's rule: where it goes from where, and who may fire it."""

    trigger: str
    sources: tuple[str, ...]
    dest: str
    roles: frozenset[str]
    author_only: bool = False
    comment_required: bool = False


_TRANSITIONS_LOG = logging.getLogger("transitions.core")
"""The logger ``transitions`` writes each fire's lines to (``transitions.core._LOGGER``).

When it is enabled for INFO, ``transitions`` would log a fire (its INFO lines and, if
enabled for DEBUG, its DEBUG lines too): then every quiet class below steps aside and
``transitions``' own code runs and logs as it always does. When it is not, those lines
would never reach a handler and the quiet classes skip them with their formatting.
"""


class _QuietState(State):
    """A state whose enter and exit cost nothing when nothing would be observed.

    ``State.enter`` and ``State.exit`` run the state's callbacks and log
    ``"Finished processing state … enter/exit callbacks."`` at INFO (and two DEBUG
    lines). With no callbacks and ``transitions.core`` not logging at INFO, they do
    nothing anyone could see, so they are skipped. Subclasses that override ``enter``
    or ``exit`` (``transitions.extensions.states``' Error, Timeout, Volatile and Retry,
    or a user's own) run their override as always; it reaches this check only through
    ``super()``.
    """

    def enter(self, event_data: EventData) -> None:
        if self.on_enter or _TRANSITIONS_LOG.isEnabledFor(logging.INFO):
            super().enter(event_data)

    def exit(self, event_data: EventData) -> None:
        if self.on_exit or _TRANSITIONS_LOG.isEnabledFor(logging.INFO):
            super().exit(event_data)


class _QuietTransition(Transition):
    """A transition that skips callback lists that are empty (all of postflow's are)
    and ``transitions``' log lines when they would not be logged.

    With ``transitions.core`` logging, ``Transition``'s own ``execute`` and
    ``_change_state`` run. Without, the ``_unlogged`` methods do the same work minus
    empty callback lists and the log calls; :class:`_QuietEvent`, having checked the
    logger for the whole fire, calls them directly on ``_QuietTransition`` itself
    (subclasses, which may override ``execute`` or ``_change_state``, get those).
    """

    def execute(self, event_data: EventData) -> bool:
        if _TRANSITIONS_LOG.isEnabledFor(logging.INFO):
            return bool(super().execute(event_data))
        return self._execute_unlogged(event_data)

    def _change_state(self, event_data: EventData) -> None:
        if _TRANSITIONS_LOG.isEnabledFor(logging.INFO):
            super()._change_state(event_data)
        else:
            self._change_state_unlogged(event_data)

    def _execute_unlogged(self, event_data: EventData) -> bool:
        machine = event_data.machine
        # the attributes behind Machine's callback properties: one fire reads them
        # several times, and a property call costs more than the rest of the check
        if (self.prepare or self.before or self.after or machine._before_state_change
                or machine._after_state_change):
            return bool(super().execute(event_data))
        for condition in self.conditions:
            if not condition.check(event_data):
                return False
        if self.dest:
            if type(self) is _QuietTransition:
                self._change_state_unlogged(event_data)
            else:
                self._change_state(event_data)
        return True

    def _change_state_unlogged(self, event_data: EventData) -> None:
        # Machine.get_state/set_state made cheap for postflow's case (string states, one
        # model per fire): a dict lookup first, get_state only for what it misses
        # (Enum states, unknown states, which get_state refuses as transitions does).
        # exit and enter are called as transitions calls them unless the state is a
        # _QuietState, whose would do nothing without callbacks: any other state class,
        # such as one overriding enter or exit, is always called.
        machine = event_data.machine
        states = machine.states
        source = states.get(self.source) or machine.get_state(self.source)
        if source.on_exit or type(source) is not _QuietState:
            source.exit(event_data)
        dest = states.get(self.dest) or machine.get_state(self.dest)  # type: ignore[arg-type]
        setattr(event_data.model, machine.model_attribute, dest.value)
        event_data.state = dest
        if dest.on_enter or type(dest) is not _QuietState:
            dest.enter(event_data)
        if dest.final:
            machine.callbacks(machine.on_final, event_data)


class _QuietEvent(Event):
    """An event that skips ``transitions``' queue and machine-wide callbacks when the
    machine has none (postflow's has none: it never queues and it sets no
    ``prepare_event``, ``finalize_event`` or ``on_exception``) and ``transitions.core``
    is not enabled for INFO, so that none of the fire's log lines would be written.

    What is left is exactly ``Event._trigger`` and ``Event._process`` for that case: find
    the post's state, refuse a trigger that is not valid there, and execute the first
    of its transitions whose conditions pass.
    """

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        machine = self.machine
        if (args or kwargs or machine._queued or machine._transition_queue
                or machine._prepare_event or machine._finalize_event
                or machine._on_exception or _TRANSITIONS_LOG.isEnabledFor(logging.INFO)):
            return bool(super().trigger(model, *args, **kwargs))
        name = getattr(model, machine.model_attribute)
        candidates = self.transitions.get(name)
        if candidates is None:
            return bool(super().trigger(model))  # raises transitions' MachineError
        event_data = EventData(machine.states[name], self, machine, model, (), {})
        for transition in candidates:
            event_data.transition = transition
            # the logger was checked above, for the whole fire
            if type(transition) is _QuietTransition:
                done = transition._execute_unlogged(event_data)
            else:
                done = transition.execute(event_data)
            if done:
                event_data.result = True
                break
        return bool(event_data.result)


class _WorkflowMachine(Machine):
    """``transitions.Machine`` with the quiet state, transition and event classes."""

    state_cls = _QuietState
    transition_cls = _QuietTransition
    event_cls = _QuietEvent


class _Carrier:
    """What the shared machine fires on: a state and the approvals it would have."""

    __slots__ = ("approvals", "state")

    def __init__(self, state: str, approvals: tuple[Approval, ...]) -> None:
        self.state = state
        self.approvals = approvals


@attrs.frozen(eq=False)
class Workflow:
    """A validated workflow definition. Build with :meth:`default`, :meth:`from_dict`
    or :meth:`from_toml`."""

    name: str
    initial: str
    states: tuple[str, ...]
    rules: Mapping[str, TransitionRule]
    stages: tuple[Stage, ...]
    roles: frozenset[str]
    edit_returns_to: str
    editable: frozenset[str]
    four_eyes: bool
    approval_state: str | None

    # -- loading -------------------------------------------------------------------

    @classmethod
    def default(cls) -> Workflow:
        """The default workflow (draft → review → approved → scheduled → published)."""
        return cls.from_dict(DEFAULT_WORKFLOW)

    @classmethod
    def from_toml(cls, path: str | Path) -> Workflow:
        """Load and validate a workflow from a TOML file.

        An ``extends`` path in it is relative to the file's folder.
        """
        path = Path(path)
        data = _read_toml(path)
        try:
            resolved = _resolve(data, path.parent, (path.resolve(),))
            return cls._build(resolved)
        except ConfigError as exc:
            raise ConfigError(f"workflow file {path}: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: str | Path | None = None
                  ) -> Workflow:
        """Validate a workflow definition (the shape of :data:`DEFAULT_WORKFLOW`).

        ``extends`` (a name in :data:`BUILTIN_WORKFLOWS` or a path to a TOML file,
        relative to ``base_dir``, by default the working directory) starts from another
        workflow; see :doc:`workflow-format`. Raises :class:`~postflow.ConfigError`
        naming the first problem found: unknown keys, states or roles, unreachable
        states, duplicate triggers, stages without an ``approve`` trigger, impossible
        quorums, unknown or circular ``extends``.
        """
        return cls._build(_resolve(data, Path(base_dir or "."), ()))

    @classmethod
    def _build(cls, data: Mapping[str, Any]) -> Workflow:
        """Validate a definition whose ``extends`` is resolved."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a workflow must be a table/dict, got {type(data).__name__}")
        _no_unknown_keys(data, _TOP_KEYS, "workflow")
        name = _name(data.get("name", "custom"), "workflow name", slug=False)
        states = _names(data.get("states"), "states")
        if not states:
            raise ConfigError(f"workflow {name!r}: 'states' must list at least one state")
        if len(set(states)) != len(states):
            raise ConfigError(f"workflow {name!r}: a state is listed twice in 'states'")
        initial = data.get("initial", states[0])
        _known_state(initial, states, name, "initial")
        roles = ROLES | frozenset(_names(data.get("roles", []), "roles"))

        rules: dict[str, TransitionRule] = {}
        seen: set[tuple[str, str]] = set()
        raw_transitions = data.get("transitions")
        if not isinstance(raw_transitions, Sequence) or not raw_transitions:
            raise ConfigError(f"workflow {name!r}: 'transitions' must be a non-empty list")
        for raw in raw_transitions:
            rule = _transition(raw, states, roles, name)
            for source in rule.sources:
                if (rule.trigger, source) in seen:
                    raise ConfigError(
                        f"workflow {name!r}: duplicate trigger {rule.trigger!r} "
                        f"from state {source!r}"
                    )
                seen.add((rule.trigger, source))
            if rule.trigger in rules:
                rules[rule.trigger] = _merge(rules[rule.trigger], rule, name)
            else:
                rules[rule.trigger] = rule

        raw_stages = data.get("stages", [])
        if not isinstance(raw_stages, Sequence):
            raise ConfigError(f"workflow {name!r}: 'stages' must be a list")
        stages = tuple(_stage(raw, roles, name) for raw in raw_stages)
        if len({s.name for s in stages}) != len(stages):
            raise ConfigError(f"workflow {name!r}: two approval stages share a name")
        approve = rules.get("approve")
        if stages and approve is None:
            raise ConfigError(
                f"workflow {name!r}: approval stages are defined but no 'approve' trigger is"
            )
        if approve is not None and not stages:
            stages = (Stage("review", roles=frozenset({"approver"})),)
        approval_state = data.get("approval_state")
        if approve is not None:
            if approval_state is None:
                approval_state = approve.sources[0]
            _known_state(approval_state, states, name, "approval_state")
            if approval_state not in approve.sources:
                raise ConfigError(
                    f"workflow {name!r}: approval_state {approval_state!r} must be a source "
                    f"of the 'approve' trigger ({', '.join(approve.sources)})"
                )
        elif approval_state is not None:
            raise ConfigError(f"workflow {name!r}: 'approval_state' needs an 'approve' trigger")

        edit_returns_to = data.get("edit_returns_to", initial)
        _known_state(edit_returns_to, states, name, "edit_returns_to")
        if edit_returns_to not in (initial, approval_state):
            raise ConfigError(
                f"workflow {name!r}: edit_returns_to must be the initial state {initial!r}"
                + (f" or the approval state {approval_state!r}" if approval_state else "")
                + f", not {edit_returns_to!r}: an edited post must be approved again"
            )
        if "editable" in data:
            editable = frozenset(_names(data["editable"], "editable"))
        else:
            editable = frozenset(states) - NOT_EDITABLE_BY_DEFAULT
        for state in editable:
            _known_state(state, states, name, "editable")
        four_eyes = data.get("four_eyes", True)
        if not isinstance(four_eyes, bool):
            raise ConfigError(f"workflow {name!r}: 'four_eyes' must be true or false")

        workflow = cls(
            name=name, initial=initial, states=tuple(states), rules=rules, stages=stages,
            roles=roles, edit_returns_to=edit_returns_to, editable=editable,
            four_eyes=four_eyes, approval_state=approval_state,
        )
        unreachable = [s for s in states if s not in workflow._reachable()]
        if unreachable:
            raise ConfigError(
                f"workflow {name!r}: state(s) {', '.join(map(repr, unreachable))} cannot be "
                f"reached from {initial!r}"
            )
        return workflow

    # -- the stored form ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The normalised definition: every key present, defaults filled, ``extends``
        resolved, in a stable order, JSON-able (what a database stores).

        ``Workflow.from_dict(w.to_dict()).to_dict() == w.to_dict()`` for every workflow.
        """
        transitions: list[dict[str, Any]] = []
        for rule in self.rules.values():
            entry: dict[str, Any] = {"trigger": rule.trigger, "source": list(rule.sources),
                                     "dest": rule.dest}
            if rule.trigger != "approve":
                entry["roles"] = sorted(rule.roles)
            entry["author_only"] = rule.author_only
            entry["comment_required"] = rule.comment_required
            transitions.append(entry)
        return {
            "name": self.name,
            "initial": self.initial,
            "states": list(self.states),
            "roles": sorted(self.roles - ROLES),
            "transitions": transitions,
            "stages": [
                {"name": stage.name, "roles": sorted(stage.roles),
                 "members": sorted(stage.members), "quorum": stage.quorum,
                 "due": _format_duration(stage.due) if stage.due else None}
                for stage in self.stages
            ],
            "approval_state": self.approval_state,
            "edit_returns_to": self.edit_returns_to,
            "editable": [s for s in self.states if s in self.editable],
            "four_eyes": self.four_eyes,
        }

    def same_definition(self, other: Workflow) -> bool:
        """Whether two workflows define the same thing (compared normalised)."""
        return self is other or self.to_dict() == other.to_dict()

    def differences(self, other: Workflow) -> list[str]:
        """What ``other`` changes compared with this workflow, one line per change."""
        return workflow_diff(self.to_dict(), other.to_dict())

    # -- the rulebook --------------------------------------------------------------

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every trigger users may fire (``edit`` excluded)."""
        return tuple(self.rules)

    def triggers_from(self, state: str) -> tuple[str, ...]:
        """The triggers that have a transition out of ``state``."""
        return tuple(t for t, rule in self.rules.items() if state in rule.sources)

    def dest(self, trigger: str, state: str) -> str:
        """Where ``trigger`` leads from ``state`` when it completes.

        Raises :class:`~postflow.ConfigError` when the workflow has no such transition.
        """
        rule = self.rules.get(trigger)
        if rule is None or state not in rule.sources:
            raise ConfigError(f"workflow {self.name!r} has no {trigger!r} from {state!r}")
        return rule.dest

    def edit_dest(self, state: str) -> str:
        """The state an edit made in ``state`` leaves the post in."""
        return state if state == self.initial else self.edit_returns_to

    @cached_property
    def machine(self) -> Machine:
        """The one shared state machine of this workflow."""
        transitions: list[dict[str, Any]] = []
        for rule in self.rules.values():
            for source in rule.sources:
                if rule.trigger == "approve":
                    transitions.append({"trigger": "approve", "source": source,
                                        "dest": rule.dest, "conditions": [self._complete]})
                    transitions.append({"trigger": "approve", "source": source, "dest": None})
                else:
                    transitions.append(
                        {"trigger": rule.trigger, "source": source, "dest": rule.dest}
                    )
        for state in sorted(self.editable):
            dest = self.edit_dest(state)
            transitions.append(
                {"trigger": EDIT, "source": state, "dest": None if dest == state else dest}
            )
        return _WorkflowMachine(
            model=None, states=list(self.states), initial=self.initial,
            transitions=transitions, auto_transitions=False, send_event=True,
            queued=False, name=f"postflow-{self.name}",
        )

    def fire(self, trigger: str, state: str, approvals: tuple[Approval, ...] = ()) -> str | None:
        """Fire ``trigger`` from ``state`` through the shared machine.

        Returns the state the post ends in, or ``None`` when a condition refused the
        transition. The caller has checked that the trigger is valid in ``state``.
        """
        carrier = _Carrier(state, approvals)
        if self.machine.events[trigger].trigger(carrier):
            return carrier.state
        return None

    def _complete(self, event: EventData) -> bool:
        carrier = cast(_Carrier, event.model)
        return self.current_stage(carrier.approvals) is None

    def current_stage(self, approvals: Iterable[Approval]) -> Stage | None:
        """The first stage whose quorum ``approvals`` do not yet meet."""
        counts: dict[str, int] = {}
        for approval in approvals:
            counts[approval.stage] = counts.get(approval.stage, 0) + 1
        for stage in self.stages:
            if counts.get(stage.name, 0) < stage.quorum:
                return stage
        return None

    def stage_status(
        self, approvals: Iterable[Approval], entered_at: datetime | None, now: datetime
    ) -> tuple[StageStatus, ...]:
        """Where every stage stands given the current revision's ``approvals``.

        A stage's due time counts from when the post reached it: ``entered_at`` (when it
        entered the approval state) for the first stage, the time of the approval that
        completed the previous stage's quorum for a later one. A stage not reached yet
        has no due time and is not overdue.
        """
        approvals = tuple(approvals)
        result = []
        reached = entered_at
        for stage in self.stages:
            by = tuple(a.member for a in approvals if a.stage == stage.name)
            due_at = reached + stage.due if (stage.due and reached) else None
            satisfied = len(by) >= stage.quorum
            result.append(StageStatus(
                name=stage.name, needed=stage.quorum, approved_by=by,
                eligible_roles=stage.roles, eligible_members=stage.members,
                due_at=due_at, overdue=bool(due_at and not satisfied and now > due_at),
                reached_at=reached,
            ))
            if reached is None or not satisfied:
                reached = None
            elif stage.quorum > 0:
                times = sorted(a.at for a in approvals if a.stage == stage.name)
                reached = max(reached, times[stage.quorum - 1])
        return tuple(result)

    # -- description ---------------------------------------------------------------

    def _edges(self) -> list[tuple[str, str, str]]:
        edges = [(s, r.dest, r.trigger) for r in self.rules.values() for s in r.sources]
        edges += [
            (s, self.edit_dest(s), EDIT) for s in sorted(self.editable)
            if self.edit_dest(s) != s
        ]
        return edges

    def _reachable(self) -> set[str]:
        seen = {self.initial}
        queue = deque([self.initial])
        edges = self._edges()
        while queue:
            state = queue.popleft()
            for source, dest, _ in edges:
                if source == state and dest not in seen:
                    seen.add(dest)
                    queue.append(dest)
        return seen

    def describe(self) -> str:
        """A plain-text table of states, transitions, roles and stages."""
        lines = [f"workflow {self.name}", f"  initial state: {self.initial}",
                 f"  states: {', '.join(self.states)}", "  transitions:"]
        for rule in self.rules.values():
            who = ", ".join(sorted(rule.roles)) if rule.trigger != "approve" else "see stages"
            extra = []
            if rule.author_only:
                extra.append("post author only")
            if rule.comment_required:
                extra.append("comment required")
            note = f" ({'; '.join(extra)})" if extra else ""
            lines.append(
                f"    {rule.trigger:<16} {', '.join(rule.sources)} -> {rule.dest}   "
                f"[{who}]{note}"
            )
        lines.append(
            f"    {EDIT:<16} {', '.join(sorted(self.editable))} -> {self.edit_returns_to}"
            "   [post author, admin] (new revision, voids approvals)"
        )
        if self.stages:
            lines.append(f"  approval stages (in {self.approval_state}, in order):")
            for i, stage in enumerate(self.stages, 1):
                eligible = sorted(stage.roles) + [f"@{m}" for m in sorted(stage.members)]
                due = f", due {_format_duration(stage.due)}" if stage.due else ""
                lines.append(
                    f"    {i}. {stage.name}: {stage.quorum} of {', '.join(eligible)}{due}"
                )
        lines.append(f"  four-eyes rule: {'on' if self.four_eyes else 'off'}")
        return "\n".join(lines)

    def mermaid(self) -> str:
        """A Mermaid ``stateDiagram-v2`` of the workflow."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        lines += [f"    {s} --> {d}: {t}" for s, d, t in self._edges()]
        return "\n".join(lines)

    def graphviz(self) -> str:
        """A Graphviz ``digraph`` of the workflow."""
        name = self.name.replace("\\", "\\\\").replace('"', '\\"')
        lines = [f'digraph "{name}" {{', "    rankdir=LR;",
                 f'    "{self.initial}" [shape=doublecircle];']
        lines += [f'    "{s}" -> "{d}" [label="{t}"];' for s, d, t in self._edges()]
        lines.append("}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, states={list(self.states)})"


def _format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _no_unknown_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )


def _name(value: object, what: str, *, slug: bool = True) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    if slug and not _NAME.match(value):
        raise ConfigError(f"{what} {value!r} must be lower-case letters, digits and _")
    return value


def _names(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence):
        raise ConfigError(f"{what} must be a list of names, got {value!r}")
    return [_name(v, f"a name in {what}") for v in value]


def _known_state(state: object, states: Sequence[str], workflow: str, what: str) -> None:
    if state not in states:
        raise ConfigError(
            f"workflow {workflow!r}: {what} names unknown state {state!r} "
            f"(states: {', '.join(states)})"
        )


def _known_roles(roles: Iterable[str], known: frozenset[str], where: str) -> None:
    for role in roles:
        if role not in known:
            raise ConfigError(
                f"{where}: unknown role {role!r} (known roles: {', '.join(sorted(known))}; "
                "declare extra roles in the workflow's 'roles' list)"
            )


def _transition(
    raw: object, states: Sequence[str], roles: frozenset[str], workflow: str
) -> TransitionRule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"workflow {workflow!r}: each transition must be a table/dict")
    trigger = _name(raw.get("trigger"), f"workflow {workflow!r}: a transition's trigger")
    where = f"workflow {workflow!r}, trigger {trigger!r}"
    _no_unknown_keys(raw, _TRANSITION_KEYS, where)
    if trigger == EDIT:
        raise ConfigError(f"{where}: 'edit' is reserved (editing is built in)")
    if trigger in _Carrier.__slots__:
        # transitions refuses a trigger named like an attribute of the model it fires on
        raise ConfigError(f"{where}: {trigger!r} is reserved (the machine's model has an "
                          f"attribute of that name: {', '.join(_Carrier.__slots__)})")
    source = raw.get("source")
    sources = list(states) if source == "*" else _names(source, f"{where}: source")
    if not sources:
        raise ConfigError(f"{where}: needs a 'source' state (or '*')")
    for state in sources:
        _known_state(state, states, workflow, f"trigger {trigger!r} source")
    dest = raw.get("dest")
    _known_state(dest, states, workflow, f"trigger {trigger!r} dest")
    if trigger == "approve":
        if "roles" in raw:
            raise ConfigError(
                f"{where}: who may approve is set by the approval stages, not by 'roles'"
            )
        rule_roles: frozenset[str] = frozenset()
    elif "roles" in raw:
        rule_roles = frozenset(_names(raw["roles"], f"{where}: roles"))
    else:
        rule_roles = frozenset({"admin"})
    _known_roles(rule_roles, roles, where)
    flags = {}
    for flag in ("author_only", "comment_required"):
        value = raw.get(flag, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {flag!r} must be true or false")
        flags[flag] = value
    return TransitionRule(trigger, tuple(sources), str(dest), rule_roles, **flags)


def _merge(first: TransitionRule, second: TransitionRule, workflow: str) -> TransitionRule:
    """Two entries for one trigger (different sources) must agree on all but sources."""
    if attrs.evolve(second, sources=first.sources) != first:
        raise ConfigError(
            f"workflow {workflow!r}: trigger {first.trigger!r} is defined twice with "
            "different dest, roles or flags; one trigger has one rule"
        )
    return attrs.evolve(first, sources=first.sources + second.sources)


def _stage(raw: object, roles: frozenset[str], workflow: str) -> Stage:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"workflow {workflow!r}: each stage must be a table/dict")
    name = _name(raw.get("name"), f"workflow {workflow!r}: a stage's name")
    where = f"workflow {workflow!r}, stage {name!r}"
    _no_unknown_keys(raw, _STAGE_KEYS, where)
    stage_roles = frozenset(_names(raw.get("roles", []), f"{where}: roles"))
    _known_roles(stage_roles, roles, where)
    members_raw = raw.get("members", [])
    if isinstance(members_raw, str) or not isinstance(members_raw, Sequence) or not all(
        isinstance(m, str) and m for m in members_raw
    ):
        raise ConfigError(f"{where}: members must be a list of member names")
    members = frozenset(members_raw)
    if len(members) != len(members_raw):
        raise ConfigError(f"{where}: a member is named twice")
    if not stage_roles and not members:
        raise ConfigError(f"{where}: names no eligible roles or members")
    quorum_raw = raw.get("quorum", 1)
    if quorum_raw == "all":
        if stage_roles or not members:
            raise ConfigError(
                f"{where}: quorum 'all' needs named members and no roles "
                "(a role's holders change over time)"
            )
        quorum = len(members)
    elif isinstance(quorum_raw, int) and not isinstance(quorum_raw, bool) and quorum_raw >= 1:
        quorum = quorum_raw
        if not stage_roles and quorum > len(members):
            raise ConfigError(
                f"{where}: quorum {quorum} is more than the {len(members)} named members"
            )
    else:
        raise ConfigError(f"{where}: quorum must be a positive number or 'all'")
    due_raw = raw.get("due")
    due = None if due_raw is None else parse_duration(due_raw, what=f"{where}: due")
    return Stage(name, stage_roles, members, quorum, due)


# -- extends ---------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"workflow file {path}: cannot read it: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"workflow file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"workflow file {path}: not valid TOML: {exc}") from exc


def _resolve(data: Mapping[str, Any], base_dir: Path, chain: tuple[Path, ...]
             ) -> Mapping[str, Any]:
    """``data`` with its ``extends`` (recursively) merged in, or ``data`` itself."""
    if not isinstance(data, Mapping) or "extends" not in data:
        return data
    _no_unknown_keys(data, _EXTENDING_KEYS, "workflow")
    target = data["extends"]
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"workflow: 'extends' must be a workflow name or a path, "
                          f"got {target!r}")
    if target in BUILTIN_WORKFLOWS:
        base = Workflow._build(BUILTIN_WORKFLOWS[target]).to_dict()
    elif "/" in target or "\\" in target or target.endswith(".toml"):
        path = (base_dir / target).resolve()
        if path in chain:
            cycle = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
            raise ConfigError(f"workflow: 'extends' makes a cycle: {cycle}")
        raw = _read_toml(path)
        try:
            base = Workflow._build(_resolve(raw, path.parent, (*chain, path))).to_dict()
        except ConfigError as exc:
            raise ConfigError(f"extended workflow file {path}: {exc}") from exc
    else:
        raise ConfigError(
            f"workflow: 'extends' names unknown workflow {target!r} (built in: "
            f"{', '.join(sorted(BUILTIN_WORKFLOWS))}; or give a path to a TOML file, "
            "e.g. 'base.toml')"
        )
    return _merge_definitions(base, data)


def _merge_definitions(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` laid over the normalised ``base``: states, roles, triggers and stages
    are added (a trigger or stage of the same name replaces the base's), other keys
    replace the base's. The name is the child's (``custom`` without one)."""
    merged = dict(base)
    merged["name"] = child.get("name", "custom")
    for key in ("initial", "approval_state", "edit_returns_to", "four_eyes", "editable"):
        if key in child:
            merged[key] = child[key]
    added_states = [s for s in _names(child.get("states"), "states") if s not in base["states"]]
    merged["states"] = [*base["states"], *added_states]
    if "editable" not in child:
        merged["editable"] = [*base["editable"],
                              *(s for s in added_states if s not in NOT_EDITABLE_BY_DEFAULT)]
    extra_roles = _names(child.get("roles"), "roles")
    merged["roles"] = [*base["roles"], *(r for r in extra_roles if r not in base["roles"])]

    raw_transitions = child.get("transitions", [])
    if not isinstance(raw_transitions, Sequence) or isinstance(raw_transitions, str):
        raise ConfigError("workflow: 'transitions' must be a list")
    overridden = {t.get("trigger") for t in raw_transitions if isinstance(t, Mapping)}
    transitions = [t for t in base["transitions"] if t["trigger"] not in overridden]
    merged["transitions"] = [*transitions, *raw_transitions]

    raw_stages = child.get("stages", [])
    if not isinstance(raw_stages, Sequence) or isinstance(raw_stages, str):
        raise ConfigError("workflow: 'stages' must be a list")
    by_name = {s.get("name"): s for s in raw_stages if isinstance(s, Mapping)}
    stages = [by_name.pop(s["name"], s) for s in base["stages"]]
    merged["stages"] = [*stages, *(s for s in raw_stages
                                   if not isinstance(s, Mapping) or s.get("name") in by_name)]
    return merged


# -- comparing -------------------------------------------------------------------------


def workflow_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What changes from the normalised definition ``old`` to ``new``, one short line
    per change (empty when they are the same)."""
    lines: list[str] = []

    def listed(what: str, before: Iterable[str], after: Iterable[str]) -> None:
        before, after = list(before), list(after)
        added = [x for x in after if x not in before]
        removed = [x for x in before if x not in after]
        if added:
            lines.append(f"{what} added: {', '.join(added)}")
        if removed:
            lines.append(f"{what} removed: {', '.join(removed)}")

    for key in ("name", "initial", "approval_state", "edit_returns_to", "four_eyes"):
        if old.get(key) != new.get(key):
            lines.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    listed("states", old.get("states", ()), new.get("states", ()))
    listed("editable states", old.get("editable", ()), new.get("editable", ()))
    listed("roles", old.get("roles", ()), new.get("roles", ()))
    for what, key, label in (("triggers", "transitions", "trigger"),
                             ("stages", "stages", "name")):
        before = {item[label]: item for item in old.get(key, ())}
        after = {item[label]: item for item in new.get(key, ())}
        listed(what, before, after)
        for name in before:
            if name in after and before[name] != after[name]:
                fields = sorted(k for k in {*before[name], *after[name]}
                                if before[name].get(k) != after[name].get(k))
                changes = "; ".join(
                    f"{k} {before[name].get(k)!r} -> {after[name].get(k)!r}" for k in fields)
                lines.append(f"{what[:-1]} {name!r} changed: {changes}")
        common_before = [n for n in before if n in after]
        common_after = [n for n in after if n in before]
        if key == "stages" and common_before != common_after:
            lines.append(f"stage order: {', '.join(common_before)} -> "
                         f"{', '.join(common_after)}")
    return lines
