"""Deliver postflow notifications to Slack through an incoming webhook.

Install the distribution and postflow finds it through the ``postflow`` entry-point
group; it registers the notification channel ``slack``. Its settings (the
``[channels.slack]`` table of the notification configuration):

``webhook_url_env``
    The environment variable holding the incoming webhook's URL
    (``https://hooks.slack.com/services/…``); the URL is a secret and is never stored,
    logged or put into an error message. Or ``webhook_url`` itself (tests, local relays).
``members`` (optional)
    A table ``{member = "ENV_VAR"}``: members whose notifications go to a webhook of
    their own (a direct-message app); everyone else's go to the default one.
``timeout`` (optional)
    Seconds to wait for Slack (default 10).

Each message is Block Kit: a section with the subject in bold and the post's text
quoted (Slack's mrkdwn escaping of ``&``, ``<`` and ``>`` applied, so a post cannot
inject a mention or a link), a link to the post in the host app (the ``post_url``
setting of the notification configuration) to approve it there, and a context line with
the event and its time. A digest lists each event in its own section. A 2xx answer is
delivered; 429, 5xx, a timeout or a refused connection are retried later; other 4xx
answers (a revoked webhook) fail at once.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from postflow import ConfigError, DeliveryError, hookimpl
from postflow.notifications.channels import Message

__all__ = [
    "MAX_BLOCKS",
    "SlackChannel",
    "SlackPlugin",
    "blocks",
    "escape",
    "postflow_register_notification_channels",
]

try:
    __version__ = version("postflow-slack")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

log = logging.getLogger("postflow_slack")

MAX_BLOCKS = 50
"""Slack takes at most 50 blocks per message; a longer digest is cut with a note."""
PREVIEW = 500
"""The most characters of a post's text a message quotes."""
SETTINGS = frozenset({"webhook_url", "webhook_url_env", "members", "timeout"})
_USER_AGENT = f"postflow-slack/{__version__}"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})




def escape(text: str) -> str:
    """``text`` for Slack mrkdwn: ``&``, ``<`` and ``>`` as entities (nothing else is
    escaped: Slack shows ``*`` and ``_`` in user text literally inside quotes)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    # a URL with | or > would end the link early: Slack wants them percent-encoded
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{escape(label)}>"


def _quote(text: str) -> str:
    text = text if len(text) <= PREVIEW else text[:PREVIEW - 1] + "…"
    return "\n".join("> " + line if line else ">" for line in escape(text).split("\n"))


def _event_url(post_url: str | None, event: Mapping[str, Any]) -> str | None:
    own = event.get("post_url")  # a payload that carries its own link wins
    if isinstance(own, str) and own:
        return own
    if post_url is None:
        return None
    post_id = event.get("post_id")
    if "{post_id}" in post_url:
        return post_url.replace("{post_id}", str(post_id)) if post_id is not None else None
    return post_url


def _event_section(event: Mapping[str, Any], post_url: str | None) -> list[dict[str, Any]]:
    data: Mapping[str, Any] = event.get("data") or {}
    kind = str(event.get("kind") or event.get("event") or "event")
    post_id = event.get("post_id")
    head = f"*{escape(kind)}*" + (f" · post {post_id}" if post_id is not None else "")
    if event.get("stage"):
        head += f" · stage {escape(str(event['stage']))}"
    lines = [head]
    if data.get("text"):
        lines.append(_quote(str(data["text"])))
    for field in ("reason", "comment"):
        if data.get(field):
            lines.append(f"_{field}:_ {escape(str(data[field]))}")
    url = _event_url(post_url, event)
    if url:
        label = "Review and approve" if kind in {
            "post.submitted", "approval.due_soon", "approval.overdue",
            "post.not_approved_in_time"} else "Open the post"
        lines.append(_link(url, label))
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(
        v for v in (escape(kind), event.get("actor") and escape(f"by {event['actor']}"),
                    _when(event.get("at"))) if v)}]}
    return [section, context]


def _when(at: object) -> str:
    """A time as Slack shows it in each reader's own zone (``<!date^…>``), with the
    UTC time as the fallback text; ``""`` for no time or one that does not parse."""
    if not isinstance(at, str):
        return ""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    fallback = f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def blocks(message: Message) -> dict[str, Any]:
    """The webhook's JSON body for ``message``: ``text`` (the notification fallback)
    and Block Kit ``blocks``."""
    subject = ("🚨 " if message.urgent else "") + message.subject
    result: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(subject)}*"}}]
    events = list(message.events)
    for index, event in enumerate(events):
        if len(result) + 2 > MAX_BLOCKS - 1:
            result.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                           f"… and {len(events) - index} more"}]})
            break
        result += _event_section(event, message.post_url)
    if not events:
        result.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": escape(message.text)[:3000]}})
    for block in result:  # Slack refuses section text over 3000 characters
        text = block.get("text")
        if isinstance(text, dict) and len(text["text"]) > 3000:
            text["text"] = text["text"][:2999] + "…"
    return {"text": escape(subject), "blocks": result}


class SlackChannel:
    """The ``slack`` notification channel (see the module's documentation)."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._url: str | None = None
        self._url_env: str | None = None
        self._members: dict[str, str] = {}

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Take the ``[channels.slack]`` settings; :class:`~postflow.ConfigError` on a bad
        or unknown key."""
        unknown = sorted(set(settings) - SETTINGS)
        if unknown:
            raise ConfigError(f"channels.slack: unknown setting(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(SETTINGS))})")
        url, env = settings.get("webhook_url"), settings.get("webhook_url_env")
        if (url is None) == (env is None):
            raise ConfigError("channels.slack: set exactly one of webhook_url and "
                              "webhook_url_env")
        if url is not None:
            _check_url(url, "channels.slack.webhook_url")
        if env is not None and (not isinstance(env, str) or not env):
            raise ConfigError("channels.slack.webhook_url_env must name an environment "
                              "variable")
        members = settings.get("members", {})
        if not isinstance(members, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in members.items()):
            raise ConfigError("channels.slack.members must be a table of member = "
                              "\"ENV_VAR\"")
        timeout = settings.get("timeout", self.timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
                0 < timeout <= 300):
            raise ConfigError(f"channels.slack.timeout must be seconds from 0 to 300, got "
                              f"{timeout!r:.50}")
        self._url, self._url_env = url, env
        self._members = dict(members)
        self.timeout = float(timeout)

    def webhook(self, member: str) -> str:
        """The webhook URL ``member``'s messages go to."""
        env = self._members.get(member) or self._url_env
        if env is None:
            if self._url is None:
                raise DeliveryError("channels.slack is not configured", retryable=False)
            return self._url
        url = os.environ.get(env)
        if not url:
            raise DeliveryError(f"the environment variable {env} (a Slack webhook URL) is "
                                "not set", retryable=True)
        try:
            _check_url(url, env)
        except ConfigError as exc:
            raise DeliveryError(str(exc), retryable=False) from None
        return url

    def send(self, message: Message) -> None:
        """POST ``message`` to the recipient's webhook; :class:`~postflow.DeliveryError`
        when Slack did not take it."""
        name = getattr(message.recipient, "name", str(message.recipient))
        url = self.webhook(name)
        body = json.dumps(blocks(message), ensure_ascii=False).encode()
        parts = urlsplit(url)
        conn_type = (http.client.HTTPSConnection if parts.scheme == "https"
                     else http.client.HTTPConnection)
        conn = conn_type(parts.hostname or "", parts.port, timeout=self.timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": _USER_AGENT, "X-Postflow-Dedup-Key": message.dedup_key})
            response = conn.getresponse()
            answer = response.read(2048).decode("utf-8", "replace").strip()
        except TimeoutError as exc:
            raise DeliveryError(f"Slack did not answer within {self.timeout:g} s",
                                retryable=True) from exc
        except OSError as exc:  # refused, reset, DNS
            raise DeliveryError(f"Slack could not be reached: {type(exc).__name__}",
                                retryable=True) from exc
        except http.client.HTTPException as exc:
            raise DeliveryError(f"Slack's answer was broken: {type(exc).__name__}",
                                retryable=True) from exc
        finally:
            conn.close()
        status = response.status
        if 200 <= status < 300:
            log.debug("slack: %s delivered to %s", message.dedup_key, name)
            return
        reason = f"Slack answered {status} {answer[:200]!r}"
        raise DeliveryError(reason, retryable=status == 429 or status >= 500)


def _check_url(url: object, what: str) -> None:
    if not isinstance(url, str):
        raise ConfigError(f"{what} must be a URL")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return  # a local relay or a test server
    raise ConfigError(f"{what} must be an https URL (plain http only for localhost)")


@hookimpl
def postflow_register_notification_channels(register: Callable[[str, Any], None]) -> None:
    """Register a :class:`SlackChannel` as ``slack``."""
    register("slack", SlackChannel())


class SlackPlugin:
    """An in-process plugin registering ``channel`` under ``name``:
    ``postflow.open(url, plugins=[SlackPlugin(SlackChannel(timeout=5))])``."""

    def __init__(self, channel: SlackChannel | None = None, name: str = "slack") -> None:
        self.channel = channel or SlackChannel()
        self.name = name

    @hookimpl
    def postflow_register_notification_channels(self, register: Callable[[str, Any], None]
                                                ) -> None:
        """Register :attr:`channel` as :attr:`name`."""
        register(self.name, self.channel)
