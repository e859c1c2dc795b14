"""Unsure departures (meshsrpc.departures) on an injected clock: no loop, no Redis."""

from __future__ import annotations

from meshsrpc.departures import UnsureDepartures


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock) -> UnsureDepartures:
    return UnsureDepartures(clock, node_ttl=3.0, heartbeat_interval=0.5)


def test_a_remembered_departure_settles_once() -> None:
    departures = tracker(Clock())
    departure = departures.remember("c1", {"m": 1})
    assert departures.settle(departure) is True
    assert departures.settle(departure) is False
    assert len(departures) == 0


def test_a_newer_departure_of_the_client_replaces_the_older() -> None:
    departures = tracker(Clock())
    old = departures.remember("c1", 1)
    new = departures.remember("c1", 2)
    assert departures.settle(old) is False
    assert departures.settle(new) is True


def test_departures_older_than_the_memory_are_forgotten_as_new_ones_come() -> None:
    clock = Clock()
    departures = tracker(clock)
    departures.remember("old", None)
    clock.now += 4.1  # node TTL + 2 heartbeats = 4 s
    departures.remember("new", None)
    assert len(departures) == 1


def test_a_rejoin_takes_the_recent_departures_only() -> None:
    clock = Clock()
    departures = tracker(clock)
    departures.remember("old", None)
    clock.now += 3.0
    departures.remember("recent", None)
    clock.now += 2.0
    assert [d.client_id for d in departures.rejoined()] == ["recent"]
    assert len(departures) == 0


def test_a_departure_taken_by_a_rejoin_does_not_settle_again() -> None:
    departures = tracker(Clock())
    departure = departures.remember("c1", None)
    departures.rejoined()
    assert departures.settle(departure) is False


def test_just_rejoined_lasts_as_long_as_the_memory() -> None:
    clock = Clock()
    departures = tracker(clock)
    assert not departures.just_rejoined()
    departures.rejoined()
    clock.now += 3.9
    assert departures.just_rejoined()
    clock.now += 0.2
    assert not departures.just_rejoined()
