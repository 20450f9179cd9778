"""One suite for every store back end (the `store` fixtures run each test on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.store.postgres import PostgresStore
from services.store.sqlite import SQLiteStore
from services.store import (
    EntityChanges,
    EntityRecord,
    EntityUid,
    SigningKey,
    Store,
    StoreUnavailable,
    create_store,
)
from services.store.migrations import load_migrations
from tests.store.conftest import OpenStore

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]


def user(id_: str, **properties: object) -> EntityRecord:
    return EntityRecord("User", id_, dict(properties), [EntityUid("Group", "staff")])


def by_uid(changes: EntityChanges) -> dict[EntityUid, EntityRecord]:
    return {entity.uid: entity for entity in changes.upserted}


# -- migrations -----------------------------------------------------------------------------


async def test_open_applies_every_migration_once(store: Store) -> None:
    versions = [m.version for m in load_migrations(store.dialect)]
    assert versions[0] == "0001_initial"
    assert await store.applied_migrations() == versions
    assert await store.migrate() == []
    assert await store.applied_migrations() == versions


async def test_open_without_migrate_leaves_database_empty(open_store: OpenStore) -> None:
    store = await open_store(migrate=False)
    assert await store.applied_migrations() == []
    versions = [m.version for m in load_migrations(store.dialect)]
    assert await store.migrate() == versions
    assert await store.applied_migrations() == versions


async def test_concurrent_migrate_applies_each_version_once(open_store: OpenStore) -> None:
    first, second = await open_store(migrate=False), await open_store(migrate=False)
    applied_first, applied_second = await asyncio.gather(first.migrate(), second.migrate())
    versions = [m.version for m in load_migrations(first.dialect)]
    assert sorted(applied_first + applied_second) == versions
    assert await second.applied_migrations() == versions
    assert await first.entity_revision() == 0


_MIGRATE_AT = """
import asyncio, json, sys, time
from services.store import create_store

async def main(url: str, start_at: float) -> None:
    store = create_store(url)
    await store.open(migrate=False)
    await asyncio.sleep(start_at - time.time())
    print(json.dumps(await store.migrate()))
    await store.close()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def test_migrate_from_several_processes_at_once_applies_each_version_once(
    store_url: str,
) -> None:
    # Worker processes start together; a common start time lines their migrations up.
    start_at = str(time.time() + 1.5)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _MIGRATE_AT, store_url, start_at,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = [await process.communicate() for process in processes]

    assert [process.returncode for process in processes] == [0] * 4
    applied = [version for stdout, _ in outputs for version in json.loads(stdout)]
    assert sorted(applied) == [m.version for m in load_migrations(create_store(store_url).dialect)]


def test_migration_versions_are_file_stems_in_lexical_order() -> None:
    for dialect in ("sqlite", "postgres"):
        migrations = load_migrations(dialect)
        versions = [m.version for m in migrations]
        assert versions == sorted(versions)
        assert "CREATE TABLE entities" in migrations[0].sql
    with pytest.raises(ValueError, match="oracle"):
        load_migrations("oracle")


# -- entities -------------------------------------------------------------------------------


async def test_upsert_then_changes_since_revision(store: Store) -> None:
    assert await store.entity_revision() == 0
    assert await store.entity_changes(0) == EntityChanges(revision=0, upserted=[], deleted=[])

    first = await store.upsert_entities([user("alice", age=30), user("bob")])
    second = await store.upsert_entities([user("carol")])

    assert first == 1
    assert second == 2
    assert await store.entity_revision() == 2
    everything = await store.entity_changes(0)
    assert everything.revision == 2
    assert everything.upserted == [user("alice", age=30), user("bob"), user("carol")]
    assert everything.deleted == []
    assert await store.entity_changes(first) == EntityChanges(2, [user("carol")], [])
    assert await store.entity_changes(second) == EntityChanges(2, [], [])


async def test_upsert_replaces_properties_and_parents(store: Store) -> None:
    await store.upsert_entities(
        [EntityRecord("User", "alice", {"age": 30, "dept": "ops"}, [EntityUid("Group", "staff")])]
    )
    replacement = EntityRecord("User", "alice", {"dept": "risk"}, [EntityUid("Role", "trader")])
    revision = await store.upsert_entities([replacement])
    changes = await store.entity_changes(revision - 1)
    assert changes.upserted == [replacement]
    assert (await store.entity_changes(0)).upserted == [replacement]


async def test_delete_leaves_tombstone_and_full_sync_omits_it(store: Store) -> None:
    created = await store.upsert_entities([user("alice"), user("bob")])
    deleted = await store.delete_entities([EntityUid("User", "alice")])

    assert deleted == created + 1
    assert await store.entity_changes(created) == EntityChanges(
        deleted, upserted=[], deleted=[EntityUid("User", "alice")]
    )
    full = await store.entity_changes(0)
    assert full == EntityChanges(deleted, upserted=[user("bob")], deleted=[])


async def test_delete_unknown_uid_is_not_an_error(store: Store) -> None:
    await store.upsert_entities([user("alice")])
    revision = await store.delete_entities([EntityUid("User", "nobody")])
    assert revision == 2
    changes = await store.entity_changes(1)
    assert changes == EntityChanges(2, upserted=[], deleted=[])
    assert (await store.entity_changes(0)).upserted == [user("alice")]


async def test_upsert_resurrects_deleted_entity(store: Store) -> None:
    await store.upsert_entities([user("alice", age=30)])
    deleted = await store.delete_entities([EntityUid("User", "alice")])
    revived = await store.upsert_entities([user("alice", age=31)])

    assert await store.entity_changes(deleted) == EntityChanges(revived, [user("alice", age=31)], [])
    assert (await store.entity_changes(0)).upserted == [user("alice", age=31)]


async def test_revision_increases_by_one_per_write(store: Store) -> None:
    revisions = [
        await store.upsert_entities([user("alice")]),
        await store.delete_entities([EntityUid("User", "alice")]),
        await store.upsert_entities([user("bob"), user("carol")]),
        await store.delete_entities([]),
        await store.upsert_entities([user("alice")]),
    ]
    assert revisions == [1, 2, 3, 4, 5]
    assert await store.entity_revision() == 5


async def test_incremental_sync_reaches_the_same_state_as_full_sync(store: Store) -> None:
    """A follower polling entity_changes(since) after every write mirrors the store exactly."""
    mirror: dict[EntityUid, EntityRecord] = {}
    since = 0
    writes = [
        lambda: store.upsert_entities([user("alice", v=1), user("bob", v=1)]),
        lambda: store.upsert_entities([user("alice", v=2)]),
        lambda: store.delete_entities([EntityUid("User", "bob")]),
        lambda: store.upsert_entities([user("carol", v=1), user("bob", v=3)]),
        lambda: store.delete_entities([EntityUid("User", "alice"), EntityUid("User", "carol")]),
        lambda: store.upsert_entities([user("dave", v=1)]),
    ]
    for write in writes:
        await write()
        changes = await store.entity_changes(since)
        assert changes.revision > since
        for uid in changes.deleted:
            mirror.pop(uid, None)
        mirror.update(by_uid(changes))
        since = changes.revision
        assert mirror == by_uid(await store.entity_changes(0))
    assert mirror == {e.uid: e for e in [user("bob", v=3), user("dave", v=1)]}


async def test_concurrent_upserts_from_two_instances_get_distinct_revisions(
    open_store: OpenStore,
) -> None:
    first, second = await open_store(), await open_store()
    writers = [first, second] * 20
    uids = [EntityUid("User", f"u{n:02}") for n in range(len(writers))]
    revisions = await asyncio.gather(
        *(writer.upsert_entities([user(uid.id, n=n)]) for n, (writer, uid) in enumerate(zip(writers, uids)))
    )

    assert sorted(revisions) == list(range(1, len(writers) + 1))
    assert await first.entity_revision() == len(writers)
    assert set(by_uid(await second.entity_changes(0))) == set(uids)
    # Each entity carries the revision its write returned: it appears after revision - 1 only.
    for uid, revision in zip(uids, revisions):
        assert uid in by_uid(await first.entity_changes(revision - 1))
        assert uid not in by_uid(await first.entity_changes(revision))


async def test_properties_round_trip_exactly(store: Store) -> None:
    properties = {
        "name": "Zoë Ångström 東京 🚀",
        "nested": {"list": [1, 2.5, -3, True, False, None, "x"], "empty": {}, "none": []},
        "deep": [[{"a": [{"b": {"c": "d"}}]}]],
        "big": 2**62,
        "float": 0.1,
        "quote": 'say "hi"\\ \n\t',
    }
    entity = EntityRecord("Doc", "ünïcode/id with spaces", properties, [EntityUid("Folder", "ß")])
    await store.upsert_entities([entity])

    [stored] = (await store.entity_changes(0)).upserted
    assert stored == entity
    assert stored.properties["big"] == 2**62
    assert type(stored.properties["float"]) is float
    assert stored.parents == [EntityUid("Folder", "ß")]


async def test_data_survives_reopening(open_store: OpenStore) -> None:
    first = await open_store()
    await first.upsert_entities([user("alice")])
    secret = await first.get_or_create_secret("hmac", b"s3cret")
    await first.close()

    reopened = await open_store()
    assert (await reopened.entity_changes(0)).upserted == [user("alice")]
    assert await reopened.get_or_create_secret("hmac", b"other") == secret
    assert await reopened.migrate() == []


# -- secrets and keys -----------------------------------------------------------------------


async def test_get_or_create_secret_first_writer_wins(store: Store) -> None:
    assert await store.get_or_create_secret("session", b"\x00first\xff") == b"\x00first\xff"
    assert await store.get_or_create_secret("session", b"second") == b"\x00first\xff"
    assert await store.get_or_create_secret("other", b"third") == b"third"


async def test_get_or_create_secret_concurrently_from_two_instances(open_store: OpenStore) -> None:
    first, second = await open_store(), await open_store()
    candidates = [f"candidate-{n}".encode() for n in range(20)]
    results = await asyncio.gather(
        *(
            (first if n % 2 else second).get_or_create_secret("shared", candidate)
            for n, candidate in enumerate(candidates)
        )
    )
    assert len(set(results)) == 1
    assert results[0] in candidates


def signing_key(kid: str, created_at: datetime, retires_at: datetime | None = None) -> SigningKey:
    return SigningKey(kid, "ES256", f'{{"kty":"EC","kid":"{kid}"}}', created_at, retires_at)


async def test_signing_keys_newest_first(store: Store) -> None:
    for n, kid in enumerate(["k1", "k2", "k3"]):
        await store.add_signing_key(signing_key(kid, T0 + timedelta(days=n)))
    keys = await store.signing_keys(T0 + timedelta(days=10))
    assert [key.kid for key in keys] == ["k3", "k2", "k1"]
    assert keys[0] == signing_key("k3", T0 + timedelta(days=2))


async def test_retire_signing_keys_older_than_kid(store: Store) -> None:
    for n, kid in enumerate(["k1", "k2", "k3"]):
        await store.add_signing_key(signing_key(kid, T0 + timedelta(days=n)))
    retires_at = T0 + timedelta(days=5)

    await store.retire_signing_keys("k3", retires_at)
    await store.retire_signing_keys("k3", retires_at + timedelta(days=1))  # keeps the first date

    before = await store.signing_keys(retires_at - timedelta(microseconds=1))
    assert before == [
        signing_key("k3", T0 + timedelta(days=2)),
        signing_key("k2", T0 + timedelta(days=1), retires_at),
        signing_key("k1", T0, retires_at),
    ]
    assert [key.kid for key in await store.signing_keys(retires_at)] == ["k3"]


async def test_retire_signing_keys_with_unknown_kid_retires_nothing(store: Store) -> None:
    await store.add_signing_key(signing_key("k1", T0))
    await store.retire_signing_keys("missing", T0 + timedelta(days=1))
    assert await store.signing_keys(T0 + timedelta(days=2)) == [signing_key("k1", T0)]


async def test_datetimes_come_back_aware_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    created = datetime(2025, 6, 1, 14, 30, 15, 123456, tzinfo=paris)
    retires = datetime(2030, 6, 1, 14, 0, tzinfo=paris)
    await store.add_signing_key(signing_key("k1", created, retires))

    [key] = await store.signing_keys(created)
    for moment, original in ((key.created_at, created), (key.retires_at, retires)):
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)
        assert moment == original
    assert key.created_at.hour == 12


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.add_signing_key(signing_key("k1", datetime(2025, 1, 1)))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.signing_keys(datetime(2025, 1, 1))


# -- availability ---------------------------------------------------------------------------


async def test_ping_succeeds_on_an_open_store(store: Store) -> None:
    await store.ping()


async def test_postgres_on_a_closed_port_is_unavailable() -> None:
    url = "postgresql://x:y@127.0.0.1:1/db"
    with pytest.raises(StoreUnavailable):
        await create_store(url).open()

    # Without warm connections, opening succeeds and the failure shows on first use.
    lazy = create_store(url, pool_min=0)
    await lazy.open(migrate=False)
    try:
        with pytest.raises(StoreUnavailable):
            await lazy.ping()
        with pytest.raises(StoreUnavailable):
            await lazy.entity_revision()
        with pytest.raises(StoreUnavailable):
            await lazy.migrate()
    finally:
        await lazy.close()


# -- create_store ---------------------------------------------------------------------------


async def test_create_store_sqlite_relative_path_creates_parent_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = create_store("sqlite:///data/nested/arop.db")
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()
    assert (tmp_path / "data" / "nested" / "arop.db").is_file()


def test_create_store_picks_back_end_from_scheme() -> None:
    sqlite = create_store("sqlite:////var/lib/arop/arop.db")
    assert isinstance(sqlite, SQLiteStore)
    assert sqlite.path == Path("/var/lib/arop/arop.db")
    assert isinstance(create_store("postgresql://u:p@db/arop"), PostgresStore)
    assert isinstance(create_store("postgres://u:p@db/arop"), PostgresStore)


@pytest.mark.parametrize("url", ["mysql://u:secret@db/arop", "sqlite://host/arop.db", "sqlite:///", "arop.db"])
def test_create_store_rejects_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported or malformed store URL") as raised:
        create_store(url)
    assert "secret" not in str(raised.value)
