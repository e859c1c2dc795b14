"""The client table (meshsrpc.lifecycle): transitions checked one by one, no sockets, no Redis."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from meshsrpc.errors import IllegalTransitionError
from meshsrpc.lifecycle import TRANSITIONS, ClientTable, Phase


@dataclass(frozen=True)
class Stream:
    id: str
    client_id: str = "c1"


A, B = Stream("a"), Stream("b")


def connected(*streams: Stream) -> ClientTable:
    table = ClientTable()
    for stream in streams:
        table.connect(stream, {"stream": stream.id})
    return table


def test_a_new_table_is_empty() -> None:
    assert ClientTable().is_empty()


def test_connect_makes_one_entry_per_client_holding_the_latest_metadata() -> None:
    table = connected(A, B)
    entry = table.client("c1")
    assert len(table) == 1 and entry is not None
    assert set(entry.streams) == {"a", "b"} and entry.metadata == {"stream": "b"}
    assert table.phase(A) is Phase.CONNECTED


def test_connecting_the_same_stream_twice_is_a_bug() -> None:
    table = connected(A)
    with pytest.raises(IllegalTransitionError):
        table.connect(A, {})


@pytest.mark.parametrize(
    "path",
    [
        [Phase.RESERVED, Phase.ACTIVATING, Phase.REGISTERED, Phase.ANNOUNCED, Phase.CLOSED],
        [Phase.ACTIVATING, Phase.REGISTERED, Phase.ANNOUNCED, Phase.CLOSED],
        [Phase.ACTIVATING, Phase.ANNOUNCED, Phase.CLOSED],
        [Phase.RESERVED, Phase.CLOSED],
        [Phase.CLOSED],
    ],
)
def test_a_stream_moves_along_the_legal_paths(path: list[Phase]) -> None:
    table = connected(A)
    for phase in path:
        table.advance(A, phase)
        assert table.phase(A) is phase


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (start, target)
        for start in Phase
        for target in Phase
        if target not in TRANSITIONS[start] and start is not Phase.CONNECTED
    ],
)
def test_every_other_move_raises(start: Phase, target: Phase) -> None:
    table = connected(A)
    state = table.stream(A)
    assert state is not None
    state.phase = start
    with pytest.raises(IllegalTransitionError):
        table.advance(A, target)
    assert state.phase is start


def test_moving_back_from_connected_is_impossible() -> None:
    assert Phase.CONNECTED not in set().union(*TRANSITIONS.values())


def test_progress_is_a_no_op_once_the_stream_closed() -> None:
    table = connected(A)
    table.close(A)
    assert table.progress(A, Phase.RESERVED) is False
    assert table.phase(A) is Phase.CLOSED


def test_progress_still_checks_an_open_stream() -> None:
    table = connected(A)
    with pytest.raises(IllegalTransitionError):
        table.progress(A, Phase.REGISTERED)


def test_gated_means_past_the_activation_snapshot_and_open() -> None:
    table = connected(A)
    assert not table.is_gated(A)
    table.advance(A, Phase.ACTIVATING)
    assert table.is_gated(A)
    table.close(A)
    assert not table.is_gated(A)


def test_closing_a_stream_never_connected_is_ignored() -> None:
    table = ClientTable()
    table.close(A)
    table.forget(A)
    assert table.is_empty()


def test_closing_cancels_a_planned_takeover() -> None:
    table = connected(A)
    state = table.stream(A)
    assert state is not None
    state.takeover = True
    table.close(A)
    assert not state.takeover


def test_forgetting_the_last_stream_forgets_the_client() -> None:
    table = connected(A)
    table.close(A)
    table.forget(A)
    assert table.is_empty()


def test_forgetting_an_open_stream_is_a_bug() -> None:
    table = connected(A)
    with pytest.raises(IllegalTransitionError):
        table.forget(A)


def test_forgetting_the_holder_before_its_release_is_a_bug() -> None:
    table = connected(A)
    table.take_hold(A)
    table.close(A)
    with pytest.raises(IllegalTransitionError):
        table.forget(A)


def test_the_client_stays_while_a_stream_holds_its_entry() -> None:
    table = connected(A, B)
    table.take_hold(B)
    table.close(A)
    table.forget(A)
    assert not table.is_empty() and table.holds(B)


def test_take_hold_returns_the_previous_holder_and_give_up_restores_it() -> None:
    table = connected(A, B)
    assert table.take_hold(A) is None
    previous = table.take_hold(B)
    assert previous == "a" and table.holds(B)
    table.give_up_hold(B, previous)
    assert table.holds(A) and not table.holds(B)


def test_give_up_hold_leaves_a_newer_holder_alone() -> None:
    table = connected(A, B)
    table.take_hold(A)
    table.take_hold(B)
    table.give_up_hold(A, None)
    assert table.holds(B)


def test_announce_moves_to_announced_and_records_presence_with_the_metadata() -> None:
    table = connected(A)
    table.advance(A, Phase.ACTIVATING)
    presence = table.announce(A)
    assert table.phase(A) is Phase.ANNOUNCED
    assert presence.stream_id == "a" and presence.metadata == {"stream": "a"}
    assert table.is_announced(A)


def test_announcing_before_activation_is_a_bug() -> None:
    table = connected(A)
    with pytest.raises(IllegalTransitionError):
        table.announce(A)


def test_a_newer_announced_stream_replaces_the_presence() -> None:
    table = connected(A, B)
    for stream in (A, B):
        table.advance(stream, Phase.ACTIVATING)
        table.announce(stream)
    assert table.is_announced(B) and not table.is_announced(A)


def test_remember_updates_the_presence_of_that_stream_only() -> None:
    table = connected(A, B)
    table.advance(A, Phase.ACTIVATING)
    table.announce(A)
    table.remember(B, {"v": 2})
    entry = table.client("c1")
    assert entry is not None and entry.presence is not None
    assert entry.metadata == {"v": 2} and entry.presence.metadata == {"stream": "b"}
    table.remember(A, {"v": 3})
    assert entry.presence.metadata == {"v": 3}


def test_release_hold_hands_over_the_presence_even_of_an_older_stream() -> None:
    table = connected(A, B)
    table.advance(A, Phase.ACTIVATING)
    table.announce(A)
    table.take_hold(B)
    presence = table.release_hold(B)
    assert presence is not None and presence.stream_id == "a"
    assert not table.has_holder("c1") and not table.is_announced(A)


def test_releasing_a_stream_that_does_not_hold_is_a_bug() -> None:
    table = connected(A)
    with pytest.raises(IllegalTransitionError):
        table.release_hold(A)


def test_end_presence_is_refused_while_a_stream_holds_the_entry() -> None:
    table = connected(A)
    table.advance(A, Phase.ACTIVATING)
    table.announce(A)
    table.take_hold(A)
    assert table.end_presence("c1") is None
    assert table.is_announced(A)


def test_a_full_life_leaves_the_table_empty() -> None:
    table = connected(A)
    table.take_hold(A)
    table.advance(A, Phase.RESERVED)
    table.advance(A, Phase.ACTIVATING)
    table.advance(A, Phase.REGISTERED)
    table.announce(A)
    table.close(A)
    assert table.release_hold(A) is not None
    table.forget(A)
    assert table.is_empty()


def test_a_never_registered_life_leaves_the_table_empty() -> None:
    table = connected(A)
    table.advance(A, Phase.ACTIVATING)
    table.announce(A)
    table.close(A)
    presence = table.end_presence("c1")
    assert presence is not None and presence.stream_id == "a"
    table.forget(A)
    assert table.is_empty()
