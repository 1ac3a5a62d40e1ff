"""What the connection objects of the front-ends (`dtls.aio`, `dtls.sync`) share: the
negotiated parameters, and the state-change and alert callbacks."""

from __future__ import annotations

import contextlib
import errno
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from . import errors
from .connection import Connection, HandshakeState
from .events import ConnectionClosed, DataReceived, DataReceivedBatch, HandshakeCompleted
from .handshake import Address
from .iana import AlertDescription, AlertLevel
from .server import close_error
from .session import Session

logger = logging.getLogger("dtls")


class FrontEndConnection:
    """A front-end's view of one sans-I/O `Connection`."""

    max_queued: int  # each front-end's, for `_queue_data`

    def __init__(
        self,
        connection: Connection,
        link: Any,
        on_state_change: Callable[..., None] | None,
        on_alert: Callable[..., None] | None,
    ) -> None:
        self.connection = connection  # the sans-I/O engine
        self.on_state_change = on_state_change
        self.on_alert = on_alert
        self._state = connection.state
        self._link = link
        self._messages: deque[bytes] = deque()
        self._closed: ConnectionClosed | None = None
        self.handshake: HandshakeCompleted | None = None
        #: the newest session the server offered for resumption (RFC 9846 §4.6.1)
        self.session: Session | None = None
        #: messages dropped because `max_queued` were waiting
        self.dropped_messages = 0

    # ---- negotiated parameters ----
    @property
    def cipher_suite(self) -> str | None:
        return self.handshake.cipher_suite if self.handshake else None

    @property
    def group(self) -> str | None:
        return self.handshake.group if self.handshake else None

    @property
    def alpn_protocol(self) -> str | None:
        return self.connection.alpn_protocol

    @property
    def peer_certificates(self) -> tuple[Any, ...]:
        return self.connection.peer_certificates

    @property
    def server_name(self) -> str | None:
        return self.connection.server_name

    @property
    def peer_address(self) -> Address:
        return self.connection.peer_address

    @property
    def local_address(self) -> Address:
        return self._link.local_address

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # ---- as ssl.SSLSocket has them ----
    def version(self) -> str | None:
        """"DTLSv1.3" (None before the handshake completed)."""
        return self.connection.version()

    def cipher(self) -> tuple[str, str, int] | None:
        """(suite name, "DTLSv1.3", secret bits), e.g. ("TLS_AES_128_GCM_SHA256",
        "DTLSv1.3", 128)."""
        return self.connection.cipher()

    def selected_alpn_protocol(self) -> str | None:
        return self.connection.selected_alpn_protocol()

    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate: a dict shaped as `ssl.SSLSocket.getpeercert()`'s
        (empty when it was not verified), its DER with `binary_form`, or None when the
        peer sent none (PSK, resumption, raw public key)."""
        return self.connection.getpeercert(binary_form)

    def getpeername(self) -> Address:
        """The peer's address."""
        return self.connection.peer_address

    def fileno(self) -> int:
        """The UDP socket's file descriptor (a server's is shared by its connections)."""
        return int(self._link.fileno())

    def _queue_data(self, event: DataReceived | DataReceivedBatch) -> bool:
        """Keep a record's data, or a batch's, for `recv` as bytes (the batch's views share
        a buffer), dropping what exceeds `max_queued`. True if something was kept."""
        room = self.max_queued - len(self._messages)
        if event.__class__ is DataReceived:
            data: list[bytes] = [event.data] if room > 0 else []
            wanted = 1
        else:
            views = event.data
            wanted = len(views)
            data = list(map(bytes, views[:room] if room < wanted else views))
        self._messages.extend(data)
        self.dropped_messages += wanted - len(data)
        return bool(data)

    def _check_state(self) -> None:
        """Tell on_state_change when the engine's state moved since last looked at."""
        new = HandshakeState.CLOSED if self._closed is not None else self.connection.state
        old, self._state = self._state, new
        if new is not old:
            logger.debug("%s: state %s -> %s", self.peer_address, old.value, new.value)
        if new is not old and self.on_state_change is not None:
            call_safely(self.on_state_change, self, old, new)

    def _alert(self, level: int, description: int, by_peer: bool) -> None:
        if self.on_alert is not None:
            with contextlib.suppress(ValueError):
                level, description = AlertLevel(level), AlertDescription(description)
            call_safely(self.on_alert, self, level, description, by_peer)


def call_safely(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("callback %r failed", callback)


def handshake_error(closed: ConnectionClosed) -> Exception:
    """What a client's connect() raises for a handshake that ended this way: the server's
    fatal alert is a refusal (`dtls.errors.HandshakeRefused`), else as `close_error`."""
    if closed.error and closed.by_peer and closed.alert is not None:
        return errors.HandshakeRefused(closed.alert)
    return close_error(closed)


def nothing_listens(address: Address) -> ConnectionRefusedError:
    """The first datagram drew an ICMP port unreachable (ECONNREFUSED on a connected
    socket) before the peer said anything: connect() fails at once with this."""
    host, port = address[0], address[1]
    shown = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return ConnectionRefusedError(errno.ECONNREFUSED, f"nothing listens on {shown}")
