"""The workflow stored with the data: choosing it at open, reading it, changing it.

A database remembers the workflow it is used with (normalised, see
:meth:`postflow.Workflow.to_dict`), so a later open without ``workflow=`` applies the
same rules, and an open with a different one is refused instead of silently applying
other rules to the same posts. Changing it is explicit: :func:`apply_workflow` (what
``Workspace.apply_workflow`` and ``postflow workflow apply FILE`` call).

These functions take the storage, the workflow and a clock, never a workspace.

What the command line does with them (its commands live in ``postflow.cli``):

* ``postflow workflow show`` without a file prints :func:`stored_workflow` of the
  database (the default workflow when none is stored yet);
* ``postflow workflow apply FILE [--rename OLD=NEW ...] --by NAME`` opens the database
  without ``workflow=`` (on :class:`WorkflowNotStored`, with ``workflow=`` the file's
  workflow, which stores it when every post fits), then calls
  ``Workspace.apply_workflow`` with :func:`parse_mapping` of the ``--rename`` options
  and prints :func:`describe_applied` of the result.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from postflow._fields import LIMITS, checked_text
from postflow._time import Clock
from postflow._urls import redact_url
from postflow.exceptions import (
    ConfigError,
    ConflictError,
    PermissionDenied,
    Problem,
    ValidationFailed,
)
from postflow.models import Post, calendar_slot, freeze, replace
from postflow.storage import NewEntry, PostQuery, Storage
from postflow.workflow import Workflow, workflow_diff

__all__ = [
    "APPLY_ACTION",
    "STORE_ACTION",
    "SYSTEM_ACTOR",
    "AppliedWorkflow",
    "WorkflowMismatch",
    "WorkflowNotStored",
    "apply_workflow",
    "describe_applied",
    "misfits",
    "parse_mapping",
    "resolve_workflow",
    "stored_workflow",
]

STORE_ACTION = "workflow.store"
"""The audit action of storing a database's first workflow (at its first open)."""
APPLY_ACTION = "workflow.apply"
"""The audit action of changing the stored workflow, and of each post it renames."""
SYSTEM_ACTOR = "system"
"""The actor of entries postflow writes on its own (the first store at open)."""
_APPLY_ROLES = frozenset({"admin"})
_MAX_ATTEMPTS = 5


class WorkflowMismatch(ConfigError):
    """A database was opened with a workflow other than the one stored with it.

    :attr:`stored` and :attr:`given` are the two workflows, :attr:`differences` what
    the given one changes, one line each.
    """

    def __init__(self, message: str, *, stored: Workflow, given: Workflow,
                 differences: Sequence[str]) -> None:
        super().__init__(message)
        self.stored = stored
        self.given = given
        self.differences = tuple(differences)


class WorkflowNotStored(ConfigError):
    """A database from before stored workflows whose posts do not fit the default one
    was opened without ``workflow=``: postflow cannot tell which rules apply."""


@attrs.frozen
class AppliedWorkflow:
    """What :func:`apply_workflow` did: the workflow now stored, what changed (one line
    each, empty when nothing did), and the posts it moved to renamed states."""

    workflow: Workflow
    changes: tuple[str, ...]
    renamed_posts: tuple[int, ...]
    reopened_posts: tuple[int, ...] = ()
    """Approved or scheduled posts sent back for the approvals the new workflow adds
    (with ``reopen=True``)."""


def stored_workflow(storage: Storage) -> Workflow | None:
    """The workflow stored with the data (what ``postflow workflow show`` prints
    without a file), or ``None`` when none is stored yet.

    Raises :class:`~postflow.ConfigError` when the stored definition is not a valid
    workflow for this postflow.
    """
    definition = storage.stored_workflow()
    return None if definition is None else _load(definition, storage)


def _load(definition: Mapping[str, Any], storage: Storage) -> Workflow:
    where = redact_url(storage.url)
    try:
        return Workflow.from_dict(definition)
    except ConfigError as exc:
        raise ConfigError(
            f"{where}: the workflow stored with the data is not valid: {exc}") from exc


def resolve_workflow(storage: Storage, given: Workflow | None, *, clock: Clock) -> Workflow:
    """The workflow a workspace opened on ``storage`` uses (one small read when a
    workflow is stored).

    * Nothing stored and no posts (a new database): ``given`` (or the default) is
      stored, with an audit entry :data:`STORE_ACTION`, and used.
    * Nothing stored but posts (a database from before stored workflows, whose posts
      did not fit the default): without ``given``, :class:`WorkflowNotStored`; with
      it, it is stored if every post fits it (else :class:`~postflow.ValidationFailed`
      naming the posts that do not).
    * A stored workflow: used when ``given`` is ``None`` or defines the same thing
      (compared normalised); otherwise :class:`WorkflowMismatch` naming both and what
      differs.
    """
    where = redact_url(storage.url)
    for _ in range(_MAX_ATTEMPTS):
        definition = storage.stored_workflow()
        if definition is not None:
            stored = _load(definition, storage)
            if given is None:
                return stored
            if given.same_definition(stored):
                return given
            changes = stored.differences(given)
            raise WorkflowMismatch(
                f"{where} is used with workflow {stored.name!r}, not with the given "
                f"workflow {given.name!r}, which differs: {'; '.join(changes)}. Open it "
                f"without a workflow to use {stored.name!r}, or change it explicitly "
                "(Workspace.apply_workflow, postflow workflow apply FILE)",
                stored=stored, given=given, differences=changes)
        workflow = given or Workflow.default()
        if storage.list_posts(PostQuery(limit=1)):
            if given is None:
                raise WorkflowNotStored(
                    f"{where} has no stored workflow and its posts do not fit the "
                    "default one (it was used with another workflow before postflow "
                    "stored workflows): apply the right one once with "
                    "'postflow workflow apply FILE' (or open it with workflow=... in "
                    "Python), and later opens use it")
            problems = misfits(storage, workflow)
            if problems:
                raise ValidationFailed(
                    f"cannot store workflow {workflow.name!r} with {where}", problems)
        entry = NewEntry(STORE_ACTION, SYSTEM_ACTOR, clock.now(), _correlation_id(),
                         data=freeze({"workflow": workflow.name}))
        try:
            storage.save_workflow(workflow.to_dict(), entry, expected=None)
        except ConflictError:
            continue  # another process stored one first: compare with it
        return workflow
    raise ConflictError(f"{where}: the stored workflow keeps changing; try again")


def approved_states(workflow: Workflow) -> frozenset[str]:
    """The states a post reaches by completing its approvals (the ``approve``
    transition's destination and the ``schedule`` one's): a post there must carry every
    approval the workflow asks for."""
    dests = {rule.dest for name, rule in workflow.rules.items()
             if name in ("approve", "schedule")}
    return frozenset(dests - {workflow.approval_state, workflow.initial})


def unapproved(storage: Storage, workflow: Workflow,
               mapping: Mapping[str, str] | None = None) -> list[Post]:
    """Posts past approval (see :func:`approved_states`) that lack an approval
    ``workflow`` asks for: approved under a workflow with fewer stages."""
    mapping = mapping or {}
    states = approved_states(workflow)
    return [post for post in storage.list_posts(PostQuery())
            if mapping.get(post.state, post.state) in states
            and workflow.current_stage(post.approvals) is not None]


def misfits(storage: Storage, workflow: Workflow,
            mapping: Mapping[str, str] | None = None, *, reopen: bool = False
            ) -> list[Problem]:
    """Why stored posts would not fit ``workflow`` (after renaming states by
    ``mapping``): one :class:`~postflow.Problem` per post whose state, or the stage of
    an approval it carries, ``workflow`` does not have, and (unless ``reopen``) per
    approved or scheduled post that lacks an approval ``workflow`` asks for. Empty when
    all fit."""
    mapping = mapping or {}
    stages = {stage.name for stage in workflow.stages}
    problems = []
    if not reopen:
        for post in unapproved(storage, workflow, mapping):
            stage = workflow.current_stage(post.approvals)
            problems.append(Problem(
                "needs-approval", f"post {post.id} is {post.state!r} without the approval "
                f"at stage {stage.name if stage else '?'!r} that workflow {workflow.name!r} "
                "asks for: unschedule it and send it back for review first, or apply with "
                "reopen (postflow workflow apply --reopen), which does that", field="state"))
    for post in storage.list_posts(PostQuery()):
        state = mapping.get(post.state, post.state)
        if state not in workflow.states:
            renamed = f" (renamed from {post.state!r})" if state != post.state else ""
            problems.append(Problem(
                "unknown-state", f"post {post.id} is in state {state!r}{renamed}, which "
                f"workflow {workflow.name!r} does not have", field="state"))
        missing = sorted({a.stage for a in post.approvals} - stages)
        if missing:
            problems.append(Problem(
                "unknown-stage", f"post {post.id} has approvals at stage(s) "
                f"{', '.join(map(repr, missing))}, which workflow {workflow.name!r} does "
                "not have", field="approvals"))
    return problems


def apply_workflow(
    storage: Storage, workflow: Workflow, *, by: str, clock: Clock,
    mapping: Mapping[str, str] | None = None, comment: str | None = None,
    correlation_id: str | None = None, reopen: bool = False,
) -> AppliedWorkflow:
    """Make ``workflow`` the one stored with the data.

    Approved or scheduled posts that lack an approval ``workflow`` asks for (a stage it
    adds) are refused, unless ``reopen``: then they go back to the approval state, off
    the schedule, keeping the approvals they have.

    ``by`` must be an active admin. ``mapping`` renames states (``{"old": "new"}``):
    posts in an old state move to the new one, each through the compare-and-set write
    with an :data:`APPLY_ACTION` audit entry. Every post must fit ``workflow`` after
    the renames (its state and the stages of its approvals must exist there);
    otherwise :class:`~postflow.ValidationFailed` names the posts that do not and
    nothing is written. The change itself is an :data:`APPLY_ACTION` audit entry whose
    data says what changed. Applying the stored workflow again changes nothing (but
    still renames posts ``mapping`` names, so an interrupted apply can be repeated).

    Workspaces already open elsewhere keep the workflow they opened with until they
    are opened again.
    """
    where = redact_url(storage.url)
    member = storage.get_member(by) if isinstance(by, str) else None
    if member is None or not member.active:
        raise PermissionDenied(f"{by!r} is not an active member of this team and may not "
                               "apply a workflow", member=str(by), action="apply_workflow")
    if _APPLY_ROLES.isdisjoint(member.roles):
        raise PermissionDenied(
            f"{by} (roles: {', '.join(sorted(member.roles)) or 'none'}) may not apply a "
            "workflow: needs the role admin", member=by, action="apply_workflow")
    if comment is not None:
        checked_text(comment, "apply_workflow", "comment", limit=LIMITS["comment"],
                     required=False)
    if not isinstance(workflow, Workflow):
        raise ValidationFailed.single("apply_workflow", "bad-workflow",
                                      f"workflow must be a postflow.Workflow, got "
                                      f"{workflow!r}", field="workflow")
    if mapping is not None and (not isinstance(mapping, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
        raise ValidationFailed.single("apply_workflow", "bad-mapping",
                                      f"mapping must map state names to state names, got "
                                      f"{mapping!r}", field="mapping")
    if type(reopen) is not bool:
        raise ValidationFailed.single("apply_workflow", "bad-reopen",
                                      f"reopen must be True or False, got {reopen!r}",
                                      field="reopen")
    mapping = dict(mapping or {})
    for old, new in mapping.items():
        if new not in workflow.states:
            raise ValidationFailed.single(
                f"cannot apply workflow {workflow.name!r}", "unknown-state",
                f"the state mapping renames {old!r} to {new!r}, which workflow "
                f"{workflow.name!r} does not have", field="mapping")
    correlation_id = correlation_id or _correlation_id()
    for _ in range(_MAX_ATTEMPTS):
        expected = storage.stored_workflow()
        problems = misfits(storage, workflow, mapping, reopen=reopen)
        if problems:
            raise ValidationFailed(f"cannot apply workflow {workflow.name!r}", problems)
        new_definition = workflow.to_dict()
        old_definition = None if expected is None else _load(expected, storage).to_dict()
        changes = workflow_diff(old_definition or {}, new_definition)
        if old_definition != new_definition:
            data = {"workflow": workflow.name, "changes": changes, "renamed_states": mapping}
            if old_definition is not None:
                data["previous"] = old_definition["name"]
            entry = NewEntry(APPLY_ACTION, by, clock.now(), correlation_id, comment=comment,
                             data=freeze(data))
            try:
                storage.save_workflow(new_definition, entry, expected=expected)
            except ConflictError:
                continue  # someone else changed it meanwhile: check again
        else:
            changes = []
        renamed = _rename_states(storage, mapping, by=by, clock=clock,
                                 correlation_id=correlation_id, comment=comment)
        reopened = _reopen(storage, workflow, by=by, clock=clock,
                           correlation_id=correlation_id, comment=comment) if reopen else []
        return AppliedWorkflow(workflow, tuple(changes), tuple(renamed), tuple(reopened))
    raise ConflictError(f"{where}: the stored workflow keeps changing; try again")


def _move_posts(
    storage: Storage, posts: Sequence[Post],
    move: Callable[[Post], tuple[Post, dict[str, Any]] | None], *, by: str, clock: Clock,
    correlation_id: str, comment: str | None,
) -> list[int]:
    """Apply ``move`` (a post → its changed snapshot and the entry's data, or ``None``
    when it no longer applies) to each of ``posts``, each through the compare-and-set
    write with an :data:`APPLY_ACTION` entry, re-reading a post that changed meanwhile.
    Returns the ids of the posts moved."""
    moved = []
    for post in posts:
        current: Post | None = post
        for _ in range(_MAX_ATTEMPTS):
            planned = move(current) if current is not None else None
            if current is None or planned is None:
                break
            changed, data = planned
            changed = replace(changed, version=current.version + 1)
            if calendar_slot(changed) != calendar_slot(current):
                changed = replace(changed, sequence=current.sequence + 1)
            entry = NewEntry(APPLY_ACTION, by, clock.now(), correlation_id, current.id,
                             current.state, changed.state, current.revision, comment,
                             freeze(data))
            try:
                storage.update_post(changed, expected_version=current.version,
                                    entries=[entry], previous=current)
            except ConflictError:
                current = storage.get_post(current.id)
                continue
            moved.append(current.id)
            break
    return moved


def _reopen(storage: Storage, workflow: Workflow, *, by: str, clock: Clock,
            correlation_id: str, comment: str | None) -> list[int]:
    """Send approved or scheduled posts that lack an approval back to the approval
    state, off the schedule, keeping their approvals."""
    def reopen(post: Post) -> tuple[Post, dict[str, Any]] | None:
        if post.state not in approved_states(workflow) or (
                workflow.current_stage(post.approvals) is None):
            return None
        now = clock.now()
        return (replace(post, state=workflow.approval_state, scheduled_at=None,
                        scheduled_zone=None, claimed_by=None, claimed_until=None,
                        state_changed_at=now, updated_at=now),
                {"reopened": True, "scheduled_at": None, "scheduled_zone": None})

    return _move_posts(storage, unapproved(storage, workflow), reopen, by=by, clock=clock,
                       correlation_id=correlation_id, comment=comment)


def _rename_states(storage: Storage, mapping: Mapping[str, str], *, by: str, clock: Clock,
                   correlation_id: str, comment: str | None) -> list[int]:
    moves = {old: new for old, new in mapping.items() if old != new}
    if not moves:
        return []

    def rename(post: Post) -> tuple[Post, dict[str, Any]] | None:
        if post.state not in moves:
            return None
        return replace(post, state=moves[post.state]), {"renamed_state": post.state}

    return _move_posts(storage, storage.list_posts(PostQuery(states=frozenset(moves))),
                       rename, by=by, clock=clock, correlation_id=correlation_id,
                       comment=comment)


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["old=new", ...]`` (the command line's ``--rename`` options) as a state mapping.

    Raises :class:`~postflow.ConfigError` naming an item that is not ``OLD=NEW`` or a
    state renamed twice.
    """
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise ConfigError(f"state rename {item!r}: expected OLD=NEW, e.g. draft=idea")
        if old in mapping:
            raise ConfigError(f"state rename {item!r}: {old!r} is renamed twice")
        mapping[old] = new
    return mapping


def describe_applied(result: AppliedWorkflow) -> str:
    """A few lines saying what :func:`apply_workflow` did."""
    if not result.changes and not result.renamed_posts and not result.reopened_posts:
        return f"workflow {result.workflow.name!r} is already the stored one: nothing changed"
    lines = [f"workflow {result.workflow.name!r} applied"]
    lines += [f"  {change}" for change in result.changes]
    if result.reopened_posts:
        lines.append(f"  posts sent back for the new approvals: "
                     f"{', '.join(map(str, result.reopened_posts))}")
    if result.renamed_posts:
        lines.append(f"  posts moved to renamed states: "
                     f"{', '.join(map(str, result.renamed_posts))}")
    return "\n".join(lines)


def _correlation_id() -> str:
    return f"workflow-{secrets.token_hex(8)}"
