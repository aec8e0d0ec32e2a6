"""The sans-IO connection: two Connections joined by a fake link, no socket, no trio."""

from __future__ import annotations

import pytest

from daemon.connection import NEED_DATA, Connection, ConnectionClosed, Event, Role, State
from daemon.errors import ErrorCode
from daemon.wire import (
    PROTOCOL_VERSION,
    Call,
    Error,
    Frame,
    Hello,
    LocalProtocolError,
    Push,
    RemoteProtocolError,
    Reply,
    Welcome,
    encode,
)


class ConnectionPair:
    """A client and a daemon Connection, each's bytes fed straight to the other (h11's helper)."""

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.client = Connection(Role.CLIENT, "test-client")
        self.daemon = Connection(Role.DAEMON, "theaterd 9.9", max_frame=max_frame)

    def _peer(self, conn: Connection) -> Connection:
        return self.daemon if conn is self.client else self.client

    def send(self, conn: Connection, data: bytes) -> list[Event]:
        """Deliver ``data`` (from ``conn``) to the other side; the events it yields."""
        peer = self._peer(conn)
        peer.receive_data(data)
        return _events(peer)

    def handshake(self) -> Welcome:
        assert self.send(self.client, self.client.send(Hello(PROTOCOL_VERSION, "test"))) == [Hello(1, "test")]
        welcome = Welcome(PROTOCOL_VERSION, "theaterd 9.9", 42, 1000, self.daemon.max_frame)
        assert self.send(self.daemon, self.daemon.send(welcome)) == [welcome]
        assert self.client.state is State.OPEN and self.daemon.state is State.OPEN
        return welcome


def _events(conn: Connection) -> list[Event]:
    out: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        assert isinstance(event, (Hello, Welcome, Call, Reply, Error, Push, ConnectionClosed))
        out.append(event)
        if isinstance(event, ConnectionClosed):
            return out


# ---------------------------------------------------------------------------
# the handshake


def test_handshake_then_calls_and_replies_matched_by_id() -> None:
    p = ConnectionPair()
    welcome = p.handshake()
    assert p.client.welcome == welcome
    first, data1 = p.client.call("status")
    second, data2 = p.client.call("request", {"actor": "a", "msg": b"{}"})
    assert (first, second) == (1, 2)
    assert p.send(p.client, data1 + data2) == [Call(1, "status", {}), Call(2, "request", {"actor": "a", "msg": b"{}"})]
    assert p.client.unanswered == 2
    # out of order, as the daemon may answer
    assert p.send(p.daemon, p.daemon.send(Reply(2, b"{}")) + p.daemon.send(Error(1, 4, "slow"))) == [
        Reply(2, b"{}"), Error(1, 4, "slow")]
    assert p.client.unanswered == 0


def test_calls_may_follow_the_hello_before_the_welcome() -> None:
    p = ConnectionPair()
    data = p.client.send(Hello(PROTOCOL_VERSION, "x"))
    call_id, call = p.client.call("list")
    assert p.client.state is State.AWAITING_WELCOME
    events = p.send(p.client, data + call)
    assert events == [Hello(1, "x"), Call(call_id, "list", {})]


def test_bytes_may_arrive_one_at_a_time() -> None:
    p = ConnectionPair()
    data = p.client.send(Hello(PROTOCOL_VERSION))
    events: list[Event] = []
    for i in range(len(data)):
        assert p.daemon.buffered == i
        events += p.send(p.client, data[i : i + 1])
    assert events == [Hello(1, "")]
    assert p.daemon.buffered == 0


def test_a_wrong_version_breaks_the_connection_with_the_documented_message() -> None:
    p = ConnectionPair()
    p.daemon.receive_data(encode(Hello(2, "future")))
    with pytest.raises(RemoteProtocolError, match=r"^unsupported protocol version 2 \(theaterd 9.9 speaks 1\)$"):
        p.daemon.next_event()
    assert p.daemon.state is State.BROKEN
    # the daemon's one connection-level error may still go out; then nothing
    fatal = p.daemon.send(Error(None, ErrorCode.PROTOCOL, "unsupported protocol version 2"))
    assert p.daemon.state is State.CLOSED
    assert p.send(p.daemon, fatal) == [Error(None, 76, "unsupported protocol version 2")]
    assert p.client.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        p.daemon.send(Reply(1, None))


def test_a_welcome_with_another_version_is_refused_by_the_client() -> None:
    p = ConnectionPair()
    p.client.send(Hello(PROTOCOL_VERSION))
    p.client.receive_data(encode(Welcome(7, "theaterd 7", 1, 1)))
    with pytest.raises(RemoteProtocolError, match="speaks protocol version 7; this client speaks 1"):
        p.client.next_event()
    assert p.client.state is State.BROKEN


@pytest.mark.parametrize("first", [Call(1, "status"), Reply(1, None), Welcome(1, "x", 1, 1)])
def test_the_first_frame_must_be_a_hello(first: Frame) -> None:
    daemon = Connection(Role.DAEMON, "theaterd")
    daemon.receive_data(encode(first))
    with pytest.raises(RemoteProtocolError, match="^the first frame must be a hello$"):
        daemon.next_event()


def test_a_second_hello_or_any_non_call_from_a_client_is_a_remote_error() -> None:
    for frame in (Hello(1), Reply(3, None), Push(1, "x")):
        p = ConnectionPair()
        p.handshake()
        p.daemon.receive_data(encode(frame))
        with pytest.raises(RemoteProtocolError, match=f"^unexpected {type(frame).__name__.lower()} frame from a client$"):
            p.daemon.next_event()
        assert p.daemon.state is State.BROKEN


def test_an_error_before_the_welcome_is_an_event_and_closes() -> None:
    # the daemon refuses at once (another uid, too many connections): §5.1
    p = ConnectionPair()
    hello = p.client.send(Hello(PROTOCOL_VERSION))
    refusal = p.daemon.send(Error(None, ErrorCode.BUSY, "busy"))
    assert p.daemon.state is State.CLOSED
    assert p.send(p.daemon, refusal) == [Error(None, 75, "busy")]
    assert p.client.state is State.CLOSED
    assert hello  # (the client's hello went nowhere)


def test_a_client_expects_a_welcome_first() -> None:
    client = Connection(Role.CLIENT)
    client.send(Hello(PROTOCOL_VERSION))
    client.receive_data(encode(Reply(1, None)))
    with pytest.raises(RemoteProtocolError, match="expected a welcome frame, got Reply"):
        client.next_event()


# ---------------------------------------------------------------------------
# what each side may send


def test_local_misuse_is_a_local_error_and_changes_nothing() -> None:
    client = Connection(Role.CLIENT)
    with pytest.raises(LocalProtocolError, match="first frame must be a hello"):
        client.call("status")
    assert client.unanswered == 0
    daemon = Connection(Role.DAEMON, "theaterd")
    with pytest.raises(LocalProtocolError, match="first frame must be a welcome"):
        daemon.send(Welcome(1, "theaterd", 1, 1))  # no hello yet
    p = ConnectionPair()
    p.handshake()
    with pytest.raises(LocalProtocolError):
        p.daemon.send(Call(1, "status"))
    with pytest.raises(LocalProtocolError):
        p.client.send(Reply(1, None))
    with pytest.raises(LocalProtocolError, match="exceeds"):
        p.client.call("send", {"actor": "a", "msg": b"x" * (2 << 20)})
    assert p.client.unanswered == 0
    assert p.client.state is State.OPEN and p.daemon.state is State.OPEN


def test_a_call_id_in_use_cannot_be_reused() -> None:
    p = ConnectionPair()
    p.handshake()
    p.client.send(Call(5, "status"))
    with pytest.raises(LocalProtocolError, match="call id 5 is still in use"):
        p.client.send(Call(5, "list"))
    assert p.client.call("list")[0] == 6  # ids keep increasing past any the caller chose


def test_the_daemons_max_frame_comes_with_its_welcome() -> None:
    p = ConnectionPair(max_frame=4096)
    p.handshake()
    assert p.client.max_frame == 4096
    with pytest.raises(LocalProtocolError, match="4096-byte limit"):
        p.client.call("send", {"actor": "a", "msg": b"x" * 5000})
    with pytest.raises(LocalProtocolError, match="4096-byte limit"):
        p.daemon.send(Reply(1, b"x" * 5000))


# ---------------------------------------------------------------------------
# matching answers to calls (the client's side)


def test_answers_to_calls_never_made_are_remote_errors() -> None:
    for frame in (Reply(9, None), Error(9, 3, "no"), Push(9, "channel-message", {})):
        p = ConnectionPair()
        p.handshake()
        p.client.call("status")
        p.client.receive_data(encode(frame))
        with pytest.raises(RemoteProtocolError, match="call 9"):
            p.client.next_event()
        assert p.client.state is State.BROKEN


def test_a_second_reply_to_the_same_call_is_a_remote_error() -> None:
    p = ConnectionPair()
    p.handshake()
    call_id, _ = p.client.call("status")
    assert p.send(p.daemon, p.daemon.send(Reply(call_id, {}))) == [Reply(call_id, {})]
    p.client.receive_data(p.daemon.send(Reply(call_id, {})))
    with pytest.raises(RemoteProtocolError):
        p.client.next_event()


def test_pushes_belong_to_long_lived_calls_after_their_reply() -> None:
    p = ConnectionPair()
    p.handshake()
    channel, _ = p.client.call("channel-open", {"actor": "a", "msg": b"{}"})
    follow, _ = p.client.call("chain", {"actor": "a", "follow": True})
    plain, _ = p.client.call("chain", {"actor": "a"})
    assert not p.client.is_live(channel)
    frames: list[Frame] = [Reply(channel, {"channel": "ch_1"}), Reply(follow, []), Reply(plain, []),
              Push(channel, "channel-message", {"msg": b"1"}), Push(follow, "chain-event", {"seq": 1}),
              Error(channel, 70, "frame of N bytes exceeds the M-byte limit"),  # one lost push (§7.3)
              Push(channel, "channel-closed", {"reason": "x"})]
    assert p.send(p.daemon, b"".join(p.daemon.send(f) for f in frames)) == frames
    assert p.client.is_live(channel) and p.client.is_live(follow) and not p.client.is_live(plain)
    assert p.client.unanswered == 0
    p.client.receive_data(encode(Push(plain, "chain-event", {})))
    with pytest.raises(RemoteProtocolError, match="not open"):
        p.client.next_event()


def test_a_failed_long_lived_call_gets_no_pushes() -> None:
    p = ConnectionPair()
    p.handshake()
    channel, _ = p.client.call("channel-open", {"actor": "a", "msg": b"{}"})
    assert p.send(p.daemon, p.daemon.send(Error(channel, 1, "rejected"))) == [Error(channel, 1, "rejected")]
    assert not p.client.is_live(channel)


# ---------------------------------------------------------------------------
# the end of the stream


def test_eof_at_a_frame_boundary_is_connection_closed() -> None:
    p = ConnectionPair()
    p.handshake()
    p.client.receive_data(b"")
    assert p.client.next_event() == ConnectionClosed()
    assert p.client.state is State.CLOSED
    assert p.client.next_event() == ConnectionClosed()


def test_eof_in_the_middle_of_a_frame_is_a_remote_error() -> None:
    p = ConnectionPair()
    data = p.client.send(Hello(PROTOCOL_VERSION))
    p.daemon.receive_data(data[:-2])
    assert p.daemon.next_event() is NEED_DATA
    p.daemon.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=rf"in the middle of a frame \({len(data) - 2} bytes\)"):
        p.daemon.next_event()
    assert p.daemon.state is State.BROKEN


def test_malformed_bytes_break_the_connection_for_good() -> None:
    p = ConnectionPair()
    p.handshake()
    p.daemon.receive_data(b"\x00\x00\x00\x01\xff")
    with pytest.raises(RemoteProtocolError, match="malformed CBOR"):
        p.daemon.next_event()
    with pytest.raises(RemoteProtocolError):
        p.daemon.next_event()
    assert p.daemon.state is State.BROKEN


def test_a_frame_over_the_limit_is_refused_before_it_is_buffered() -> None:
    daemon = Connection(Role.DAEMON, "theaterd", max_frame=100)
    daemon.receive_data((101).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="exceeds the 100-byte limit"):
        daemon.next_event()
