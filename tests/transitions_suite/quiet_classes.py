"""pytest plugin: run ``transitions``' own test suite with postflow's quiet classes.

Loaded by ``run.py`` as ``-p quiet_classes`` (never collected by postflow's own suite:
the file name does not start with ``test_`` and it is not a conftest). On import it
makes ``transitions.Machine`` build postflow's ``_QuietState``, ``_QuietTransition`` and
``_QuietEvent``, the classes postflow's shared machine uses; every machine class of
``transitions`` that does not set its own classes (``Machine`` itself, ``LockedMachine``'s
states and transitions, ``add_state_features`` machines, ``MarkupMachine`` ...) inherits
them.

One test is known to differ, in the classes that inherit it: ``test_repr`` compares
``repr`` strings such as ``<Event('do_strcheck')@…>`` with regular expressions that name
``transitions``' classes, and postflow's classes print their own names
(``<_QuietEvent('do_strcheck')@…>``). Those tests, listed in :data:`REPR_ONLY`, run
in full with one change: while they run, ``assertRegex`` reads the quiet class names
as the ``transitions`` class names they stand for. Every other assertion is
unchanged, so any other difference still fails them. A listed test that no longer
needs the renaming fails too, so the list cannot go stale silently.
"""

from __future__ import annotations

import re
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transitions
import transitions.core

from postflow.workflow import _QuietEvent, _QuietState, _QuietTransition

transitions.core.Machine.state_cls = _QuietState
transitions.core.Machine.transition_cls = _QuietTransition
transitions.core.Machine.event_cls = _QuietEvent

_TEST_REPR = "test_repr"
REPR_ONLY = frozenset(f"tests/{module}.py::{cls}::{_TEST_REPR}" for module, cls in [
    ("test_core", "TestTransitions"),
    ("test_async", "TestTransitions"),
    ("test_async", "TestAsync"),
    ("test_async", "TestHierarchicalAsync"),
    ("test_graphviz", "TestTransitions"),
    ("test_mermaid", "TestTransitions"),
    ("test_nesting", "TestTransitions"),
    ("test_nesting", "TestNestedTransitions"),
    ("test_parallel", "TestNested"),
    ("test_parallel", "TestParallel"),
    ("test_threading", "TestTransitions"),
    ("test_threading", "TestNestedTransitions"),
    ("test_threading", "TestLockedTransitions"),
    ("test_threading", "TestMultipleContexts"),
    ("test_threading", "TestLockedHierarchicalTransitions"),
])
"""Tests that compare class names in a ``repr`` (all are ``test_core``'s ``test_repr``,
inherited). Node ids relative to the unpacked sdist."""

_QUIET_NAMES = re.compile(r"<_Quiet(State|Transition|Event)\(")


def pytest_report_header() -> list[str]:
    return [
        f"transitions {transitions.__version__} from {Path(transitions.__file__).parent}",
        "Machine.state_cls/transition_cls/event_cls = postflow's "
        f"{_QuietState.__name__}/{_QuietTransition.__name__}/{_QuietEvent.__name__}",
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if item.nodeid not in REPR_ONLY:
        return (yield)
    renamed: list[str] = []
    original = unittest.TestCase.assertRegex

    def assert_regex(self: unittest.TestCase, text: str, expected: Any, msg: Any = None) -> None:
        as_transitions = _QUIET_NAMES.sub(r"<\1(", text)
        if as_transitions != text:
            renamed.append(text)
        original(self, as_transitions, expected, msg)

    unittest.TestCase.assertRegex = assert_regex  # type: ignore[method-assign]
    try:
        result = yield
    finally:
        unittest.TestCase.assertRegex = original  # type: ignore[method-assign]
    if not renamed:
        pytest.fail(f"{item.nodeid} is in REPR_ONLY but compared no quiet class name: "
                    "remove it from tests/transitions_suite/quiet_classes.py", pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ran = {report.nodeid for reports in terminalreporter.stats.values() for report in reports
           if getattr(report, "when", None) == "call"}
    missing = sorted(REPR_ONLY - ran)
    terminalreporter.write_line(
        f"postflow: {len(REPR_ONLY & ran)} repr-only tests ran with quiet class names "
        "read as transitions' (see REPR_ONLY)")
    for nodeid in missing:
        terminalreporter.write_line(f"postflow: listed in REPR_ONLY but not run: {nodeid}")
