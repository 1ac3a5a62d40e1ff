"""Events a `Connection` yields from `next_event()` (frozen dataclasses, aioquic style)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base class of connection events."""

    __slots__ = ()  # a subclass may do without a __dict__ (DataReceived)


@dataclass(frozen=True)
class HandshakeCompleted(Event):
    """The handshake finished (RFC 9846 §4.4.4); keys for application data are in place."""

    version: str
    cipher_suite: str
    group: str | None
    alpn_protocol: str | None
    peer_certificates: tuple[Any, ...] = field(repr=False, default=())
    resumed: bool = False
    early_data_accepted: bool = False


@dataclass(frozen=True, slots=True)  # one per record: no __dict__ to make and free
class DataReceived(Event):
    """One application-data record's content (RFC 9147 §6); `early` for 0-RTT data
    (RFC 9846 §2.3), which an attacker may have replayed."""

    data: bytes
    early: bool = False


def _data_received_in_python(data: bytes) -> DataReceived:
    """`DataReceived(data)`, its fields set directly rather than through the frozen
    dataclass __init__."""
    event: DataReceived = _object_new(DataReceived)
    _set_data(event, data)
    _set_early(event, False)
    return event


_object_new = object.__new__
# the slots' own setters, past the frozen __setattr__
_set_data = vars(DataReceived)["data"].__set__
_set_early = vars(DataReceived)["early"].__set__

data_received: Callable[[bytes], DataReceived] = _data_received_in_python
"""`DataReceived(data)` for one record received: where the C extension is built, one C
call that sets the slots (csrc/py_app_record.c)."""
try:
    from ._native import lib as _lib
except ImportError:  # the pure-Python record layer: the slot setters
    pass
else:
    if _lib.dtls_app_py_install() == 0:
        from ._native import instance_maker

        data_received = partial(instance_maker(DataReceived, ("early", "data")), False)


@dataclass(frozen=True, eq=False)
class DataReceivedBatch(Event):
    """Application-data records that `receive_datagrams` (or `receive_segments`) opened
    together (RFC 9147 §6), in order. `data` has one read-only view per record, made when
    first asked for; record i is also `buffer[offsets[i] : offsets[i] + lengths[i]]`, for
    code that wants no object per record. The buffer holds the whole run (nothing reuses
    it, but `receive_segments`' caller's own buffer; `bytes(view)` keeps one record
    without the rest). Other events keep their place: data after a KeyUpdate or an alert
    comes in a later batch."""

    buffer: memoryview  # read-only
    offsets: Sequence[int]
    lengths: Sequence[int]

    @property
    def data(self) -> tuple[memoryview, ...]:
        views: tuple[memoryview, ...] | None = self.__dict__.get("_views")
        if views is None:
            # slicing in a comprehension: no slice() call nor method-wrapper per record
            buffer, spans = self.buffer, zip(self.offsets, self.lengths, strict=True)
            views = tuple([buffer[at : at + n] for at, n in spans])
            self.__dict__["_views"] = views  # frozen: set once, past __setattr__
        return views

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.lengths)

    def __eq__(self, other: object) -> bool:  # the records, wherever they lie
        if other.__class__ is not DataReceivedBatch:
            return NotImplemented
        return self.data == other.data

    __hash__ = None  # type: ignore[assignment]

@dataclass(frozen=True)
class SessionTicketReceived(Event):
    """The server sent a NewSessionTicket (RFC 9846 §4.6.1): `session` resumes later."""

    session: Any = field(repr=False)


@dataclass(frozen=True)
class ConnectionIdsIssued(Event):
    """We gave the peer new CIDs (RFC 9147 §9): records carrying them are ours (a server
    endpoint routes them here)."""

    cids: tuple[bytes, ...]


@dataclass(frozen=True)
class ConnectionIdsRetired(Event):
    """The peer moved on to a CID we issued later: these older ones no longer reach this
    connection (a server endpoint drops their routes)."""

    cids: tuple[bytes, ...]


@dataclass(frozen=True)
class PeerAddressChanged(Event):
    """The peer moved: its new address answered a return routability check."""

    old: Any
    new: Any


@dataclass(frozen=True)
class KeyUpdated(Event):
    """Traffic keys moved to a new epoch (RFC 9147 §8): direction is "send" or "receive"."""

    direction: str
    epoch: int


@dataclass(frozen=True)
class AlertReceived(Event):
    """The peer sent an alert (RFC 9846 §6)."""

    level: int
    description: int


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The connection ended: by close_notify, a fatal alert either way, or a timeout."""

    reason: str
    alert: int | None = None
    by_peer: bool = False
    error: bool = False
