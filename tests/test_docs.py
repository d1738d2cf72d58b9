"""Keep the documentation honest: hooks, examples, API names and the policy table.

Conventions the docs follow (so these tests can check them):

* Every ``.. code-block:: python`` in a page under ``docs/`` is executed, unless its
  options include ``:class: no-run``. The blocks of one page run in order, in one
  namespace, with a fresh empty temporary folder as the working directory; then they
  run again, in a new namespace, in the same folder (a reader tries an example twice).
* A ``.. code-block:: toml`` whose ``:caption:`` is a file name (``workflow.toml``) is
  written to that file in the page's folder before the page's Python blocks run.
* A ``.. code-block:: text`` whose ``:caption:`` starts with ``$ postflow `` shows that
  command's exact output; the command is run and its output compared.
* ``docs/plugins.rst`` has an ``autofunction`` entry for every hook, and
  ``docs/concepts.rst`` a ``policy-table`` list-table whose rows match the default
  workflow and :data:`postflow.ACTION_ROLES`.
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

import postflow
from postflow import hookspecs
from postflow.cli import cli
from postflow.workflow import DEFAULT_WORKFLOW

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TESTS = ROOT / "tests"
PAGES = sorted(DOCS.glob("*.rst"))
ROLES = ("author", "approver", "publisher", "admin", "analyst")


@attrs.frozen
class Block:
    """One ``.. code-block::`` directive of a page."""

    page: str
    line: int
    language: str
    options: dict[str, str]
    code: str


_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<lang>\S+)\s*$")
_OPTION = re.compile(r"^\s*:(?P<name>[\w-]+):\s*(?P<value>.*?)\s*$")


def code_blocks(page: Path) -> list[Block]:
    """Every ``code-block`` directive of an .rst page, with its options and body."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            i += 1
            continue
        start, indent = i + 1, len(match.group("indent"))
        i += 1
        options: dict[str, str] = {}
        while i < len(lines) and (option := _OPTION.match(lines[i])):
            options[option.group("name")] = option.group("value")
            i += 1
        body: list[str] = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        code = inspect.cleandoc("\n".join(body)) if body else ""
        blocks.append(Block(page.name, start, match.group("lang"), options, code))
    return blocks


def _runnable(page: Path) -> list[Block]:
    return [
        b for b in code_blocks(page)
        if b.language == "python" and "no-run" not in b.options.get("class", "").split()
    ]


@pytest.fixture(name="in_tmp")
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, and no storage URL from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTFLOW_URL", raising=False)
    return tmp_path


class TestHooksAreDocumentedAndTested:
    """Every hook has a reference entry and a test (datasette's meta-test)."""

    HOOKS = sorted(
        name for name, obj in vars(hookspecs).items()
        if name.startswith("postflow_") and inspect.isfunction(obj)
    )

    def test_there_are_hooks(self) -> None:
        """The hookspecs module defines the hooks the design names."""
        assert {"postflow_before_transition", "postflow_after_transition"} <= set(self.HOOKS)

    @pytest.mark.parametrize("hook", HOOKS)
    def test_hook_has_autofunction(self, hook: str) -> None:
        """docs/plugins.rst documents the hook from its hookspec docstring."""
        text = (DOCS / "plugins.rst").read_text(encoding="utf-8")
        assert f".. autofunction:: postflow.hookspecs.{hook}\n" in text

    @pytest.mark.parametrize("hook", HOOKS)
    def test_hook_is_tested(self, hook: str) -> None:
        """At least one test module besides this one mentions the hook by name."""
        mentions = [
            p.relative_to(ROOT) for p in TESTS.rglob("test_*.py")
            if p.name != "test_docs.py" and hook in p.read_text(encoding="utf-8")
        ]
        assert mentions, f"no test under tests/ mentions {hook}"

    @pytest.mark.parametrize("hook", HOOKS)
    def test_hook_has_docstring(self, hook: str) -> None:
        """Each hookspec's docstring (its contract) exists and says when it was added."""
        doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
        assert "versionadded" in doc


class TestExamplesRun:
    """The Python examples in the docs run as written."""

    @pytest.mark.parametrize(
        "page", [p for p in PAGES if _runnable(p)], ids=lambda p: p.name
    )
    def test_page_examples(self, page: Path, in_tmp: Path) -> None:
        """A page's Python blocks run in order in one namespace, in an empty folder; then
        once more in the same folder, as a reader who tries them again would."""
        for block in code_blocks(page):
            name = block.options.get("caption", "")
            if block.language == "toml" and re.fullmatch(r"[\w.-]+\.toml", name):
                (in_tmp / name).write_text(block.code + "\n", encoding="utf-8")
        for run in ("first run", "second run in the same folder"):
            namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
            try:
                for block in _runnable(page):
                    code = compile(block.code, f"{page.name}:{block.line}", "exec")
                    try:
                        exec(code, namespace)
                    except Exception as exc:
                        exc.add_note(f"{page.name}:{block.line}, {run}")
                        raise
            finally:
                for value in namespace.values():
                    if isinstance(value, postflow.Workspace):
                        value.close()

    def test_quickstart_has_examples(self) -> None:
        """The quickstart is made of runnable examples, not prose alone."""
        assert len(_runnable(DOCS / "quickstart.rst")) >= 5

    @pytest.mark.parametrize(
        "block",
        [b for p in PAGES for b in code_blocks(p)
         if b.language == "text" and b.options.get("caption", "").startswith("$ postflow ")],
        ids=lambda b: b.options["caption"],
    )
    def test_command_output(self, block: Block, in_tmp: Path) -> None:
        """A block captioned with a postflow command shows exactly what it prints."""
        for page in PAGES:
            for other in code_blocks(page):
                name = other.options.get("caption", "")
                if other.language == "toml" and re.fullmatch(r"[\w.-]+\.toml", name):
                    (in_tmp / name).write_text(other.code + "\n", encoding="utf-8")
        args = shlex.split(block.options["caption"])[2:]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert result.output.rstrip("\n") == block.code


class TestApiReference:
    """The API page covers the whole public surface."""

    @pytest.mark.parametrize("name", postflow.__all__)
    def test_public_name_in_api_page(self, name: str) -> None:
        """Every name in ``postflow.__all__`` appears in docs/api.rst."""
        text = (DOCS / "api.rst").read_text(encoding="utf-8")
        assert re.search(rf"(?<![\w.])postflow\.{re.escape(name)}\b", text), name

    @pytest.mark.parametrize(
        "name",
        [n for n in postflow.__all__
         if isinstance(getattr(postflow, n), type)
         and issubclass(getattr(postflow, n), postflow.PostflowError)],
    )
    def test_error_in_errors_page(self, name: str) -> None:
        """Every public error class is explained in docs/errors.rst."""
        text = (DOCS / "errors.rst").read_text(encoding="utf-8")
        assert f".. autoexception:: postflow.{name}" in text


def list_table(page: str, name: str) -> list[list[str]]:
    """The rows (header first) of the ``list-table`` with ``:name: <name>`` on a page."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(f":name: {name}\n")
    table = text[start:].split("\n\n", 2)[1]
    rows: list[list[str]] = []
    for line in table.splitlines():
        stripped = line.strip()
        if stripped.startswith("* - "):
            rows.append([stripped[4:]])
        elif stripped.startswith("- ") or stripped == "-":
            rows[-1].append(stripped[2:])
        elif stripped:
            rows[-1][-1] += " " + stripped
    return rows


def policy_table() -> dict[str, tuple[frozenset[str], str]]:
    """The rows of the ``policy-table`` in concepts.rst: name -> (roles allowed, rules)."""
    header, *body = list_table("concepts.rst", "policy-table")
    assert header[1:6] == list(ROLES)
    result = {}
    for row in body:
        name = re.match(r"``(\w+)``", row[0])
        assert name, row
        cells = [c.strip() for c in row[1:6]]
        assert set(cells) <= {"yes", "—"}, row
        allowed = frozenset(r for r, c in zip(ROLES, cells, strict=True) if c == "yes")
        result[name.group(1)] = (allowed, row[6] if len(row) > 6 else "")
    return result


class TestWorkflowTable:
    """The documented default workflow is the one postflow loads."""

    def test_rows_match_default_workflow(self) -> None:
        """Each trigger's row has its exact source states and destination, in order."""
        header, *body = list_table("concepts.rst", "workflow-table")
        assert header[:3] == ["Trigger", "From", "To"]
        documented = {
            row[0].strip("`"): (tuple(s.strip() for s in row[1].split(",")), row[2])
            for row in body
        }
        workflow = postflow.Workflow.default()
        assert documented == {
            rule.trigger: (rule.sources, rule.dest) for rule in workflow.rules.values()
        }
        assert list(documented) == list(workflow.triggers)


class TestPolicyTable:
    """The documented permission policy is the enforced one."""

    def test_every_trigger_and_action_listed(self) -> None:
        """The table has a row for each default trigger and each ACTION_ROLES action."""
        expected = {t["trigger"] for t in DEFAULT_WORKFLOW["transitions"]}
        expected |= set(postflow.ACTION_ROLES)
        assert set(policy_table()) == expected

    @pytest.mark.parametrize("rule", DEFAULT_WORKFLOW["transitions"],
                             ids=lambda r: str(r["trigger"]))
    def test_trigger_row_matches_workflow(self, rule: dict[str, object]) -> None:
        """A trigger's row names exactly the roles that may fire it, and its flags."""
        roles, rules = policy_table()[str(rule["trigger"])]
        workflow = postflow.Workflow.default()
        if rule["trigger"] == "approve":
            expected = frozenset().union(*(s.roles for s in workflow.stages))
        else:
            expected = workflow.rules[str(rule["trigger"])].roles
        assert roles == expected
        assert ("Author only" in rules) == bool(rule.get("author_only"))
        assert ("Comment required" in rules) == bool(rule.get("comment_required"))

    @pytest.mark.parametrize("action", sorted(postflow.ACTION_ROLES))
    def test_action_row_matches_action_roles(self, action: str) -> None:
        """An action's row names exactly the roles in ACTION_ROLES."""
        roles, _ = policy_table()[action]
        assert roles == postflow.ACTION_ROLES[action]


def test_changelog_is_included() -> None:
    """The changelog page includes the hand-kept CHANGELOG.md, which exists."""
    assert (ROOT / "CHANGELOG.md").is_file()
    assert "../CHANGELOG.md" in (DOCS / "changelog.rst").read_text(encoding="utf-8")


def test_every_page_in_toctree() -> None:
    """Every page is reachable from the index."""
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    missing = [p.stem for p in PAGES if p.stem != "index"
               and not re.search(rf"^\s+{re.escape(p.stem)}$", index, re.M)]
    assert not missing


def _command_paths(group: object, prefix: str = "") -> list[str]:
    import click

    assert isinstance(group, click.Group)
    paths = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            paths += _command_paths(command, f"{path} ")
        else:
            paths.append(path)
    return paths


@pytest.mark.parametrize("path", _command_paths(cli))
def test_every_command_is_in_the_cli_page(path: str) -> None:
    """docs/cli.rst has an entry for every command (``postflow a b`` or a group line that
    names it among ``a|b|c`` alternatives)."""
    text = (DOCS / "cli.rst").read_text(encoding="utf-8")
    *group, name = path.split(" ")
    head = " ".join(["postflow", *group])
    pattern = rf"``{re.escape(head)} (?:[\w-]+\|)*{re.escape(name)}(?:\|[\w-]+)*[ `]"
    assert re.search(pattern, text), f"postflow {path} is not documented in docs/cli.rst"
