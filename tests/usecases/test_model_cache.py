"""The API process's resolutions of "latest" and aliases (ModelCache.resolve): the bound
on serving an old version, and the lookup ahead of expiry that keeps the database off
the predict path under steady traffic."""

from __future__ import annotations

import threading

import pytest

from service.usecases import models
from service.usecases.models import ModelCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lookups:
    """A lookup returning the current ``answer`` (or raising ``error``), recording which
    thread called it; ``gate`` holds a call until set."""

    def __init__(self):
        self.answer, self.error = 1, None
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.done = threading.Event()

    def __call__(self):
        self.threads.append(threading.current_thread().name)
        self.gate.wait(5)
        try:
            if self.error is not None:
                raise self.error
            return self.answer
        finally:
            self.done.set()

    def wait(self) -> None:
        assert self.done.wait(5)
        self.done.clear()


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(models.time, "monotonic", clock)
    return clock


def _settled(cache: ModelCache) -> None:
    """Wait until no lookup ahead of expiry is running."""
    for _ in range(500):
        with cache._lock:
            if not cache._refreshing:
                return
        threading.Event().wait(0.01)
    raise AssertionError("a lookup ahead of expiry did not finish")


def test_a_resolution_past_half_its_time_is_looked_up_again_in_the_background(clock):
    cache, lookup = ModelCache(4, resolve_ttl=1.0), Lookups()
    key = ("t", "iris", None)
    me = threading.current_thread().name
    assert cache.resolve(key, lookup, immutable=False) == 1
    assert lookup.threads == [me]
    clock.now += 0.4  # younger than half the bound: nothing looked up
    assert cache.resolve(key, lookup, immutable=False) == 1
    assert lookup.threads == [me]
    lookup.answer = 2  # a new version is published
    clock.now += 0.2  # past half: this request answers from the cache, a thread looks up
    assert cache.resolve(key, lookup, immutable=False) == 1
    lookup.wait()
    _settled(cache)
    assert lookup.threads == [me, "model-resolve"]
    # The entry was renewed from the lookup's start: the new version, no wait, no lookup.
    clock.now += 0.6  # 1.2 s after the first lookup, past its expiry
    assert cache.resolve(key, lookup, immutable=False) == 2
    _settled(cache)  # (0.6 s into the renewed entry: looked up ahead once more)
    assert lookup.threads.count(me) == 1


def test_one_lookup_ahead_per_key_at_a_time(clock):
    cache, lookup = ModelCache(4, resolve_ttl=1.0), Lookups()
    key = ("t", "iris", "alias", "champion")
    cache.resolve(key, lookup, immutable=False)
    lookup.gate.clear()  # the lookup ahead hangs (a slow database)
    clock.now += 0.7
    for _ in range(5):
        assert cache.resolve(key, lookup, immutable=False) == 1
    assert lookup.threads.count("model-resolve") == 1
    lookup.gate.set()
    lookup.wait()
    _settled(cache)


def test_a_failed_lookup_ahead_leaves_the_entry_to_expire_then_the_request_answers_it(clock):
    cache, lookup = ModelCache(4, resolve_ttl=1.0), Lookups()
    key = ("t", "iris", None)
    cache.resolve(key, lookup, immutable=False)
    lookup.error = models.NotFound("no model named 'iris'")  # deleted meanwhile
    clock.now += 0.7
    assert cache.resolve(key, lookup, immutable=False) == 1  # still within the bound
    lookup.wait()
    _settled(cache)
    clock.now += 0.4  # past the bound: the request looks up itself and gets the error
    with pytest.raises(models.NotFound):
        cache.resolve(key, lookup, immutable=False)


def test_explicit_versions_are_never_looked_up_again(clock):
    cache, lookup = ModelCache(4, resolve_ttl=1.0), Lookups()
    key = ("t", "iris", 3)
    cache.resolve(key, lookup, immutable=True)
    clock.now += 3600
    assert cache.resolve(key, lookup, immutable=True) == 1
    assert len(lookup.threads) == 1 and not cache._refreshing


def test_a_zero_bound_caches_nothing(clock):
    cache, lookup = ModelCache(4, resolve_ttl=0.0), Lookups()
    key = ("t", "iris", None)
    for _ in range(3):
        cache.resolve(key, lookup, immutable=False)
    assert lookup.threads == [threading.current_thread().name] * 3
