"""Stateless HelloRetryRequest cookies (RFC 9147 §5.1, RFC 9846 §4.2.2).

A cookie carries what the server needs to continue the handshake without having kept
state: the hash of the first ClientHello (it enters the transcript as message_hash), the
cipher suite and group the HelloRetryRequest selected, and when it was made (on the
wall clock, which the hosts of a fleet share: `Context.wall_clock`). It is
authenticated with HMAC-SHA256 under a rotating server key, bound to the client's
address, and accepted only for `lifetime` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

COOKIE_VERSION = 1
_MAC_LEN = 32
_FIXED = struct.Struct("!BQHHB")  # version, time in ms, suite, group, hash length
# HMAC-SHA256 keyed once per cookie key, copied per cookie (the key's pads are hashed
# once): the keys of the last few periods (two are live, RFC 9147 §5.1 rotation).
_KEYED: dict[bytes, Any] = {}
_KEYED_MAX = 8
# The last cookie found authentic: (cookie, address bytes, key, contents). A server
# checks a second ClientHello's cookie before it makes a connection, and the connection
# checks it again (RFC 9147 §5.1): the same bytes for the same address under a key still
# accepted need no second HMAC; freshness is checked each time.
_last_opened: tuple[bytes, bytes, bytes, CookieContents] | None = None


@dataclass(frozen=True)
class CookieContents:
    suite: int
    group: int  # 0 when the HelloRetryRequest selected no group
    client_hello_hash: bytes
    created: float


def _address_bytes(addr: Any) -> bytes:
    """What a cookie's MAC binds of the client's address. The one asked last is kept by
    identity: a front-end hands the same address object to the checks of one handshake."""
    global _last_address
    last = _last_address
    if last is not None and last[0] is addr:
        return last[1]
    address = repr(addr).encode()
    _last_address = (addr, address)
    return address


_last_address: tuple[Any, bytes] | None = None


def _mac(secret: bytes, address: bytes, body: bytes) -> bytes:
    """HMAC-SHA256(secret, address || body)."""
    keyed = _KEYED.get(secret)
    if keyed is None:
        if len(_KEYED) >= _KEYED_MAX:
            _KEYED.clear()
        keyed = _KEYED[secret] = hmac.new(secret, digestmod=hashlib.sha256)
    mac = keyed.copy()
    mac.update(address)
    mac.update(body)
    digest: bytes = mac.digest()
    return digest


def make_cookie(
    secret: bytes, addr: Any, wall: float, suite: int, group: int, client_hello_hash: bytes
) -> bytes:
    """A cookie made at wall-clock time `wall` (seconds since the epoch)."""
    body = (
        _FIXED.pack(COOKIE_VERSION, max(0, int(wall * 1000)), suite, group, len(client_hello_hash))
        + client_hello_hash
    )
    return body + _mac(secret, _address_bytes(addr), body)


def open_cookie(
    secrets: list[bytes], cookie: bytes, addr: Any, wall: float, lifetime: float
) -> CookieContents | None:
    """The cookie's contents if it is authentic, for this address, and fresh at
    wall-clock time `wall`; else None."""
    if len(cookie) < _FIXED.size + _MAC_LEN:
        return None
    global _last_opened
    address = _address_bytes(addr)
    last = _last_opened
    if (last is not None and last[1] == address and last[2] in secrets
            and hmac.compare_digest(last[0], cookie)):
        contents = last[3]
    else:
        body, mac = cookie[:-_MAC_LEN], cookie[-_MAC_LEN:]
        for secret in secrets:
            if hmac.compare_digest(_mac(secret, address, body), mac):
                break
        else:
            return None
        version, millis, suite, group, hash_len = _FIXED.unpack_from(body)
        if version != COOKIE_VERSION or len(body) != _FIXED.size + hash_len:
            return None
        contents = CookieContents(suite, group, bytes(body[_FIXED.size :]), millis / 1000)
        _last_opened = (bytes(cookie), address, secret, contents)
    created = contents.created
    if not (created - 1.0 <= wall <= created + lifetime):
        return None
    return contents
