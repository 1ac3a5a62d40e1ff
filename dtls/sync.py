"""DTLS 1.3 on blocking sockets.

    with dtls.sync.connect(("127.0.0.1", 4433), ctx, server_name="localhost") as conn:
        conn.send(b"reading 42")
        reply = conn.recv(timeout=2.0)

    def handle(conn):
        for message in conn:
            conn.send(message)
    with dtls.sync.Server(("0.0.0.0", 4433), srv_ctx, handle) as server:
        server.serve_forever()

Threads: every socket has one I/O thread (a client connection's runs in the background;
a server's is the one in `serve_forever`). It waits in select() for the socket or the
next engine timer, reads datagrams in batches (recvmmsg; one recvfrom at a time without
the C extension), feeds the engine, fires its timers and sends replies. So
retransmissions, ACKs and KeyUpdates are answered on time even when the application reads
nothing. Application threads call `send`, `recv`, `update_keys` and `close`; one lock per
socket guards the engine. `send` seals and sends in the calling thread; `recv` waits for
the I/O thread to deliver. One reader thread and one writer thread may use a connection
at the same time.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import errors
from .config import Context
from .connection import Connection, HandshakeState
from .events import (
    AlertReceived,
    ConnectionClosed,
    DataReceived,
    DataReceivedBatch,
    Event,
    HandshakeCompleted,
    KeyUpdated,
    SessionTicketReceived,
)
from .frontend import FrontEndConnection, call_safely, handshake_error, nothing_listens
from .iana import AlertDescription, AlertLevel

try:
    from .record import enable_gro, receive_datagrams, send_datagrams
except ImportError:  # no C extension: plain recvfrom / sendto, no GRO
    from .record_py import receive_datagrams, send_datagrams

    enable_gro = None  # type: ignore[assignment]
from .server import (
    ConnectionEvent,
    ConnectionRemoved,
    EndpointStats,
    HandshakeFailed,
    ServerEndpoint,
    close_error,
)
from .session import Session

__all__ = ["Server", "SyncConnection", "connect"]

logger = logging.getLogger("dtls.sync")

Address = Any
Handler = Callable[["SyncConnection"], object]
#: on_state_change(conn, old, new): the engine's state moved (RFC 9846 Appendix A)
StateCallback = Callable[["SyncConnection", HandshakeState, HandshakeState], None]
#: on_alert(conn, level, description, by_peer): an alert arrived, or we ended the
#: connection with one (RFC 9846 §6)
AlertCallback = Callable[["SyncConnection", int, int, bool], None]
#: on_handshake_failed(address, alert, reason): a server's handshake failed after the
#: cookie (`dtls.server.HandshakeFailed`: alert an AlertDescription, None for a timeout)
HandshakeFailedCallback = Callable[[Any, "AlertDescription | int | None", str], None]

RECEIVE_BATCH = 32
READS_PER_WAKEUP = 8
SEND_STALL = 2.0  # seconds a full socket buffer may block a sender before datagrams drop
SOCKET_BUFFER = 1 << 21


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class _Link:
    """One non-blocking UDP socket, its lock, and the I/O loop that serves it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.lock = threading.RLock()
        self.local_address = sock.getsockname()
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        # UDP GRO (Linux): a burst from one peer arrives in one receive, split in _read
        self.gro = enable_gro is not None and enable_gro(sock)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sleeping_until: float | None = None
        self._stopping = False
        self._loop_running = False
        self._loop_exited = threading.Event()
        self._loop_exited.set()
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    # ---- to be provided ----
    def _receive(self, batch: list[tuple[bytes, Address]], now: float) -> None:
        raise NotImplementedError

    def _handle_timer(self, now: float) -> None:
        raise NotImplementedError

    def _receive_error(self, exc: OSError) -> None:
        """The socket reported an error (lock not held)."""

    def _timer(self) -> float | None:
        raise NotImplementedError

    def flush(self) -> None:
        """Send what the engines have to send and deliver their events (lock held)."""
        raise NotImplementedError

    def changed(self, connection: Connection) -> None:
        """The application called send/update_keys/close on `connection` (lock held)."""
        raise NotImplementedError

    def connection_closed(self) -> None:
        """The application closed a connection (lock not held)."""

    # ---- the loop ----
    def run_loop(self) -> None:
        with self.lock:
            if self._loop_running:
                raise RuntimeError("this socket is already served by another thread")
            self._loop_exited.clear()
            selector = selectors.DefaultSelector()
            selector.register(self.sock, selectors.EVENT_READ, "socket")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self._loop_running = True
        try:
            while not self._stopping:
                with self.lock:
                    timer = self._timer()
                    self._sleeping_until = timer
                wait = None if timer is None else max(0.0, timer - time.monotonic())
                ready = selector.select(wait)
                batch: list[tuple[bytes, Address]] = []
                for key, _ in ready:
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        batch = self._read()
                with self.lock:
                    self._sleeping_until = None
                    if self._stopping:
                        break
                    now = time.monotonic()
                    if batch:
                        self._receive(batch, now)
                    timer = self._timer()
                    if timer is not None and timer <= now:
                        self._handle_timer(now)
                    self.flush()
        except Exception:
            logger.exception("DTLS I/O loop failed")
            raise
        finally:
            selector.close()
            self._loop_running = False
            self._loop_exited.set()

    def _read(self) -> list[tuple[bytes, Address]]:
        batch: list[tuple[bytes, Address]] = []
        for _ in range(READS_PER_WAKEUP):
            try:
                got = receive_datagrams(self.fd, RECEIVE_BATCH)
            except OSError as exc:  # e.g. ICMP port unreachable on a connected socket
                logger.debug("receive: %s", exc)
                self._receive_error(exc)
                break
            if self.gro:  # each run's datagrams (buffer_size leaves room for any run)
                batch.extend((bytes(x), d.address) for d in got for x in d.datagrams())
            else:
                batch.extend((bytes(d.data), d.address) for d in got)
            if len(got) < RECEIVE_BATCH:
                break
        return batch

    def wake(self) -> None:
        """Make the loop look at its timer again (after the application moved it)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def timer_changed(self) -> None:
        if not self._loop_running:
            return
        timer = self._timer()
        sleeping = self._sleeping_until
        if timer is not None and (sleeping is None or timer < sleeping):
            self.wake()

    def stop_loop(self, wait: bool = True) -> None:
        self._stopping = True
        self.wake()
        if wait and self._loop_running:
            self._loop_exited.wait()

    def send(self, datagrams: Sequence[tuple[bytes, Address]]) -> None:
        """Send, blocking (for SEND_STALL at most) while the socket buffer is full."""
        pending = list(datagrams)
        stall_until: float | None = None
        while pending and not self.closed:
            try:
                sent = send_datagrams(self.fd, pending)
            except OSError as exc:  # no route, too big...: drop this one (DTLS recovers)
                logger.debug("send to %s: %s", pending[0][1], exc)
                sent = 1
            if sent:
                pending = pending[sent:]
                stall_until = None
                continue
            now = time.monotonic()
            if stall_until is None:
                stall_until = now + SEND_STALL
            elif now >= stall_until:
                logger.debug("socket buffer full: %d datagrams dropped", len(pending))
                return
            _wait_writable(self.sock, stall_until - now)

    def close_socket(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()


def _wait_writable(sock: socket.socket, timeout: float) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        selector.select(max(0.0, timeout))


# ---- the connection object applications use ----


class SyncConnection(FrontEndConnection):
    """One DTLS connection on a blocking API, client or server side.

    `send` sends one message (one record), `recv` returns one. Iterating yields messages
    until the peer closes. Safe for one reader and one writer thread at once.

    For callbacks rather than polling, set `on_state_change` and `on_alert` (or pass them
    to `connect` / `Server`). They run on the socket's I/O thread with the socket's lock
    held: keep them short, and do not wait in them for this connection (`recv`,
    `update_keys`); an exception from one is logged and ignored.
    """

    #: messages received but not yet read, at most; more are dropped (datagram semantics)
    max_queued = 4096

    def __init__(
        self,
        connection: Connection,
        link: _Link,
        *,
        on_state_change: StateCallback | None = None,
        on_alert: AlertCallback | None = None,
    ) -> None:
        super().__init__(connection, link, on_state_change, on_alert)
        self._cond = threading.Condition(link.lock)
        self._send_epoch_target = 0

    def export_keying_material(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """RFC 9846 §7.5 exporter (RFC 9147 §5.9)."""
        with self._cond:
            return self.connection.export_keying_material(label, context, length)

    # ---- data ----
    def send(self, data: bytes) -> None:
        """Send one message (one record of up to 16384 bytes, RFC 9846 §5.1)."""
        with self._cond:
            self._wait_sendable()
            self.connection.send(data)
            self._link.changed(self.connection)

    def send_batch(self, messages: Sequence[bytes]) -> None:
        """`send` for many messages, in order: their records are sealed together
        (`Connection.send_batch`)."""
        with self._cond:
            self._wait_sendable()
            self.connection.send_batch(messages)
            self._link.changed(self.connection)

    def recv(self, timeout: float | None = None) -> bytes:
        """The next message, waiting up to `timeout` seconds (None: for ever); raises
        TimeoutError when none came. Once the connection is closed and nothing is left it
        raises `dtls.errors.ConnectionStateError` (orderly close) or the error."""
        deadline = _deadline(timeout)
        with self._cond:
            while not self._messages:
                if self._closed is not None:
                    raise close_error(self._closed)
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no message received in time")
                self._cond.wait(remaining)
            return self._messages.popleft()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                yield self.recv()
            except errors.ConnectionStateError:
                return

    def wait_session(self, timeout: float | None = None) -> Session:
        """The session the server offered for resumption (RFC 9846 §4.6.1): the newest
        one, else the first NewSessionTicket to arrive within `timeout` seconds (None:
        for ever; TimeoutError after). Raises as `recv` does once the connection closed
        without one."""
        if not self.connection.is_client:
            raise ValueError("only a client receives session tickets")
        deadline = _deadline(timeout)
        with self._cond:
            while self.session is None:
                self._check_open()
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no session ticket in time")
                self._cond.wait(remaining)
            return self.session

    def update_keys(self, request_peer_update: bool = True, timeout: float | None = 30.0) -> None:
        """Send a KeyUpdate (RFC 9147 §8) and wait until it is acknowledged and our
        sending keys have moved to the next epoch."""
        deadline = _deadline(timeout)
        with self._cond:
            self._check_open()
            target = self.connection.send_epoch + 1
            self.connection.update_keys(request_peer_update=request_peer_update)
            self._link.changed(self.connection)
            while self.connection.send_epoch < target:
                self._check_open()
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("KeyUpdate not acknowledged in time")
                self._cond.wait(remaining)

    def close(self) -> None:
        """Send close_notify (RFC 9846 §6.1) and release the connection (a client's
        socket and I/O thread too)."""
        with self._cond:
            if self._closed is None:
                self.connection.close()
                self._link.changed(self.connection)
        self._link.connection_closed()

    def __enter__(self) -> SyncConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.connection.state.value
        return f"<SyncConnection {self.peer_address!r} {state} {self.cipher_suite or ''}>"

    def _wait_sendable(self) -> None:
        """Wait while the AEAD limit holds sending until the KeyUpdate's ACK (RFC 9147
        §4.5.3); its retransmissions give up by closing the connection."""
        self._check_open()
        while self.connection.send_blocked:
            self._cond.wait()
            self._check_open()

    # ---- from the link (lock held) ----
    def _check_open(self) -> None:
        if self._closed is not None:
            raise close_error(self._closed)

    def _event(self, event: Event) -> None:
        if isinstance(event, DataReceived | DataReceivedBatch):
            self._queue_data(event)
        elif isinstance(event, HandshakeCompleted):
            self.handshake = event
            self._check_state()
        elif isinstance(event, SessionTicketReceived):
            self.session = event.session
        elif isinstance(event, AlertReceived):
            self._alert(event.level, event.description, True)
            return
        elif isinstance(event, ConnectionClosed):
            if event.error and event.alert is not None and not event.by_peer:
                self._alert(AlertLevel.FATAL, event.alert, False)  # the one we sent
            self._set_closed(event)
            return
        elif not isinstance(event, KeyUpdated):
            return
        self._cond.notify_all()

    def _set_closed(self, event: ConnectionClosed) -> None:
        if self._closed is None:
            self._closed = event
            self._check_state()
        self._cond.notify_all()


# ---- client ----


class _ClientLink(_Link):
    def __init__(self, sock: socket.socket, connection: Connection, **callbacks: Any) -> None:
        super().__init__(sock)
        self.engine = connection
        self.conn = SyncConnection(connection, self, **callbacks)
        self._thread = threading.Thread(target=self._run, name="dtls-client-io", daemon=True)
        self._heard_from_peer = False
        #: set when the first datagrams drew ICMP port unreachable (see connect)
        self.refused: ConnectionRefusedError | None = None

    def start(self, addr: Address) -> None:
        with self.lock:
            self.engine.connect(addr, time.monotonic())
            self.flush()
        self._thread.start()

    def _run(self) -> None:
        try:
            self.run_loop()
        finally:
            with self.lock:
                self.conn._set_closed(ConnectionClosed("closed"))
            self.close_socket()

    def _receive(self, batch: list[tuple[bytes, Address]], now: float) -> None:
        self._heard_from_peer = True
        self.engine.receive_datagrams(batch, now)

    def _receive_error(self, exc: OSError) -> None:
        # ICMP port unreachable before the server said anything: nobody is there
        with self.lock:
            if (isinstance(exc, ConnectionRefusedError) and not self._heard_from_peer
                    and self.conn.handshake is None):
                self.refused = nothing_listens(self.engine.peer_address)
                logger.info("%s", self.refused.strerror)
                self.conn._cond.notify_all()

    def _handle_timer(self, now: float) -> None:
        self.engine.handle_timer(now)

    def _timer(self) -> float | None:
        return self.engine.get_timer()

    def changed(self, connection: Connection) -> None:
        self.flush()
        self.timer_changed()

    def flush(self) -> None:
        engine = self.engine
        self.send(engine.datagrams_to_send(time.monotonic()))
        while (event := engine.next_event()) is not None:
            self.conn._event(event)
        self.conn._check_state()  # handshake states move without events
        if engine.state is HandshakeState.CLOSED:
            self.stop_loop(wait=False)

    def connection_closed(self) -> None:
        self.abort()

    def abort(self) -> None:
        self.stop_loop(wait=False)
        if self._thread.ident is not None and threading.current_thread() is not self._thread:
            self._thread.join()
        if not self._thread.is_alive():
            self.close_socket()


def connect(
    address: tuple[str, int] | None,
    context: Context,
    *,
    server_name: str | None = None,
    timeout: float | None = 30.0,
    source_address: tuple[str, int] | None = None,
    session: Session | None = None,
    early_data: Sequence[bytes] = (),
    sock: socket.socket | None = None,
    on_state_change: StateCallback | None = None,
    on_alert: AlertCallback | None = None,
) -> SyncConnection:
    """Connect to (host, port) and complete the handshake. `server_name` (default: the
    host) is sent as SNI and checked against the certificate. Raises a `dtls.errors`
    exception when the handshake fails, TimeoutError when it takes over `timeout` s.
    `source_address` binds the local end first, as in socket.create_connection;
    `session` (a previous connection's `.session`) asks for resumption.
    `early_data` messages go before the handshake completes: as 0-RTT when the context
    allows it (`early_data=True`) and the session admits it (check
    `conn.handshake.early_data_accepted`), else right after it.
    `sock`: run over this UDP socket of the caller's (connected to `address` unless it
    is connected already; `address` may then be None); the connection owns it from here
    and closes it. `on_state_change` and `on_alert` are set before the handshake starts
    (see `SyncConnection`)."""
    if not context.is_client:
        raise ValueError("connect() needs a client context")
    sock, addr, host = _client_socket(address, sock, source_address)
    try:
        engine = Connection(context, server_name=server_name or host, peer_address=addr,
                            session=session)
        link = _ClientLink(sock, engine, on_state_change=on_state_change, on_alert=on_alert)
    except BaseException:
        sock.close()
        raise
    for message in early_data:
        engine.send(message)  # queued: 0-RTT or sent on completion (RFC 9846 §2.3)
    conn = link.conn
    deadline = _deadline(timeout)
    try:
        link.start(addr)
        with conn._cond:
            while conn.handshake is None:
                if link.refused is not None:
                    raise link.refused
                if conn._closed is not None:
                    raise handshake_error(conn._closed)
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    logger.info("%s: no handshake within %s s", addr, timeout)
                    raise TimeoutError("DTLS handshake timed out")
                conn._cond.wait(remaining)
    except BaseException:
        link.abort()
        raise
    return conn


def _client_socket(
    address: tuple[str, int] | None, sock: socket.socket | None,
    source_address: tuple[str, int] | None,
) -> tuple[socket.socket, Address, str]:
    """The connected UDP socket a client runs on, the peer's address and the host name
    to check the certificate against."""
    if sock is not None:
        if sock.type != socket.SOCK_DGRAM:
            raise ValueError("sock must be a UDP (SOCK_DGRAM) socket")
        if address is None:
            try:
                addr = sock.getpeername()
            except OSError:
                raise ValueError("sock is not connected: give the address") from None
            return sock, addr, str(addr[0])
    elif address is None:
        raise ValueError("connect() needs an address or a connected sock")
    host, port = address[0], address[1]
    family = sock.family if sock is not None else 0
    family, _, _, _, addr = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)[0]
    owned = sock is None
    if sock is None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if source_address is not None:
            sock.bind(source_address)
        sock.connect(addr)  # the kernel drops datagrams from anyone else
    except BaseException:
        if owned:
            sock.close()
        raise
    return sock, addr, host


# ---- server ----


def _server_socket(address: tuple[str, int], reuse_port: bool) -> socket.socket:
    host, port = address[0], address[1]
    family, _, _, _, addr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


class Server(_Link):
    """A DTLS server on one UDP socket.

    With a `handler`, `serve_forever()` serves until `shutdown()`, running
    `handler(conn)` in a thread of its own for each connection whose handshake completed
    (the connection is closed when it returns). Without one, `accept()` returns the
    established connections (serving in a background thread).
    `endpoint_options` go to `ServerEndpoint`: max_connections, max_handshakes,
    rate_limit_per_address, handshake_timeout, idle_timeout, cookie_mode, cookie_threshold.
    `on_state_change` and `on_alert` are set on every connection as its handshake
    completes (see `SyncConnection`); `on_handshake_failed(address, alert, reason)` is
    called (in the I/O thread) for each handshake that fails after the cookie. `sock`:
    serve on this bound UDP socket of the caller's instead (`address` None); the server
    owns it from here and closes it.
    """

    def __init__(
        self,
        address: tuple[str, int] | None,
        context: Context,
        handler: Handler | None = None,
        *,
        reuse_port: bool = False,
        on_state_change: StateCallback | None = None,
        on_alert: AlertCallback | None = None,
        sock: socket.socket | None = None,
        on_handshake_failed: HandshakeFailedCallback | None = None,
        **endpoint_options: Any,
    ) -> None:
        endpoint = ServerEndpoint(context, **endpoint_options)
        if sock is None:
            if address is None:
                raise ValueError("Server needs an address or a bound sock")
            sock = _server_socket(address, reuse_port)
        elif sock.type != socket.SOCK_DGRAM:
            raise ValueError("sock must be a UDP (SOCK_DGRAM) socket")
        super().__init__(sock)
        self.endpoint = endpoint
        self.handler = handler
        self.callbacks: dict[str, Any] = {"on_state_change": on_state_change,
                                          "on_alert": on_alert}
        self.on_handshake_failed = on_handshake_failed
        self._conns: dict[Connection, SyncConnection] = {}
        # events (0-RTT data) of connections whose handshake has not completed yet
        self._early: dict[Connection, list[Event]] = {}
        self._accepted: deque[SyncConnection] = deque()
        self._accept_cond = threading.Condition(self.lock)
        self._threads: set[threading.Thread] = set()
        self._background: threading.Thread | None = None
        self._shut_down = False

    @property
    def server_address(self) -> Address:
        return self.local_address

    @property
    def connections(self) -> list[SyncConnection]:
        with self.lock:
            return list(self._conns.values())

    def stats(self) -> EndpointStats:
        with self.lock:
            return self.endpoint.stats()

    def serve_forever(self) -> None:
        """Serve until `shutdown()` (from another thread)."""
        if self._shut_down:
            raise errors.ConnectionStateError("the server was shut down")
        self.run_loop()

    def accept(self, timeout: float | None = None) -> SyncConnection:
        """The next connection whose handshake completed (without a handler)."""
        if self.handler is not None:
            raise errors.ConnectionStateError("connections go to the handler")
        self._start_background()
        deadline = _deadline(timeout)
        with self._accept_cond:
            while not self._accepted:
                if self._shut_down:
                    raise errors.ConnectionStateError("the server was shut down")
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no connection in time")
                self._accept_cond.wait(remaining)
            return self._accepted.popleft()

    def _start_background(self) -> None:
        with self.lock:
            if self._background is None and not self._loop_running and not self._shut_down:
                self._background = threading.Thread(
                    target=self.run_loop, name="dtls-server-io", daemon=True
                )
                self._background.start()

    def shutdown(self) -> None:
        """Stop serving: close_notify to every connection, stop the I/O loop, wait for
        the handlers to return, close the socket."""
        with self.lock:
            if self._shut_down:
                return
            self._shut_down = True
            self.endpoint.close(time.monotonic())
            self.flush()
            self._accept_cond.notify_all()
        self.stop_loop(wait=threading.current_thread() is not self._background)
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join()
        self.close_socket()

    close = shutdown

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ---- the endpoint (lock held) ----
    def _receive(self, batch: list[tuple[bytes, Address]], now: float) -> None:
        self.endpoint.receive_datagrams(batch, now)

    def _handle_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)

    def _timer(self) -> float | None:
        return self.endpoint.get_timer()

    def changed(self, connection: Connection) -> None:
        self.endpoint.mark_pending(connection)
        self.flush()
        self.timer_changed()

    def flush(self) -> None:
        endpoint = self.endpoint
        self.send(endpoint.datagrams_to_send(time.monotonic()))
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ConnectionEvent):
                conn = self._conns.get(event.connection)
                if conn is None and isinstance(event.event, HandshakeCompleted):
                    conn = self._conns[event.connection] = SyncConnection(
                        event.connection, self, **self.callbacks
                    )
                    conn._event(event.event)
                    for early in self._early.pop(event.connection, ()):
                        conn._event(early)
                    self._established(conn)
                elif conn is not None:
                    conn._event(event.event)
                elif isinstance(event.event, DataReceived | DataReceivedBatch):  # before completion
                    self._early.setdefault(event.connection, []).append(event.event)
            elif isinstance(event, ConnectionRemoved):
                self._early.pop(event.connection, None)
                conn = self._conns.pop(event.connection, None)
                if conn is not None:
                    conn._set_closed(ConnectionClosed(event.reason))
            elif isinstance(event, HandshakeFailed) and self.on_handshake_failed is not None:
                call_safely(self.on_handshake_failed, event.address, event.alert, event.reason)

    def _established(self, conn: SyncConnection) -> None:
        if self.handler is None:
            self._accepted.append(conn)
            self._accept_cond.notify_all()
            return
        thread = threading.Thread(target=self._run_handler, args=(conn,),
                                  name=f"dtls-handler-{conn.peer_address}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _run_handler(self, conn: SyncConnection) -> None:
        try:
            assert self.handler is not None
            self.handler(conn)
        except Exception:
            logger.exception("handler for %s failed", conn.peer_address)
        finally:
            conn.close()
            with self.lock:
                self._threads.discard(threading.current_thread())
