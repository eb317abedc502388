from __future__ import annotations

import pytest

from service.cache import LRUCache, NullCache, RedisCache, cache_field
from service.state import redis_client


def test_lru_counts_hits_and_misses_and_evicts() -> None:
    cache = LRUCache(2)
    assert cache.get("u1", "a") is None
    cache.set("u1", "a", b"1")
    cache.set("u1", "b", b"2")
    assert cache.get("u1", "a") == b"1"
    cache.set("u2", "a", b"3")  # evicts u1/b, the least recently used
    assert cache.get("u1", "b") is None
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)
    assert cache.stats()["hit_rate"] == pytest.approx(1 / 3)


def test_lru_drops_all_entries_of_one_user() -> None:
    cache = LRUCache(10)
    for field in ("a", "b"):
        cache.set("u1", field, b"x")
    cache.set("u2", "a", b"y")
    cache.invalidate_users(["u1"])
    assert cache.get("u1", "a") is None and cache.get("u1", "b") is None
    assert cache.get("u2", "a") == b"y"


def test_null_cache_always_misses() -> None:
    cache = NullCache()
    cache.set("u", "f", b"x")
    assert cache.get("u", "f") is None and cache.misses == 1


def test_field_carries_version_revision_and_parameters() -> None:
    assert cache_field("m2", "rev", 20, 0, True, True, "a", "b") == "m2|rev|20|0|True|True|a|b"
    assert cache_field("m1", "rev", 20) != cache_field("m2", "rev", 20)


def test_redis_cache(redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    client = redis_client(url)
    cache = RedisCache(client, prefix=prefix, ttl_s=60)
    assert cache.get("u1", "f") is None
    cache.set("u1", "f", b"body")
    cache.set("u1", "g", b"other")
    cache.set("u2", "f", b"kept")
    assert cache.get("u1", "f") == b"body"
    assert 0 < client.ttl(f"{prefix}rec:u1") <= 60
    cache.invalidate_users(["u1"])
    assert cache.get("u1", "f") is None and cache.get("u1", "g") is None
    assert cache.get("u2", "f") == b"kept"
    assert (cache.hits, cache.misses) == (2, 3)
    cache.clear()
    assert cache.get("u2", "f") is None
    client.close()


def test_redis_outage_is_a_miss_not_an_error() -> None:
    cache = RedisCache(redis_client("redis://127.0.0.1:1/0"), prefix="x:", ttl_s=1)
    assert cache.get("u", "f") is None
    cache.set("u", "f", b"x")
    assert cache.errors == 2 and cache.misses == 1


def test_a_batch_of_users_is_dropped_in_few_round_trips(redis_url: tuple[str, str]) -> None:
    url, prefix = redis_url
    client = redis_client(url)
    cache = RedisCache(client, prefix=prefix, ttl_s=60)
    users = [f"u{i}" for i in range(1200)]
    for user in users + ["kept"]:
        cache.set(user, "f", b"x")
    calls: list[int] = []
    real_delete = client.delete

    def counting_delete(*keys: str) -> int:
        calls.append(len(keys))
        return real_delete(*keys)

    client.delete = counting_delete  # type: ignore[method-assign]
    cache.invalidate_users(users + users[:10])  # repeats are dropped once
    assert calls == [500, 500, 200]
    assert all(cache.get(user, "f") is None for user in users[::97])
    assert cache.get("kept", "f") == b"x"
    client.delete = real_delete  # type: ignore[method-assign]
    cache.clear()
    client.close()


def test_lru_drops_a_batch_of_users() -> None:
    cache = LRUCache(10)
    for user in ("u1", "u2", "u3"):
        cache.set(user, "a", b"x")
    cache.invalidate_users(iter(["u1", "u3", "missing"]))
    assert [cache.get(u, "a") for u in ("u1", "u2", "u3")] == [None, b"x", None]
