"""dtls13: DTLS 1.3 (RFC 9147) for Python.

A sans-I/O engine (`Connection`) with a C record layer over OpenSSL's libcrypto, and
front-ends for asyncio (`dtls.aio`), blocking sockets (`dtls.sync`) and a virtual clock
(`dtls.sim`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # What `__getattr__` loads lazily, for type checkers.
    from . import aio, sync
    from . import errors as errors
    from . import events as events
    from . import sim as sim
    from .config import Context, CookieMode
    from .connection import Connection
    from .handshake import HandshakeState
    from .handshake_server import respond_statelessly
    from .provider import ProviderInfo
    from .server import ServerEndpoint
    from .session import ExternalPsk, Session

    openssl_version: str

__version__ = "0.1.0"

__all__ = [
    "Connection",
    "Context",
    "CookieMode",
    "ExternalPsk",
    "HandshakeState",
    "ServerEndpoint",
    "Session",
    "__version__",
    "aio",
    "openssl_version",
    "providers",
    "respond_statelessly",
    "sync",
]

_LAZY = {
    "Connection": "connection",
    "HandshakeState": "handshake",
    "respond_statelessly": "handshake_server",
    "Context": "config",
    "CookieMode": "config",
    "ServerEndpoint": "server",
    "Session": "session",
    "ExternalPsk": "session",
}


def providers() -> list[ProviderInfo]:
    """The crypto providers (`dtls.provider`): name, description, the cipher suites each
    protects records with, whether it works here, and which one is the default."""
    from .provider import providers as listing

    return listing()


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the pure-Python codecs load without the C extension.
    if name == "openssl_version":
        from ._native import ffi, lib

        value = ffi.string(lib.dtls_openssl_version()).decode()
        globals()[name] = value
        return value
    if name in ("aio", "sync", "sim", "errors", "events"):
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dtls' has no attribute {name!r}")
