"""The team, channels and campaigns: named records changed through the one write path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from postflow._fields import (
    LIMITS,
    UNSET,
    cadence_data,
    cadence_value,
    checked_text,
    flag,
    hashtag_list,
    http_url,
    name_list,
    optional_text,
    publisher_settings,
    slug,
    zone_name,
)
from postflow.engine import ChangeEngine
from postflow.exceptions import NotFound, ValidationFailed
from postflow.models import Cadence, Campaign, Channel, Member
from postflow.storage import NewEntry

__all__ = ["Campaigns", "Channels", "Team"]

D = TypeVar("D", Member, Channel, Campaign)


class _Directory(Generic[D]):
    """Lookups shared by ``ws.team``, ``ws.channels`` and ``ws.campaigns``."""

    _kind: ClassVar[str]

    def __init__(self, engine: ChangeEngine) -> None:
        self._engine = engine

    def _stored(self, name: str) -> D | None:
        raise NotImplementedError

    def _all(self) -> list[D]:
        raise NotImplementedError

    def get(self, name: str) -> D:
        """The one called ``name``; :class:`~postflow.NotFound` otherwise."""
        found = self._stored(name) if isinstance(name, str) else None
        if found is None:
            raise NotFound(f"no {self._kind} called {name!r}")
        return found

    def list(self) -> list[D]:
        """All of them (retired ones included), ordered by name."""
        return self._all()


class Team(_Directory[Member]):
    """The members of the workspace (``ws.team``)."""

    _kind = "member"

    def _stored(self, name: str) -> Member | None:
        return self._engine.storage.get_member(name)

    def _all(self) -> list[Member]:
        return self._engine.storage.list_members()

    def add(self, name: str, *, roles: Iterable[str], email: str | None = None,
            by: str | None = None) -> Member:
        """Add a member. ``by`` (an admin) is checked and recorded when given."""
        ws = self._engine
        actor = ws.manager(by)
        slug(name, f"member {name!r}")
        member = Member(name, self._roles(name, roles), optional_text(email, name, "email"))
        entry = ws.entry("member.add", actor, ws.clock.now(), None,
                          {"member": name, "roles": sorted(member.roles), "email": email})
        ws.insert_new(ws.storage.save_member, member, entry, f"member {name!r}")
        return member

    def update(self, name: str, *, roles: Iterable[str] | None = None,
               email: str | None = UNSET, active: bool | None = None,
               by: str | None = None, expected_version: int | None = None) -> Member:
        """Change a member's roles, email or active flag."""
        ws = self._engine
        actor = ws.manager(by)
        self.get(name)
        changes: dict[str, Any] = {}
        if roles is not None:
            changes["roles"] = self._roles(name, roles)
        if email is not UNSET:
            changes["email"] = optional_text(email, name, "email")
        if active is not None:
            changes["active"] = flag(active, name, "active")
        data = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in changes.items()}

        def change(member: Member) -> tuple[Member, NewEntry]:
            return attrs.evolve(member, version=member.version + 1, **changes), ws.entry(
                "member.update", actor, ws.clock.now(), None, {"member": name, **data})

        return ws.save_changed(lambda: self.get(name), change, ws.storage.save_member,
                             expected_version, f"member {name!r}")

    def remove(self, name: str, *, by: str | None = None,
               expected_version: int | None = None) -> Member:
        """Deactivate a member (their history stays; they can no longer act)."""
        return self.update(name, active=False, by=by, expected_version=expected_version)

    def _roles(self, name: str, roles: Iterable[str] | None) -> frozenset[str]:
        names = name_list(roles, f"member {name!r}", "roles")
        result = frozenset(names)
        unknown = sorted(result - self._engine.workflow.roles)
        if unknown or not result:
            raise ValidationFailed.single(
                f"member {name!r}", "unknown-role" if unknown else "no-roles",
                f"unknown role(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(self._engine.workflow.roles))}" if unknown
                else "a member needs at least one role", field="roles")
        return result


class Channels(_Directory[Channel]):
    """The accounts posts go out to (``ws.channels``)."""

    _kind = "channel"

    def _stored(self, name: str) -> Channel | None:
        return self._engine.storage.get_channel(name)

    def _all(self) -> list[Channel]:
        return self._engine.storage.list_channels()

    def add(self, name: str, *, network: str, handle: str = "", timezone: str = "UTC",
            publisher: str | None = None, settings: Mapping[str, str] | None = None,
            cadence: Cadence | None = None, by: str | None = None) -> Channel:
        """Add a channel on ``network`` with the time zone its cadence is planned in.

        ``publisher`` names the publisher that sends its posts (default: the one
        registered for ``network``); ``settings`` are that publisher's settings (for
        the webhook publisher: ``url`` and ``secret_env``); ``cadence`` its posting
        rules, which ``schedule`` enforces.
        """
        ws = self._engine
        actor = ws.manager(by)
        subject = f"channel {name!r}"
        slug(name, subject)
        if not isinstance(network, str) or not network.strip():
            raise ValidationFailed.single(subject, "no-network", "network is required",
                                          field="network")
        checked_text(network, subject, "network", limit=LIMITS["name"], one_line=True)
        channel = Channel(name, network, optional_text(handle, name, "handle") or "",
                          zone_name(timezone, subject), True, 1,
                          optional_text(publisher, subject, "publisher"),
                          publisher_settings(settings, subject), cadence_value(cadence, subject))
        _check_webhook_url(channel.publisher, channel.settings, subject)
        entry = ws.entry("channel.add", actor, ws.clock.now(), None,
                          {"channel": name, "network": network, "handle": channel.handle,
                           "timezone": timezone, "publisher": channel.publisher,
                           "settings": sorted(channel.settings),
                           "cadence": cadence_data(channel.cadence)})
        ws.insert_new(ws.storage.save_channel, channel, entry, subject)
        return channel

    def update(self, name: str, *, handle: str | None = None, timezone: str | None = None,
               active: bool | None = None, publisher: str | None = UNSET,
               settings: Mapping[str, str] | None = None, cadence: Cadence | None = None,
               by: str | None = None, expected_version: int | None = None) -> Channel:
        """Change a channel's handle or time zone, or retire it (``active=False``).

        Posts cannot be created for, or edited onto, a retired channel.
        """
        ws = self._engine
        actor = ws.manager(by)
        current = self.get(name)
        changes: dict[str, Any] = {}
        if handle is not None:
            changes["handle"] = optional_text(handle, name, "handle")
        if timezone is not None:
            changes["timezone"] = zone_name(timezone, f"channel {name!r}")
        if active is not None:
            changes["active"] = flag(active, name, "active")
        if publisher is not UNSET:
            changes["publisher"] = optional_text(publisher, name, "publisher")
        if settings is not None:
            changes["settings"] = publisher_settings(settings, f"channel {name!r}")
        if cadence is not None:
            changes["cadence"] = cadence_value(cadence, f"channel {name!r}")
        if "settings" in changes or "publisher" in changes:
            _check_webhook_url(changes.get("publisher", current.publisher),
                               changes.get("settings", current.settings), f"channel {name!r}")
        # setting values may be secrets' names or URLs: the trail records which changed
        logged = {k: (sorted(v) if k == "settings" else cadence_data(v) if k == "cadence"
                      else v) for k, v in changes.items()}

        def change(channel: Channel) -> tuple[Channel, NewEntry]:
            return attrs.evolve(channel, version=channel.version + 1, **changes), ws.entry(
                "channel.update", actor, ws.clock.now(), None, {"channel": name, **logged})

        return ws.save_changed(lambda: self.get(name), change, ws.storage.save_channel,
                             expected_version, f"channel {name!r}")

    def remove(self, name: str, *, by: str | None = None,
               expected_version: int | None = None) -> Channel:
        """Retire a channel (``update(active=False)``): its history keeps the name."""
        return self.update(name, active=False, by=by, expected_version=expected_version)


class Campaigns(_Directory[Campaign]):
    """Named campaigns with a goal and hashtags (``ws.campaigns``)."""

    _kind = "campaign"

    def _stored(self, name: str) -> Campaign | None:
        return self._engine.storage.get_campaign(name)

    def _all(self) -> list[Campaign]:
        return self._engine.storage.list_campaigns()

    def add(self, name: str, *, goal: str = "", hashtags: Iterable[str] = (),
            by: str | None = None) -> Campaign:
        """Add a campaign; hashtags get a leading ``#`` where they lack one."""
        ws = self._engine
        actor = ws.manager(by)
        subject = f"campaign {name!r}"
        slug(name, subject)
        campaign = Campaign(name, optional_text(goal, name, "goal", one_line=False) or "",
                            hashtag_list(hashtags, subject))
        entry = ws.entry("campaign.add", actor, ws.clock.now(), None,
                          {"campaign": name, "goal": campaign.goal,
                           "hashtags": list(campaign.hashtags)})
        ws.insert_new(ws.storage.save_campaign, campaign, entry, subject)
        return campaign

    def update(self, name: str, *, goal: str | None = None,
               hashtags: Iterable[str] | None = None, active: bool | None = None,
               by: str | None = None, expected_version: int | None = None) -> Campaign:
        """Change a campaign's goal or hashtags, or retire it (``active=False``): posts
        can then no longer be created for, or edited into, it; those it has keep it."""
        ws = self._engine
        actor = ws.manager(by)
        self.get(name)
        changes: dict[str, Any] = {}
        if goal is not None:
            changes["goal"] = optional_text(goal, name, "goal", one_line=False)
        if hashtags is not None:
            changes["hashtags"] = hashtag_list(hashtags, f"campaign {name!r}")
        if active is not None:
            changes["active"] = flag(active, name, "active")

        def change(campaign: Campaign) -> tuple[Campaign, NewEntry]:
            return attrs.evolve(campaign, version=campaign.version + 1, **changes), ws.entry(
                "campaign.update", actor, ws.clock.now(), None, {"campaign": name, **changes})

        return ws.save_changed(lambda: self.get(name), change, ws.storage.save_campaign,
                             expected_version, f"campaign {name!r}")

    def remove(self, name: str, *, by: str | None = None,
               expected_version: int | None = None) -> Campaign:
        """Retire a campaign (its name stays in the history and on its posts)."""
        return self.update(name, active=False, by=by, expected_version=expected_version)

def _check_webhook_url(publisher: str | None, settings: Mapping[str, str], subject: str
                       ) -> None:
    """A webhook channel's ``url`` is refused when configured if it could never be sent."""
    if publisher == "webhook" and "url" in settings:
        http_url(settings["url"], subject, "url")
