"""Handshake reliability: flights, fragmentation bookkeeping, reassembly, ACKs and the
retransmission timer (RFC 9147 §5.5, §5.8, §7).

Nothing here touches records or keys: `OutgoingFlight` says which byte ranges of which
messages still need sending and learns from ACKs which records carried what;
`HandshakeReassembler` turns fragments into complete messages in message_seq order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import IllegalParameter, RecordOverflow
from .messages import HandshakeFragment

RecordNumber = tuple[int, int]  # (epoch, sequence number), RFC 9147 §4

# Keep at most this many future messages (message_seq ahead of the next expected); RFC
# 9147 §5.2 lets a receiver discard them, and a flight is never longer than this.
MAX_FUTURE_MESSAGES = 16


class RetransmitTimer:
    """The retransmission timer value (RFC 9147 §5.8.2): starts at `initial`, doubles at
    each retransmission up to `maximum`, and becomes 1.5 x the measured round trip once a
    flight is acknowledged without retransmission."""

    MIN_VALUE = 0.2  # above common delayed-ACK times (BoringSSL: 100 ms)

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.value = initial

    def back_off(self) -> None:
        self.value = min(self.value * 2, self.maximum)

    def measured(self, rtt: float) -> None:
        self.value = min(max(1.5 * rtt, self.MIN_VALUE), self.maximum)


@dataclass
class OutgoingMessage:
    """One handshake message of a flight and the byte ranges not yet acknowledged."""

    epoch: int
    msg_type: int
    message_seq: int
    body: bytes
    unacked: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # An empty message still needs one (empty) fragment.
        self.unacked = [(0, len(self.body))]


class OutgoingFlight:
    """A flight awaiting acknowledgment (RFC 9147 §5.8.1), or one post-handshake message
    with its own state machine (§5.8.4).

    `needs_ack` is False for flights that the peer's next flight acknowledges implicitly
    (§7.1); those are dropped by `implicitly_acknowledged()` rather than by ACKs.
    """

    def __init__(self, messages: list[OutgoingMessage], *, needs_ack: bool) -> None:
        self.messages = messages
        self.needs_ack = needs_ack
        self.records: dict[RecordNumber, list[tuple[int, int, int]]] = {}
        self.transmissions = 0  # 1 after the first sending, +1 per retransmission
        self.timeouts = 0  # retransmissions because the timer expired
        self.first_sent: float | None = None
        self.last_sent: float | None = None
        self.deadline: float | None = None

    @property
    def acknowledged(self) -> bool:
        return all(not m.unacked for m in self.messages)

    def unacked_ranges(self) -> Iterator[tuple[int, int, int]]:
        """(message index, start, end) of every byte range still unacknowledged."""
        for index, message in enumerate(self.messages):
            for start, end in message.unacked:
                yield index, start, end

    def record_sent(self, number: RecordNumber, index: int, start: int, end: int) -> None:
        self.records.setdefault(number, []).append((index, start, end))

    def on_ack(self, numbers: list[RecordNumber]) -> bool:
        """Mark what the acknowledged records carried; True if anything was new (§7.2)."""
        progress = False
        for number in numbers:
            for index, start, end in self.records.pop(number, ()):
                message = self.messages[index]
                remaining = _subtract(message.unacked, start, end)
                if remaining != message.unacked:
                    message.unacked = remaining
                    progress = True
        return progress


def _subtract(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    if start == end:  # an empty message's only fragment
        return [r for r in ranges if r != (start, end)]
    out = []
    for a, b in ranges:
        if b <= start or a >= end:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if b > end:
            out.append((end, b))
    return out


@dataclass
class ReceivedMessage:
    """A complete handshake message, ready for the state machine."""

    msg_type: int
    message_seq: int
    body: bytes
    epoch: int


class _PartialMessage:
    __slots__ = ("data", "epoch", "length", "msg_type", "ranges", "received")

    def __init__(self, msg_type: int, length: int, epoch: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.epoch = epoch
        self.data: bytes | bytearray = b""
        self.ranges: list[tuple[int, int]] = []
        self.received = 0

    def add(self, offset: int, fragment: bytes) -> None:
        end = offset + len(fragment)
        if not self.ranges and offset == 0 and end == self.length:
            self.data = bytes(fragment)  # the whole message in one fragment: no copy
            self.ranges = [(0, end)]
            self.received = end
            return
        data = self.data
        if not isinstance(data, bytearray):
            data = self.data = bytearray(data) if data else bytearray(self.length)
        data[offset:end] = fragment
        merged: list[tuple[int, int]] = []
        a, b = offset, end
        for x, y in self.ranges:
            if y < a or x > b:
                merged.append((x, y))
            else:
                a, b = min(a, x), max(b, y)
        merged.append((a, b))
        merged.sort()
        self.ranges = merged
        self.received = sum(y - x for x, y in merged)

    @property
    def complete(self) -> bool:
        return self.received == self.length and (self.length > 0 or bool(self.ranges))


class FragmentResult:
    """What `HandshakeReassembler.add` did with a fragment."""

    OLD = "old"  # message_seq below next_receive_seq: a retransmission (RFC 9147 §5.2)
    ACCEPTED = "accepted"  # processed or buffered: its record may be acknowledged (§7)
    DROPPED = "dropped"  # too far ahead, or over the buffer budget: not acknowledged


class HandshakeReassembler:
    """Reassembles handshake fragments (RFC 9147 §5.5) from out-of-order, overlapping and
    duplicate pieces, within a per-message and a per-connection memory bound."""

    def __init__(self, max_message_size: int, max_buffered: int) -> None:
        self.next_receive_seq = 0
        self.max_message_size = max_message_size
        self.max_buffered = max_buffered
        self._partial: dict[int, _PartialMessage] = {}
        self._buffered = 0

    def add(self, fragment: HandshakeFragment, epoch: int) -> str:
        seq = fragment.message_seq
        if seq < self.next_receive_seq:
            return FragmentResult.OLD
        if seq >= self.next_receive_seq + MAX_FUTURE_MESSAGES:
            return FragmentResult.DROPPED
        if fragment.length > self.max_message_size:
            raise RecordOverflow("handshake message exceeds the configured limit")
        partial = self._partial.get(seq)
        if partial is None:
            if self._buffered + fragment.length > self.max_buffered:
                return FragmentResult.DROPPED
            partial = _PartialMessage(fragment.msg_type, fragment.length, epoch)
            self._partial[seq] = partial
            self._buffered += fragment.length
        elif partial.msg_type != fragment.msg_type or partial.length != fragment.length:
            raise IllegalParameter("handshake fragments of one message disagree")
        elif partial.epoch != epoch:
            raise IllegalParameter("handshake message spans epochs")
        partial.add(fragment.fragment_offset, fragment.fragment)
        return FragmentResult.ACCEPTED

    def pop(self) -> ReceivedMessage | None:
        """The next complete in-order message, if there is one."""
        partial = self._partial.get(self.next_receive_seq)
        if partial is None or not partial.complete:
            return None
        del self._partial[self.next_receive_seq]
        self._buffered -= partial.length
        message = ReceivedMessage(
            partial.msg_type, self.next_receive_seq, bytes(partial.data), partial.epoch
        )
        self.next_receive_seq += 1
        return message

    def has_future(self) -> bool:
        """True if messages past the next expected one are buffered (a gap: §7.1)."""
        partial = self._partial  # max(), not any(generator): once per record received
        return bool(partial) and max(partial) > self.next_receive_seq

    def has_partial(self) -> bool:
        """True if a message is partly received (the rest of a flight is pending)."""
        return bool(self._partial)

    def restart_at(self, message_seq: int) -> None:
        """Expect `message_seq` next, dropping what is buffered: a server's first
        ClientHello may carry message_seq 0 or, after a stateless HRR, 1 (RFC 9147 §5.1)."""
        self._partial.clear()
        self._buffered = 0
        self.next_receive_seq = message_seq
