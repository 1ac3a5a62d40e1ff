"""The record layer of one connection: epochs, their keys and counters (RFC 9147 §4).

Each epoch has its own keys and sequence numbers, one state per direction. Epoch 0 is
plaintext. Ciphers, replay windows and framing come from a crypto provider
(`dtls.provider`). Opening a datagram yields `InboundRecord`s; records that fail are
dropped and counted by reason (RFC 9147 §4.5.2), never raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from .iana import ContentType
from .provider import (
    ApplicationReceiverLike,
    ApplicationSenderLike,
    RecordCipherLike,
    RecordProvider,
    ReplayWindowLike,
    get_provider,
)
from .record_py import (
    PLAINTEXT_HEADER_LEN,
    Buffer,
    OpenError,
    RecordKind,
    single_plaintext_record,
)

RecordNumber = tuple[int, int]

# Epoch-0 records may only carry these (RFC 9147 §4.1).
_PLAINTEXT_TYPES = (ContentType.HANDSHAKE, ContentType.ALERT, ContentType.ACK)
_APPLICATION_DATA = int(ContentType.APPLICATION_DATA)
_PLAINTEXT_KIND = RecordKind.PLAINTEXT  # a module constant: an enum member's read is slower
# At most this many receiving epochs are kept (current plus previous ones for reordering).
MAX_RECEIVE_EPOCHS = 4
MAX_SEQUENCE = (1 << 48) - 1  # RFC 9147 §4.2.1


class SendEpoch:
    __slots__ = ("cipher", "epoch", "next_seq", "sealer", "secret")

    def __init__(self, epoch: int, cipher: RecordCipherLike | None, secret: bytes) -> None:
        self.epoch = epoch
        self.cipher = cipher
        self.secret = secret
        self.next_seq = 0
        # application data with the CID in use, one call a record (`RecordLayer.app_send`)
        self.sealer: ApplicationSenderLike | None = None


class ReceiveEpoch:
    __slots__ = ("cipher", "epoch", "expires", "failures", "opener", "secret", "window")

    def __init__(
        self, epoch: int, cipher: RecordCipherLike, window: ReplayWindowLike, secret: bytes
    ) -> None:
        self.epoch = epoch
        self.cipher = cipher
        self.window = window
        self.secret = secret
        self.expires: float | None = None
        self.failures = 0  # records that failed authentication (RFC 9147 §4.5.3)
        # datagrams of one record with the CID in use, one call each (`RecordLayer.app_receive`)
        self.opener: ApplicationReceiverLike | None = None


class InboundRecord(NamedTuple):
    epoch: int
    seq: int
    content_type: int
    payload: bytes


_new_inbound = partial(tuple.__new__, InboundRecord)


@dataclass
class RecordCounters:
    """Records and bytes through the layer, and drops by reason (RFC 9147 §4.5.2)."""

    records_sealed: int = 0
    bytes_sealed: int = 0
    records_opened: int = 0
    bytes_opened: int = 0
    malformed: int = 0
    replayed: int = 0
    failed_authentication: int = 0
    unknown_epoch: int = 0


class RecordLayer:
    """Keys and sequence numbers per epoch, in both directions."""

    __slots__ = (
        "_by_bits", "_counters", "_counting", "_from_secret", "_last_cid", "_newest",
        "_opened_type", "_receive_cid_len", "_replay_window", "_seal_plaintext", "_send_cid",
        "_split", "_unretired", "app_receive", "app_send", "provider", "receive_epochs",
        "replay_window", "retention", "send_epochs",
    )  # fmt: skip

    def __init__(
        self,
        replay_window: int = 128,
        retention: float = 240.0,
        provider: RecordProvider | str | None = None,
    ) -> None:
        # The application epoch's states with their one-call sealer / opener, set once a
        # record of it went the general way and nothing else is pending (the CID in use,
        # one receiving epoch); None whenever keys, CIDs or the provider change.
        self.app_send: SendEpoch | None = None
        self.app_receive: ReceiveEpoch | None = None
        self.set_provider(provider)
        self.replay_window = replay_window
        self.retention = retention
        self.send_epochs: dict[int, SendEpoch] = {0: SendEpoch(0, None, b"")}
        self.receive_epochs: dict[int, ReceiveEpoch] = {}
        self._send_cid: bytes | None = None
        self._receive_cid_len = 0
        self._last_cid = b""
        self._counters = RecordCounters()
        # the one-call senders and receivers whose counts are not all in _counters yet
        # (they count in C: `counters` adds them in when read)
        self._counting: list[tuple[bool, Any]] = []
        # the newest receiving epoch per low-two-bit value (RFC 9147 §4.2.2), and whether
        # an older epoch still waits for its retention clock (both kept up to date here)
        self._by_bits: dict[int, ReceiveEpoch] = {}
        self._unretired = False
        self._newest = 0

    @property
    def counters(self) -> RecordCounters:
        """Records and bytes through the layer, with those of the one-call paths."""
        if self._counting:
            self._add_app_counts()
        return self._counters

    def failed_authentication(self) -> int:
        """Records that failed authentication (RFC 9147 §4.5.3): `_count_failure` counts
        them for every path, so no C counts need adding in (`counters`). A method: read
        after every record opened in one call, and CPython 3.11 calls a property through
        its generic attribute look-up (~0.4k instructions more)."""
        return self._counters.failed_authentication

    def _add_app_counts(self) -> None:
        c = self._counters
        sending, receiving = self.app_send, self.app_receive
        current: list[tuple[bool, Any]] = []
        for sends, state in self._counting:
            records, length = state.take_counts()
            if sends:
                c.records_sealed += records
                c.bytes_sealed += length
                if sending is not None and state is sending.sealer:
                    current.append((sends, state))
            else:
                c.records_opened += records
                c.bytes_opened += length
                if receiving is not None and state is receiving.opener:
                    current.append((sends, state))
        self._counting = current

    @property
    def send_cid(self) -> bytes | None:
        """The CID the peer wants to receive (RFC 9147 §9)."""
        return self._send_cid

    @send_cid.setter
    def send_cid(self, cid: bytes | None) -> None:
        self._send_cid = cid
        self.app_send = None

    @property
    def receive_cid_len(self) -> int:
        """The length of the CID our records carry (RFC 9147 §9)."""
        return self._receive_cid_len

    @receive_cid_len.setter
    def receive_cid_len(self, length: int) -> None:
        self._receive_cid_len = length
        self.app_receive = None

    @property
    def last_cid(self) -> bytes:
        """The CID of the newest authentic record (RFC 9147 §9)."""
        return self._last_cid

    @last_cid.setter
    def last_cid(self, cid: bytes) -> None:
        self._last_cid = cid
        self.app_receive = None

    def set_provider(self, provider: RecordProvider | str | None) -> None:
        """Take ciphers and windows from `provider` (a name; None: `get_provider()`'s
        default) for the keys installed from now on."""
        if not isinstance(provider, RecordProvider):
            provider = get_provider(provider)
        self.provider = provider
        self.app_send = self.app_receive = None
        self._opened_type: Any = provider.opened_type
        self._split = provider.split_datagram
        self._seal_plaintext = provider.seal_plaintext
        self._replay_window = provider.replay_window
        # a cipher per installed epoch: the built-in providers' from_secret without the
        # dataclass method's frame, unless a subclass overrides cipher_from_secret
        self._from_secret: Any = (
            provider.cipher.from_secret
            if type(provider).cipher_from_secret is RecordProvider.cipher_from_secret
            else provider.cipher_from_secret
        )

    def _receive_epochs_changed(self) -> None:
        # at most MAX_RECEIVE_EPOCHS: plain loops, no generator per key install
        by_bits: dict[int, ReceiveEpoch] = {}
        newest = 0
        for epoch, state in sorted(self.receive_epochs.items()):
            by_bits[epoch & 3] = state
            newest = epoch
        self._by_bits = by_bits
        self._newest = newest
        self.app_receive = None
        self._update_unretired(newest)

    def _update_unretired(self, newest: int) -> None:
        # whether an epoch older than the newest still waits for its retention clock
        for epoch, state in self.receive_epochs.items():
            if epoch < newest and state.expires is None:
                self._unretired = True
                self.app_receive = None
                return
        self._unretired = False

    # ---- keys ----
    def install_send(self, epoch: int, suite: int, secret: bytes) -> None:
        cipher = self._from_secret(suite, secret)
        self.send_epochs[epoch] = SendEpoch(epoch, cipher, secret)
        self.app_send = None

    def install_receive(self, epoch: int, suite: int, secret: bytes) -> None:
        window = self._replay_window(self.replay_window)
        cipher = self._from_secret(suite, secret)
        state = ReceiveEpoch(epoch, cipher, window, secret)
        epochs = self.receive_epochs
        if epoch > self._newest and len(epochs) < MAX_RECEIVE_EPOCHS:
            # the next epoch (the usual case): the newest of its low bits, nothing dropped
            epochs[epoch] = state
            self._by_bits[epoch & 3] = state
            self._newest = epoch
            self.app_receive = None
            self._update_unretired(epoch)
            return
        epochs[epoch] = state
        while len(epochs) > MAX_RECEIVE_EPOCHS:
            del epochs[min(epochs)]
        self._receive_epochs_changed()

    def drop_send(self, epoch: int) -> None:
        self.send_epochs.pop(epoch, None)
        self.app_send = None

    def drop_receive(self, epoch: int) -> None:
        if self.receive_epochs.pop(epoch, None) is not None:
            self._receive_epochs_changed()

    def expire(self, now: float) -> None:
        for epoch in [e for e, s in self.receive_epochs.items() if s.expires and s.expires <= now]:
            self.drop_receive(epoch)

    def next_expiry(self) -> float | None:
        times = [s.expires for s in self.receive_epochs.values() if s.expires is not None]
        return min(times) if times else None

    # ---- sealing ----
    def was_sent(self, number: RecordNumber) -> bool:
        """Whether `number` may name a record we sealed: not in an epoch above our newest,
        nor at or beyond the next sequence number of an epoch we still hold (the numbers
        of an epoch already dropped are not kept)."""
        epoch, seq = number
        if epoch > max(self.send_epochs):
            return False
        state = self.send_epochs.get(epoch)
        return state is None or seq < state.next_seq

    def overhead(self, epoch: int) -> int:
        """Bytes a record in `epoch` adds around its content."""
        state = self.send_epochs[epoch]
        if state.cipher is None:
            return PLAINTEXT_HEADER_LEN
        cid = self._send_cid
        return state.cipher.sealed_len(0, cid_len=len(cid) if cid else None)

    def seal(self, epoch: int, content_type: int, payload: Buffer) -> tuple[bytes, RecordNumber]:
        state = self.send_epochs[epoch]
        seq = state.next_seq
        if seq > MAX_SEQUENCE:
            raise OverflowError("sequence numbers of this epoch are exhausted")
        state.next_seq = seq + 1
        if state.cipher is None:
            record = self._seal_plaintext(content_type, seq, payload, epoch)
        else:
            cid = self._send_cid or None
            record = state.cipher.seal(epoch, seq, content_type, payload, cid=cid)
        counters = self._counters
        counters.records_sealed += 1
        counters.bytes_sealed += len(record)
        if content_type == _APPLICATION_DATA and epoch >= 3 and self.app_send is not state:
            self._start_app_send(state)
        return record, (epoch, seq)

    def _start_app_send(self, state: SendEpoch) -> None:
        # application data goes in this epoch with this CID until either changes
        assert state.cipher is not None
        state.sealer = state.cipher.application_sender(state.epoch, self._send_cid)
        self._counting.append((True, state.sealer))
        self.app_send = state

    def seal_batch(self, epoch: int, content_type: int, payloads: Sequence[Buffer]) -> list[bytes]:
        """`seal` for many payloads of one epoch, with consecutive sequence numbers: one C
        call per ~64 KB (RFC 9147 §4)."""
        state = self.send_epochs[epoch]
        seq = state.next_seq
        if seq + len(payloads) - 1 > MAX_SEQUENCE:
            raise OverflowError("sequence numbers of this epoch are exhausted")
        if state.cipher is None:
            raise ValueError("batches are for protected epochs")
        if content_type == _APPLICATION_DATA and epoch >= 3:
            # the application sender (`app_send`), which counts what it seals
            if self.app_send is not state:
                self._start_app_send(state)
            sealer = state.sealer
            assert sealer is not None
            run = payloads if payloads.__class__ is list else list(payloads)
            records = sealer.seal_run(seq, run)
            state.next_seq = seq + len(payloads)
            return records
        cid = self.send_cid or None
        records = state.cipher.seal_run(epoch, seq, content_type, payloads, cid=cid)
        state.next_seq = seq + len(payloads)
        counters = self._counters
        counters.records_sealed += len(records)
        counters.bytes_sealed += sum(map(len, records))
        return records

    def seal_segments(
        self, epoch: int, content_type: int, data: Buffer, payload_len: int
    ) -> tuple[memoryview, int]:
        """`seal_batch` of `data` cut into `payload_len`-byte payloads (the last may be
        shorter), sealed straight into one new buffer at a fixed stride for UDP GSO
        (`RecordCipher.seal_segments`): (records, stride)."""
        state = self.send_epochs[epoch]
        seq = state.next_seq
        count = -(-len(data) // payload_len)
        if seq + count - 1 > MAX_SEQUENCE:
            raise OverflowError("sequence numbers of this epoch are exhausted")
        if state.cipher is None:
            raise ValueError("batches are for protected epochs")
        cid = self.send_cid or None
        records, stride = state.cipher.seal_segments(
            epoch, seq, content_type, data, payload_len, cid=cid
        )
        state.next_seq = seq + count
        counters = self._counters
        counters.records_sealed += count
        counters.bytes_sealed += len(records)
        return records, stride

    # ---- opening ----
    def open(self, data: Buffer, now: float) -> Iterable[InboundRecord]:
        """Every record of a datagram that deprotects, in order; the rest are counted.

        Lazy when the datagram holds several records: each is opened after the previous
        one was handled, since that may have installed the keys it needs (a ServerHello
        before EncryptedExtensions)."""
        if _single_ciphertext_record(data, self._receive_cid_len):
            # The common case after the handshake: one record fills the datagram.
            record = self._open_ciphertext(data, data[0] & 3, len(data), now)
            return () if record is None else (record,)
        if single_plaintext_record(data):
            # one DTLSPlaintext record fills the datagram (a ClientHello): what
            # `_open_records` makes of it, without splitting (RFC 9147 §4.1)
            if data[3] or data[4]:
                self._counters.unknown_epoch += 1
                return ()
            seq = int.from_bytes(data[5:11], "big")
            return (_new_inbound((0, seq, data[0], bytes(data[PLAINTEXT_HEADER_LEN:]))),)
        return self._open_records(data, now)

    def _open_records(self, data: Buffer, now: float) -> Iterator[InboundRecord]:
        counters = self._counters
        cid_len = self._receive_cid_len
        view = memoryview(data)
        spans, dropped = self._split_records(view, cid_len)
        base = 0
        while spans:
            for span in spans:
                start, end = base + span.offset, base + span.offset + span.length
                if span.kind == _PLAINTEXT_KIND:
                    if span.epoch != 0 or span.first_byte not in _PLAINTEXT_TYPES:
                        counters.unknown_epoch += 1
                        continue
                    payload = bytes(view[start + PLAINTEXT_HEADER_LEN : end])
                    yield InboundRecord(0, span.seq, span.first_byte, payload)
                else:
                    record = self._open_ciphertext(view[start:end], span.epoch, span.length, now)
                    if record is not None:
                        yield record
                if self._receive_cid_len != cid_len:
                    # RFC 9147 §9: the ServerHello that negotiated a CID is followed, in the
                    # same datagram, by records carrying it: split the rest again.
                    cid_len, base = self._receive_cid_len, end
                    spans, dropped = self._split_records(view[end:], cid_len)
                    break
            else:
                break
        if dropped:
            counters.malformed += 1

    def _split_records(self, data: memoryview, cid_len: int) -> tuple[list[Any], int]:
        """`split_datagram`, but 0-RTT records (epoch 1, C = 0) may follow a ClientHello
        that negotiated a CID: they were sealed before it was (RFC 9147 §9)."""
        spans, dropped = self._split(data, cid_len)
        while dropped and cid_len:
            at = len(data) - dropped
            if data[at] & 0xF3 != 0x21:  # a unified header without C, epoch bits 1
                break
            early = []
            for span in self._split(data[at:], 0)[0]:
                if span.kind != RecordKind.CIPHERTEXT or span.first_byte & 0xF3 != 0x21:
                    break
                early.append(span._replace(offset=span.offset + at))
            if not early:
                break
            spans.extend(early)
            end = early[-1].offset + early[-1].length
            more, dropped = self._split(data[end:], cid_len)
            spans.extend(span._replace(offset=span.offset + end) for span in more)
        return spans, dropped

    def _open_ciphertext(
        self, record: Any, bits: int, length: int, now: float
    ) -> InboundRecord | None:
        counters = self._counters
        state = self._by_bits.get(bits)
        if state is None:
            counters.unknown_epoch += 1
            return None
        cid_len = self._receive_cid_len
        if bits == 1 and not record[0] & 0x10:
            cid_len = 0  # 0-RTT: sealed before a CID was negotiated (RFC 9147 §9)
        # the provider's OpenedRecord (content_type, seq, plaintext), or an OpenError
        result = state.cipher.open(record, state.window, cid_len=cid_len)
        if result.__class__ is not self._opened_type:
            self._count_failure(state, result)
            return None
        if cid_len and record[0] & 0x10 and record[1 : 1 + cid_len] != self._last_cid:
            self.last_cid = bytes(record[1 : 1 + cid_len])  # the peer moved to another CID
        inbound = self._opened(state, result, length, now)
        if self.app_receive is None and state.epoch >= 3 and inbound[2] == _APPLICATION_DATA:
            # application data, not an ACK: the client's ACK of its Finished is followed
            # by the handshake keys' drop, which would discard the opener at once
            self._start_app_receive(state)
        return inbound

    def _start_app_receive(self, state: ReceiveEpoch) -> None:
        # RFC 9147 §4.2.2: one epoch to look at, the peer on the CID in use
        if (
            state.epoch == self._newest
            and not self._unretired
            and len(self._last_cid) == self._receive_cid_len
        ):
            state.opener = state.cipher.application_receiver(
                state.window, state.epoch & 3, self._last_cid or None
            )
            self._counting.append((False, state.opener))
            self.app_receive = state

    def _opened(self, state: ReceiveEpoch, result: Any, length: int, now: float) -> InboundRecord:
        counters = self._counters
        counters.records_opened += 1
        counters.bytes_opened += length
        if self._unretired:
            self._retire_older(state.epoch, now)
        content_type, seq, plaintext = result
        if plaintext.__class__ is not bytes:
            plaintext = bytes(plaintext)
        return _new_inbound((state.epoch, seq, content_type, plaintext))

    def app_opened(self, result: Any, length: int, now: float) -> tuple[InboundRecord, ...]:
        """What `open` yields for a `length`-byte datagram that `app_receive.opener.open`
        opened as other content (an OpenedRecord), or counts when it failed (an
        OpenError)."""
        state = self.app_receive
        assert state is not None
        if result.__class__ is not self._opened_type:
            self._count_failure(state, result)
            return ()
        return (self._opened(state, result, length, now),)

    def open_run(
        self, data: memoryview, lengths: Sequence[int], limit: int, now: float
    ) -> tuple[int, int, tuple[memoryview, list[int], list[int]] | None, InboundRecord | None]:
        """Open, in place in `data` (datagrams of these `lengths` back to back), the
        leading datagrams that hold only records of the application epoch the first one
        names, carrying the CID in use (if any), in one C call (`RecordCipher.open_run`);
        the rest are counted (RFC 9147 §4.5.2). Returns how many datagrams were taken
        whole (0 and no rest: the first needs `open`), where the records not taken of the
        next one begin (0: none were), where the application data lies in order (a
        read-only view of `data`, offsets, lengths; None: none), and the last record taken
        when it is other content or longer than `limit` (for the caller to handle after
        the data)."""
        bits = data[0] & 3 if lengths[0] else 0
        state = self._by_bits.get(bits)
        cid_len = self.receive_cid_len
        if state is None or state.epoch < 3 or len(self.last_cid) != cid_len:
            return 0, 0, None, None
        run = state.cipher.open_run(
            data, lengths, state.window, epoch_bits=bits, cid=self.last_cid or None,
            max_plaintext=limit,
        )  # fmt: skip
        status = run.status
        if not status:
            return 0, 0, None, None
        view, offsets, sizes, opened = run.data.toreadonly(), run.offsets, run.lengths, run.opened
        counters = self._counters
        counters.records_opened += opened
        counters.bytes_opened += run.opened_bytes
        if opened != len(status):  # drop and count the records that did not open
            kept = []
            for i, rc in enumerate(status):
                if rc:
                    self._count_failure(state, rc)
                else:
                    kept.append(i)
            offsets, sizes = [offsets[i] for i in kept], [sizes[i] for i in kept]
        last = None
        content_type = run.content_types[-1]
        if not status[-1] and (content_type != ContentType.APPLICATION_DATA or sizes[-1] > limit):
            at = offsets.pop()
            last = _new_inbound((state.epoch, run.seqs[-1], content_type,
                                 bytes(view[at : at + sizes.pop()])))  # fmt: skip
        if opened and self._unretired:
            self._retire_older(state.epoch, now)
        return run.datagrams, run.rest, (view, offsets, sizes) if sizes else None, last

    def _count_failure(self, state: ReceiveEpoch, error: Any) -> None:
        counters = self._counters
        if error == OpenError.REPLAYED:
            counters.replayed += 1
        elif error == OpenError.AUTH:
            counters.failed_authentication += 1
            state.failures += 1
        else:
            counters.malformed += 1

    def _retire_older(self, epoch: int, now: float) -> None:
        # RFC 9147 §8: keep the previous keys until the new ones have opened a record,
        # then for `retention` seconds.
        for state in self.receive_epochs.values():
            if state.epoch < epoch and state.expires is None:
                state.expires = now + self.retention
        self._update_unretired(max(self.receive_epochs))


def _single_ciphertext_record(data: Buffer, cid_len: int) -> bool:
    """True if `data` is exactly one DTLSCiphertext record (RFC 9147 §4: the unified
    header's first byte 001CSLEE; with L, its length must fill the datagram)."""
    if len(data) < 2:
        return False
    first = data[0]
    if first & 0xE0 != 0x20:
        return False
    if not first & 0x04:
        return True  # no length field: the record takes the rest of the datagram
    at = 1 + (cid_len if first & 0x10 else 0) + (2 if first & 0x08 else 1)
    return at + 2 <= len(data) and at + 2 + (data[at] << 8 | data[at + 1]) == len(data)
