"""Stateless HelloRetryRequest cookies (RFC 9147 §5.1, RFC 9846 §4.2.2).

A cookie carries what the server needs to continue the handshake without having kept
state: the hash of the first ClientHello (it enters the transcript as message_hash), the
cipher suite and group the HelloRetryRequest selected, and when it was made (on the
wall clock, which the hosts of a fleet share: `Context.wall_clock`). It is
authenticated with HMAC-SHA256 under a rotating server key, bound to the client's
address, and accepted only for `lifetime` seconds.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass
from typing import Any

COOKIE_VERSION = 1
_MAC_LEN = 32
_FIXED = struct.Struct("!BQHHB")  # version, time in ms, suite, group, hash length


@dataclass(frozen=True)
class CookieContents:
    suite: int
    group: int  # 0 when the HelloRetryRequest selected no group
    client_hello_hash: bytes
    created: float


def _address_bytes(addr: Any) -> bytes:
    return repr(addr).encode()


def make_cookie(
    secret: bytes, addr: Any, wall: float, suite: int, group: int, client_hello_hash: bytes
) -> bytes:
    """A cookie made at wall-clock time `wall` (seconds since the epoch)."""
    body = (
        _FIXED.pack(COOKIE_VERSION, max(0, int(wall * 1000)), suite, group, len(client_hello_hash))
        + client_hello_hash
    )
    mac = hmac.digest(secret, _address_bytes(addr) + body, "sha256")
    return body + mac


def open_cookie(
    secrets: list[bytes], cookie: bytes, addr: Any, wall: float, lifetime: float
) -> CookieContents | None:
    """The cookie's contents if it is authentic, for this address, and fresh at
    wall-clock time `wall`; else None."""
    if len(cookie) < _FIXED.size + _MAC_LEN:
        return None
    body, mac = cookie[:-_MAC_LEN], cookie[-_MAC_LEN:]
    signed = _address_bytes(addr) + body
    if not any(hmac.compare_digest(hmac.digest(s, signed, "sha256"), mac) for s in secrets):
        return None
    version, millis, suite, group, hash_len = _FIXED.unpack_from(body)
    if version != COOKIE_VERSION or len(body) != _FIXED.size + hash_len:
        return None
    created = millis / 1000
    if not (created - 1.0 <= wall <= created + lifetime):
        return None
    return CookieContents(suite, group, bytes(body[_FIXED.size :]), created)
