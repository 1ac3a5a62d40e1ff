"""Pre-shared keys: external PSKs, session tickets and resumption (RFC 9846 §2.2, §4.6.1).

The server's tickets are self-contained: the resumption PSK and what the server needs to
resume are sealed with AES-128-GCM under a ticket key derived by time period from the server
secret (`dtls.server_secret`), so the server keeps no
per-session state. `Session` is what a client keeps and may save to a file.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keyschedule import suite_hash_name
from .server_secret import ServerSecret, period_of

_TICKET_VERSION = 2
_KEY_ID_LEN = 4
_KEY_ID = struct.Struct("!I")  # the number of the time period whose key sealed it
_NONCE_LEN = 12
# version, suite, issued (ms, wall clock), age_add, lifetime, max_early_data
_FIXED = struct.Struct("!BHQIII")


@dataclass(frozen=True)
class ExternalPsk:
    """An external PSK (RFC 9846 §4.2.11) and the hash it is used with."""

    identity: bytes
    key: bytes = field(repr=False)
    hash_name: str = "sha256"


@dataclass
class Session:
    """A resumable session from a NewSessionTicket (RFC 9846 §4.6.1), client side."""

    ticket: bytes
    psk: bytes = field(repr=False)
    cipher_suite: int
    age_add: int
    lifetime: int
    received_at: float  # wall-clock seconds
    max_early_data_size: int = 0
    server_name: str | None = None
    alpn_protocol: str | None = None

    @property
    def hash_name(self) -> str:
        return suite_hash_name(self.cipher_suite)

    def is_valid(self, now: float) -> bool:
        return 0 <= now - self.received_at <= self.lifetime

    def obfuscated_age(self, now: float) -> int:
        """RFC 9846 §4.2.11.1: age in ms plus age_add, modulo 2^32."""
        return (int((now - self.received_at) * 1000) + self.age_add) & 0xFFFFFFFF

    def to_bytes(self) -> bytes:
        """A serialised form for saving to a file (it holds a secret: protect it)."""
        data = asdict(self)
        data["ticket"] = base64.b64encode(self.ticket).decode()
        data["psk"] = base64.b64encode(self.psk).decode()
        return json.dumps(data).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Session:
        values = json.loads(data)
        values["ticket"] = base64.b64decode(values["ticket"])
        values["psk"] = base64.b64decode(values["psk"])
        return cls(**values)


@dataclass(frozen=True)
class TicketContents:
    """What a ticket carries back to the server that issued it."""

    cipher_suite: int
    issued: float  # wall-clock seconds
    age_add: int
    lifetime: int
    max_early_data_size: int
    psk: bytes = field(repr=False)
    alpn_protocol: str | None = None
    server_name: str | None = None
    #: who sealed it (`TicketKeys.issuer`): the only one that accepts its early data
    issuer: bytes = b""


class TicketKeys:
    """Keys that seal self-contained tickets (RFC 9846 §4.6.1 leaves the format to the
    server), derived by time period from a `ServerSecret` (so every worker and host
    holding it opens the others' tickets). The key of the ticket's issue period seals;
    tickets of the current and the previous period open, so a key opens tickets for one
    to two `rotation_interval`s. `issuer` (the host id and worker index, `dtls.cid`) is
    sealed into each ticket: 0-RTT is accepted only by the issuer (RFC 9846 §8)."""

    def __init__(
        self,
        rotation_interval: float = 3600.0,
        secret: ServerSecret | None = None,
        clock: Callable[[], float] = time.time,
        issuer: bytes = b"",
    ) -> None:
        self.rotation_interval = rotation_interval
        self.secret = secret if secret is not None else ServerSecret.generate()
        self.clock = clock
        self.issuer = issuer
        self._aead: dict[int, AESGCM] = {}

    def _key(self, period: int) -> AESGCM:
        aead = self._aead.get(period)
        if aead is None:
            if len(self._aead) >= 4:
                del self._aead[next(iter(self._aead))]
            aead = self._aead[period] = AESGCM(self.secret.ticket_key(period))
        return aead

    def seal(self, contents: TicketContents) -> bytes:
        period = period_of(contents.issued, self.rotation_interval)
        key_id = _KEY_ID.pack(period & 0xFFFFFFFF)
        aead = self._key(period)
        alpn = (contents.alpn_protocol or "").encode()
        name = (contents.server_name or "").encode()
        plaintext = (
            _FIXED.pack(
                _TICKET_VERSION,
                contents.cipher_suite,
                int(contents.issued * 1000),
                contents.age_add,
                contents.lifetime,
                contents.max_early_data_size,
            )
            + bytes([len(alpn)])
            + alpn
            + bytes([len(name)])
            + name
            + bytes([len(self.issuer)])
            + self.issuer
            + contents.psk
        )
        nonce = os.urandom(_NONCE_LEN)
        return key_id + nonce + aead.encrypt(nonce, plaintext, key_id)

    def open(self, ticket: bytes) -> TicketContents | None:
        """The contents of a ticket we sealed, or None for anything else."""
        if len(ticket) < _KEY_ID_LEN + _NONCE_LEN + 16 + _FIXED.size:
            return None
        key_id = bytes(ticket[:_KEY_ID_LEN])
        current = period_of(self.clock(), self.rotation_interval)
        (sealed,) = _KEY_ID.unpack(key_id)
        back = (current - sealed) & 0xFFFFFFFF
        if back > 1:
            return None  # sealed before the previous period (or in the future)
        aead = self._key(current - back)
        nonce = ticket[_KEY_ID_LEN : _KEY_ID_LEN + _NONCE_LEN]
        try:
            plain = aead.decrypt(nonce, ticket[_KEY_ID_LEN + _NONCE_LEN :], key_id)
        except InvalidTag:
            return None
        try:
            version, suite, issued, age_add, lifetime, max_early = _FIXED.unpack_from(plain)
            pos = _FIXED.size
            alpn = plain[pos + 1 : pos + 1 + plain[pos]].decode()
            pos += 1 + plain[pos]
            name = plain[pos + 1 : pos + 1 + plain[pos]].decode()
            pos += 1 + plain[pos]
            issuer = plain[pos + 1 : pos + 1 + plain[pos]]
            pos += 1 + plain[pos]
        except (struct.error, IndexError, UnicodeDecodeError):
            return None
        if version != _TICKET_VERSION:
            return None
        return TicketContents(
            suite,
            issued / 1000,
            age_add,
            lifetime,
            max_early,
            plain[pos:],
            alpn or None,
            name or None,
            issuer,
        )


class EarlyDataReplayFilter:
    """Server anti-replay for 0-RTT (RFC 9846 §8.2): each ClientHello (by its binder) is
    accepted once within the freshness window; older or repeated ones are refused."""

    def __init__(self, window: float = 10.0, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def accept(self, binder: bytes, now: float) -> bool:
        while self._seen:
            key, seen_at = next(iter(self._seen.items()))
            if seen_at + self.window > now:
                break
            del self._seen[key]
        if binder in self._seen or len(self._seen) >= self.capacity:
            return False  # a replay, or too many to remember: refuse 0-RTT, not the handshake
        self._seen[binder] = now
        return True
