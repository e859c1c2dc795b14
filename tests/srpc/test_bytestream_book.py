"""ByteStreamBook without sockets: ids, early data with its caps, expiry at given times."""

from __future__ import annotations

import pytest
from meshsrpc.srpc.bytestream_book import (
    ByteStreamBook,
    ByteStreamLimits,
    ChunkReceived,
    EarlyDataBudget,
    EarlyDataRefused,
    ReaderEnded,
    WriterRefused,
)

LIMITS = ByteStreamLimits(max_bytes_per_stream=10, max_bytes=15, max_streams=2, max_seconds=5.0)


def server_book(budget: EarlyDataBudget | None = None) -> ByteStreamBook:
    """The server's book: it writes even ids, reads the client's odd ones."""
    return ByteStreamBook(2, LIMITS, budget if budget is not None else EarlyDataBudget(100))


def test_writer_ids_count_up_by_two_from_the_first() -> None:
    book = server_book()
    assert [book.new_writer(), book.new_writer(), book.new_writer()] == [2, 4, 6]
    assert book.writers == {2, 4, 6}


def test_a_closed_writer_is_forgotten() -> None:
    book = server_book()
    book.writer_closed(book.new_writer())
    assert book.writers == frozenset()


def test_the_peers_destroy_of_our_substream_refuses_its_writer() -> None:
    book = server_book()
    stream_id = book.new_writer()
    assert book.receive(stream_id, "destroy", 0.0, error="no thanks") == [
        WriterRefused(stream_id, "no thanks")
    ]
    assert book.writers == frozenset()


def test_a_destroy_without_error_names_the_reader() -> None:
    book = server_book()
    stream_id = book.new_writer()
    assert book.receive(stream_id, "destroy", 0.0) == [
        WriterRefused(stream_id, "destroyed by reader")
    ]


def test_data_for_our_own_substream_is_ignored() -> None:
    book = server_book()
    stream_id = book.new_writer()
    assert book.receive(stream_id, "write", 0.0, chunk=b"x") == []
    assert book.receive(8, "destroy", 0.0) == []  # not one of ours (yet)


def test_data_for_an_open_reader_passes_through() -> None:
    book = server_book()
    assert book.open_reader(1).chunks == []
    assert book.receive(1, "write", 0.0, chunk=b"abc") == [ChunkReceived(1, b"abc")]
    assert book.readers == {1}


def test_finish_ends_the_reader() -> None:
    book = server_book()
    book.open_reader(1)
    assert book.receive(1, "finish", 0.0) == [ReaderEnded(1, None)]
    assert book.readers == frozenset()


def test_destroy_by_the_writer_fails_the_reader() -> None:
    book = server_book()
    book.open_reader(1)
    assert book.receive(1, "destroy", 0.0, error="changed my mind") == [
        ReaderEnded(1, "changed my mind")
    ]


def test_opening_a_reader_needs_an_id() -> None:
    with pytest.raises(ValueError, match="Missing stream ID"):
        server_book().open_reader(0)


def test_opening_a_second_reader_raises() -> None:
    book = server_book()
    book.open_reader(1)
    with pytest.raises(ValueError, match="Stream 1 already exists"):
        book.open_reader(1)


def test_early_data_is_kept_until_the_reader_opens() -> None:
    book = server_book()
    assert book.receive(1, "write", 0.0, chunk=b"early") == []
    assert book.receive(1, "write", 0.5, chunk=b" bird") == []
    assert book.waiting == {1} and book.early_bytes == 10
    early = book.open_reader(1)
    assert early.chunks == [b"early", b" bird"] and not early.finished
    assert book.waiting == frozenset() and book.early_bytes == 0


def test_an_early_finish_gives_a_finished_reader_that_is_not_kept() -> None:
    book = server_book()
    book.receive(1, "write", 0.0, chunk=b"all")
    book.receive(1, "finish", 0.0)
    early = book.open_reader(1)
    assert early.chunks == [b"all"] and early.finished
    assert book.readers == frozenset()


def test_an_early_destroy_fails_the_reader_later_without_an_answer() -> None:
    book = server_book()
    book.receive(1, "write", 0.0, chunk=b"abc")
    assert book.receive(1, "destroy", 0.0, error="gone") == []
    assert book.open_reader(1).error == "gone"


def test_early_data_over_the_substream_cap_fails_it() -> None:
    budget = EarlyDataBudget(100)
    book = server_book(budget)
    book.receive(1, "write", 0.0, chunk=b"123456")
    assert book.receive(1, "write", 0.0, chunk=b"123456") == [
        EarlyDataRefused(1, "too much data before a receiver existed", "stream")
    ]
    assert budget.refused["stream"] == 1 and budget.used == 0
    assert book.open_reader(1).error == "too much data before a receiver existed"


def test_early_data_over_the_connection_cap_fails_that_substream() -> None:
    book = server_book()
    book.receive(1, "write", 0.0, chunk=b"1234567890")
    events = book.receive(3, "write", 0.0, chunk=b"123456")
    assert events == [
        EarlyDataRefused(
            3, "too much data before a receiver existed on this connection", "connection"
        )
    ]
    assert book.waiting == {1}


def test_early_data_over_the_process_budget_fails_the_substream() -> None:
    budget = EarlyDataBudget(4)
    book = server_book(budget)
    assert book.receive(1, "write", 0.0, chunk=b"12345") == [
        EarlyDataRefused(1, "too much data before a receiver existed in this process", "process")
    ]
    assert budget.used == 0


def test_too_many_waiting_substreams_fail_the_next() -> None:
    book = server_book()
    book.receive(1, "write", 0.0, chunk=b"a")
    book.receive(3, "write", 0.0, chunk=b"b")
    assert book.receive(5, "write", 0.0, chunk=b"c") == [
        EarlyDataRefused(5, "too many byte streams waiting for a receiver", "streams")
    ]


def test_a_failed_substream_ignores_further_data() -> None:
    book = server_book()
    book.receive(1, "write", 0.0, chunk=b"12345678901")
    assert book.receive(1, "write", 0.0, chunk=b"x") == []
    assert book.waiting == frozenset()


def test_the_next_deadline_is_the_earliest_waiting_substream() -> None:
    book = server_book()
    assert book.next_deadline() is None
    book.receive(1, "write", 10.0, chunk=b"a")
    book.receive(3, "write", 12.0, chunk=b"b")
    assert book.next_deadline() == 15.0
    book.open_reader(1)
    assert book.next_deadline() == 17.0


def test_nothing_expires_before_its_deadline() -> None:
    book = server_book()
    book.receive(1, "write", 10.0, chunk=b"a")
    assert book.expire(14.999) == []
    assert book.waiting == {1}


def test_early_data_expires_at_its_deadline() -> None:
    budget = EarlyDataBudget(100)
    book = server_book(budget)
    book.receive(1, "write", 10.0, chunk=b"a")
    book.receive(3, "write", 12.0, chunk=b"b")
    assert book.expire(15.0) == [
        EarlyDataRefused(1, "no receiver within the time limit", "timeout")
    ]
    assert book.waiting == {3} and book.next_deadline() == 17.0
    assert budget.refused["timeout"] == 1
    assert book.open_reader(1).error == "no receiver within the time limit"


def test_a_later_data_chunk_does_not_move_the_deadline() -> None:
    book = server_book()
    book.receive(1, "write", 10.0, chunk=b"a")
    book.receive(1, "write", 14.0, chunk=b"b")
    assert book.next_deadline() == 15.0


def test_a_changed_time_limit_applies_to_new_substreams() -> None:
    book = server_book()
    book.max_seconds = 0.2
    book.receive(1, "write", 10.0, chunk=b"a")
    assert book.next_deadline() == pytest.approx(10.2)


def test_releasing_an_open_reader_tells_the_writer_once() -> None:
    book = server_book()
    book.open_reader(1)
    assert book.release_reader(1, "reader closed") is True
    assert book.release_reader(1, "reader closed") is False
    assert book.failure(1) == "reader closed"
    assert book.receive(1, "write", 0.0, chunk=b"late") == []


def test_closing_gives_the_early_data_back_to_the_budget() -> None:
    budget = EarlyDataBudget(100)
    book = server_book(budget)
    book.receive(1, "write", 0.0, chunk=b"12345")
    book.open_reader(3)
    book.new_writer()
    assert budget.used == 5
    book.close()
    assert budget.used == 0
    assert book.waiting == book.readers == book.writers == frozenset()
