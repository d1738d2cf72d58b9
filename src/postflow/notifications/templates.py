"""Rendering notifications: subject, plain text and HTML from ``string.Template``s.

``string.Template`` rather than Jinja2: no dependency and no logic in templates, so a
template from a configuration file cannot run code and there is nothing to sandbox;
fields are checked when the configuration loads. Every value substituted into HTML is
``html.escape``d.
"""

from __future__ import annotations

import html
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from postflow.notices import Notice
from postflow.notifications.config import NotificationConfig
from postflow.notifications.events import EVENT_TITLES

__all__ = ["DEFAULT_TEMPLATES", "DIGEST_TEMPLATE", "fields", "post_url", "preferences_url",
           "render"]

_SUBJECTS: Mapping[str, str] = {
    "post.created": "Post $post_id created by $actor",
    "post.submitted": "Post $post_id waits for approval ($stage)",
    "post.approved": "Post $post_id approved by $actor ($stage)",
    "post.changes_requested": "Changes requested on post $post_id",
    "post.withdrawn": "Post $post_id withdrawn from review",
    "post.approvals_voided": "Post $post_id edited: approvals voided",
    "post.scheduled": "Post $post_id scheduled",
    "post.unscheduled": "Post $post_id unscheduled",
    "post.published": "Post $post_id published",
    "post.failed": "Post $post_id failed: $reason",
    "post.unconfirmed": "Post $post_id: delivery unconfirmed",
    "post.commented": "$actor commented on post $post_id",
    "member.mentioned": "$actor mentioned you on post $post_id",
    "approval.due_soon": "Approval of post $post_id due soon ($stage, $due_at)",
    "approval.overdue": "Approval of post $post_id overdue ($stage, was due $due_at)",
    "post.not_approved_in_time": "Post $post_id was not approved in time",
    "publishing.paused": "Publishing paused: $reason",
    "publishing.resumed": "Publishing resumed",
    "series.running_out": "A series is running out of occurrences",
}
_TEXT = ("$event_title\n\n"
         "Post: $post_id by $author ($channels)\n"
         "Stage: $stage\nBy: $actor at $at\n"
         "$post_text\n"
         "Comment: $comment\nReason: $reason\nLinks: $urls\nDue: $due_at\n"
         "$post_url\n")
_HTML = ("<h2>$event_title</h2>\n"
         "<p>Post $post_id by $author ($channels), stage $stage; by $actor at $at</p>\n"
         "<blockquote>$post_text</blockquote>\n"
         "<p>Comment: $comment</p><p>Reason: $reason</p><p>Links: $urls</p>"
         "<p>Due: $due_at</p>\n"
         '<p><a href="$post_url">$post_url</a></p>\n')

DEFAULT_TEMPLATES: Mapping[str, Mapping[str, str]] = {
    kind: {"subject": subject, "text": _TEXT, "html": _HTML}
    for kind, subject in _SUBJECTS.items()
}
"""The templates used where the configuration overrides none."""
DIGEST_TEMPLATE: Mapping[str, str] = {
    "subject": "$count notifications",
    "text": "$count notifications for $recipient:\n\n$items\n",
    "html": "<p>$count notifications for $recipient:</p>\n$items\n",
}
"""The frame of a digest (``$count``, ``$recipient``, ``$items``: the rendered items)."""


def post_url(config: NotificationConfig, post_id: object) -> str | None:
    """The host app's link to ``post_id`` (``None`` without ``post_url`` or a post)."""
    if config.post_url is None or post_id is None:
        return None
    return config.post_url.replace("{post_id}", quote(str(post_id), safe=""))


def preferences_url(config: NotificationConfig, member: str) -> str | None:
    """The host app's link to ``member``'s notification settings (List-Unsubscribe)."""
    if config.preferences_url is None:
        return None
    return config.preferences_url.replace("{member}", quote(member, safe=""))


def fields(config: NotificationConfig, payload: Mapping[str, Any], recipient: str
           ) -> dict[str, str]:
    """The template fields of one event payload (see ``event_payload``), as text."""
    data: Mapping[str, Any] = payload.get("data") or {}
    kind = str(payload.get("kind", ""))
    urls = data.get("urls") or {}
    post_id = payload.get("post_id")
    return {
        "event": kind, "event_title": EVENT_TITLES.get(kind, kind),
        "post_id": "" if post_id is None else str(post_id),
        "post_text": str(data.get("text") or ""), "author": str(data.get("author") or ""),
        "actor": str(payload.get("actor") or ""), "stage": str(payload.get("stage") or ""),
        "campaign": str(data.get("campaign") or ""),
        "channels": ", ".join(map(str, data.get("channels") or ())),
        "urls": " ".join(str(u) for u in urls.values()) if isinstance(urls, Mapping)
        else "",
        "reason": str(data.get("reason") or ""), "comment": str(data.get("comment") or ""),
        "due_at": _shown_time(data.get("due_at")), "recipient": recipient,
        "post_url": post_url(config, post_id) or "",
        "preferences_url": preferences_url(config, recipient) or "",
        "at": _shown_time(payload.get("at")),
    }


def _shown_time(value: object) -> str:
    """An ISO time as people read it in a message (``2030-01-01 09:00 UTC``)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        return f"{moment:%Y-%m-%d %H:%M}"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _template(config: NotificationConfig, kind: str, part: str) -> string.Template:
    override = config.templates.get(kind, {})
    text = override.get(part) or DEFAULT_TEMPLATES.get(kind, DEFAULT_TEMPLATES["post.created"])[
        part]
    return string.Template(text)


def _one(config: NotificationConfig, payload: Mapping[str, Any], recipient: str
         ) -> tuple[str, str, str]:
    kind = str(payload.get("kind", ""))
    values = fields(config, payload, recipient)
    escaped = {k: html.escape(v) for k, v in values.items()}
    subject = _template(config, kind, "subject").safe_substitute(values)
    text = _drop_empty(_template(config, kind, "text").safe_substitute(values),
                       kind, config, "text")
    body = _drop_empty(_template(config, kind, "html").safe_substitute(escaped),
                       kind, config, "html")
    return " ".join(subject.split()), text, body


def _drop_empty(rendered: str, kind: str, config: NotificationConfig, part: str) -> str:
    """Drop the default templates' lines whose field was empty ("Comment: ")."""
    if config.templates.get(kind, {}).get(part):
        return rendered
    labels = ("Comment: ", "Reason: ", "Links: ", "Due: ", "Stage: ")
    lines = []
    for line in rendered.splitlines():
        if part == "text" and line.strip() in {lbl.strip() for lbl in labels}:
            continue
        if part == "html":
            for label in labels:
                line = line.replace(f"<p>{label}</p>", "")
            line = line.replace('<p><a href=""></a></p>', "")
        lines.append(line)
    return "\n".join(line for line in lines if line.strip() or part == "text") + "\n"


def render(config: NotificationConfig, notices: Sequence[Notice]) -> tuple[str, str, str]:
    """``(subject, text, html)`` of one message: one notice's event, or a digest of
    several (same recipient), each event once, oldest first."""
    if not notices:
        raise ValueError("render needs at least one notice")
    recipient = notices[0].recipient
    if len(notices) == 1:
        return _one(config, notices[0].payload, recipient)
    seen: set[str] = set()
    parts = []
    for notice in sorted(notices, key=lambda n: (n.created_at, n.id)):
        if notice.event_key in seen:
            continue
        seen.add(notice.event_key)
        parts.append(_one(config, notice.payload, recipient))
    frame = {**DIGEST_TEMPLATE, **config.templates.get("digest", {})}
    count = str(len(parts))
    text_items = "\n".join(f"- {subject}\n{_indent(text)}" for subject, text, _ in parts)
    html_items = "<ul>\n" + "\n".join(
        f"<li><strong>{html.escape(subject)}</strong>\n{body}</li>"
        for subject, _, body in parts) + "\n</ul>"
    digest_fields = {"count": count, "recipient": recipient}
    subject = string.Template(frame["subject"]).safe_substitute(digest_fields)
    text = string.Template(frame["text"]).safe_substitute(
        {**digest_fields, "items": text_items})
    body = string.Template(frame["html"]).safe_substitute(
        {"count": count, "recipient": html.escape(recipient), "items": html_items})
    return subject, text, body


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" if line else "" for line in text.splitlines())
