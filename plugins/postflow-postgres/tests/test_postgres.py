"""What only PostgreSQL has: URLs, outages, concurrency between connections, the schema."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import attrs
import postflow
import psycopg
import pytest
from postflow.storage import NewEntry
from postflow.testing_contract import T0, insert, make_entry, moved

from conftest import with_params
from postflow_postgres import SCHEMA_VERSION, PostgresStorage, split_url


@pytest.fixture(name="opened")
def _opened() -> Iterator[Callable[..., PostgresStorage]]:
    """Open PostgresStorage objects that are closed at teardown."""
    stores: list[PostgresStorage] = []

    def open_(url: str, **kwargs: Any) -> PostgresStorage:
        storage = PostgresStorage(url, **kwargs)
        stores.append(storage)
        return storage

    yield open_
    for storage in stores:
        storage.close()


def entry(n: int) -> NewEntry:
    return NewEntry("comment", "ana", T0, f"c{n}", comment=f"n{n}")


# -- URLs -----------------------------------------------------------------------------


def test_postflow_parameters_are_taken_and_libpq_ones_kept() -> None:
    libpq, own = split_url("postgres://u:pw@db:6432/pf?sslmode=require&schema=team&"
                           "pool_size=3&options=-c%20statement_timeout%3D5s")
    assert own == {"schema": "team", "pool_size": "3"}
    assert libpq.startswith("postgres://u:pw@db:6432/pf?")
    assert "sslmode=require" in libpq
    assert "options=-c+statement_timeout%3D5s" in libpq


def test_sslmode_reaches_libpq(storage_url: str,
                               opened: Callable[..., PostgresStorage]) -> None:
    """libpq parameters pass through: sslmode=disable connects, a bad value is refused
    by libpq, as a StorageError."""
    opened(with_params(storage_url, sslmode="disable"))
    with pytest.raises(postflow.StorageError, match="sslmode"):
        PostgresStorage(with_params(storage_url, sslmode="nonsense"))


def test_bad_pool_size_is_a_config_error(storage_url: str) -> None:
    with pytest.raises(postflow.ConfigError, match="pool_size"):
        PostgresStorage(with_params(storage_url, pool_size="0"))


def test_unreachable_server_names_the_host_and_hides_the_password() -> None:
    url = "postgresql://app:s3cret@127.0.0.1:1/pf?connect_timeout=2"
    with pytest.raises(postflow.StorageError) as raised:
        postflow.open(url, entry_points=False, plugins=[__import__("postflow_postgres")])
    message = str(raised.value)
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message


def test_workspace_opens_through_the_entry_point(storage_url: str) -> None:
    """Installed, the plugin is found like any other: postflow.open just works."""
    with postflow.open(storage_url) as ws:
        ws.team.add("ana", roles={"author"})
        ws.channels.add("acme-x", network="x", handle="@acme")
        post = ws.posts.create(author="ana", text="hello\x00world", channels=["acme-x"])
        assert ws.posts.get(post.id).text == "hello\x00world"
        seen: list[str] = []
        ws.changes.consume("t", lambda entries: seen.extend(e.action for e in entries))
        assert seen == ["workflow.store", "member.add", "channel.add", "create"]


# -- the schema -----------------------------------------------------------------------


def test_two_hosts_creating_the_schema_at_once(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    """The migration lock: concurrent first opens both succeed, on one schema."""
    errors: list[BaseException] = []
    stores: list[PostgresStorage] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            stores.append(opened(storage_url, pool_size=1))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {s.schema_version() for s in stores} == {SCHEMA_VERSION}


def test_newer_schema_is_refused(storage_url: str, admin: psycopg.Connection[Any],
                                 opened: Callable[..., PostgresStorage]) -> None:
    storage = opened(storage_url)
    admin.execute(f'UPDATE "{storage.schema}".postflow_meta SET value = %s '
                  "WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(postflow.StorageError, match="newer"):
        PostgresStorage(storage_url)


def test_foreign_schema_is_refused(storage_url: str, admin: psycopg.Connection[Any],
                                   opened: Callable[..., PostgresStorage]) -> None:
    schema = dict(p.split("=") for p in storage_url.split("?")[1].split("&"))["schema"]
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(f'CREATE TABLE "{schema}".other (x int)')
    with pytest.raises(postflow.StorageError, match="not a postflow one"):
        PostgresStorage(storage_url)


# -- text PostgreSQL cannot hold ------------------------------------------------------


def test_nul_in_free_text_round_trips(storage_url: str,
                                      opened: Callable[..., PostgresStorage]) -> None:
    storage = opened(storage_url)
    for text in ("a\x00b", "\ufdd0x", "\ufdd0\"x\x00", "plain"):
        post = insert(storage, text=text)
        assert storage.get_post(post.id).text == text  # type: ignore[union-attr]
        assert storage.revisions(post.id)[0].text == text
        stored = storage.append_audit([attrs.evolve(make_entry("comment"), comment=text)])
        assert storage.audit_log(after_id=stored[0].id - 1)[0].comment == text


def test_reads_with_impossible_values_find_nothing(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    storage = opened(storage_url)
    assert storage.get_member("a\x00") is None
    assert storage.get_channel("\ud800") is None
    assert storage.stored_document("d\x00") is None
    assert storage.has_marks(["k\x00", "\udfff", "k"]) == set()
    assert storage.inbox("ben\x00") == []


def test_nul_in_a_name_is_a_storage_error(storage_url: str,
                                          opened: Callable[..., PostgresStorage]) -> None:
    """Refused by postflow's input checks before it gets here; if it does, a clear
    StorageError and nothing written."""
    storage = opened(storage_url)
    with pytest.raises(postflow.StorageError, match="NUL"):
        storage.save_member(postflow.Member("a\x00", {"author"}), make_entry("member.add"))
    assert storage.audit_log() == []


# -- concurrency between connections --------------------------------------------------


def run_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_cursor_following_the_audit_log_misses_nothing(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    """Audit ids are in commit order: a reader that moves past the newest id it saw
    never skips an entry that commits later with a smaller id."""
    writers = [opened(storage_url, pool_size=2) for _ in range(4)]
    reader = opened(storage_url, pool_size=1)
    done = threading.Event()
    seen: list[int] = []

    def follow() -> None:
        position = 0
        while True:
            finished = done.is_set()
            batch = reader.audit_log(after_id=position)
            seen.extend(e.id for e in batch)
            if batch:
                position = batch[-1].id
            elif finished:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        run_threads(4, lambda i: [writers[i].append_audit([entry(n), entry(n)])
                                  for n in range(60)])
    finally:
        done.set()
        follower.join()
    every = [e.id for e in reader.audit_log()]
    assert len(every) == 4 * 60 * 2
    assert seen == every


def test_workers_on_many_connections_claim_each_post_once(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    setup = opened(storage_url)
    ids = set()
    for n in range(120):
        post = insert(setup, text=f"p{n}")
        scheduled = moved(post, state="scheduled",
                          scheduled_at=T0 - timedelta(minutes=n % 7))
        setup.update_post(scheduled, expected_version=post.version, entries=[])
        ids.add(post.id)
    workers = [opened(storage_url, pool_size=1) for _ in range(6)]
    claimed: list[list[int]] = [[] for _ in workers]

    def claim(i: int) -> None:
        while batch := workers[i].claim_due(T0, f"w{i}", T0 + timedelta(minutes=5), 3,
                                            frozenset(), f"corr{i}"):
            claimed[i].extend(p.id for p in batch)

    run_threads(len(workers), claim)
    every = [post_id for ids_ in claimed for post_id in ids_]
    assert sorted(every) == sorted(ids)
    assert sum(1 for e in setup.audit_log() if e.action == "claim") == len(ids)


def test_one_slot_is_taken_once_across_connections(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    """Two hosts that both read slot version 0 of a channel: only one schedules."""
    stores = [opened(storage_url, pool_size=1) for _ in range(6)]
    posts = [insert(stores[0], text=f"p{n}") for n in range(6)]
    assert stores[0].slot_version("acme-x") == 0
    outcome: list[str] = ["?"] * 6

    def schedule(i: int) -> None:
        post = posts[i]
        try:
            stores[i].update_post(moved(post, state="scheduled", scheduled_at=T0),
                                  expected_version=post.version, entries=[
                                      make_entry("schedule", post)],
                                  slot_guards={"acme-x": 0})
            outcome[i] = "scheduled"
        except postflow.ConflictError:
            outcome[i] = "conflict"

    run_threads(6, schedule)
    assert sorted(outcome) == ["conflict"] * 5 + ["scheduled"]
    assert stores[0].slot_version("acme-x") == 1


def test_compare_and_set_across_connections(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    stores = [opened(storage_url, pool_size=1) for _ in range(5)]
    post = insert(stores[0])
    won: list[int] = []

    def edit(i: int) -> None:
        try:
            stores[i].update_post(moved(post, text=f"by {i}"), expected_version=post.version,
                                  entries=[make_entry("edit", post)])
            won.append(i)
        except postflow.ConflictError:
            pass

    run_threads(5, edit)
    assert len(won) == 1
    assert stores[0].get_post(post.id).text == f"by {won[0]}"  # type: ignore[union-attr]
    assert [e.action for e in stores[0].history(post.id)] == ["create", "edit"]


def test_notifications_are_claimed_once_across_connections(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    from postflow.testing_contract import notice

    setup = opened(storage_url)
    setup.enqueue_notifications([notice(f"n{n}") for n in range(60)]
                                + [notice(f"d{n}", digest="daily") for n in range(5)])
    workers = [opened(storage_url, pool_size=1) for _ in range(4)]
    taken: list[list[int]] = [[] for _ in workers]

    def claim(i: int) -> None:
        while batch := workers[i].claim_notifications(T0, f"w{i}",
                                                      T0 + timedelta(minutes=5), 4):
            taken[i].extend(n.id for n in batch)

    run_threads(len(workers), claim)
    every = [i for ids in taken for i in ids]
    assert len(every) == len(set(every)) == 65
    digests = {n.id for n in setup.list_notifications() if n.digest}
    assert sum(1 for ids in taken if digests & set(ids)) == 1  # one worker has the group


def test_close_releases_every_connection(storage_url: str, admin: psycopg.Connection[Any]
                                         ) -> None:
    storage = PostgresStorage(storage_url, pool_size=3)
    storage.get_post(1)
    storage.close()
    assert storage.closed
    with pytest.raises(postflow.StorageError):
        storage.get_post(1)


def test_killed_connections_are_a_storage_error_then_replaced(
        storage_url: str, admin: psycopg.Connection[Any],
        opened: Callable[..., PostgresStorage]) -> None:
    """pg_terminate_backend of the pool's connections: a call that meets a dead one is a
    StorageError naming the server, nothing half-written; the pool then replaces it."""
    storage = opened(storage_url, pool_size=1)
    post = insert(storage)
    schema = storage.schema
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = %s", (schema,))
    for _ in range(100):  # until the backend is gone
        if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s",
                             (schema,)).fetchall():
            break
        time.sleep(0.02)
    with pytest.raises(postflow.StorageError, match=re.escape(storage.where)):
        storage.update_post(moved(post, text="after"), expected_version=post.version,
                            entries=[make_entry("edit", post)])
    assert storage.get_post(post.id) == post  # nothing written; the pool recovered


def test_guards_on_several_channels_never_deadlock(
        storage_url: str, opened: Callable[..., PostgresStorage]) -> None:
    """Two schedules guarding the same two channels, named in opposite orders: one wins,
    the other is a ConflictError, never a deadlock."""
    stores = [opened(storage_url, pool_size=1) for _ in range(2)]
    for _ in range(15):
        posts = [insert(stores[0], channels=("a", "b")) for _ in range(2)]
        versions = {c: stores[0].slot_version(c) for c in ("a", "b")}
        orders = [dict(versions), dict(reversed(list(versions.items())))]
        outcome: list[str] = []

        def schedule(i: int, posts: list[Any] = posts, orders: list[Any] = orders,
                     outcome: list[str] = outcome) -> None:
            post = posts[i]
            try:
                stores[i].update_post(moved(post, state="scheduled", scheduled_at=T0),
                                      expected_version=post.version,
                                      entries=[make_entry("schedule", post)],
                                      slot_guards=orders[i])
                outcome.append("ok")
            except postflow.ConflictError:
                outcome.append("conflict")

        run_threads(2, schedule)
        assert sorted(outcome) == ["conflict", "ok"]


def test_an_older_schema_is_migrated_or_refused(
        storage_url: str, monkeypatch: pytest.MonkeyPatch,
        opened: Callable[..., PostgresStorage]) -> None:
    """With a schema version 2 in the plugin: a version 1 database is refused with
    migrate=no (MigrationRequired, nothing changed) and migrated forward otherwise."""
    import postflow_postgres

    opened(storage_url).close()
    ran: list[int] = []

    def to_2(conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE extra (x int)")
        ran.append(2)

    monkeypatch.setattr(postflow_postgres, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(postflow_postgres.MIGRATIONS, 2, to_2)
    with pytest.raises(postflow.MigrationRequired) as refused:
        PostgresStorage(with_params(storage_url, migrate="no"))
    assert (refused.value.found, refused.value.current) == (1, 2)
    storage = opened(storage_url)
    assert ran == [2]
    assert storage.schema_version() == 2
    assert opened(storage_url).schema_version() == 2
    assert ran == [2]  # once
