"""The shared machine's fast path keeps what ``transitions`` documents.

postflow's machine uses quiet state, transition and event classes that skip work
nobody can observe. These tests pin down what must still be observable exactly as in
plain ``transitions``: ``State`` subclasses that override ``enter``/``exit`` (the ones in
``transitions.extensions.states`` and users' own), and ``transitions``' log lines when
its logger is enabled. ``tests/transitions_suite/run.py`` runs ``transitions``' own test
suite against the same classes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import transitions.core
from transitions import Machine, MachineError, State
from transitions.extensions.states import Error, Retry, Tags, Timeout, Volatile, add_state_features

import postflow
from postflow.models import Approval


class Recording(State):
    """A user's state class that overrides enter and exit (and has no callbacks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def enter(self, event_data: Any) -> None:
        self.calls.append(f"enter:{event_data.model.state}")
        super().enter(event_data)

    def exit(self, event_data: Any) -> None:
        self.calls.append(f"exit:{event_data.model.state}")
        super().exit(event_data)


class Model:
    """A plain model for machines built from postflow's machine class."""

    state: str


def features_machine(*features: type[State], **kwargs: Any) -> Machine:
    """A machine of postflow's own class, decorated with transitions' state features."""

    @add_state_features(*features)
    class FeatureMachine(type(postflow.Workflow.default().machine)):  # type: ignore[misc]
        pass

    kwargs.setdefault("auto_transitions", False)
    return FeatureMachine(**kwargs)  # type: ignore[no-any-return]


class TestStateOverrides:
    """A State subclass overriding enter/exit is entered and left, callbacks or not."""

    def test_user_state_added_to_the_shared_machine(self) -> None:
        wf = postflow.Workflow.default()
        holding = Recording("holding")
        wf.machine.add_states(holding)
        wf.machine.add_transition("hold", "draft", "holding")
        wf.machine.add_transition("release", "holding", "draft")
        assert wf.fire("hold", "draft") == "holding"
        assert wf.fire("release", "holding") == "draft"
        assert holding.calls == ["enter:holding", "exit:holding"]

    def test_user_state_class_of_the_machine(self) -> None:
        """The machine's own state_cls replaced by a subclass: every state is a Recording."""
        machine_cls = type(postflow.Workflow.default().machine)

        class RecordingMachine(machine_cls):  # type: ignore[misc, valid-type]
            state_cls = type("QuietRecording", (Recording, machine_cls.state_cls), {})

        machine = RecordingMachine(model=None, states=["a", "b"], initial="a",
                                   transitions=[["go", "a", "b"]], auto_transitions=False)
        model = Model()
        model.state = "a"
        assert machine.events["go"].trigger(model)
        assert machine.get_state("a").calls == ["exit:a"]
        assert machine.get_state("b").calls == ["enter:b"]


class TestExtensionStates:
    """transitions.extensions.states work on postflow's machine class and on the
    shared machine (Tags has no enter/exit of its own; it is here through Error)."""

    def test_error_state_raises_and_accepted_tag_lets_it_pass(self) -> None:
        machine = features_machine(Error, Tags, model=None, initial="a", transitions=[
            ["fail", "a", "broken"], ["finish", "a", "done"]], states=[
            "a", {"name": "broken"}, {"name": "done", "accepted": True, "tags": ["final"]}])
        model = Model()
        model.state = "a"
        with pytest.raises(MachineError, match="Error state 'broken' reached!"):
            machine.events["fail"].trigger(model)
        model.state = "a"
        assert machine.events["finish"].trigger(model)
        assert model.state == "done"
        assert machine.get_state("done").is_final
        assert machine.get_state("done").is_accepted

    def test_error_state_on_the_shared_machine(self) -> None:
        wf = postflow.Workflow.default()
        wf.machine.add_states(Error("dead_end"))
        wf.machine.add_transition("break_down", "draft", "dead_end")
        with pytest.raises(MachineError, match="Error state 'dead_end' reached!"):
            wf.fire("break_down", "draft")

    def test_timeout_state_times_out_and_exit_cancels_it(self) -> None:
        fired = threading.Event()
        machine = features_machine(
            Timeout, model=None, initial="a",
            states=["a", {"name": "waiting", "timeout": 0.01,
                          "on_timeout": lambda event: fired.set()},
                    {"name": "slow", "timeout": 30, "on_timeout": lambda event: None}],
            transitions=[["wait", "a", "waiting"], ["dawdle", "a", "slow"],
                         ["leave", ["waiting", "slow"], "a"]],
            send_event=True)
        model = Model()
        model.state = "a"
        assert machine.events["wait"].trigger(model)
        assert fired.wait(5), "the Timeout state's timer never fired"
        assert machine.events["leave"].trigger(model)
        assert machine.events["dawdle"].trigger(model)
        timer = machine.get_state("slow").runner[id(model)]
        assert timer.is_alive()
        assert machine.events["leave"].trigger(model)
        timer.join(5)
        assert not timer.is_alive()  # exit cancelled it

    def test_timeout_state_on_the_shared_machine(self) -> None:
        fired = threading.Event()
        wf = postflow.Workflow.default()
        wf.machine.add_states(
            Timeout("cooling_off", timeout=0.01, on_timeout=lambda event: fired.set()))
        wf.machine.add_transition("cool_off", "draft", "cooling_off")
        assert wf.fire("cool_off", "draft") == "cooling_off"
        assert fired.wait(5), "the Timeout state's timer never fired"

    def test_volatile_state_scope_lives_while_in_the_state(self) -> None:
        machine = features_machine(
            Volatile, model=None, initial="a", states=["a", {"name": "b", "hook": "b_scope"}],
            transitions=[["go", "a", "b"], ["back", "b", "a"]])
        model = Model()
        model.state = "a"
        assert machine.events["go"].trigger(model)
        assert hasattr(model, "b_scope")
        assert machine.events["back"].trigger(model)
        assert not hasattr(model, "b_scope")  # exit removed it
        assert hasattr(model, "scope")  # entering "a" made its own

    def test_retry_state_counts_reentries(self) -> None:
        failures: list[str] = []
        machine = features_machine(
            Retry, model=None, initial="a", send_event=True,
            states=["a", {"name": "b", "retries": 1,
                          "on_failure": lambda event: failures.append(event.state.name)}],
            transitions=[["go", "a", "b"], ["again", "b", "b"]])
        model = Model()
        model.state = "a"
        for trigger in ("go", "again", "again"):
            assert machine.events[trigger].trigger(model)
        assert failures == ["b"]


def plain_machine(wf: postflow.Workflow) -> Machine:
    """A plain transitions.Machine built like the workflow's shared machine."""
    transitions_config: list[dict[str, Any]] = []
    for trigger, event in wf.machine.events.items():
        for transition in (t for ts in event.transitions.values() for t in ts):
            transitions_config.append({"trigger": trigger, "source": transition.source,
                                       "dest": transition.dest,
                                       "conditions": [c.func for c in transition.conditions]})
    return Machine(model=None, states=list(wf.states), initial=wf.initial,
                   transitions=transitions_config, auto_transitions=False, send_event=True,
                   queued=False, name=wf.machine.name.rstrip(": "))


class Carrier:
    def __init__(self, state: str, approvals: tuple[Approval, ...] = ()) -> None:
        self.state = state
        self.approvals = approvals


FIRES = [("submit", "draft"), ("approve", "review"), ("edit", "review"),
         ("edit", "draft"), ("schedule", "approved")]


def fire_messages(machine: Machine, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    for trigger, state in FIRES:
        machine.events[trigger].trigger(Carrier(state))
    return [r.getMessage() for r in caplog.records if r.name.startswith("transitions")]


class TestLogging:
    """transitions' log lines appear as in plain transitions when its logger is enabled."""

    @pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
    @pytest.mark.parametrize("logger", ["transitions", "transitions.core", None])
    def test_same_lines_as_plain_transitions(
        self, caplog: pytest.LogCaptureFixture, level: int, logger: str | None
    ) -> None:
        wf = postflow.Workflow.default()
        plain = plain_machine(wf)
        caplog.set_level(level, logger=logger)
        expected = fire_messages(plain, caplog)
        assert "postflow-default: Finished processing state draft exit callbacks." in expected
        assert "postflow-default: Finished processing state review enter callbacks." in expected
        assert fire_messages(wf.machine, caplog) == expected

    def test_callback_lines_as_plain_transitions(self, caplog: pytest.LogCaptureFixture) -> None:
        def noted(event: Any) -> None:
            pass

        wf = postflow.Workflow.default()
        plain = plain_machine(wf)
        for machine in (wf.machine, plain):
            machine.get_state("review").on_enter.append(noted)
        caplog.set_level(logging.INFO, logger="transitions")
        expected = fire_messages(plain, caplog)
        assert any(m.startswith("postflow-default: Executed callback") for m in expected)
        assert fire_messages(wf.machine, caplog) == expected

    def test_no_lines_and_no_transitions_code_when_not_enabled(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With transitions' logger at WARNING the fast path is taken: neither
        transitions' Event.trigger, Transition.execute nor State.enter/exit run."""
        caplog.set_level(logging.WARNING, logger="transitions")

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("transitions' slow path ran")

        for cls, name in [(transitions.core.Event, "trigger"),
                          (transitions.core.Transition, "execute"),
                          (transitions.core.State, "enter"), (transitions.core.State, "exit")]:
            monkeypatch.setattr(cls, name, refuse)
        wf = postflow.Workflow.default()
        assert fire_messages(wf.machine, caplog) == []
