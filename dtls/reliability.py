"""Handshake reliability: flights, fragmentation bookkeeping, reassembly, ACKs and the
retransmission timer (RFC 9147 §5.5, §5.8, §7).

Nothing here touches records or keys: `OutgoingFlight` says which byte ranges of which
messages still need sending and learns from ACKs which records carried what;
`HandshakeReassembler` turns fragments into complete messages in message_seq order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import IllegalParameter, RecordOverflow
from .messages import HandshakeFragment

RecordNumber = tuple[int, int]  # (epoch, sequence number), RFC 9147 §4

# Keep at most this many future messages (message_seq ahead of the next expected); RFC
# 9147 §5.2 lets a receiver discard them, and a flight is never longer than this.
MAX_FUTURE_MESSAGES = 16
# Separate pieces (gaps between them) one partial message may hold; a fragment that would
# start one more is dropped, not acknowledged (RFC 9147 §7), and comes again.
MAX_MESSAGE_PIECES = 32


class RetransmitTimer:
    """The retransmission timer value (RFC 9147 §5.8.2): starts at `initial`, doubles at
    each retransmission up to `maximum`, and becomes 1.5 x the measured round trip once a
    flight is acknowledged without retransmission."""

    __slots__ = ("initial", "maximum", "value")

    MIN_VALUE = 0.2  # above common delayed-ACK times (BoringSSL: 100 ms)

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.value = initial

    def back_off(self) -> None:
        self.value = min(self.value * 2, self.maximum)

    def measured(self, rtt: float) -> None:
        self.value = min(max(1.5 * rtt, self.MIN_VALUE), self.maximum)


class OutgoingMessage:
    """One handshake message of a flight and the byte ranges not yet acknowledged."""

    __slots__ = ("body", "epoch", "message_seq", "msg_type", "unacked")

    def __init__(self, epoch: int, msg_type: int, message_seq: int, body: bytes) -> None:
        self.epoch = epoch
        self.msg_type = msg_type
        self.message_seq = message_seq
        self.body = body
        # An empty message still needs one (empty) fragment.
        self.unacked: list[tuple[int, int]] = [(0, len(body))]

    def __repr__(self) -> str:
        return (
            f"OutgoingMessage(epoch={self.epoch}, msg_type={self.msg_type}, "
            f"message_seq={self.message_seq}, body={self.body!r}, unacked={self.unacked!r})"
        )


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


@dataclass(slots=True)
class ReceivedMessage:
    """A complete handshake message, ready for the state machine."""

    msg_type: int
    message_seq: int
    body: bytes
    epoch: int


class PartialMessage:
    """One handshake message being reassembled. It holds only the bytes received, as
    contiguous pieces (start, data) in order, never a buffer of the length a fragment
    claims (a 25-byte datagram can claim a 16 MB message)."""

    __slots__ = ("epoch", "length", "msg_type", "pieces", "received")

    def __init__(self, msg_type: int, length: int, epoch: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.epoch = epoch
        # sorted, disjoint and not adjacent: adjacent pieces are joined
        self.pieces: list[tuple[int, bytes | bytearray]] = []
        self.received = 0

    def new_bytes(self, offset: int, size: int) -> int:
        """How many of the bytes [offset, offset+size) are not held yet."""
        end = offset + size
        for start, data in self.pieces:
            stop = start + len(data)
            if start < end and stop > offset:
                size -= min(end, stop) - max(offset, start)
        return size

    def add(self, offset: int, fragment: bytes) -> int | None:
        """Keep the bytes of `fragment` not held yet: the number of bytes added, or None
        when it would start a piece over MAX_MESSAGE_PIECES (nothing is kept)."""
        end = offset + len(fragment)
        pieces = self.pieces
        if not pieces:
            if end == offset and self.length:
                return 0  # an empty fragment of a non-empty message adds nothing
            pieces.append((offset, fragment))  # often the whole message: no copy
            self.received = len(fragment)
            return self.received
        # The pieces this fragment overlaps or touches are joined with it.
        touched = [i for i, (s, d) in enumerate(pieces) if s <= end and s + len(d) >= offset]
        if not touched:
            if len(pieces) >= MAX_MESSAGE_PIECES:
                return None
            pieces.append((offset, fragment))
            pieces.sort(key=lambda p: p[0])
            self.received += len(fragment)
            return len(fragment)
        first, last = touched[0], touched[-1]
        start = min(offset, pieces[first][0])
        stop = max(end, pieces[last][0] + len(pieces[last][1]))
        held = sum(len(pieces[i][1]) for i in touched)
        grown = pieces[first][1]
        if first == last and pieces[first][0] == start and isinstance(grown, bytearray):
            joined = grown  # in-order arrival: grow in place
            joined.extend(fragment[len(joined) - (offset - start) :])
        else:
            joined = bytearray(stop - start)
            joined[offset - start : end - start] = fragment
            for i in touched:  # bytes already held win (RFC 9147 §5.5: they are the same)
                s, d = pieces[i]
                joined[s - start : s - start + len(d)] = d
        pieces[first : last + 1] = [(start, joined)]
        added = (stop - start) - held
        self.received += added
        return added

    @property
    def complete(self) -> bool:
        if self.length == 0:
            return bool(self.pieces)
        return self.received == self.length

    @property
    def body(self) -> bytes:
        """The whole message (when `complete`)."""
        return bytes(self.pieces[0][1]) if self.pieces else b""


class FragmentResult:
    """What `HandshakeReassembler.add` did with a fragment."""

    OLD = "old"  # message_seq below next_receive_seq: a retransmission (RFC 9147 §5.2)
    ACCEPTED = "accepted"  # processed or buffered: its record may be acknowledged (§7)
    DROPPED = "dropped"  # too far ahead, or over the buffer budget: not acknowledged


class HandshakeReassembler:
    """Reassembles handshake fragments (RFC 9147 §5.5) from out-of-order, overlapping and
    duplicate pieces, within a per-message and a per-connection memory bound. The bound
    counts the bytes held, which are never more than the bytes received."""

    __slots__ = ("_buffered", "_partial", "max_buffered", "max_message_size", "next_receive_seq")

    def __init__(self, max_message_size: int, max_buffered: int) -> None:
        self.next_receive_seq = 0
        self.max_message_size = max_message_size
        self.max_buffered = max_buffered
        # messages being reassembled, and those held whole until popped
        self._partial: dict[int, PartialMessage | ReceivedMessage] = {}
        self._buffered = 0

    @property
    def buffered(self) -> int:
        """Bytes of handshake messages held (partial or complete but not yet popped)."""
        return self._buffered

    def add(self, fragment: HandshakeFragment, epoch: int) -> str:
        # one unpacking, not an attribute read of the named tuple per field
        msg_type, length, seq, offset, fragment_length, data = fragment
        if seq < self.next_receive_seq:
            return FragmentResult.OLD
        if seq >= self.next_receive_seq + MAX_FUTURE_MESSAGES:
            return FragmentResult.DROPPED
        if length > self.max_message_size:
            raise RecordOverflow("handshake message exceeds the configured limit")
        partial = self._partial.get(seq)
        if partial is None:
            if offset == 0 and fragment_length == length:
                # The whole message in one fragment (the common case): complete at once.
                if self._buffered + length > self.max_buffered:
                    return FragmentResult.DROPPED
                self._partial[seq] = ReceivedMessage(msg_type, seq, bytes(data), epoch)
                self._buffered += length
                return FragmentResult.ACCEPTED
            partial = PartialMessage(msg_type, length, epoch)
        elif isinstance(partial, ReceivedMessage):
            # A copy of a message held whole: nothing to add (RFC 9147 §5.5).
            if partial.msg_type != msg_type or len(partial.body) != length:
                raise IllegalParameter("handshake fragments of one message disagree")
            if partial.epoch != epoch:
                raise IllegalParameter("handshake message spans epochs")
            return FragmentResult.ACCEPTED
        elif partial.msg_type != msg_type or partial.length != length:
            raise IllegalParameter("handshake fragments of one message disagree")
        elif partial.epoch != epoch:
            raise IllegalParameter("handshake message spans epochs")
        if self._buffered + partial.new_bytes(offset, len(data)) > self.max_buffered:
            return FragmentResult.DROPPED
        added = partial.add(offset, data)
        if added is None:
            return FragmentResult.DROPPED
        self._partial[seq] = partial
        self._buffered += added
        return FragmentResult.ACCEPTED

    def pop(self) -> ReceivedMessage | None:
        """The next complete in-order message, if there is one."""
        seq = self.next_receive_seq
        partial = self._partial.get(seq)
        if partial is None:
            return None
        if isinstance(partial, ReceivedMessage):
            del self._partial[seq]
            self._buffered -= len(partial.body)
            self.next_receive_seq = seq + 1
            return partial
        if not partial.complete:
            return None
        del self._partial[seq]
        self._buffered -= partial.received
        message = ReceivedMessage(
            partial.msg_type, self.next_receive_seq, partial.body, partial.epoch
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
