"""dtls13: DTLS 1.3 (RFC 9147) for Python.

A sans-I/O engine (`Connection`) with a C record layer over OpenSSL's libcrypto, and
front-ends for asyncio (`dtls.aio`), blocking sockets (`dtls.sync`) and a virtual clock
(`dtls.sim`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Connection",
    "Context",
    "CookieMode",
    "HandshakeState",
    "__version__",
    "openssl_version",
    "respond_statelessly",
]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the pure-Python codecs load without the C extension.
    if name == "openssl_version":
        from ._native import ffi, lib

        value = ffi.string(lib.dtls_openssl_version()).decode()
        globals()[name] = value
        return value
    if name in ("Connection", "HandshakeState", "respond_statelessly"):
        from . import connection

        return getattr(connection, name)
    if name in ("Context", "CookieMode"):
        from . import config

        return getattr(config, name)
    raise AttributeError(f"module 'dtls' has no attribute {name!r}")
