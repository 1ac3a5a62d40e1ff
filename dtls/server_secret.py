"""The secret a server fleet shares: cookie and ticket keys by time period (RFC 5869 HKDF).

Every worker process of a host, and every host of a fleet, that holds the same master
secret derives the same keys for the same period of wall-clock time, so each accepts the
others' cookies (RFC 9147 §5.1) and session tickets (RFC 9846 §4.6.1) with no store:

    prk             = HKDF-Extract(salt = "dtls13 server secret", IKM = master)
    cookie key (p)  = HKDF-Expand(prk, "dtls13 cookie key" || uint64(p), 32)
    ticket key (p)  = HKDF-Expand(prk, "dtls13 ticket key" || uint64(p), 16)

with p = floor(wall-clock seconds / period): `Context.cookie_lifetime` for cookies,
`Context.ticket_key_rotation` for tickets. The key of the current period seals; the
current and the previous period's keys open. So a cookie or ticket is accepted for at
least one and at most two periods after it was made (the overlap), on every host whose
clock is within that of the others.
"""

from __future__ import annotations

import math
import os
import secrets
import stat
import struct
from pathlib import Path

from .errors import ConfigurationError
from .keyschedule import hkdf_expand, hkdf_extract

__all__ = ["MASTER_SECRET_LENGTH", "ServerSecret"]

MASTER_SECRET_LENGTH = 32
_SALT = b"dtls13 server secret"
COOKIE_LABEL = b"dtls13 cookie key"
TICKET_LABEL = b"dtls13 ticket key"
_PERIOD = struct.Struct("!Q")
_CACHE = 8  # derived keys kept per label


class ServerSecret:
    """A master secret and the keys derived from it (see the module docstring)."""

    def __init__(self, master: bytes) -> None:
        if len(master) < MASTER_SECRET_LENGTH:
            raise ConfigurationError(f"a server secret needs {MASTER_SECRET_LENGTH} bytes at least")
        self._prk = hkdf_extract("sha256", _SALT, bytes(master))
        self._derived: dict[tuple[bytes, int], bytes] = {}
        # the last period's cookie keys (period number, period length, keys): a server
        # asks for them a few times per handshake
        self._cookie_keys: tuple[int, float, list[bytes]] | None = None

    @classmethod
    def generate(cls) -> ServerSecret:
        return cls(secrets.token_bytes(MASTER_SECRET_LENGTH))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ServerSecret:
        """The secret in `path` (hex); a new one is written there (mode 0600) if the file
        does not exist. A file others may read is refused."""
        file = Path(path)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(MASTER_SECRET_LENGTH) + "\n")
        if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(f"{file}: the secrets file must not be readable by others")
        try:
            master = bytes.fromhex(file.read_text().strip())
        except ValueError:
            raise ConfigurationError(f"{file}: not a hex secret") from None
        return cls(master)

    def key(self, label: bytes, period: int, length: int) -> bytes:
        """The key for `label` in time period number `period`."""
        cached = self._derived.get((label, period))
        if cached is None:
            if len(self._derived) >= 2 * _CACHE:
                del self._derived[next(iter(self._derived))]
            cached = hkdf_expand("sha256", self._prk, label + _PERIOD.pack(period), length)
            self._derived[(label, period)] = cached
        return cached[:length]

    def cookie_keys(self, wall: float, period: float) -> list[bytes]:
        """The cookie keys at wall-clock time `wall`: this period's (it seals), then the
        previous one's (it still opens)."""
        p = period_of(wall, period)
        cached = self._cookie_keys
        if cached is None or cached[0] != p or cached[1] != period:
            keys = [self.key(COOKIE_LABEL, p, 32), self.key(COOKIE_LABEL, max(0, p - 1), 32)]
            cached = self._cookie_keys = (p, period, keys)
        return list(cached[2])

    def ticket_key(self, period: int) -> bytes:
        """The AES-128-GCM key sealing tickets in time period number `period`."""
        return self.key(TICKET_LABEL, period, 16)


def period_of(wall: float, period: float) -> int:
    """The number of the time period `wall` falls in (periods of `period` seconds)."""
    if period <= 0:
        raise ConfigurationError("a key rotation period must be positive")
    return max(0, math.floor(wall / period))
