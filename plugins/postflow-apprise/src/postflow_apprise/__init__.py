"""Hand postflow notifications to Apprise, and so to every service it supports.

Install the distribution and postflow finds it through the ``postflow`` entry-point
group; it registers the notification channel ``apprise``. Its settings (the
``[channels.apprise]`` table of the notification configuration):

``urls``
    Apprise URLs every notification goes to (``msteams://…``, ``discord://…``,
    ``tgram://…``, ``matrixs://…``, ``ntfys://…``, ``json://…`` …). A URL holds the
    service's secret: prefer ``urls_env``.
``urls_env``
    The environment variable holding Apprise URLs (separated by spaces or commas).
``members`` (optional)
    A table ``{member = ["URL", …]}`` (or an environment variable name holding them):
    a member's own targets, used instead of ``urls`` for that member.
``tags`` (optional)
    Only the targets carrying one of these Apprise tags are notified (a URL gets tags
    through Apprise's ``tag`` argument: write ``"tag1,tag2=URL"``).
``timeout`` (optional)
    Seconds Apprise may take per call (default 30; only Apprise v2 enforces it).

Urgent notifications are sent with Apprise's ``failure`` type, others with ``info``.
Apprise 1.x answers ``True``/``False``; 2.x a result object whose status (success,
partial, failure, no match, timeout) decides: success is delivered, a timeout or a
partial or failed delivery is retried later (a later attempt resends to every target:
Apprise reports no per-target key), no matching target is a permanent failure.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import apprise
from postflow import ConfigError, DeliveryError, hookimpl
from postflow.notifications.channels import Message

__all__ = [
    "AppriseChannel",
    "ApprisePlugin",
    "outcome",
    "postflow_register_notification_channels",
]

try:
    __version__ = version("postflow-apprise")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

log = logging.getLogger("postflow_apprise")

SETTINGS = frozenset({"urls", "urls_env", "members", "tags", "timeout"})
_SPLIT = re.compile(r"[\s,]+")
_TAGGED = re.compile(r"^([\w.-]+(?:\s*,\s*[\w.-]+)*)=(\w[\w+.-]*://.*)$")




def outcome(result: Any) -> tuple[bool, bool, str]:
    """``(delivered, retryable, what)`` of an Apprise ``notify`` answer: v1's ``bool`` /
    ``None``, or v2's result object with a ``status``."""
    status = getattr(result, "status", None)
    if status is None:  # Apprise 1.x
        if result is None:
            return False, False, "no Apprise target matched"
        return (True, False, "delivered") if result else (
            False, True, "Apprise could not deliver it")
    name = str(getattr(status, "name", status)).upper()
    counts = (f" ({getattr(result, 'success_count', '?')} delivered, "
              f"{getattr(result, 'failed_count', '?')} failed)")
    if name == "SUCCESS":
        return True, False, "delivered"
    if name == "NOMATCH":
        return False, False, "no Apprise target matched"
    if name == "TIMEOUT":
        return False, True, "Apprise timed out" + counts
    if name == "PARTIAL":
        return False, True, "Apprise delivered to some targets only" + counts
    return False, True, "Apprise could not deliver it" + counts


def _urls(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        value = [v for v in _SPLIT.split(value) if v]
    if not isinstance(value, Sequence) or not value or not all(
            isinstance(v, str) and v for v in value):
        raise ConfigError(f"{what} must be a non-empty list of Apprise URLs")
    return list(value)


class AppriseChannel:
    """The ``apprise`` notification channel (see the module's documentation)."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._urls: list[str] = []
        self._urls_env: str | None = None
        self._members: dict[str, Any] = {}
        self._tags: list[str] | None = None

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Take the ``[channels.apprise]`` settings; :class:`~postflow.ConfigError` on a
        bad or unknown key or a URL Apprise does not know."""
        unknown = sorted(set(settings) - SETTINGS)
        if unknown:
            raise ConfigError(f"channels.apprise: unknown setting(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(SETTINGS))})")
        urls = settings.get("urls")
        env = settings.get("urls_env")
        members = settings.get("members", {})
        if urls is None and env is None and not members:
            raise ConfigError("channels.apprise: set urls, urls_env or members")
        checked = _urls(urls, "channels.apprise.urls") if urls is not None else []
        for url in checked:
            self._check(url, "channels.apprise.urls")
        if env is not None and (not isinstance(env, str) or not env):
            raise ConfigError("channels.apprise.urls_env must name an environment variable")
        if not isinstance(members, Mapping):
            raise ConfigError("channels.apprise.members must be a table of member = "
                              "[URL, …] or \"ENV_VAR\"")
        for member, value in members.items():
            if isinstance(value, str) and "://" not in value:
                continue  # an environment variable, read at send time
            for url in _urls(value, f"channels.apprise.members.{member}"):
                self._check(url, f"channels.apprise.members.{member}")
        tags = settings.get("tags")
        if tags is not None and (not isinstance(tags, Sequence) or isinstance(tags, str)
                                 or not all(isinstance(t, str) and t for t in tags)):
            raise ConfigError("channels.apprise.tags must be a list of tag names")
        timeout = settings.get("timeout", self.timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
                0 < timeout <= 600):
            raise ConfigError(f"channels.apprise.timeout must be seconds from 0 to 600, "
                              f"got {timeout!r:.50}")
        self._urls, self._urls_env = checked, env
        self._members = dict(members)
        self._tags = list(tags) if tags is not None else None
        self.timeout = float(timeout)

    @staticmethod
    def _check(url: str, what: str) -> None:
        _, target = _split_tags(url)
        if apprise.Apprise.instantiate(target) is None:
            service = target.split("://", 1)[0] if "://" in target else target[:20]
            raise ConfigError(f"{what}: Apprise does not accept a {service}:// URL (the "
                              "scheme is unknown or the URL incomplete)")

    def targets(self, member: str) -> list[str]:
        """The Apprise URLs ``member``'s notifications go to."""
        own = self._members.get(member)
        if own is not None:
            if isinstance(own, str) and "://" not in own:
                value = os.environ.get(own)
                if not value:
                    raise DeliveryError(f"the environment variable {own} (Apprise URLs "
                                        f"for {member}) is not set", retryable=True)
                return _urls(value, own)
            return _urls(own, member)
        if self._urls_env is not None:
            value = os.environ.get(self._urls_env)
            if not value:
                raise DeliveryError(f"the environment variable {self._urls_env} (Apprise "
                                    "URLs) is not set", retryable=True)
            return self._urls + _urls(value, self._urls_env)
        if not self._urls:
            raise DeliveryError(f"no Apprise target for {member}", retryable=False)
        return self._urls

    def send(self, message: Message) -> None:
        """Notify every target of the recipient; :class:`~postflow.DeliveryError` when
        Apprise did not deliver to all of them."""
        name = getattr(message.recipient, "name", str(message.recipient))
        notifier = apprise.Apprise()
        for url in self.targets(name):
            tags, target = _split_tags(url)
            if not notifier.add(target, tag=tags or None):
                raise DeliveryError("Apprise refused a target URL of "
                                    f"{target.split('://', 1)[0]}://", retryable=False)
        kwargs: dict[str, Any] = {
            "body": message.text or message.subject, "title": message.subject,
            "notify_type": (apprise.NotifyType.FAILURE if message.urgent
                            else apprise.NotifyType.INFO)}
        if self._tags is not None:
            kwargs["tag"] = self._tags
        try:
            result = notifier.notify(**kwargs, timeout=self.timeout)
        except TypeError:  # Apprise 1.x has no timeout argument
            result = notifier.notify(**kwargs)
        delivered, retryable, what = outcome(result)
        if delivered:
            log.debug("apprise: %s delivered to %s", message.dedup_key, name)
            return
        raise DeliveryError(what, retryable=retryable)


def _split_tags(url: str) -> tuple[list[str], str]:
    match = _TAGGED.match(url)
    if match is None:
        return [], url
    return [t.strip() for t in match.group(1).split(",")], match.group(2)


@hookimpl
def postflow_register_notification_channels(register: Callable[[str, Any], None]) -> None:
    """Register an :class:`AppriseChannel` as ``apprise``."""
    register("apprise", AppriseChannel())


class ApprisePlugin:
    """An in-process plugin registering ``channel`` under ``name``."""

    def __init__(self, channel: AppriseChannel | None = None, name: str = "apprise") -> None:
        self.channel = channel or AppriseChannel()
        self.name = name

    @hookimpl
    def postflow_register_notification_channels(self, register: Callable[[str, Any], None]
                                                ) -> None:
        """Register :attr:`channel` as :attr:`name`."""
        register(self.name, self.channel)
