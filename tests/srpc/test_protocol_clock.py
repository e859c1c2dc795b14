"""SrpcProtocol without sockets: the time it is given, the in-flight limit, the close cause."""

from __future__ import annotations

from meshsrpc.srpc.frames import FrameSchema
from meshsrpc.srpc.protocol import (
    PingReceived,
    ProtocolViolation,
    RequestLimitExceeded,
    RequestReceived,
    SrpcProtocol,
)

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, UEchoRequest

PING = bytes.fromhex("0a001000920300")


def server_protocol(*, activated: bool = True, max_in_flight: int | None = None) -> SrpcProtocol:
    return SrpcProtocol(
        FrameSchema(ClientMessage),
        FrameSchema(ServerMessage),
        activated=activated,
        max_in_flight=max_in_flight,
    )


def echo(request_id: str) -> bytes:
    return bytes(ClientMessage(request_id=request_id, u_echo_request=UEchoRequest(message="x")))


def test_last_received_at_is_the_time_given_with_the_frame() -> None:
    protocol = server_protocol()
    protocol.mark_alive(10.0)
    assert protocol.last_received_at == 10.0
    protocol.receive(echo("a"), 12.5, 1_000)
    assert protocol.last_received_at == 12.5


def test_a_rejected_frame_still_counts_as_a_sign_of_life() -> None:
    protocol = server_protocol()
    assert isinstance(protocol.receive("text", 3.0, 1_000)[0], ProtocolViolation)
    assert protocol.last_received_at == 3.0


def test_a_ping_records_the_wall_clock_given() -> None:
    protocol = server_protocol()
    assert protocol.last_ping_at is None
    assert protocol.receive(PING, 1.0, 1_700_000_000_123) == [PingReceived()]
    assert protocol.last_ping_at == 1_700_000_000_123
    assert protocol.pings_received == 1


def test_a_request_that_is_not_a_ping_leaves_last_ping_at_alone() -> None:
    protocol = server_protocol()
    protocol.receive(PING, 1.0, 5_000)
    protocol.receive(echo("a"), 2.0, 9_000)
    assert protocol.last_ping_at == 5_000


def test_requests_handed_out_count_as_in_flight_until_done() -> None:
    protocol = server_protocol()
    protocol.receive(echo("a"), 1.0, 0)
    protocol.receive(echo("b"), 1.0, 0)
    assert protocol.in_flight == 2
    protocol.request_done()
    assert protocol.in_flight == 1


def test_the_request_over_the_limit_closes_the_stream() -> None:
    protocol = server_protocol(max_in_flight=2)
    assert len(protocol.receive(echo("a"), 1.0, 0)) == 1
    assert len(protocol.receive(echo("b"), 1.0, 0)) == 1
    events = protocol.receive(echo("c"), 1.0, 0)
    assert isinstance(events[0], RequestReceived)
    assert events[1] == RequestLimitExceeded(2)
    assert events[1].reason == "More than 2 requests in flight"


def test_a_finished_request_makes_room_under_the_limit() -> None:
    protocol = server_protocol(max_in_flight=1)
    protocol.receive(echo("a"), 1.0, 0)
    protocol.request_done()
    assert [type(e) for e in protocol.receive(echo("b"), 1.0, 0)] == [RequestReceived]


def test_requests_held_before_activation_count_against_the_limit() -> None:
    protocol = server_protocol(activated=False, max_in_flight=2)
    assert protocol.receive(echo("a"), 1.0, 0) == []
    assert protocol.receive(echo("b"), 1.0, 0) == []
    assert protocol.receive(echo("c"), 1.0, 0) == [RequestLimitExceeded(2)]


def test_activation_hands_out_the_held_requests_as_in_flight() -> None:
    protocol = server_protocol(activated=False)
    protocol.receive(echo("a"), 1.0, 0)
    protocol.receive(echo("b"), 1.0, 0)
    assert [e.request_id for e in protocol.activate()] == ["a", "b"]
    assert protocol.in_flight == 2 and protocol.queued_requests == 0


def test_the_first_close_cause_wins() -> None:
    protocol = server_protocol()
    assert protocol.close("conflict", "Client already connected") == (
        4001,
        "Client already connected",
    )
    assert protocol.close("timeout", "later") is None
    assert protocol.close_cause == "conflict"
    assert protocol.connection_lost(1000) == "conflict"


def test_close_with_an_explicit_code_and_a_long_reason() -> None:
    protocol = server_protocol()
    close = protocol.close("disconnect", "é" * 100, code=1011)
    assert close is not None
    code, reason = close
    assert code == 1011 and len(reason.encode()) <= 123


def test_a_lost_connection_takes_its_cause_from_the_close_code() -> None:
    protocol = server_protocol()
    assert protocol.connection_lost(4003) == "timeout"
    assert protocol.close("badArg") is None


def test_a_lost_connection_without_a_code_is_a_disconnect() -> None:
    assert server_protocol().connection_lost(None) == "disconnect"


def test_no_request_is_handed_out_once_closing() -> None:
    protocol = server_protocol()
    protocol.close("restart")
    assert protocol.receive(echo("a"), 1.0, 0) == []
    assert protocol.in_flight == 0


def test_a_closing_stream_still_gets_pings() -> None:
    protocol = server_protocol()
    protocol.close("restart")
    assert protocol.receive(PING, 1.0, 0) == [PingReceived()]


def test_activation_of_a_closing_stream_drops_the_held_requests() -> None:
    protocol = server_protocol(activated=False)
    protocol.receive(echo("a"), 1.0, 0)
    protocol.close("disconnect")
    assert protocol.activate() == []
    assert protocol.in_flight == 0


def test_a_refusing_protocol_hands_out_no_request() -> None:
    protocol = server_protocol(activated=False)
    protocol.receive(echo("a"), 1.0, 0)
    protocol.refuse_requests()
    assert protocol.activate() == []
    assert protocol.receive(echo("b"), 1.0, 0) == []
    assert protocol.close_cause is None


def test_request_ids_come_from_the_given_source() -> None:
    ids = iter(["r1", "r2"])
    protocol = SrpcProtocol(
        FrameSchema(ServerMessage), FrameSchema(ClientMessage), new_request_id=lambda: next(ids)
    )
    call = protocol.outgoing_call("uEcho")
    assert protocol.request(call, UEchoRequest(message="x"))[0] == "r1"
    assert protocol.pending_requests == ["r1"]
