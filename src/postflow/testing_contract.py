"""The storage contract suite: every guarantee of :class:`postflow.storage.Storage`.

Written against the abstract interface only, so that every backend (postflow's own and
any third party's) runs the same tests. A test module runs it by importing everything
and providing a ``storage_url`` fixture: the URL of a new, empty database::

    import pytest
    from postflow.testing_contract import *  # noqa: F403

    @pytest.fixture(name="storage_url", params=["memory://"])
    def _storage_url(request: pytest.FixtureRequest) -> str:
        return str(request.param)

A ``storage_plugins`` fixture (a sequence of plugin objects), when the test module or a
``conftest.py`` provides one, is registered before the backend is looked up, for a
backend not found through installed entry points. Backends are found the way
:func:`postflow.open` finds them, through the storage hook, but not opened as a
workspace: :func:`postflow.open` stores a workflow, and these tests start from an empty
backend.

This module imports pytest and hypothesis: import it from tests only (nothing in
postflow imports it).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import postflow
from postflow import (
    Approval,
    AuditEntry,
    Campaign,
    Channel,
    ConflictError,
    Feed,
    Member,
    NotFound,
    PlanningEntry,
    Post,
    PostQuery,
    Revision,
    Storage,
)
from postflow._plugins import Hooks, make_plugin_manager
from postflow._time import zone_of
from postflow.models import FrozenData, freeze
from postflow.notices import InboxItem, Notice

__all__ = [
    "AUTHORS",
    "CAMPAIGNS",
    "CHANNELS",
    "KINDS",
    "QUERIES",
    "STATES",
    "T0",
    "Dataset",
    "Kind",
    "TestAudit",
    "TestCalendarReads",
    "TestChangeCursors",
    "TestCopy",
    "TestDirectoryVersions",
    "TestDocuments",
    "TestFeeds",
    "TestGetPost",
    "TestInbox",
    "TestInsertPost",
    "TestListPosts",
    "TestNamedRecords",
    "TestOnePostClaimAndSeriesChanges",
    "TestOutbox",
    "TestPlanningEntries",
    "TestPublishingStorage",
    "TestRekey",
    "TestRevisions",
    "TestSlotGuards",
    "TestSnapshots",
    "TestStoredWorkflow",
    "TestUpdatePost",
    "_dataset",
    "_kind",
    "_storage",
    "hours",
    "inbox_item",
    "insert",
    "make_entry",
    "make_post",
    "moved",
    "notice",
    "open_storage",
    "reference",
    "revision_of",
    "same_answers",
    "test_instance_id_is_random_per_database",
]

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
STATES = ("draft", "review", "approved", "scheduled", "published")
CHANNELS = ("acme-x", "acme-li", "acme-ig")
AUTHORS = ("ana", "aaron")
CAMPAIGNS = ("spring", "autumn", None)

_correlation = iter(range(1, 10**9))


def make_post(**changes: Any) -> Post:
    """A draft post snapshot as a workspace would build it before inserting."""
    post = Post(
        id=0, version=1, state="draft", author="ana", text="hello", channels=("acme-x",),
        revision=1, created_at=T0, updated_at=T0, state_changed_at=T0,
    )
    return attrs.evolve(post, **changes)


def make_entry(action: str = "create", post: Post | None = None, **changes: Any) -> Any:
    """An audit entry about ``post`` (or about no post) with placeholder id 0.

    An :class:`~postflow.AuditEntry`, typed ``Any``: the storage methods are typed to take
    a ``NewEntry`` and accept an ``AuditEntry`` too (its id ignored), as documented."""
    entry = AuditEntry(
        id=0, action=action, actor="ana", at=T0, correlation_id=f"c{next(_correlation)}",
        post_id=post.id if post is not None and post.id else None,
        from_state=None, to_state=post.state if post is not None else None,
        revision=post.revision if post is not None else None,
    )
    return attrs.evolve(entry, **changes)


def revision_of(post: Post, number: int | None = None) -> Revision:
    """The revision matching a post's content."""
    return Revision(post.id, number or post.revision, post.text, post.channels,
                    post.campaign, post.author, post.updated_at)


def insert(storage: Storage, **changes: Any) -> Post:
    """Insert a post with one ``create`` entry; return the stored snapshot."""
    post = make_post(**changes)
    return storage.insert_post(post, revision_of(post), [make_entry("create", post)])


def moved(post: Post, **changes: Any) -> Post:
    """``post`` one version on, with ``changes``."""
    return attrs.evolve(post, version=post.version + 1, **changes)


def open_storage(request: pytest.FixtureRequest, url: str) -> Storage:
    """Open ``url`` through the storage hook, with the test's ``storage_plugins``."""
    try:
        plugins = tuple(request.getfixturevalue("storage_plugins"))
    except pytest.FixtureLookupError:
        plugins = ()
    storage = Hooks(make_plugin_manager(plugins, entry_points=False)).storage(url)
    assert storage is not None, f"no backend answers {url!r}"
    return storage


@pytest.fixture(name="storage")
def _storage(storage_url: str, request: pytest.FixtureRequest) -> Iterator[Storage]:
    """A fresh, empty backend, found through the storage hook."""
    storage = open_storage(request, storage_url)
    yield storage
    storage.close()


@attrs.frozen
class Kind:
    """How to make, save, get and list one kind of named record."""

    name: str
    make: Callable[[str, int], Any]
    save: str
    get: str
    list: str


def _member(name: str, n: int) -> Member:
    return Member(name, {"author"} if n == 0 else {"approver", "admin"},
                  f"{name}@example.org" if n == 0 else None, n == 0)


def _channel(name: str, n: int) -> Channel:
    return Channel(name, "x" if n == 0 else "linkedin", f"@{name}",
                   "UTC" if n == 0 else "Europe/Berlin", n == 0)


def _campaign(name: str, n: int) -> Campaign:
    return Campaign(name, f"goal {n}", ("#A",) if n == 0 else ("#B", "#C"))


KINDS = [
    Kind("member", _member, "save_member", "get_member", "list_members"),
    Kind("channel", _channel, "save_channel", "get_channel", "list_channels"),
    Kind("campaign", _campaign, "save_campaign", "get_campaign", "list_campaigns"),
]


@pytest.fixture(name="kind", params=KINDS, ids=[k.name for k in KINDS])
def _kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


class TestNamedRecords:
    """save/get/list of members, channels and campaigns."""

    def test_saved_record_comes_back_equal(self, storage: Storage, kind: Kind) -> None:
        """A saved record is returned by get with every field intact."""
        record = kind.make("zed", 1)
        getattr(storage, kind.save)(record, make_entry(f"{kind.name}.add"))
        assert getattr(storage, kind.get)("zed") == record

    def test_unknown_name_is_none(self, storage: Storage, kind: Kind) -> None:
        """get returns None for a name never saved."""
        assert getattr(storage, kind.get)("nobody") is None

    def test_list_is_ordered_by_name(self, storage: Storage, kind: Kind) -> None:
        """list returns every record ordered by name, whatever the insertion order."""
        for name in ("mia", "al", "zoe", "ben"):
            getattr(storage, kind.save)(kind.make(name, 0), make_entry(f"{kind.name}.add"))
        assert [r.name for r in getattr(storage, kind.list)()] == ["al", "ben", "mia", "zoe"]

    def test_save_replaces_a_record_of_the_same_name(self, storage: Storage, kind: Kind) -> None:
        """Saving under an existing name replaces the record instead of adding one."""
        getattr(storage, kind.save)(kind.make("al", 0), make_entry(f"{kind.name}.add"))
        replacement = kind.make("al", 1)
        getattr(storage, kind.save)(replacement, make_entry(f"{kind.name}.update"))
        assert getattr(storage, kind.get)("al") == replacement
        assert getattr(storage, kind.list)() == [replacement]

    def test_save_appends_its_entry(self, storage: Storage, kind: Kind) -> None:
        """Every save appends its audit entry, with no post id, in call order."""
        getattr(storage, kind.save)(kind.make("al", 0), make_entry(f"{kind.name}.add"))
        getattr(storage, kind.save)(kind.make("al", 1), make_entry(f"{kind.name}.update"))
        log = storage.audit_log()
        assert [e.action for e in log] == [f"{kind.name}.add", f"{kind.name}.update"]
        assert all(e.post_id is None for e in log)


class TestInsertPost:
    """Storage.insert_post."""

    def test_ids_are_fresh_and_increasing(self, storage: Storage) -> None:
        """Each insert gets a new id greater than every earlier one, whatever id it carried."""
        ids = [insert(storage, id=7).id for _ in range(5)]
        assert ids == sorted(set(ids))
        assert all(i > 0 for i in ids)

    def test_returns_the_post_with_only_the_id_changed(self, storage: Storage) -> None:
        """The returned snapshot is the given post with its new id, and is what get returns."""
        post = make_post(
            state="review", text="full", channels=("acme-x", "acme-li"), revision=2,
            campaign="spring", planned_for=date(2030, 2, 1),
            scheduled_at=T0 + timedelta(days=3), scheduled_zone="Europe/Berlin",
            approvals=(Approval("ben", "review", 2, T0, "fine"),
                       Approval("bea", "legal", 2, T0 + timedelta(seconds=1))),
        )
        stored = storage.insert_post(post, revision_of(post, 1), [make_entry("create", post)])
        assert stored == attrs.evolve(post, id=stored.id)
        assert storage.get_post(stored.id) == stored

    def test_extra_approvers_are_stored(self, storage: Storage) -> None:
        """A post inserted with escalation approvers keeps them, as tuples."""
        post = insert(storage, extra_approvers=[["review", "dee"]])
        assert post.extra_approvers == (("review", "dee"),)
        assert storage.get_post(post.id) == post
        assert insert(storage).extra_approvers == ()

    def test_stamps_the_id_on_revision_and_entries(self, storage: Storage) -> None:
        """The first revision and every entry carry the new id, not the placeholder."""
        post = make_post()
        entries = [make_entry("create", post), make_entry("note", post)]
        stored = storage.insert_post(post, revision_of(post), entries)
        assert [r.post_id for r in storage.revisions(stored.id)] == [stored.id]
        assert storage.revisions(stored.id)[0] == attrs.evolve(revision_of(post),
                                                               post_id=stored.id)
        history = storage.history(stored.id)
        assert [(e.action, e.post_id) for e in history] == [
            ("create", stored.id), ("note", stored.id)]

    def test_entries_keep_their_fields(self, storage: Storage) -> None:
        """An entry's action, actor, time, states, comment and JSON data survive storage."""
        post = make_post()
        data = {"text": "hello", "channels": ["acme-x"], "nested": {"n": 1, "ok": True}}
        entry = make_entry("create", post, actor="aaron", at=T0 + timedelta(minutes=5),
                           from_state="x", comment="first", data=data)
        stored = storage.insert_post(post, revision_of(post), [entry])
        (got,) = storage.history(stored.id)
        assert got.id > 0
        assert attrs.evolve(got, id=0, data={}) == attrs.evolve(
            entry, post_id=stored.id, data={})
        assert dict(got.data) == {"text": "hello", "channels": ("acme-x",),
                                  "nested": {"n": 1, "ok": True}}

    def test_entry_data_is_frozen_and_detached(self, storage: Storage) -> None:
        """Stored data is read-only, lists come back as tuples, and the caller's dict is
        not shared (changing it later changes nothing stored)."""
        post = make_post()
        data: dict[str, Any] = {"tags": ["a"], "nested": {"k": [1]}, "when": T0}
        stored = storage.insert_post(post, revision_of(post),
                                     [make_entry("create", post, data=data)])
        data["tags"].append("b")
        data["extra"] = 1
        (got,) = storage.history(stored.id)
        assert got.data == {"tags": ("a",), "nested": {"k": (1,)}, "when": str(T0)}
        with pytest.raises(TypeError):
            got.data["tags"] = ()  # type: ignore[index]
        with pytest.raises(TypeError):
            got.data["nested"]["k"] = ()
        for mutate in ("clear", "popitem", "update", "setdefault", "pop"):
            with pytest.raises(TypeError):
                getattr(got.data, mutate)("tags")
        assert pickle.loads(pickle.dumps(got)) == got


class TestGetPost:
    """Storage.get_post."""

    @pytest.mark.parametrize("post_id", [0, 1, 999_999, -1])
    def test_unknown_id_is_none(self, storage: Storage, post_id: int) -> None:
        """get_post returns None for an id that was never assigned."""
        assert storage.get_post(post_id) is None

    def test_known_id_is_found_among_others(self, storage: Storage) -> None:
        """get_post returns exactly the post with that id."""
        posts = [insert(storage, text=f"post {n}") for n in range(3)]
        assert [storage.get_post(p.id) for p in posts] == posts


class TestUpdatePost:
    """Storage.update_post: compare-and-set on (id, version)."""

    def test_replaces_the_stored_post(self, storage: Storage) -> None:
        """With the right expected version the new snapshot is stored."""
        post = insert(storage)
        new = moved(post, state="review", updated_at=T0 + timedelta(hours=1),
                    state_changed_at=T0 + timedelta(hours=1))
        storage.update_post(new, expected_version=post.version,
                            entries=[make_entry("submit", post, to_state="review")])
        assert storage.get_post(post.id) == new

    @pytest.mark.parametrize("with_previous", [False, True], ids=["whole", "changes-only"])
    def test_every_field_is_stored(self, storage: Storage, with_previous: bool) -> None:
        """Whatever changed (content without a revision included) is stored, whether or
        not the caller passes the snapshot being replaced."""
        post = insert(storage, campaign="spring")
        new = moved(post, state="approved", text="changed", channels=("acme-li",),
                    campaign=None, planned_for=date(2030, 5, 1),
                    scheduled_at=T0 + timedelta(days=2), scheduled_zone="Europe/Berlin",
                    approvals=(Approval("ben", "review", 1, T0),), revised_by="aaron",
                    updated_at=T0 + timedelta(hours=1),
                    state_changed_at=T0 + timedelta(hours=1),
                    media=("https://cdn.example.org/a.png",),
                    published_urls=FrozenData({"acme-li": "https://example.org/p/1"}),
                    sequence=3, claimed_by="w1", claimed_until=T0 + timedelta(minutes=5),
                    series_id=7, occurrence_at=T0 + timedelta(days=3),
                    extra_approvers=(("review", "dee"), ("legal", "cy")))
        storage.update_post(new, expected_version=post.version, entries=[],
                            previous=post if with_previous else None)
        assert storage.get_post(post.id) == new
        assert [p.id for p in storage.list_posts(PostQuery(channel="acme-li"))] == [post.id]
        assert storage.list_posts(PostQuery(campaign="spring")) == []
        newer = moved(new, state="scheduled", updated_at=T0 + timedelta(hours=2))
        storage.update_post(newer, expected_version=new.version, entries=[],
                            previous=new if with_previous else None)
        assert storage.get_post(post.id) == newer

    def test_appends_entries_in_order(self, storage: Storage) -> None:
        """The update's entries follow the post's earlier entries in its history."""
        post = insert(storage)
        new = moved(post, state="review")
        storage.update_post(new, expected_version=1, entries=[
            make_entry("submit", post, to_state="review"), make_entry("note", post)])
        assert [e.action for e in storage.history(post.id)] == ["create", "submit", "note"]

    def test_appends_the_revision_when_given(self, storage: Storage) -> None:
        """A new revision is appended after the first one."""
        post = insert(storage)
        new = moved(post, text="edited", revision=2)
        storage.update_post(new, expected_version=1, entries=[make_entry("edit", post)],
                            revision=revision_of(new))
        assert storage.get_post(post.id) == new
        assert [(r.number, r.text) for r in storage.revisions(post.id)] == [
            (1, "hello"), (2, "edited")]

    def test_data_keys_are_spelled_as_json_spells_them(self, storage: Storage) -> None:
        """Non-string keys in entry data come back as JSON spells them, the same from
        append_audit and from the trail, on every backend."""
        data = {True: 1, None: 2, 3: "x", "nested": {False: [1, 2]}}
        returned = storage.append_audit([make_entry("note", data=data)])[0]
        expected = {"true": 1, "null": 2, "3": "x", "nested": {"false": (1, 2)}}
        assert returned.data == expected
        assert storage.audit_log()[-1].data == expected

    def test_returns_the_entries_as_stored(self, storage: Storage) -> None:
        """update_post returns its entries with the ids and post id they were stored under."""
        post = insert(storage)
        returned = storage.update_post(moved(post, state="review"), expected_version=1,
                                       entries=[make_entry("submit", post),
                                                make_entry("note", post)])
        assert list(returned) == storage.history(post.id)[1:]
        assert returned[-1] == storage.history(post.id)[-1]
        assert all(e.id > 0 for e in returned)

    def test_no_revision_is_added_without_one(self, storage: Storage) -> None:
        """An update without a revision leaves the revisions as they were."""
        post = insert(storage)
        storage.update_post(moved(post, state="review"), expected_version=1,
                            entries=[make_entry("submit", post)])
        assert len(storage.revisions(post.id)) == 1

    def test_stale_version_raises_conflict(self, storage: Storage) -> None:
        """A write based on an old version raises ConflictError naming both versions."""
        post = insert(storage)
        storage.update_post(moved(post, state="review"), expected_version=1,
                            entries=[make_entry("submit", post)])
        with pytest.raises(ConflictError) as caught:
            storage.update_post(moved(post, state="archived"), expected_version=1,
                                entries=[make_entry("archive", post)])
        assert (caught.value.post_id, caught.value.expected, caught.value.actual) == (
            post.id, 1, 2)

    def test_conflict_writes_nothing(self, storage: Storage) -> None:
        """After a ConflictError the post, its history, revisions and the log are unchanged."""
        post = insert(storage)
        current = moved(post, state="review")
        storage.update_post(current, expected_version=1, entries=[make_entry("submit", post)])
        before = (storage.get_post(post.id), storage.history(post.id),
                  storage.revisions(post.id), storage.audit_log())
        stale = moved(post, text="lost", revision=2, state="archived")
        with pytest.raises(ConflictError):
            storage.update_post(stale, expected_version=1, entries=[make_entry("edit", post)],
                                revision=revision_of(stale))
        after = (storage.get_post(post.id), storage.history(post.id),
                 storage.revisions(post.id), storage.audit_log())
        assert after == before
        assert storage.list_posts(PostQuery(states=frozenset({"archived"}))) == []

    def test_unknown_post_raises_not_found_and_writes_nothing(self, storage: Storage) -> None:
        """Updating an id that does not exist raises NotFound and stores nothing."""
        existing = insert(storage)
        ghost = make_post(id=existing.id + 100, version=2, revision=2)
        log_before = storage.audit_log()
        with pytest.raises(NotFound, match=str(ghost.id)):
            storage.update_post(ghost, expected_version=1,
                                entries=[make_entry("edit", ghost)],
                                revision=revision_of(ghost))
        assert storage.get_post(ghost.id) is None
        assert storage.audit_log() == log_before
        assert storage.revisions(ghost.id) == []
        assert storage.history(ghost.id) == []

    def test_versions_chain(self, storage: Storage) -> None:
        """Each successful update makes the next one expect the new version."""
        post = insert(storage)
        for n in range(1, 5):
            post_next = moved(post, planned_for=date(2030, 3, n))
            storage.update_post(post_next, expected_version=n, entries=[])
            post = post_next
        assert storage.get_post(post.id) == post
        assert post.version == 5

    def test_channel_change_is_reflected_by_the_channel_filter(self, storage: Storage) -> None:
        """After the channels change, the channel filter finds the post only under the new ones."""
        post = insert(storage, channels=("acme-x", "acme-li"))
        new = moved(post, channels=("acme-li", "acme-ig"), revision=2)
        storage.update_post(new, expected_version=1, entries=[make_entry("edit", post)],
                            revision=revision_of(new))
        assert storage.get_post(post.id) == new
        found = {c: [p.id for p in storage.list_posts(PostQuery(channel=c))]
                 for c in CHANNELS}
        assert found == {"acme-x": [], "acme-li": [post.id], "acme-ig": [post.id]}
        assert storage.count_posts(PostQuery(channel="acme-x")) == 0

    def test_state_author_campaign_and_time_changes_are_reflected(
        self, storage: Storage
    ) -> None:
        """Filters see the new state, campaign and scheduled time, not the old ones."""
        post = insert(storage, state="approved", campaign="spring")
        at = T0 + timedelta(days=2)
        new = moved(post, state="scheduled", campaign="autumn", scheduled_at=at,
                    scheduled_zone="UTC")
        storage.update_post(new, expected_version=1, entries=[make_entry("schedule", post)])
        assert storage.list_posts(PostQuery(states=frozenset({"approved"}))) == []
        assert storage.list_posts(PostQuery(campaign="spring")) == []
        assert storage.list_posts(PostQuery(campaign="autumn")) == [new]
        assert storage.list_posts(PostQuery(states=frozenset({"scheduled"}), start=at,
                                            end=at + timedelta(seconds=1))) == [new]
        later = moved(new, state="approved", scheduled_at=None, scheduled_zone=None)
        storage.update_post(later, expected_version=2, entries=[make_entry("unschedule", new)])
        assert storage.list_posts(PostQuery(start=T0)) == []
        assert storage.list_posts(PostQuery(states=frozenset({"approved"}))) == [later]


@attrs.frozen
class Dataset:
    """Posts stored for the listing tests, in id order."""

    posts: list[Post]


def _dataset_posts() -> list[dict[str, Any]]:
    """Posts whose id order differs from their time order, with ties and edge times."""
    rows: list[dict[str, Any]] = []
    offsets = [5, 1, None, 3, 1, 0, 8, None, 3, 10, 2, 7, None, 0, 6]
    for n, offset in enumerate(offsets):
        rows.append({
            "state": STATES[n % len(STATES)],
            "author": AUTHORS[n % 2],
            "campaign": CAMPAIGNS[n % 3],
            "channels": (CHANNELS[n % 3],) if n % 4 else (CHANNELS[n % 3], CHANNELS[(n + 1) % 3]),
            "text": f"post {n}",
            "scheduled_at": None if offset is None else T0 + timedelta(hours=offset),
            "scheduled_zone": None if offset is None else "UTC",
        })
    # a sub-second time, to check ordering of times with and without microseconds
    rows[1]["scheduled_at"] = T0 + timedelta(hours=1, microseconds=500)
    return rows


@pytest.fixture(name="dataset")
def _dataset(storage: Storage) -> Dataset:
    """The listing posts, stored."""
    return Dataset([insert(storage, **row) for row in _dataset_posts()])


def reference(posts: Sequence[Post], query: PostQuery) -> list[Post]:
    """What PostQuery's docstring says list_posts returns, computed naively."""
    result = [
        p for p in posts
        if (query.states is None or p.state in query.states)
        and (query.channel is None or query.channel in p.channels)
        and (query.campaign is None or p.campaign == query.campaign)
        and (query.author is None or p.author == query.author)
        and (not query.by_time or p.scheduled_at is not None)
        and (query.start is None or (p.scheduled_at is not None and p.scheduled_at >= query.start))
        and (query.end is None or (p.scheduled_at is not None and p.scheduled_at < query.end))
    ]
    if query.by_time:
        result.sort(key=lambda p: (p.scheduled_at, p.id))
    else:
        result.sort(key=lambda p: p.id)
    stop = None if query.limit is None else query.offset + query.limit
    return result[query.offset:stop]


def hours(n: float) -> datetime:
    """T0 plus ``n`` hours."""
    return T0 + timedelta(hours=n)


QUERIES = {
    "all": PostQuery(),
    "one-state": PostQuery(states=frozenset({"review"})),
    "two-states": PostQuery(states=frozenset({"draft", "scheduled"})),
    "no-state": PostQuery(states=frozenset()),
    "unknown-state": PostQuery(states=frozenset({"nowhere"})),
    "channel": PostQuery(channel="acme-li"),
    "unknown-channel": PostQuery(channel="acme-tiktok"),
    "campaign": PostQuery(campaign="autumn"),
    "author": PostQuery(author="aaron"),
    "start-only": PostQuery(start=hours(3)),
    "end-only": PostQuery(end=hours(3)),
    "range": PostQuery(start=hours(1), end=hours(7)),
    "empty-range": PostQuery(start=hours(4), end=hours(4)),
    "range-state": PostQuery(states=frozenset({"draft", "approved", "scheduled"}),
                             start=hours(0), end=hours(100)),
    "everything": PostQuery(states=frozenset({"draft", "review", "approved", "published"}),
                            channel="acme-x", author="ana", start=hours(0), end=hours(11)),
    "limit": PostQuery(limit=4),
    "limit-zero": PostQuery(limit=0),
    "offset": PostQuery(offset=5),
    "page": PostQuery(limit=3, offset=2),
    "offset-past-end": PostQuery(offset=100),
    "range-page": PostQuery(start=hours(0), limit=4, offset=3),
    "channel-range-page": PostQuery(channel="acme-x", start=hours(0), end=hours(9),
                                    limit=2, offset=1),
}


class TestListPosts:
    """Storage.list_posts and Storage.count_posts with every PostQuery filter."""

    @pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
    def test_matches_the_documented_semantics(self, storage: Storage, dataset: Dataset,
                                              query: PostQuery) -> None:
        """list_posts returns what the PostQuery contract describes, in its order."""
        assert storage.list_posts(query) == reference(dataset.posts, query)

    @pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
    def test_count_agrees_and_ignores_paging(self, storage: Storage, dataset: Dataset,
                                             query: PostQuery) -> None:
        """count_posts counts the matches of the query without its limit and offset."""
        unpaged = attrs.evolve(query, limit=None, offset=0)
        assert storage.count_posts(query) == len(reference(dataset.posts, unpaged))

    def test_without_range_ordered_by_id(self, storage: Storage, dataset: Dataset) -> None:
        """Without a time range, posts come in id (creation) order."""
        ids = [p.id for p in storage.list_posts(PostQuery())]
        assert ids == [p.id for p in dataset.posts]

    def test_range_is_half_open_and_time_ordered(self, storage: Storage,
                                                 dataset: Dataset) -> None:
        """[start, end) includes a post at start, excludes one at end, and ties go by id."""
        found = storage.list_posts(PostQuery(start=hours(3), end=hours(8)))
        times = [p.scheduled_at for p in found]
        assert times[0] == hours(3)
        assert hours(8) not in times
        assert times == sorted(times)  # type: ignore[type-var]
        at_three = [p.id for p in found if p.scheduled_at == hours(3)]
        assert len(at_three) == 2
        assert at_three == sorted(at_three)
        assert [p.text for p in found] == ["post 3", "post 8", "post 0", "post 14",
                                           "post 11"]

    def test_range_skips_unscheduled_posts(self, storage: Storage, dataset: Dataset) -> None:
        """Posts without a scheduled time never match a time range, even an open one."""
        found = storage.list_posts(PostQuery(start=datetime(1970, 1, 1, tzinfo=UTC)))
        assert len(found) == len([p for p in dataset.posts if p.scheduled_at is not None])
        assert all(p.scheduled_at is not None for p in found)
        assert storage.count_posts(PostQuery(end=hours(1000))) == len(found)

    def test_microseconds_order_correctly(self, storage: Storage, dataset: Dataset) -> None:
        """A time with microseconds sorts between the whole seconds around it."""
        found = storage.list_posts(PostQuery(start=hours(1), end=hours(2)))
        assert [p.text for p in found] == ["post 4", "post 1"]

    def test_paging_walks_the_whole_result(self, storage: Storage, dataset: Dataset) -> None:
        """Consecutive limit/offset pages concatenate to the unpaged result."""
        query = PostQuery(start=hours(0))
        pages = [storage.list_posts(attrs.evolve(query, limit=4, offset=o))
                 for o in range(0, 16, 4)]
        assert [p for page in pages for p in page] == storage.list_posts(query)

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        states=st.none() | st.frozensets(st.sampled_from(STATES)),
        channel=st.none() | st.sampled_from(CHANNELS),
        campaign=st.none() | st.sampled_from(("spring", "autumn")),
        author=st.none() | st.sampled_from(AUTHORS),
        start=st.none() | st.integers(-1, 11).map(hours),
        end=st.none() | st.integers(-1, 11).map(hours),
        limit=st.none() | st.integers(0, 6),
        offset=st.integers(0, 6),
    )
    def test_any_combination_matches_the_reference(
        self, storage: Storage, dataset: Dataset, states: frozenset[str] | None,
        channel: str | None, campaign: str | None, author: str | None,
        start: datetime | None, end: datetime | None, limit: int | None, offset: int,
    ) -> None:
        """Any mix of filters gives the documented posts, and count agrees."""
        query = PostQuery(states, channel, campaign, author, start, end, limit, offset)
        assert storage.list_posts(query) == reference(dataset.posts, query)
        unpaged = attrs.evolve(query, limit=None, offset=0)
        assert storage.count_posts(query) == len(reference(dataset.posts, unpaged))


class TestRevisions:
    """Storage.revisions."""

    def test_oldest_first(self, storage: Storage) -> None:
        """Revisions come back in the order they were added, with their content."""
        post = insert(storage)
        for n in (2, 3):
            new = moved(post, revision=n, text=f"text {n}")
            storage.update_post(new, expected_version=post.version,
                                entries=[make_entry("edit", post)], revision=revision_of(new))
            post = new
        assert [(r.number, r.text) for r in storage.revisions(post.id)] == [
            (1, "hello"), (2, "text 2"), (3, "text 3")]

    def test_unknown_post_has_none(self, storage: Storage) -> None:
        """An unknown post has an empty list of revisions."""
        assert storage.revisions(4242) == []


class TestAudit:
    """Storage.history, audit_log and append_audit."""

    def test_history_holds_only_that_post_oldest_first(self, storage: Storage) -> None:
        """A post's history is its own entries in commit order, comments included."""
        first, second = insert(storage), insert(storage)
        storage.update_post(moved(first, state="review"), expected_version=1,
                            entries=[make_entry("submit", first)])
        storage.append_audit([make_entry("comment", second, comment="hi")])
        storage.append_audit([make_entry("comment", first, comment="looks good")])
        assert [(e.action, e.comment) for e in storage.history(first.id)] == [
            ("create", None), ("submit", None), ("comment", "looks good")]
        assert [e.action for e in storage.history(second.id)] == ["create", "comment"]
        assert storage.history(9999) == []

    def test_ids_increase_in_commit_order(self, storage: Storage) -> None:
        """Entries get unique ids that increase in the order they were committed."""
        storage.save_member(Member("ana", {"author"}), make_entry("member.add"))
        post = insert(storage)
        storage.save_channel(Channel("acme-x", "x"), make_entry("channel.add"))
        storage.update_post(moved(post), expected_version=1,
                            entries=[make_entry("a", post), make_entry("b", post)])
        storage.append_audit([make_entry("comment", post)])
        storage.save_campaign(Campaign("spring"), make_entry("campaign.add"))
        log = storage.audit_log()
        assert [e.action for e in log] == [
            "member.add", "create", "channel.add", "a", "b", "comment", "campaign.add"]
        ids = [e.id for e in log]
        assert ids == sorted(set(ids))
        assert [e.id for e in storage.history(post.id)] == ids[1:2] + ids[3:6]

    def test_after_id_and_limit(self, storage: Storage) -> None:
        """audit_log returns entries with id > after_id, oldest first, at most limit."""
        for n in range(6):
            storage.append_audit([make_entry(f"e{n}")])
        log = storage.audit_log()
        ids = [e.id for e in log]
        assert [e.id for e in storage.audit_log(after_id=ids[1])] == ids[2:]
        assert [e.id for e in storage.audit_log(after_id=ids[1], limit=2)] == ids[2:4]
        assert [e.id for e in storage.audit_log(limit=3)] == ids[:3]
        assert storage.audit_log(limit=0) == []
        assert storage.audit_log(after_id=ids[-1]) == []
        assert storage.audit_log(after_id=ids[0] - 1) == log

    def test_following_the_log_sees_every_entry_once(self, storage: Storage) -> None:
        """Reading in pages by after_id while entries are added misses and repeats nothing."""
        seen: list[int] = []
        last = 0
        for n in range(7):
            storage.append_audit([make_entry(f"e{n}"), make_entry(f"f{n}")])
            page = storage.audit_log(after_id=last, limit=3)
            seen += [e.id for e in page]
            last = seen[-1]
        seen += [e.id for e in storage.audit_log(after_id=last)]
        assert seen == [e.id for e in storage.audit_log()]
        assert len(seen) == 14

    def test_append_audit_returns_the_stored_entries(self, storage: Storage) -> None:
        """append_audit returns the entries with their new ids, as the log then holds them."""
        post = insert(storage)
        returned = storage.append_audit([make_entry("comment", post, comment="one"),
                                         make_entry("comment", post, comment="two")])
        assert returned == storage.audit_log()[1:]
        assert [e.comment for e in returned] == ["one", "two"]

    def test_append_audit_keeps_post_id_and_data(self, storage: Storage) -> None:
        """append_audit stores entries as given, post id and JSON data included."""
        post = insert(storage)
        storage.append_audit([make_entry("comment", post, comment="c",
                                         data={"mentions": ["ben"], "n": 2})])
        entry = storage.history(post.id)[-1]
        assert (entry.post_id, entry.comment, dict(entry.data)) == (
            post.id, "c", {"mentions": ("ben",), "n": 2})


class TestSnapshots:
    """Snapshots returned by a backend are immutable and never change."""

    def test_returned_objects_are_frozen(self, storage: Storage) -> None:
        """Posts, revisions, entries, members, channels and campaigns refuse assignment."""
        storage.save_member(Member("ana", {"author"}), make_entry("member.add"))
        storage.save_channel(Channel("acme-x", "x"), make_entry("channel.add"))
        storage.save_campaign(Campaign("spring"), make_entry("campaign.add"))
        post = insert(storage)
        objects: list[tuple[object, str]] = [
            (storage.get_post(post.id), "state"),
            (storage.list_posts(PostQuery())[0], "text"),
            (storage.revisions(post.id)[0], "text"),
            (storage.history(post.id)[0], "action"),
            (storage.audit_log()[0], "actor"),
            (storage.get_member("ana"), "roles"),
            (storage.get_channel("acme-x"), "network"),
            (storage.get_campaign("spring"), "goal"),
        ]
        for obj, field in objects:
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                setattr(obj, field, "changed")

    def test_old_snapshot_survives_an_update(self, storage: Storage) -> None:
        """A snapshot read before an update still shows the old version afterwards."""
        post = insert(storage)
        before = storage.get_post(post.id)
        listed = storage.list_posts(PostQuery())
        storage.update_post(moved(post, state="review", text="new"), expected_version=1,
                            entries=[make_entry("submit", post)])
        assert before == post
        assert listed == [post]
        assert (before.version, before.state, before.text) == (1, "draft", "hello")

    def test_returned_lists_are_copies(self, storage: Storage) -> None:
        """Changing a returned list does not change what the backend returns next."""
        post = insert(storage)
        for result in (storage.history(post.id), storage.revisions(post.id),
                       storage.audit_log(), storage.list_posts(PostQuery()),
                       storage.list_members()):
            result.clear()
        assert len(storage.history(post.id)) == 1
        assert len(storage.revisions(post.id)) == 1
        assert len(storage.audit_log()) == 1
        assert storage.list_posts(PostQuery()) == [post]


class TestDirectoryVersions:
    """save_member/save_channel/save_campaign are compare-and-set on (name, version)."""

    def test_expected_version_zero_refuses_an_existing_name(self, storage: Storage) -> None:
        """Inserting a name that exists raises ConflictError and writes nothing."""
        storage.save_member(Member("eve", frozenset({"author"})), make_entry("member.add"),
                            expected_version=0)
        before = storage.audit_log()
        with pytest.raises(ConflictError):
            storage.save_member(Member("eve", frozenset({"admin"})),
                                make_entry("member.add"), expected_version=0)
        assert storage.get_member("eve") == Member("eve", frozenset({"author"}))
        assert storage.audit_log() == before

    def test_stale_version_is_refused(self, storage: Storage) -> None:
        """Replacing at a version that is no longer stored raises ConflictError."""
        storage.save_channel(Channel("c", "x"), make_entry("channel.add"), expected_version=0)
        storage.save_channel(Channel("c", "x", handle="@a", version=2),
                             make_entry("channel.update"), expected_version=1)
        with pytest.raises(ConflictError) as info:
            storage.save_channel(Channel("c", "x", handle="@b", version=2),
                                 make_entry("channel.update"), expected_version=1)
        assert (info.value.expected, info.value.actual) == (1, 2)
        assert storage.get_channel("c") == Channel("c", "x", handle="@a", version=2)

    def test_missing_name_with_a_version_is_not_found(self, storage: Storage) -> None:
        """A versioned replace of a name that was never stored raises NotFound."""
        with pytest.raises(postflow.NotFound):
            storage.save_campaign(Campaign("k", version=2), make_entry("campaign.update"),
                                  expected_version=1)
        assert storage.get_campaign("k") is None

    def test_no_expected_version_inserts_or_replaces(self, storage: Storage) -> None:
        """Without expected_version the value is stored whatever was there."""
        storage.save_campaign(Campaign("k", "goal"), make_entry("campaign.add"))
        storage.save_campaign(Campaign("k", "other", version=5),
                              make_entry("campaign.update"))
        assert storage.get_campaign("k") == Campaign("k", "other", version=5)


class TestCalendarReads:
    """get_posts, calendar_candidates and last_change."""

    def test_get_posts_skips_unknown_ids(self, storage: Storage) -> None:
        """Known ids come back (any order), unknown ones are skipped."""
        posts = [insert(storage, text=f"p{i}") for i in range(3)]
        found = storage.get_posts([posts[2].id, 999, posts[0].id])
        assert sorted(found, key=lambda p: p.id) == [posts[0], posts[2]]
        assert storage.get_posts([]) == []

    def test_get_posts_reads_more_than_one_chunk(self, storage: Storage) -> None:
        """A long list of ids is answered whole."""
        ids = [insert(storage).id for _ in range(1_050)]
        assert sorted(p.id for p in storage.get_posts(ids)) == ids

    def test_candidates_by_time_and_by_planned_day(self, storage: Storage) -> None:
        """Scheduled times in [start, end) and planned days in [first, last] match, once."""
        at = T0 + timedelta(days=3)
        timed = insert(storage, state="scheduled", scheduled_at=at, scheduled_zone="UTC")
        planned = insert(storage, planned_for=date(2030, 1, 5))
        both = insert(storage, state="scheduled", scheduled_at=at, scheduled_zone="UTC",
                      planned_for=date(2030, 1, 4))
        insert(storage, state="scheduled", scheduled_at=T0 - timedelta(days=1),
               scheduled_zone="UTC")
        insert(storage, planned_for=date(2029, 12, 31))
        insert(storage)
        found = storage.calendar_candidates(T0, T0 + timedelta(days=10), date(2030, 1, 1),
                                            date(2030, 1, 5))
        assert found == [(timed.id, 1), (planned.id, 1), (both.id, 1)]
        assert storage.calendar_candidates(T0, at, date(2030, 1, 6), None) == []
        assert [i for i, _ in storage.calendar_candidates(T0, None, date(2030, 1, 5), None)
                ] == [timed.id, planned.id, both.id]

    def test_candidates_follow_updates(self, storage: Storage) -> None:
        """A post moved out of the window (or unplanned) is no longer a candidate."""
        post = insert(storage, planned_for=date(2030, 1, 2))
        window = (T0, None, date(2030, 1, 1), None)
        assert storage.calendar_candidates(*window) == [(post.id, 1)]
        new = moved(post, planned_for=None)
        storage.update_post(new, expected_version=1, entries=[], previous=post)
        assert storage.calendar_candidates(*window) == []
        newer = moved(new, state="scheduled", scheduled_at=T0 + timedelta(hours=1),
                      scheduled_zone="UTC")
        storage.update_post(newer, expected_version=2, entries=[], previous=new)
        assert storage.calendar_candidates(*window) == [(post.id, 3)]

    def test_last_change_follows_the_audit_log(self, storage: Storage) -> None:
        """last_change is the newest entry's id and time."""
        assert storage.last_change() == (0, None)
        insert(storage)
        stored = storage.append_audit([make_entry("comment", at=T0 + timedelta(hours=5))])
        assert storage.last_change() == (stored[0].id, T0 + timedelta(hours=5))


def _planning(uid: str, version: int = 1, **changes: Any) -> PlanningEntry:
    entry = PlanningEntry(uid, f"Holiday {uid}", date(2030, 1, 1), date(2030, 1, 2),
                          version=version)
    return attrs.evolve(entry, **changes)


class TestPlanningEntries:
    """save_planning_entries and list_planning_entries."""

    def test_saved_entries_come_back_ordered_by_uid(self, storage: Storage) -> None:
        """Entries with dates and with instants round-trip, ordered by uid."""
        timed = _planning("b", start=T0, end=T0 + timedelta(hours=2), description="x",
                          category="launches", sequence=2, updated_at=T0)
        storage.save_planning_entries([timed, _planning("a")], make_entry("calendar.import"))
        assert storage.list_planning_entries() == [_planning("a"), timed]
        assert storage.last_change()[0] == 1

    def test_replacing_needs_the_next_version(self, storage: Storage) -> None:
        """A stale or skipped version is a conflict and writes nothing of the batch."""
        storage.save_planning_entries([_planning("a")], make_entry("calendar.import"))
        with pytest.raises(ConflictError):
            storage.save_planning_entries([_planning("new"), _planning("a", version=1)],
                                          make_entry("calendar.import"))
        with pytest.raises(ConflictError):
            storage.save_planning_entries([_planning("b", version=2)],
                                          make_entry("calendar.import"))
        assert storage.list_planning_entries() == [_planning("a")]
        assert len(storage.audit_log()) == 1
        changed = _planning("a", version=2, summary="moved", sequence=1)
        storage.save_planning_entries([changed], make_entry("calendar.import"))
        assert storage.list_planning_entries() == [changed]


class TestFeeds:
    """save_feed, get_feed, find_feed and list_feeds."""

    def test_feed_round_trips_and_is_found_by_token_hash(self, storage: Storage) -> None:
        """Filters, times and the hash come back; the hash finds the feed."""
        feed = Feed("team", channels={"acme-x"}, campaigns={"spring"},
                    states={"scheduled"}, authors={"ana"}, token_hash="h1",
                    created_at=T0, rotated_at=T0 + timedelta(days=1), planning=False)
        storage.save_feed(feed, make_entry("feed.create"), expected_version=0)
        assert storage.get_feed("team") == feed
        assert storage.find_feed("h1") == feed
        assert storage.find_feed("h2") is None
        assert storage.get_feed("other") is None

    def test_rotating_frees_the_old_hash(self, storage: Storage) -> None:
        """After the hash changes only the new one finds the feed; None revokes it."""
        storage.save_feed(Feed("team", token_hash="h1"), make_entry("feed.create"),
                          expected_version=0)
        storage.save_feed(Feed("team", token_hash="h2", version=2),
                          make_entry("feed.rotate"), expected_version=1)
        assert storage.find_feed("h1") is None
        assert storage.find_feed("h2") == Feed("team", token_hash="h2", version=2)
        storage.save_feed(Feed("team", version=3), make_entry("feed.revoke"),
                          expected_version=2)
        assert storage.find_feed("h2") is None
        assert storage.get_feed("team") == Feed("team", version=3)

    def test_versions_and_token_ownership_are_checked(self, storage: Storage) -> None:
        """A taken name, a stale version or another feed's hash is refused."""
        storage.save_feed(Feed("a", token_hash="h1"), make_entry("feed.create"),
                          expected_version=0)
        with pytest.raises(ConflictError):
            storage.save_feed(Feed("a", token_hash="h9"), make_entry("feed.create"),
                              expected_version=0)
        with pytest.raises(ConflictError):
            storage.save_feed(Feed("b", token_hash="h1"), make_entry("feed.create"),
                              expected_version=0)
        assert [f.name for f in storage.list_feeds()] == ["a"]
        assert storage.find_feed("h1") == Feed("a", token_hash="h1")


class TestStoredWorkflow:
    """stored_workflow and save_workflow: a compare-and-set on the definition."""

    DEFINITION: ClassVar[dict[str, Any]] = {
        "name": "w", "states": ["a", "b"], "stages": [{"name": "s", "due": None}],
        "four_eyes": True, "count": 2,
    }

    def test_nothing_is_stored_in_a_new_backend(self, storage: Storage) -> None:
        assert storage.stored_workflow() is None

    def test_saved_definition_comes_back_equal_with_its_entry(self, storage: Storage) -> None:
        storage.save_workflow(self.DEFINITION, make_entry("workflow.store"), expected=None)
        assert storage.stored_workflow() == self.DEFINITION
        assert [e.action for e in storage.audit_log()] == ["workflow.store"]

    def test_returned_definition_is_a_copy(self, storage: Storage) -> None:
        definition = {**self.DEFINITION, "states": ["a", "b"]}
        storage.save_workflow(definition, make_entry("workflow.store"), expected=None)
        definition["states"].append("c")
        read = storage.stored_workflow()
        assert read is not None
        read["states"].append("d")
        assert storage.stored_workflow() == self.DEFINITION

    def test_replacing_needs_the_stored_definition(self, storage: Storage) -> None:
        """Saving again needs ``expected`` equal to what is stored; a stale or missing
        one raises ConflictError and writes nothing."""
        storage.save_workflow(self.DEFINITION, make_entry("workflow.store"), expected=None)
        changed = {**self.DEFINITION, "name": "w2"}
        before = storage.last_change()
        for stale in (None, changed, {**self.DEFINITION, "count": 3}):
            with pytest.raises(ConflictError):
                storage.save_workflow(changed, make_entry("workflow.apply"), expected=stale)
        assert storage.last_change() == before
        assert storage.stored_workflow() == self.DEFINITION
        storage.save_workflow(changed, make_entry("workflow.apply"),
                              expected=dict(reversed(list(self.DEFINITION.items()))))
        assert storage.stored_workflow() == changed
        assert storage.audit_log()[-1].action == "workflow.apply"

    def test_expected_none_is_refused_once_one_is_stored(self, storage: Storage) -> None:
        """Two first opens racing: the second save with ``expected=None`` conflicts."""
        storage.save_workflow(self.DEFINITION, make_entry("workflow.store"), expected=None)
        with pytest.raises(ConflictError):
            storage.save_workflow({"name": "other"}, make_entry("workflow.store"),
                                  expected=None)
        assert storage.stored_workflow() == self.DEFINITION

    def test_posts_are_not_touched(self, storage: Storage) -> None:
        post = insert(storage)
        storage.save_workflow(self.DEFINITION, make_entry("workflow.store"), expected=None)
        assert storage.get_post(post.id) == post


class TestPublishingStorage:
    """claim_due, deliveries, holds and series on every backend."""

    def due_post(self, storage: Storage, at: datetime, **changes: Any) -> Post:
        return insert(storage, state="scheduled", scheduled_at=at, scheduled_zone="UTC",
                      **changes)

    def test_claim_takes_due_posts_once_earliest_first(self, storage: Storage) -> None:
        """Only due, unleased, unheld posts are claimed, each by one worker, with a claim
        entry."""
        late = self.due_post(storage, T0 + timedelta(minutes=5))
        early = self.due_post(storage, T0 + timedelta(minutes=1))
        held = self.due_post(storage, T0, channels=("acme-li",))
        self.due_post(storage, T0 + timedelta(hours=2))  # not due yet
        insert(storage)  # a draft
        now, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=15)
        claimed = storage.claim_due(now, "w1", until, 10, frozenset({"acme-li"}), "c1")
        assert [p.id for p in claimed] == [early.id, late.id]
        assert all((p.claimed_by, p.claimed_until, p.version) == ("w1", until, 2)
                   for p in claimed)
        assert storage.get_post(early.id) == claimed[0]
        assert storage.history(early.id)[-1].action == "claim"
        assert storage.claim_due(now, "w2", until, 10, frozenset(), "c2") == [
            storage.get_post(held.id)]
        again = storage.claim_due(until, "w3", until + timedelta(minutes=5), 5, frozenset(),
                                  "c3")  # leases that ran out are claimable again
        assert {p.id for p in again} == {early.id, late.id, held.id}

    def test_deliveries_round_trip_and_respect_the_lease(self, storage: Storage) -> None:
        """Deliveries are replaced by (post, channel, revision); a worker without the lease
        writes nothing."""
        post = self.due_post(storage, T0)
        storage.claim_due(T0, "w1", T0 + timedelta(minutes=5), 5, frozenset(), "c")
        first = postflow.Delivery(post.id, "acme-x", 1, "sending", "k1", 1, updated_at=T0)
        assert storage.save_deliveries(post.id, [first], worker="w1", now=T0)
        assert not storage.save_deliveries(post.id, [first], worker="w2", now=T0)
        late = T0 + timedelta(minutes=6)
        assert not storage.save_deliveries(post.id, [first], worker="w1", now=late)
        sent = attrs.evolve(first, status="sent", remote_id="r", url="https://x/r")
        assert storage.save_deliveries(post.id, [sent], worker=None, now=late)
        assert storage.deliveries(post.id) == [sent]

    def test_renew_lease_extends_only_the_holders_running_lease(
            self, storage: Storage) -> None:
        """A heartbeat extends the holder's running lease, keeping the version and writing
        no entry; another worker, a lease that ran out and a post another worker took
        over are refused with nothing written; a lease is never shortened."""
        post = self.due_post(storage, T0)
        until = T0 + timedelta(minutes=5)
        [claimed] = storage.claim_due(T0, "w1", until, 5, frozenset(), "c")
        size = len(storage.audit_log())
        later = T0 + timedelta(minutes=9)
        assert storage.renew_lease(post.id, "w1", later, T0 + timedelta(minutes=4))
        assert storage.get_post(post.id) == attrs.evolve(claimed, claimed_until=later)
        assert storage.renew_lease(post.id, "w1", until, T0 + timedelta(minutes=4))
        # a renewal to an earlier end keeps the later one
        assert storage.get_post(post.id) == attrs.evolve(claimed, claimed_until=later)
        assert not storage.renew_lease(post.id, "w2", later + timedelta(minutes=5),
                                       T0 + timedelta(minutes=4))  # not the holder
        assert not storage.renew_lease(post.id, "w1", later + timedelta(minutes=5),
                                       later)  # ran out: never revived
        assert storage.get_post(post.id) == attrs.evolve(claimed, claimed_until=later)
        assert len(storage.audit_log()) == size
        [taken] = storage.claim_due(later, "w2", later + timedelta(minutes=5), 5,
                                    frozenset(), "c2")
        assert not storage.renew_lease(post.id, "w1", later + timedelta(hours=1),
                                       T0 + timedelta(minutes=1))  # w1's clock is behind
        assert storage.get_post(post.id) == taken
        assert not storage.renew_lease(10**6, "w1", later, T0)
        unclaimed = self.due_post(storage, T0)
        assert not storage.renew_lease(unclaimed.id, "w1", later, T0)
        assert storage.get_post(unclaimed.id) == unclaimed

    def test_renew_lease_never_revives_a_finished_post(self, storage: Storage) -> None:
        """Once the worker stored its result (lease ended), a late heartbeat changes
        nothing."""
        post = self.due_post(storage, T0)
        [claimed] = storage.claim_due(T0, "w1", T0 + timedelta(minutes=5), 5, frozenset(),
                                      "c")
        done = attrs.evolve(claimed, version=claimed.version + 1, state="published",
                            claimed_by=None, claimed_until=None)
        storage.update_post(done, expected_version=claimed.version,
                            entries=[make_entry("publish", claimed)])
        assert not storage.renew_lease(post.id, "w1", T0 + timedelta(minutes=9),
                                       T0 + timedelta(minutes=1))
        assert storage.get_post(post.id) == done

    def test_a_takeover_after_a_renewal_waits_for_the_renewed_lease(
            self, storage: Storage) -> None:
        """claim_due and claim_post see the renewed lease: no takeover before it ends."""
        post = self.due_post(storage, T0)
        storage.claim_due(T0, "w1", T0 + timedelta(minutes=5), 5, frozenset(), "c")
        renewed = T0 + timedelta(minutes=8)
        assert storage.renew_lease(post.id, "w1", renewed, T0 + timedelta(minutes=3))
        at = T0 + timedelta(minutes=6)  # the first lease would have run out
        assert storage.claim_due(at, "w2", at + timedelta(minutes=5), 5, frozenset(),
                                 "c2") == []
        assert storage.claim_post(post.id, at, "w2", at + timedelta(minutes=5), "c3") is None
        [taken] = storage.claim_due(renewed, "w2", renewed + timedelta(minutes=5), 5,
                                    frozenset(), "c4")
        assert (taken.id, taken.claimed_by) == (post.id, "w2")

    def test_holds(self, storage: Storage) -> None:
        """Holds are listed all-first; removing one that is not there returns False."""
        storage.save_hold(postflow.Hold("acme-x", "r1", "cy", T0), make_entry("pause"))
        storage.save_hold(postflow.Hold("*", "r2", "cy", T0), make_entry("pause"))
        assert [h.scope for h in storage.holds()] == ["*", "acme-x"]
        assert storage.remove_hold("*", make_entry("resume"))
        assert not storage.remove_hold("*", make_entry("resume"))
        assert [h.scope for h in storage.holds()] == ["acme-x"]

    def test_series_and_occurrences(self, storage: Storage) -> None:
        """A series gets an id; occurrences are added only at the expected version."""
        series = postflow.Series(0, "ana", "tip", ("acme-x",), "FREQ=DAILY",
                                 datetime(2030, 1, 1, 9), "UTC", timedelta(days=3))
        stored = storage.insert_series(series, make_entry("series.create"))
        assert stored.id > 0
        assert storage.list_series() == [stored]
        post = make_post(series_id=stored.id, occurrence_at=T0)
        moved = attrs.evolve(stored, created_until=T0, version=2)
        [created] = storage.add_occurrences(moved, 1, [(post, revision_of(post),
                                                        make_entry("create", post))])
        assert (created.series_id, created.occurrence_at) == (stored.id, T0)
        assert storage.list_series() == [moved]
        with pytest.raises(ConflictError):
            storage.add_occurrences(moved, 1, [(post, revision_of(post),
                                                make_entry("create", post))])
        assert storage.count_posts(PostQuery()) == 1


def test_instance_id_is_random_per_database(storage: Storage, storage_url: str,
                                            request: pytest.FixtureRequest,
                                            tmp_path: Any) -> None:
    """Each database has its own instance id, kept while it exists."""
    other = open_storage(request, f"sqlite:///{tmp_path / 'other.db'}")
    try:
        assert len(storage.instance_id()) >= 16
        assert storage.instance_id() == storage.instance_id()
        assert storage.instance_id() != other.instance_id()
    finally:
        other.close()
    if not storage_url.startswith("memory:"):
        reopened = open_storage(request, storage_url)
        try:
            assert reopened.instance_id() == storage.instance_id()
        finally:
            reopened.close()


class TestChangeCursors:
    """``cursor``/``save_cursor``: a consumer's durable position in the audit trail."""

    def test_new_consumers_start_at_zero_and_positions_are_kept(
            self, storage: Storage) -> None:
        """A saved position is read back; consumers do not share positions."""
        assert storage.cursor("mail") == 0
        storage.save_cursor("mail", 7, expected=0)
        storage.save_cursor("mail", 9, expected=7)
        assert storage.cursor("mail") == 9
        assert storage.cursor("slack") == 0

    def test_save_is_a_compare_and_set(self, storage: Storage) -> None:
        """A stale ``expected`` is refused and writes nothing."""
        storage.save_cursor("mail", 5, expected=0)
        with pytest.raises(postflow.ConflictError, match="mail"):
            storage.save_cursor("mail", 6, expected=0)
        assert storage.cursor("mail") == 5

    def test_positions_never_move_back(self, storage: Storage) -> None:
        """Going backwards is a programming error, not a conflict."""
        storage.save_cursor("mail", 5, expected=0)
        with pytest.raises(ValueError, match="back"):
            storage.save_cursor("mail", 4, expected=5)
        assert storage.cursor("mail") == 5


class TestSlotGuards:
    """``update_post(slot_guards=…)``: cadence checks and writes as one atomic step."""

    def test_guards_move_on_with_the_write(self, storage: Storage) -> None:
        """A current guard lets the write through and moves the channel's version."""
        post = insert(storage)
        assert storage.slot_version("acme-x") == 0
        storage.update_post(moved(post, state="scheduled"), expected_version=post.version,
                            entries=[make_entry("schedule", post)],
                            slot_guards={"acme-x": 0})
        assert storage.slot_version("acme-x") == 1
        assert storage.slot_version("acme-li") == 0

    def test_a_stale_guard_writes_nothing(self, storage: Storage) -> None:
        """When another schedule moved the version, the write is a conflict."""
        first, second = insert(storage), insert(storage)
        storage.update_post(moved(first, state="scheduled"), expected_version=first.version,
                            entries=[make_entry("schedule", first)],
                            slot_guards={"acme-x": 0})
        log_length = len(storage.audit_log())
        with pytest.raises(postflow.ConflictError, match="acme-x"):
            storage.update_post(moved(second, state="scheduled"),
                                expected_version=second.version,
                                entries=[make_entry("schedule", second)],
                                slot_guards={"acme-x": 0})
        assert storage.get_post(second.id) == second
        assert len(storage.audit_log()) == log_length
        assert storage.slot_version("acme-x") == 1


class TestOnePostClaimAndSeriesChanges:
    """claim_post (publishing one post now) and save_series (ending a series)."""

    def test_claim_post_leases_one_scheduled_post_whatever_its_time(
            self, storage: Storage) -> None:
        """A scheduled post is claimed even before its time, once; other states and a
        running lease are refused with nothing written."""
        later = insert(storage, state="scheduled", scheduled_at=T0 + timedelta(days=2),
                       scheduled_zone="UTC")
        draft = insert(storage)
        until = T0 + timedelta(minutes=5)
        assert storage.claim_post(draft.id, T0, "w1", until, "c1") is None
        assert storage.claim_post(10**6, T0, "w1", until, "c1") is None
        claimed = storage.claim_post(later.id, T0, "w1", until, "c2")
        assert claimed is not None
        assert (claimed.claimed_by, claimed.claimed_until, claimed.version) == (
            "w1", until, 2)
        assert storage.get_post(later.id) == claimed
        entry = storage.history(later.id)[-1]
        assert (entry.action, entry.actor, entry.correlation_id) == ("claim", "w1", "c2")
        size = len(storage.audit_log())
        assert storage.claim_post(later.id, T0, "w2", until, "c3") is None  # leased
        assert len(storage.audit_log()) == size
        assert storage.get_post(later.id) == claimed
        again = storage.claim_post(later.id, until, "w2", until + timedelta(minutes=5), "c4")
        assert again is not None
        assert again.claimed_by == "w2"

    def test_save_series_is_a_compare_and_set(self, storage: Storage) -> None:
        """A series is replaced only at the expected version, ended fields included."""
        series = storage.insert_series(postflow.Series(
            0, "ana", "tip", ("acme-x",), "FREQ=DAILY", datetime(2030, 1, 1, 9), "UTC",
            timedelta(days=3)), make_entry("series.create"))
        ended = attrs.evolve(series, version=2, ended_at=T0, ended_by="cy")
        with pytest.raises(ConflictError):
            storage.save_series(ended, make_entry("series.end"), expected_version=5)
        assert storage.list_series() == [series]
        storage.save_series(ended, make_entry("series.end"), expected_version=1)
        assert storage.list_series() == [ended]
        assert storage.audit_log()[-1].action == "series.end"
        with pytest.raises(NotFound):
            storage.save_series(attrs.evolve(ended, id=999), make_entry("series.end"),
                                expected_version=2)

    def test_campaign_active_flag_round_trips(self, storage: Storage) -> None:
        """A retired campaign is stored as retired."""
        storage.save_campaign(Campaign("old", active=False), make_entry("campaign.add"),
                              expected_version=0)
        found = storage.get_campaign("old")
        assert found is not None
        assert found.active is False
        assert storage.list_campaigns() == [found]


class TestRekey:
    """``rekey``: a copy of a database gets its own instance id (idempotency keys)."""

    def test_rekey_changes_the_id_and_appends_the_entry(self, storage: Storage) -> None:
        """A new id, the entry stored; ``moved`` keeps the id."""
        before = storage.instance_id()
        new = storage.rekey(make_entry("db.rekey"))
        assert new != before
        assert storage.instance_id() == new
        assert storage.audit_log()[-1].action == "db.rekey"
        assert storage.rekey(make_entry("db.rekey"), moved=True) == new



# -- documents and notifications ---------------------------------------------------


def notice(key: str, **changes: Any) -> Notice:
    """An outbox notice for ``ben`` by email, due at T0 (id 0: not stored yet)."""
    made = Notice(id=0, dedup_key=key, event_key=f"e-{key}", event="post.submitted",
                  recipient="ben", channel="email", created_at=T0, not_before=T0,
                  payload={"post_id": 1, "text": "hello"})
    return attrs.evolve(made, **changes)


def inbox_item(key: str, member: str = "ben", **changes: Any) -> InboxItem:
    made = InboxItem(id=0, member=member, dedup_key=key, event="post.submitted",
                     title=f"title {key}", body="body", created_at=T0, post_id=1,
                     payload={"k": [1, 2]})
    return attrs.evolve(made, **changes)


class TestDocuments:
    """stored_document / save_document / list_documents: named JSON documents with a
    compare-and-set, as the workflow."""

    def test_round_trip_with_entry_and_copies(self, storage: Storage) -> None:
        assert storage.stored_document("notifications") is None
        doc = {"rules": [{"name": "r", "events": ["*"]}], "settings": {"due_soon": "4h"}}
        storage.save_document("notifications", doc, make_entry("notifications.configure"),
                              expected=None)
        got = storage.stored_document("notifications")
        assert got == doc
        assert got is not None
        got["rules"].append("x")  # the caller's copy
        assert storage.stored_document("notifications") == doc
        assert storage.audit_log()[-1].action == "notifications.configure"

    def test_compare_and_set(self, storage: Storage) -> None:
        first = {"a": 1}
        storage.save_document("d", first, make_entry("notifications.configure"),
                              expected=None)
        last = storage.last_change()
        with pytest.raises(ConflictError):
            storage.save_document("d", {"a": 2}, make_entry("x"), expected=None)
        with pytest.raises(ConflictError):
            storage.save_document("d", {"a": 2}, make_entry("x"), expected={"a": 3})
        assert storage.last_change() == last
        assert storage.stored_document("d") == first
        storage.save_document("d", {"a": 2}, make_entry("x"), expected=first)
        assert storage.stored_document("d") == {"a": 2}

    def test_none_deletes(self, storage: Storage) -> None:
        storage.save_document("d", {"a": 1}, make_entry("x"), expected=None)
        with pytest.raises(ConflictError):
            storage.save_document("d", None, make_entry("x"), expected={"a": 2})
        storage.save_document("d", None, make_entry("x"), expected={"a": 1})
        assert storage.stored_document("d") is None
        assert storage.list_documents("") == {}

    def test_list_by_prefix(self, storage: Storage) -> None:
        for name in ("preferences:bea", "preferences:ana", "notifications", "Preferences:x",
                     "preferences_ben", "pref%erences:z"):
            storage.save_document(name, {"n": name}, make_entry("x"), expected=None)
        found = storage.list_documents("preferences:")
        assert list(found) == ["preferences:ana", "preferences:bea"]
        assert found["preferences:ana"] == {"n": "preferences:ana"}
        assert list(storage.list_documents("pref%")) == ["pref%erences:z"]
        assert len(storage.list_documents("")) == 6


class TestOutbox:
    """enqueue / claim / settle / list / prune of notices, and marks."""

    def test_enqueue_assigns_ids_and_skips_duplicates(self, storage: Storage) -> None:
        first = storage.enqueue_notifications([notice("a"), notice("b")])
        assert [n.dedup_key for n in first] == ["a", "b"]
        assert first[0].id > 0
        assert first[1].id > first[0].id
        assert first[0] == attrs.evolve(notice("a"), id=first[0].id)
        again = storage.enqueue_notifications([notice("b"), notice("c"), notice("c")])
        assert [n.dedup_key for n in again] == ["c"]
        assert storage.list_notifications() == [*first, *again]

    def test_stored_notice_keeps_every_field(self, storage: Storage) -> None:
        berlin = datetime(2030, 1, 1, 10, 30, tzinfo=UTC).astimezone(
            zone_of("Europe/Berlin"))
        full = notice("a", digest="daily:2030-01-01", urgent=True, not_before=berlin,
                      attempts=2, next_attempt_at=T0 + timedelta(minutes=1),
                      last_error="boom", payload={"nested": {"x": [1, "y"]}})
        [stored] = storage.enqueue_notifications([full])
        [listed] = storage.list_notifications()
        assert listed == stored == attrs.evolve(full, id=stored.id,
                                                payload=freeze(full.payload))
        assert listed.payload["nested"]["x"] == (1, "y")
        with pytest.raises(TypeError):
            listed.payload["z"] = 1  # type: ignore[index]

    def test_cursor_is_a_compare_and_set(self, storage: Storage) -> None:
        storage.enqueue_notifications([notice("a")], cursor=("notifications", 5, 0))
        assert storage.cursor("notifications") == 5
        with pytest.raises(ConflictError):
            storage.enqueue_notifications([notice("b")], marks=["m"],
                                          cursor=("notifications", 9, 3))
        assert [n.dedup_key for n in storage.list_notifications()] == ["a"]
        assert storage.has_marks(["m"]) == set()
        assert storage.cursor("notifications") == 5
        with pytest.raises(ValueError, match="back"):
            storage.enqueue_notifications([], cursor=("notifications", 4, 5))
        storage.enqueue_notifications([], cursor=("notifications", 9, 5))
        assert storage.cursor("notifications") == 9

    def test_marks_skip_notices_of_events_already_marked(self, storage: Storage) -> None:
        due = notice("d1", event_key="approval.due_soon:1:legal:1")
        stored = storage.enqueue_notifications([due], marks=[due.event_key])
        assert len(stored) == 1  # a mark made by this very call does not skip
        assert storage.has_marks([due.event_key, "other"]) == {due.event_key}
        repeat = notice("d2", event_key=due.event_key, recipient="bea")
        other = notice("d3", event_key="approval.overdue:1:legal:1")
        assert [n.dedup_key for n in storage.enqueue_notifications(
            [repeat, other], marks=[due.event_key, other.event_key])] == ["d3"]
        # marks without notices (everyone muted) are kept too
        storage.enqueue_notifications([], marks=["series.running_out:1:2"])
        assert storage.has_marks(["series.running_out:1:2"]) == {"series.running_out:1:2"}

    def test_claim_with_the_largest_limit(self, storage: Storage) -> None:
        """A limit as large as an id can be claims what is due, no more (no backend
        overflows computing its page size)."""
        storage.enqueue_notifications([notice("a"), notice("b")])
        claimed = storage.claim_notifications(T0, "w1", T0 + timedelta(hours=1), 2**63 - 1)
        assert [n.dedup_key for n in claimed] == ["a", "b"]

    def test_claim_oldest_first_up_to_limit(self, storage: Storage) -> None:
        later = T0 + timedelta(hours=1)
        storage.enqueue_notifications([notice("a"), notice("b", not_before=later),
                                       notice("c"), notice("d"),
                                       notice("e", next_attempt_at=later)])
        until = T0 + timedelta(hours=2)
        claimed = storage.claim_notifications(T0, "w1", until, 2)
        assert [n.dedup_key for n in claimed] == ["a", "c"]
        assert all((n.status, n.claimed_by, n.claimed_until, n.attempts)
                   == ("sending", "w1", until, 0) for n in claimed)
        assert storage.list_notifications(status="sending") == claimed
        assert [n.dedup_key for n in storage.claim_notifications(T0, "w2", until, 10)] == [
            "d"]
        assert storage.claim_notifications(T0, "w3", until, 10) == []
        assert [n.dedup_key for n in storage.claim_notifications(later, "w4", later, 10)] \
            == ["b", "e"]

    def test_expired_claims_are_claimable_again(self, storage: Storage) -> None:
        storage.enqueue_notifications([notice("a")])
        until = T0 + timedelta(minutes=5)
        [held] = storage.claim_notifications(T0, "w1", until, 10)
        assert storage.claim_notifications(until, "w2", until, 10) == []  # not < now yet
        later = until + timedelta(seconds=1)
        [again] = storage.claim_notifications(later, "w2", later + timedelta(minutes=5), 10)
        assert (again.id, again.claimed_by) == (held.id, "w2")
        # the dead worker can no longer settle it
        assert storage.settle_notifications([held.id], "w1", status="sent", at=later) == 0
        assert storage.settle_notifications([held.id], "w2", status="sent", at=later) == 1

    def test_digest_groups_are_claimed_whole_and_only_when_all_are_due(
            self, storage: Storage) -> None:
        window = T0 + timedelta(minutes=2)
        storage.enqueue_notifications([
            notice("g1", digest="burst:1"), notice("x1"),
            notice("g2", digest="burst:1", not_before=window),
            notice("h1", digest="burst:1", channel="inbox"),  # another group
            notice("g3", digest="burst:1"), notice("x2"),
        ])
        claimed = storage.claim_notifications(T0, "w", T0 + timedelta(minutes=5), 10)
        assert [n.dedup_key for n in claimed] == ["x1", "h1", "x2"]
        # once due, the group comes whole, even past the limit
        claimed = storage.claim_notifications(window, "w", window + timedelta(minutes=5), 1)
        assert [n.dedup_key for n in claimed] == ["g1", "g2", "g3"]

    def test_settled_rows_leave_their_digest_group(self, storage: Storage) -> None:
        storage.enqueue_notifications([notice("g1", digest="daily:1")])
        [first] = storage.claim_notifications(T0, "w", T0 + timedelta(minutes=5), 10)
        storage.settle_notifications([first.id], "w", status="sent", at=T0)
        storage.enqueue_notifications([notice("g2", digest="daily:1")])
        assert [n.dedup_key for n in storage.claim_notifications(
            T0, "w", T0 + timedelta(minutes=5), 10)] == ["g2"]

    def test_settle_only_by_the_holder_with_bookkeeping(self, storage: Storage) -> None:
        storage.enqueue_notifications([notice("a"), notice("b"), notice("c")])
        until = T0 + timedelta(minutes=5)
        a, b, c = storage.claim_notifications(T0, "w1", until, 10)
        at = T0 + timedelta(seconds=10)
        assert storage.settle_notifications([a.id], "w2", status="sent", at=at) == 0
        assert storage.settle_notifications([a.id, a.id], "w1", status="sent", at=at) == 1
        assert storage.settle_notifications([a.id], "w1", status="failed", at=at) == 0
        retry = at + timedelta(seconds=30)
        assert storage.settle_notifications([b.id], "w1", status="pending", at=at,
                                            error="timeout", next_attempt_at=retry) == 1
        assert storage.settle_notifications([c.id], "w1", status="failed", at=at,
                                            error="550 no such user") == 1
        rows = {n.dedup_key: n for n in storage.list_notifications()}
        assert (rows["a"].status, rows["a"].attempts, rows["a"].settled_at) == ("sent", 1, at)
        assert (rows["b"].status, rows["b"].attempts, rows["b"].next_attempt_at,
                rows["b"].last_error, rows["b"].claimed_by) == (
            "pending", 1, retry, "timeout", None)
        assert rows["b"].settled_at is None
        assert (rows["c"].status, rows["c"].attempts, rows["c"].last_error) == (
            "failed", 1, "550 no such user")
        assert storage.claim_notifications(at, "w1", until, 10) == []  # b waits
        [again] = storage.claim_notifications(retry, "w1", retry + timedelta(minutes=5), 10)
        assert (again.dedup_key, again.attempts) == ("b", 1)
        with pytest.raises(ValueError, match="settled"):
            storage.settle_notifications([again.id], "w1", status="sending", at=retry)

    def test_list_filters_and_pages(self, storage: Storage) -> None:
        stored = storage.enqueue_notifications(
            [notice(str(i), recipient="ben" if i % 2 else "bea") for i in range(6)])
        assert storage.list_notifications(recipient="bea") == stored[0::2]
        assert storage.list_notifications(after_id=stored[3].id) == stored[4:]
        assert storage.list_notifications(limit=2) == stored[:2]
        storage.claim_notifications(T0, "w", T0 + timedelta(minutes=5), 1)
        assert storage.list_notifications(status="sending") == [
            attrs.evolve(stored[0], status="sending", claimed_by="w",
                         claimed_until=T0 + timedelta(minutes=5))]
        assert storage.list_notifications(status="pending", recipient="ben") == [
            stored[1], stored[3], stored[5]]
        with pytest.raises(ValueError, match="after_id"):
            storage.list_notifications(after_id=-1)

    def test_prune(self, storage: Storage) -> None:
        old, new = T0 - timedelta(days=40), T0
        storage.enqueue_notifications([], marks=["old-mark"], at=old)
        storage.enqueue_notifications([], marks=["new-mark"], at=new)
        storage.enqueue_notifications([notice("sent-old"), notice("sent-new"),
                                       notice("failed-old"), notice("pending")])
        s_old, s_new, f_old = storage.claim_notifications(T0, "w", T0 + timedelta(minutes=5),
                                                          3)
        storage.settle_notifications([s_old.id], "w", status="sent", at=old)
        storage.settle_notifications([s_new.id], "w", status="sent", at=new)
        storage.settle_notifications([f_old.id], "w", status="failed", at=old)
        storage.add_inbox([inbox_item("read-old"), inbox_item("read-new"),
                           inbox_item("unread")])
        items = {i.dedup_key: i.id for i in storage.inbox("ben")}
        storage.mark_read("ben", [items["read-old"]], old)
        storage.mark_read("ben", [items["read-new"]], new)
        assert storage.prune_notifications(T0 - timedelta(days=30)) == 4
        assert [n.dedup_key for n in storage.list_notifications()] == ["sent-new", "pending"]
        assert [i.dedup_key for i in storage.inbox("ben")] == ["unread", "read-new"]
        assert storage.has_marks(["old-mark", "new-mark"]) == {"new-mark"}
        # a pruned dedup key may be queued again
        assert len(storage.enqueue_notifications([notice("sent-old")])) == 1


class TestInbox:
    """add_inbox / inbox / mark_read."""

    def test_newest_first_per_member_with_dedup(self, storage: Storage) -> None:
        added = storage.add_inbox([inbox_item("1"), inbox_item("2", member="bea"),
                                   inbox_item("3")])
        assert [i.id > 0 for i in added] == [True, True, True]
        assert added[0] == attrs.evolve(inbox_item("1"), id=added[0].id,
                                        payload={"k": (1, 2)})
        assert storage.add_inbox([inbox_item("1"), inbox_item("4")])[0].dedup_key == "4"
        assert [i.dedup_key for i in storage.inbox("ben")] == ["4", "3", "1"]
        assert [i.dedup_key for i in storage.inbox("bea")] == ["2"]
        assert storage.inbox("nobody") == []
        assert [i.dedup_key for i in storage.inbox("ben", limit=2)] == ["4", "3"]
        assert [i.dedup_key for i in storage.inbox("ben", after_id=added[0].id)] == [
            "4", "3"]
        assert storage.inbox("ben")[-1].payload == {"k": (1, 2)}

    def test_mark_read_per_member(self, storage: Storage) -> None:
        one, two, theirs = storage.add_inbox([inbox_item("1"), inbox_item("2"),
                                              inbox_item("3", member="bea")])
        at = T0 + timedelta(minutes=1)
        assert storage.mark_read("ben", [theirs.id], at) == 0  # not ben's
        assert storage.mark_read("ben", [one.id, 999], at) == 1
        assert storage.mark_read("ben", [one.id], at) == 0  # already read
        assert [i.dedup_key for i in storage.inbox("ben", unread=True)] == ["2"]
        assert storage.inbox("ben")[-1].read_at == at
        assert storage.mark_read("ben", None, at) == 1
        assert storage.inbox("ben", unread=True) == []
        assert [i.dedup_key for i in storage.inbox("bea", unread=True)] == ["3"]
        assert two.read_at is None  # returned snapshots never change


def same_answers(a: Storage, b: Storage, *, replay: bool = True) -> None:
    """Assert that ``a`` and ``b`` answer every read the same (a copy and its source),
    and (with ``replay``, for posts a workspace made) that each post of ``b`` is what
    replaying its audit trail gives."""
    assert b.list_members() == a.list_members()
    assert b.list_channels() == a.list_channels()
    assert b.list_campaigns() == a.list_campaigns()
    posts = a.list_posts(PostQuery())
    assert b.list_posts(PostQuery()) == posts
    for post in posts:
        assert b.revisions(post.id) == a.revisions(post.id)
        assert b.deliveries(post.id) == a.deliveries(post.id)
        assert b.history(post.id) == a.history(post.id)
        if replay:
            assert postflow.replay(b.history(post.id)) == post
    assert b.audit_log() == a.audit_log()
    assert b.last_change() == a.last_change()
    assert b.holds() == a.holds()
    assert b.list_series() == a.list_series()
    assert b.list_feeds() == a.list_feeds()
    assert b.list_planning_entries() == a.list_planning_entries()
    assert b.stored_workflow() == a.stored_workflow()
    assert b.list_documents("") == a.list_documents("")
    assert b.list_notifications() == a.list_notifications()
    members = {m.name for m in a.list_members()} | {"ben", "bea"}
    for member in sorted(members):
        assert b.inbox(member) == a.inbox(member)
    for name in {c.name for c in a.list_channels()} | set(CHANNELS):
        assert b.slot_version(name) == a.slot_version(name)
    assert b.instance_id() == a.instance_id()


class TestCopy:
    """export_rows / import_rows (``postflow db copy``): a copy into a new SQLite file
    answers every read as the source does; a database with rows refuses an import."""

    @staticmethod
    def _fill(storage: Storage) -> None:
        storage.instance_id()
        first = insert(storage, text="one", channels=("acme-x",))
        second = insert(storage, text="two\x00with a NUL", channels=("acme-li",))
        del second
        storage.update_post(moved(first, text="one, edited", revision=2),
                            expected_version=1,
                            entries=[make_entry("edit", first)],
                            revision=revision_of(moved(first, text="one, edited",
                                                       revision=2)))
        storage.append_audit([make_entry("comment", first, comment="looks good")])
        storage.save_cursor("mailer", 2, expected=0)
        storage.enqueue_notifications([notice("a"), notice("b")], marks=["m1"])
        storage.add_inbox([inbox_item("1"), inbox_item("2", member="bea")])
        storage.save_document("notifications", {"rules": [1, 2]},
                              make_entry("doc"), expected=None)

    def test_copy_answers_the_same(self, storage: Storage, tmp_path: Any) -> None:
        self._fill(storage)
        try:
            rows = storage.export_rows()
        except NotImplementedError:
            pytest.skip(f"{type(storage).__name__} does not copy")
        from postflow.storage.sqlite import SQLiteStorage

        copy = SQLiteStorage(f"sqlite:///{tmp_path}/copy.db")
        try:
            counts = copy.import_rows(rows)
            assert counts["posts"] == 2
            same_answers(storage, copy, replay=False)
            assert copy.cursor("mailer") == 2
            assert copy.has_marks(["m1", "m2"]) == {"m1"}
            # new ids continue after the copied ones
            assert insert(copy, text="three").id > max(
                p.id for p in storage.list_posts(PostQuery()))
            assert copy.append_audit([make_entry("comment")])[0].id > storage.last_change()[0]
            with pytest.raises(ConflictError, match="not empty"):
                copy.import_rows(rows)
        finally:
            copy.close()

    def test_import_into_a_database_with_rows_is_refused(self, storage: Storage) -> None:
        insert(storage)
        try:
            rows = storage.export_rows()
            with pytest.raises(ConflictError, match="not empty"):
                storage.import_rows(rows)
        except NotImplementedError:
            pytest.skip(f"{type(storage).__name__} does not copy")
        assert len(storage.list_posts(PostQuery())) == 1
