"""Who may do what: the built-in role policy, the four-eyes rule and plugin vetoes.

Workflow triggers carry their roles in the workflow; the other actions' roles are
:data:`ACTION_ROLES`. Plugins may only narrow what the policy allows (any veto from the
``postflow_authorize`` hook wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from postflow._fields import roles_text
from postflow.exceptions import InvalidTransition, PermissionDenied, ValidationFailed
from postflow.models import Member, Post
from postflow.workflow import EDIT, TransitionRule, Workflow

if TYPE_CHECKING:
    from postflow._plugins import Hooks

__all__ = ["ACTION_ROLES", "check_action", "check_trigger", "deny_by_plugins"]

ACTION_ROLES: Mapping[str, frozenset[str]] = {
    "create": frozenset({"author", "admin"}),
    "edit": frozenset({"author", "admin"}),
    "plan": frozenset({"author", "publisher", "admin"}),
    "comment": frozenset({"author", "approver", "publisher", "admin", "analyst"}),
    "manage": frozenset({"admin"}),
}
"""Who may do what outside workflow triggers (those carry their roles in the workflow).

``edit`` is also limited to the post's author (admins excepted).
"""


def deny_by_plugins(hooks: Hooks, host: object, member: Member, action: str,
                    post: Post | None) -> None:
    """Raise :class:`~postflow.PermissionDenied` when a plugin vetoes ``action``."""
    if not hooks.authorizes:
        return
    reasons = hooks.authorize(host, member, action, post)
    if reasons:
        what = f"{action} post {post.id}" if post else action
        raise PermissionDenied(
            f"{member.name} may not {what}: {'; '.join(reasons)}",
            member=member.name, action=action)


def check_action(hooks: Hooks, host: object, member: Member, action: str,
                 post: Post | None) -> None:
    """Raise unless ``member`` may ``action`` (``create``, ``edit``, ``plan`` …)."""
    needed = ACTION_ROLES["edit" if action == EDIT else action]
    if needed.isdisjoint(member.roles):
        what = f"{action} post {post.id}" if post else action
        raise PermissionDenied(
            f"{member.name} (roles: {roles_text(member)}) may not {what}: "
            f"needs one of the roles {', '.join(sorted(needed))}",
            member=member.name, action=action, roles_needed=needed)
    if (action == EDIT and post is not None and member.name != post.author
            and "admin" not in member.roles):
        raise PermissionDenied(
            f"{member.name} may not edit post {post.id}: only its author "
            f"({post.author}) or an admin may", member=member.name, action=action,
            roles_needed={"admin"})
    if hooks.authorizes:
        deny_by_plugins(hooks, host, member, action, post)


def check_trigger(hooks: Hooks, host: object, workflow: Workflow, member: Member,
                  rule: TransitionRule, post: Post) -> str | None:
    """Raise unless ``member`` may fire ``rule`` on ``post``; return the approval stage."""
    trigger = rule.trigger
    stage_name = None
    if trigger == "approve":
        if workflow.four_eyes and member.name in (post.author, post.revised_by):
            whose = ("it is their own post" if member.name == post.author
                     else "they wrote its current revision")
            raise PermissionDenied(
                f"{member.name} may not approve post {post.id}: {whose} (four-eyes rule)",
                member=member.name, action=trigger)
        stage = workflow.current_stage(post.approvals)
        if stage is None:
            raise InvalidTransition(
                f"post {post.id}: every approval stage is already complete",
                post_id=post.id, trigger=trigger, state=post.state)
        if not stage.eligible(member.name, member.roles) and (
                (stage.name, member.name) not in post.extra_approvers):
            who = sorted(stage.roles) + [f"member {m}" for m in sorted(stage.members)]
            raise PermissionDenied(
                f"{member.name} (roles: {roles_text(member)}) may not approve post {post.id} "
                f"at stage {stage.name!r}: needs {' or '.join(who)}",
                member=member.name, action=trigger, roles_needed=stage.roles)
        if any(a.member == member.name for a in post.approvals):
            raise ValidationFailed.single(
                f"post {post.id}", "already-approved",
                f"{member.name} already approved revision {post.revision}",
                field="by")
        stage_name = stage.name
    else:
        if rule.roles.isdisjoint(member.roles):
            raise PermissionDenied(
                f"{member.name} (roles: {roles_text(member)}) may not {trigger} post "
                f"{post.id}: needs one of the roles {', '.join(sorted(rule.roles))}",
                member=member.name, action=trigger, roles_needed=rule.roles)
        if rule.author_only and member.name != post.author and "admin" not in member.roles:
            raise PermissionDenied(
                f"{member.name} may not {trigger} post {post.id}: only its author "
                f"({post.author}) or an admin may", member=member.name, action=trigger,
                roles_needed={"admin"})
    if hooks.authorizes:
        deny_by_plugins(hooks, host, member, trigger, post)
    return stage_name
