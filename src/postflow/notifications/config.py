"""Notification rules, escalations, settings and per-member preferences, validated on load.

A configuration is a TOML document or a dict (see the ``Notifications`` docs); errors
are :class:`~postflow.ConfigError` naming the rule, template or setting and, for TOML
text, its line.
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from collections.abc import Collection, Mapping, Sequence
from datetime import time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from postflow._fields import LIMITS, checked_text, url_problem
from postflow._time import parse_duration
from postflow.exceptions import ConfigError, ValidationFailed
from postflow.notifications.events import EVENT_KINDS
from postflow.workflow import _format_duration as format_duration

__all__ = [
    "DEFAULT_CHANNELS",
    "TARGET_KINDS",
    "TEMPLATE_FIELDS",
    "TEMPLATE_PARTS",
    "Escalation",
    "NotificationConfig",
    "Preferences",
    "Rule",
    "Vocabulary",
    "parse_config",
    "parse_preferences",
]

TEMPLATE_FIELDS = frozenset({
    "event", "event_title", "post_id", "post_text", "author", "actor", "stage", "campaign",
    "channels", "urls", "reason", "comment", "due_at", "recipient", "post_url",
    "preferences_url", "at",
})
"""The ``$names`` a template may use."""
DIGEST_FIELDS = frozenset({"count", "recipient", "items"})
"""The ``$names`` of the ``digest`` template (the frame around the rendered events)."""
TEMPLATE_PARTS = ("subject", "text", "html")
TARGET_KINDS = ("author", "approvers", "mentioned", "campaign", "actor")
"""Targets without a name; with one: ``role:NAME``, ``member:NAME``."""
DEFAULT_CHANNELS = ("email", "inbox")
"""An escalation's channels when it names none."""
DIGESTS = ("off", "burst", "hourly", "daily")

_SETTINGS_KEYS = {"due_soon", "retention", "burst_window", "max_attempts", "from",
                  "preferences_url", "post_url"}
_TOP_KEYS = {"settings", "rules", "escalations", "channels", "templates"}
_RULE_KEYS = {"name", "events", "to", "channels", "urgent"}
_ESCALATION_KEYS = {"name", "stage", "after", "notify", "channels", "add_approver"}
_PREFERENCE_KEYS = {"mute_events", "mute_channels", "digest", "quiet_hours", "timezone",
                    "urgent_bypass", "campaigns"}
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
MAX_DURATION = timedelta(days=3650)
"""The longest duration a setting or an escalation may name (ten years): later
instants computed from it stay representable."""
MAX_CONFIG_SIZE = 1 << 20
"""The longest configuration text (a TOML document or file) postflow reads."""
MAX_ATTEMPTS = 1000
"""The most delivery attempts ``max_attempts`` may allow."""
_MAX_DEPTH = 20
_MAX_ENTRIES = 10_000


@attrs.frozen
class Vocabulary:
    """The names a configuration may use; ``None`` skips that check (a stored
    configuration is read back without checking members that left since)."""

    members: Collection[str] | None = None
    roles: Collection[str] | None = None
    channels: Collection[str] | None = None
    stages: Collection[str] | None = None


@attrs.frozen
class Rule:
    """Which events reach whom, through which channels."""

    name: str
    events: tuple[str, ...]
    """Event kinds; ``("*",)`` for all."""
    to: tuple[str, ...]
    channels: tuple[str, ...]
    urgent: bool = False

    def matches(self, kind: str) -> bool:
        """Whether events of ``kind`` fall under this rule."""
        return "*" in self.events or kind in self.events


@attrs.frozen
class Escalation:
    """Who hears when a stage's approval is ``after`` past its due time, and who is
    added as an approver of that post's stage."""

    name: str
    stage: str
    """A stage name or ``"*"``."""
    after: timedelta
    notify: tuple[str, ...]
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    add_approver: str | None = None


@attrs.frozen
class NotificationConfig:
    """A workspace's notification rules, escalations, channel settings and templates."""

    rules: tuple[Rule, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    channels: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, hash=False)
    """Each channel's settings (passed to its ``configure()``)."""
    templates: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, hash=False)
    """Overrides by event kind (or ``"digest"``): ``subject``/``text``/``html``."""
    due_soon: timedelta = timedelta(hours=4)
    retention: timedelta = timedelta(days=30)
    burst_window: timedelta = timedelta(minutes=2)
    max_attempts: int = 8
    sender: str = "postflow@localhost"
    """The ``from`` setting."""
    preferences_url: str | None = None
    """With ``{member}``: the member's notification settings in the host app."""
    post_url: str | None = None
    """With ``{post_id}``: a post in the host app."""

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-able dict that :func:`parse_config` reads back."""
        settings: dict[str, Any] = {
            "due_soon": format_duration(self.due_soon),
            "retention": format_duration(self.retention),
            "burst_window": format_duration(self.burst_window),
            "max_attempts": self.max_attempts, "from": self.sender}
        if self.preferences_url is not None:
            settings["preferences_url"] = self.preferences_url
        if self.post_url is not None:
            settings["post_url"] = self.post_url
        return {
            "settings": settings,
            "rules": [{"name": r.name, "events": list(r.events), "to": list(r.to),
                       "channels": list(r.channels), "urgent": r.urgent} for r in self.rules],
            "escalations": [
                {"name": e.name, "stage": e.stage, "after": _duration_text(e.after),
                 "notify": list(e.notify), "channels": list(e.channels),
                 **({"add_approver": e.add_approver} if e.add_approver else {})}
                for e in self.escalations],
            "channels": {name: dict(values) for name, values in self.channels.items()},
            "templates": {kind: dict(parts) for kind, parts in self.templates.items()},
        }


@attrs.frozen
class Preferences:
    """What one member wants to hear, when and how."""

    mute_events: frozenset[str] = frozenset()
    mute_channels: frozenset[str] = frozenset()
    digest: str = "off"
    """``off``, ``burst``, ``hourly`` or ``daily`` (at :attr:`digest_at`)."""
    digest_at: time | None = None
    quiet_hours: tuple[time, time] | None = None
    timezone: str = "UTC"
    urgent_bypass: bool = True
    campaigns: frozenset[str] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        """The member's time zone."""
        return ZoneInfo(self.timezone)

    def to_dict(self) -> dict[str, Any]:
        """The preferences as the dict :func:`parse_preferences` reads."""
        digest = self.digest
        if digest == "daily" and self.digest_at is not None:
            digest = f"daily {self.digest_at:%H:%M}"
        quiet = None if self.quiet_hours is None else \
            f"{self.quiet_hours[0]:%H:%M}-{self.quiet_hours[1]:%H:%M}"
        return {"mute_events": sorted(self.mute_events),
                "mute_channels": sorted(self.mute_channels), "digest": digest,
                "quiet_hours": quiet, "timezone": self.timezone,
                "urgent_bypass": self.urgent_bypass, "campaigns": sorted(self.campaigns)}


# -- the configuration -------------------------------------------------------------------


def parse_config(source: Mapping[str, Any] | str,
                 vocabulary: Vocabulary | None = None) -> NotificationConfig:
    """Validate a configuration given as a dict or as TOML text.

    Raises :class:`~postflow.ConfigError` naming the first problem (the rule, escalation,
    template or setting, and for TOML text its line).
    """
    vocabulary = vocabulary or Vocabulary()
    lines = _Lines(source if isinstance(source, str) else None)
    if isinstance(source, str):
        if len(source) > MAX_CONFIG_SIZE:
            raise ConfigError(f"notification configuration is over {MAX_CONFIG_SIZE:,} "
                              "characters long")
        try:
            data: Mapping[str, Any] = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"notification configuration is not valid TOML: {exc}") from exc
    elif isinstance(source, Mapping):
        data = source
    else:
        raise ConfigError(f"a notification configuration is a dict or TOML text, got "
                          f"{type(source).__name__}")
    _no_unknown(data, _TOP_KEYS, "notification configuration")
    settings = _table(data.get("settings", {}), "[settings]")
    _no_unknown(settings, _SETTINGS_KEYS, "[settings]" + lines.table("settings"))
    durations = {}
    for key, default in (("due_soon", "4h"), ("retention", "30d"), ("burst_window", "2m")):
        durations[key] = _duration(settings.get(key, default),
                                   f"[settings] {key}{lines.key('settings', key)}")
    max_attempts = settings.get("max_attempts", 8)
    if type(max_attempts) is not int or not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise ConfigError(f"[settings] max_attempts{lines.key('settings', 'max_attempts')}: "
                          f"a whole number from 1 to {MAX_ATTEMPTS}, got {max_attempts!r:.100}")
    sender = _text(settings.get("from", "postflow@localhost"), "[settings] from",
                   limit=LIMITS["email"])
    if "@" not in sender or any(c in sender for c in "<>,;"):  # as the email channel
        raise ConfigError(f"[settings] from: must be one email address, got {sender!r:.100}")
    urls = {}
    for key, field in (("preferences_url", "member"), ("post_url", "post_id")):
        value = settings.get(key)
        if value is not None:
            urls[key] = _url_template(value, field, f"[settings] {key}"
                                      f"{lines.key('settings', key)}")
    rules = tuple(_rule(raw, i, vocabulary, lines)
                  for i, raw in enumerate(_array(data.get("rules", []), "rules")))
    _unique([r.name for r in rules], "rule")
    escalations = tuple(_escalation(raw, i, vocabulary, lines) for i, raw in
                        enumerate(_array(data.get("escalations", []), "escalations")))
    _unique([e.name for e in escalations], "escalation")
    channels = _table(data.get("channels", {}), "[channels]")
    for name, values in channels.items():
        where = f"[channels.{name}]{lines.table(f'channels.{name}')}"
        _table(values, where)
        _known(name, vocabulary.channels, "channel", where)
    templates = _templates(_table(data.get("templates", {}), "[templates]"), lines)
    _plain(data, "notification configuration")  # what the checks above did not look at
    return NotificationConfig(
        rules, escalations, {k: dict(v) for k, v in channels.items()}, templates,
        durations["due_soon"], durations["retention"], durations["burst_window"],
        max_attempts, sender, urls.get("preferences_url"), urls.get("post_url"))


def _rule(raw: object, index: int, vocabulary: Vocabulary, lines: _Lines) -> Rule:
    where = f"rule {index + 1}{lines.array('rules', index)}"
    table = _table(raw, where)
    name = _text(table.get("name", f"rule {index + 1}"), f"{where}: name",
                 limit=LIMITS["name"])
    where = f"rule {name!r:.100}{lines.array('rules', index)}"
    _no_unknown(table, _RULE_KEYS, where)
    events = _strings(table.get("events"), f"{where}: events", required=True)
    for kind in events:
        if kind != "*" and kind not in EVENT_KINDS:
            raise ConfigError(f"{where}: unknown event {kind!r:.100} (events: "
                              f"{', '.join(EVENT_KINDS)}, or '*')")
    to = _targets(table.get("to"), f"{where}: to", vocabulary)
    channels = _channels(table.get("channels"), f"{where}: channels", vocabulary,
                         required=True)
    urgent = table.get("urgent", False)
    if type(urgent) is not bool:
        raise ConfigError(f"{where}: urgent must be true or false, got {urgent!r:.100}")
    return Rule(name, events, to, channels, urgent)


def _escalation(raw: object, index: int, vocabulary: Vocabulary, lines: _Lines
                ) -> Escalation:
    where = f"escalation {index + 1}{lines.array('escalations', index)}"
    table = _table(raw, where)
    name = _text(table.get("name", f"escalation {index + 1}"), f"{where}: name",
                 limit=LIMITS["name"])
    where = f"escalation {name!r:.100}{lines.array('escalations', index)}"
    _no_unknown(table, _ESCALATION_KEYS, where)
    stage = table.get("stage", "*")
    if not isinstance(stage, str):
        raise ConfigError(f"{where}: stage must be a stage name or '*', got {stage!r:.100}")
    if stage != "*":
        _known(stage, vocabulary.stages, "stage", where)
    after = _duration_or_zero(table.get("after", "0h"), f"{where}: after")
    notify = _targets(table.get("notify", []), f"{where}: notify", vocabulary,
                      required=False)
    channels = _channels(table.get("channels", list(DEFAULT_CHANNELS)),
                         f"{where}: channels", vocabulary, required=True)
    add_approver = table.get("add_approver")
    if add_approver is not None:
        if not isinstance(add_approver, str):
            raise ConfigError(f"{where}: add_approver must be a member name, got "
                              f"{add_approver!r:.100}")
        _known(add_approver, vocabulary.members, "member", where)
    if not notify and add_approver is None:
        raise ConfigError(f"{where}: names nobody to notify and no approver to add")
    return Escalation(name, stage, after, notify, channels, add_approver)


def _templates(raw: Mapping[str, Any], lines: _Lines) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for kind, parts in raw.items():
        header = f'templates."{kind}"'
        where = f"template {kind!r:.100}{lines.table(header)}"
        if kind != "digest" and kind not in EVENT_KINDS:
            raise ConfigError(f"{where}: unknown event {kind!r:.100}")
        table = _table(parts, where)
        _no_unknown(table, set(TEMPLATE_PARTS), where)
        result[kind] = {}
        for part, text in table.items():
            at = f"template {kind!r:.100}, {part}{lines.key(header, part)}"
            _text(text, at, limit=LIMITS["text"], one_line=part == "subject",
                  required=False)
            check_template(text, at, DIGEST_FIELDS if kind == "digest" else TEMPLATE_FIELDS)
            result[kind][part] = text
    return result


def check_template(text: str, where: str, allowed: frozenset[str] = TEMPLATE_FIELDS
                   ) -> string.Template:
    """``text`` as a :class:`string.Template` using only ``allowed`` fields;
    :class:`~postflow.ConfigError` naming ``where`` otherwise."""
    template = string.Template(text)
    if not template.is_valid():
        try:
            template.substitute(dict.fromkeys(allowed, ""))
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"{where}: not a valid template: {exc}") from exc
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join('$' + n for n in unknown)} "
                          f"(fields: {', '.join('$' + n for n in sorted(allowed))})")
    return template


# -- preferences -------------------------------------------------------------------------


def parse_preferences(member: str, data: Mapping[str, Any],
                      vocabulary: Vocabulary | None = None) -> Preferences:
    """Validate ``member``'s preferences; :class:`~postflow.ConfigError` naming the member
    and the field."""
    vocabulary = vocabulary or Vocabulary()
    where = f"preferences of {member!r:.100}"
    table = _table(data, where)
    _plain(table, where)
    _no_unknown(table, _PREFERENCE_KEYS, where)
    mute_events = _strings(table.get("mute_events", []), f"{where}: mute_events")
    for kind in mute_events:
        if kind not in EVENT_KINDS:
            raise ConfigError(f"{where}: mute_events: unknown event {kind!r:.100}")
    mute_channels = _channels(table.get("mute_channels", []), f"{where}: mute_channels",
                              vocabulary, required=False)
    digest, digest_at = _digest(table.get("digest", "off"), f"{where}: digest")
    quiet = table.get("quiet_hours")
    quiet_hours = None if quiet is None else _quiet_hours(quiet, f"{where}: quiet_hours")
    timezone = table.get("timezone", "UTC")
    try:
        if not isinstance(timezone, str) or len(timezone) > 100:
            raise ValueError(timezone)
        ZoneInfo(timezone)
    except (ValueError, OSError, ZoneInfoNotFoundError) as exc:
        raise ConfigError(f"{where}: timezone: unknown time zone {timezone!r:.100} "
                          "(use an IANA name such as 'Europe/Berlin')") from exc
    bypass = table.get("urgent_bypass", True)
    if type(bypass) is not bool:
        raise ConfigError(f"{where}: urgent_bypass must be true or false, got {bypass!r:.100}")
    campaigns = _strings(table.get("campaigns", []), f"{where}: campaigns")
    return Preferences(frozenset(mute_events), frozenset(mute_channels), digest, digest_at,
                       quiet_hours, timezone, bypass, frozenset(campaigns))


def _digest(value: object, where: str) -> tuple[str, time | None]:
    if isinstance(value, str):
        kind, _, at = value.partition(" ")
        if kind in ("off", "burst", "hourly") and not at:
            return kind, None
        if kind == "daily":
            return kind, _clock(at or "08:00", where)
    raise ConfigError(f"{where}: expected 'off', 'burst', 'hourly' or 'daily HH:MM', "
                      f"got {value!r:.100}")


def _quiet_hours(value: object, where: str) -> tuple[time, time]:
    start, sep, end = value.partition("-") if isinstance(value, str) else ("", "", "")
    if not sep:
        raise ConfigError(f"{where}: expected 'HH:MM-HH:MM' (e.g. '22:00-07:00'), got "
                          f"{value!r:.100}")
    begin, finish = _clock(start.strip(), where), _clock(end.strip(), where)
    if begin == finish:
        raise ConfigError(f"{where}: the quiet hours start and end at the same time")
    return begin, finish


def _clock(value: str, where: str) -> time:
    match = _CLOCK.fullmatch(value)
    if not match:
        raise ConfigError(f"{where}: {value!r:.100} is not a time of day HH:MM")
    return time(int(match.group(1)), int(match.group(2)))


# -- helpers -----------------------------------------------------------------------------


class _Lines:
    """Where tables and keys are in TOML text, to name the line of a problem."""

    def __init__(self, text: str | None) -> None:
        self._lines = text.splitlines() if text is not None else []

    def _find(self, pattern: str, start: int = 0, nth: int = 0) -> int | None:
        regex = re.compile(pattern)
        seen = 0
        for number, line in enumerate(self._lines[start:], start):
            if regex.match(line):
                if seen == nth:
                    return number
                seen += 1
        return None

    def array(self, name: str, index: int) -> str:
        """`` (line N)`` of the ``index``-th ``[[name]]`` table."""
        found = self._find(rf"\s*\[\[\s*{re.escape(name)}\s*\]\]", nth=index)
        return "" if found is None else f" (line {found + 1})"

    def _header(self, name: str) -> int | None:
        parts = [re.escape(p) for p in _split_dotted(name)]
        return self._find(r"\s*\[\s*" + r"\s*\.\s*".join(parts) + r"\s*\]")

    def table(self, name: str) -> str:
        """`` (line N)`` of the ``[name]`` table."""
        found = self._header(name)
        return "" if found is None else f" (line {found + 1})"

    def key(self, table: str, key: str) -> str:
        """`` (line N)`` of ``key = ...`` in the ``[table]`` table."""
        header = self._header(table)
        if header is None:
            return ""
        found = self._find(rf"\s*{re.escape(key)}\s*=", header + 1)
        return "" if found is None else f" (line {found + 1})"


def _split_dotted(name: str) -> list[str]:
    return re.findall(r'"[^"]*"|[^.]+', name)


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {value!r:.100}")
    return value


def _array(value: object, name: str) -> Sequence[object]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(f"{name}: expected an array of tables ([[{name}]]), got "
                          f"{value!r:.100}")
    return value


def _no_unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(f"{k!r:.100}" for k in table if k not in allowed)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more"
                                         if len(unknown) > 5 else "")
        raise ConfigError(f"{where}: unknown key(s) {shown}; "
                          f"expected some of {', '.join(sorted(allowed))}")


def _text(value: object, where: str, *, limit: int, one_line: bool = True,
          required: bool = True) -> str:
    """``value`` if it is text postflow can store and show (see
    :func:`~postflow._fields.checked_text`), else a ConfigError naming ``where``."""
    try:
        return checked_text(value, "notification configuration", where, limit=limit,
                            one_line=one_line, required=required)
    except ValidationFailed as exc:
        raise ConfigError(exc.problems[0].message) from None


def _plain(value: object, where: str, depth: int = 0) -> None:
    """Refuse what the stored document cannot hold alike on every backend: keys that
    are not text, values other than text, numbers, booleans, lists and tables (a TOML
    date, say), NaN and infinite numbers (not JSON: ``notify config show --json`` could
    not print them), text that is not valid Unicode, nesting over 20 levels."""
    if depth > _MAX_DEPTH:
        raise ConfigError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if not value.isprintable():
            _text(value, where, limit=LIMITS["text"], one_line=False, required=False)
        elif len(value) > LIMITS["text"]:
            _text(value, where, limit=LIMITS["text"])
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be text, got {key!r:.100}")
            _text(key, f"{where}: a key", limit=LIMITS["name"])
            _plain(item, f"{where}.{key}" if depth else f"{where}: {key}", depth + 1)
    elif isinstance(value, list | tuple):
        if len(value) > _MAX_ENTRIES:
            raise ConfigError(f"{where}: {len(value):,} entries; the limit is "
                              f"{_MAX_ENTRIES:,}")
        for item in value:
            _plain(item, where, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    elif value is not None and not isinstance(value, bool | int | float):
        raise ConfigError(f"{where}: {type(value).__name__} values are not supported, "
                          f"got {value!r:.100}")


def _strings(value: object, where: str, *, required: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, bytes) or not isinstance(value, Sequence) or not all(
            isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r:.100}")
    if required and not value:
        raise ConfigError(f"{where}: name at least one")
    if len(value) > LIMITS["items"]:
        raise ConfigError(f"{where}: {len(value):,} names; the limit is {LIMITS['items']}")
    for name in value:
        _text(name, where, limit=LIMITS["name"])
    return tuple(dict.fromkeys(value))


def _known(name: str, known: Collection[str] | None, what: str, where: str) -> None:
    if known is not None and name not in known:
        raise ConfigError(f"{where}: unknown {what} {name!r:.100} (known: "
                          f"{', '.join(sorted(known)) or 'none'})")


def _targets(value: object, where: str, vocabulary: Vocabulary, *, required: bool = True
             ) -> tuple[str, ...]:
    targets = _strings(value, where, required=required)
    for target in targets:
        kind, sep, name = target.partition(":")
        if sep and kind == "role" and name:
            _known(name, vocabulary.roles, "role", where)
        elif sep and kind == "member" and name:
            _known(name, vocabulary.members, "member", where)
        elif sep or target not in TARGET_KINDS:
            raise ConfigError(f"{where}: unknown target {target!r:.100} (use role:NAME, "
                              f"member:NAME or one of {', '.join(TARGET_KINDS)})")
    return targets


def _channels(value: object, where: str, vocabulary: Vocabulary, *, required: bool
              ) -> tuple[str, ...]:
    channels = _strings(value, where, required=required)
    for name in channels:
        _known(name, vocabulary.channels, "channel", where)
    return channels


def _unique(names: Sequence[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"two {what}s are called {name!r:.100}")
        seen.add(name)


def _duration(value: object, where: str) -> timedelta:
    """A positive duration of at most :data:`MAX_DURATION`, else a ConfigError."""
    if isinstance(value, str) and len(value) > 40:
        raise ConfigError(f"{where}: {value!r:.40}... is not a duration (use e.g. '24h', "
                          "'90m', '2d')")
    result = parse_duration(value, what=where)
    if result > MAX_DURATION:
        raise ConfigError(f"{where}: {value!r:.40} is longer than the limit of "
                          f"{MAX_DURATION.days} days")
    return result


def _duration_or_zero(value: object, where: str) -> timedelta:
    if isinstance(value, str) and re.fullmatch(r"0+(\.0*)?\s*[smhd]?", value.strip()):
        return timedelta(0)
    if value == 0 and not isinstance(value, bool):
        return timedelta(0)
    return _duration(value, where)


def _duration_text(value: timedelta) -> str:
    return "0h" if not value else format_duration(value)


def _url_template(value: object, field: str, where: str) -> str:
    """An http(s) URL whose only placeholder is ``{field}`` (filled in URL-quoted;
    no other braces, no format specs)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a URL, got {value!r:.100}")
    filled = value.replace("{" + field + "}", "x")
    if "{" in filled or "}" in filled:
        raise ConfigError(f"{where}: may use only {{{field}}}, got {value!r:.100}")
    problem = url_problem(filled)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    return value
