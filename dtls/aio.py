"""DTLS 1.3 on asyncio (works with uvloop too).

    conn = await dtls.aio.connect("127.0.0.1", 4433, ctx, server_name="localhost")
    await conn.send(b"hello")
    reply = await conn.recv()

    async def handle(conn):
        async for message in conn:
            await conn.send(message)
    server = await dtls.aio.serve(handle, "0.0.0.0", 4433, srv_ctx)

I/O: each socket is a non-blocking UDP socket of our own, watched with
`loop.add_reader`. When it is readable the reader drains it with recvmmsg, feeds every
datagram to the engine (or `ServerEndpoint`), then sends everything the engines have to
say with one sendmmsg (`dtls.record.receive_datagrams` / `send_datagrams`; without the C
extension, `dtls.record_py`'s: one recvfrom / sendto per datagram). Datagrams that
`send()` produces are flushed once per loop iteration (or every FLUSH_EVERY sends), so
sends from many tasks share a system call. A full socket buffer leaves a backlog drained
with `loop.add_writer`; `send()` waits while the backlog is long. Timers are one
`loop.call_at` per client connection or per server socket, on `loop.time()`. This needs a
loop with add_reader: the selector loops and uvloop (not Windows' proactor loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Self

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
    from .record import BufferPool, enable_gro, receive_datagrams, send_datagrams
except ImportError:  # no C extension: plain recvfrom / sendto, no buffer pool, no GRO
    from .record_py import receive_datagrams, send_datagrams

    BufferPool = enable_gro = None  # type: ignore[assignment,misc]
from .server import (
    ConnectionAccepted,
    ConnectionEvent,
    ConnectionRemoved,
    EndpointStats,
    HandshakeFailed,
    ServerEndpoint,
    close_error,
)
from .session import Session

__all__ = ["AsyncConnection", "Server", "Serving", "connect", "serve"]

logger = logging.getLogger("dtls.aio")

Address = Any
Handler = Callable[["AsyncConnection"], Awaitable[None] | None]
#: on_state_change(conn, old, new): the engine's state moved (RFC 9846 Appendix A)
StateCallback = Callable[["AsyncConnection", HandshakeState, HandshakeState], None]
#: on_alert(conn, level, description, by_peer): an alert arrived, or we ended the
#: connection with one (RFC 9846 §6)
AlertCallback = Callable[["AsyncConnection", int, int, bool], None]
#: on_handshake_failed(address, alert, reason): a server's handshake failed after the
#: cookie (`dtls.server.HandshakeFailed`: alert an AlertDescription, None for a timeout)
HandshakeFailedCallback = Callable[[Any, "AlertDescription | int | None", str], None]

RECEIVE_BATCH = 32  # datagrams per recvmmsg, at most
# Datagrams asked of a wakeup's first recvmmsg at least: it asks for as many as the last
# wakeup brought (room is made per datagram asked), and for twice as many after a full one.
RECEIVE_FIRST = 8
READS_PER_WAKEUP = 8  # recvmmsg calls per readable event, then the loop gets a turn
FLUSH_EVERY = 64  # sends between flushes at most (else once per loop iteration)
BACKLOG_HIGH = 1024  # datagrams waiting for the socket: send() waits above this
SOCKET_BUFFER = 1 << 21  # asked for SO_RCVBUF / SO_SNDBUF (the kernel may cap it)
GRO_SLOT = 1 << 16  # room per received message: any datagram, and any UDP GRO run

_thread = threading.local()  # the receive buffer of this thread's loop


def _receive_buffer() -> bytearray:
    """One receive buffer per thread for client sockets: a loop reads its sockets one at a
    time, and what it read is handled before the next read (records open in place here)."""
    buffer: bytearray | None = getattr(_thread, "receive_buffer", None)
    if buffer is None:
        buffer = _thread.receive_buffer = bytearray(RECEIVE_BATCH * GRO_SLOT)
    return buffer


# ---- one UDP socket on the loop ----


class _DatagramSocket:
    """A non-blocking UDP socket read with recvmmsg and written with sendmmsg."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_datagrams: Callable[[list[tuple[bytes, Address]]], None],
        pool: Any = None,
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.loop = loop
        self._on_error = on_error
        self.sock = sock
        self.fd = sock.fileno()
        # Received datagrams land in the pool's slabs (no allocation per datagram) and
        # are opened in place there; a slab is released once its batch was handled.
        self.pool = pool
        self._on_datagrams = on_datagrams
        self._receive_count = RECEIVE_FIRST
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._drained: asyncio.Future[None] | None = None
        self.closed = False
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        # UDP GRO (Linux): a burst from one peer arrives in one receive, split in _read.
        # Each message has room for a run: a pool slab (servers) or a slot of this
        # thread's buffer (clients).
        self.gro = (
            enable_gro is not None
            and (pool is None or pool.slab_size >= GRO_SLOT)
            and enable_gro(sock)
        )
        try:
            loop.add_reader(self.fd, self._read)
        except NotImplementedError:
            raise RuntimeError(
                "dtls.aio needs an event loop with add_reader (selector loops, uvloop)"
            ) from None

    def _read(self) -> None:
        pool = self.pool
        buffer = _receive_buffer() if pool is None and BufferPool is not None else None
        count = self._receive_count
        total = 0
        for _ in range(READS_PER_WAKEUP):
            try:
                got = receive_datagrams(
                    self.fd, count, pool, buffer=buffer, buffer_size=GRO_SLOT
                )
            except OSError as exc:  # e.g. ICMP port unreachable on a connected socket
                logger.debug("receive: %s", exc)
                if self._on_error is not None:
                    self._on_error(exc)
                break
            total += len(got)
            if got:
                batch = [(d.data, d.address) for d in got]
                if self.gro and any(d.segment_size for d in got):
                    batch = [(x, d.address) for d in got for x in d.datagrams()]
                try:
                    self._on_datagrams(batch)  # type: ignore[arg-type]
                finally:
                    if pool is not None:
                        for d in got:
                            if d.slab >= 0:
                                pool.release(d.slab)
            if len(got) < count:
                break
            count = min(RECEIVE_BATCH, 2 * count)
        self._receive_count = min(RECEIVE_BATCH, max(RECEIVE_FIRST, total))

    def send(self, datagrams: Sequence[tuple[bytes, Address]]) -> None:
        if self.closed or not datagrams:
            return
        if self._backlog:
            self._backlog.extend(datagrams)
            return
        rest = self._send_now(list(datagrams))
        if rest:
            self._backlog.extend(rest)
            self.loop.add_writer(self.fd, self._write)

    def _send_now(self, datagrams: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        """Send what the socket takes; return the rest."""
        while datagrams:
            try:
                sent = send_datagrams(self.fd, datagrams)
            except OSError as exc:
                # This datagram cannot go (no route, too big, ...): DTLS recovers from
                # loss, so drop it and go on with the next.
                logger.debug("send to %s: %s", datagrams[0][1], exc)
                sent = 1
            if sent == 0:
                return datagrams
            datagrams = datagrams[sent:]
        return datagrams

    def _write(self) -> None:
        rest = self._send_now(list(self._backlog))
        self._backlog.clear()
        self._backlog.extend(rest)
        if not rest:
            self.loop.remove_writer(self.fd)
        if len(self._backlog) <= BACKLOG_HIGH // 2 and self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None

    async def drain(self) -> None:
        """Wait while more than BACKLOG_HIGH datagrams wait for the socket."""
        while len(self._backlog) > BACKLOG_HIGH and not self.closed:
            if self._drained is None:
                self._drained = self.loop.create_future()
            await asyncio.shield(self._drained)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self._backlog:
            self.loop.remove_writer(self.fd)
            self._backlog.clear()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self.sock.close()


class _Timer:
    """One loop.call_at handle, moved only when the time changes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None

    def set(self, when: float | None) -> None:
        if when == self._when:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None:
            self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        when, self._when, self._handle = self._when, None, None
        # call_at may run a hair early (clock resolution): the deadline has come.
        self._callback(max(self._loop.time(), when or 0.0))

    def cancel(self) -> None:
        self.set(None)


# ---- the connection object applications use ----


class AsyncConnection(FrontEndConnection):
    """One DTLS connection, client or server side, on asyncio.

    Each `send` is one application-data record (one message); each `recv` returns one
    record's content. `async for message in conn` reads until the peer closes.

    For callbacks rather than polling, set `on_state_change` and `on_alert` (or pass them
    to `connect` / `serve`). They run on the event loop, between datagrams: keep them
    short; an exception from one is logged and ignored.
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
        self._loop = link.loop
        self._readable: asyncio.Future[None] | None = None
        self._key_updates: list[tuple[int, asyncio.Future[None]]] = []
        self._closed_future: asyncio.Future[None] = self._loop.create_future()

    def export_keying_material(self, label: bytes | str, context: bytes, length: int) -> bytes:
        """RFC 9846 §7.5 exporter (RFC 9147 §5.9)."""
        return self.connection.export_keying_material(label, context, length)

    # ---- data ----
    async def send(self, data: bytes) -> None:
        """Send one message (one record of up to 16384 bytes, RFC 9846 §5.1). Returns once
        it is queued for the socket; waits while the socket's backlog is long."""
        await self._wait_sendable()
        self.connection.send(data)
        self._link.changed(self.connection)
        await self._link.drain()

    async def send_batch(self, messages: Sequence[bytes]) -> None:
        """`send` for many messages, in order: their records are sealed together
        (`Connection.send_batch`)."""
        await self._wait_sendable()
        self.connection.send_batch(messages)
        self._link.changed(self.connection)
        await self._link.drain()

    async def _wait_sendable(self) -> None:
        """Wait while the AEAD limit holds sending until the KeyUpdate's ACK (RFC 9147
        §4.5.3) moves the send epoch on."""
        self._check_open()
        if self.connection.send_blocked:
            await self._send_epoch(self.connection.send_epoch + 1)

    async def recv(self) -> bytes:
        """The next message. Raises once the connection is closed and nothing is left:
        `dtls.errors.ConnectionStateError` after an orderly close, the error otherwise."""
        while not self._messages:
            if self._closed is not None:
                raise close_error(self._closed)
            if self._readable is None:
                self._readable = self._loop.create_future()
            await asyncio.shield(self._readable)
        return self._messages.popleft()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except errors.ConnectionStateError:
            raise StopAsyncIteration from None

    async def wait_session(self) -> Session:
        """The session the server offered for resumption (RFC 9846 §4.6.1): the newest
        one, else the first NewSessionTicket to arrive. Raises as `recv` does once the
        connection closed without one; bound the wait with `asyncio.wait_for`."""
        if not self.connection.is_client:
            raise ValueError("only a client receives session tickets")
        while self.session is None:
            self._check_open()
            if self._readable is None:
                self._readable = self._loop.create_future()
            await asyncio.shield(self._readable)
        return self.session

    async def update_keys(self, request_peer_update: bool = True) -> None:
        """Send a KeyUpdate (RFC 9147 §8) and wait until it is acknowledged and our
        sending keys have moved to the next epoch."""
        self._check_open()
        target = self.connection.send_epoch + 1
        self.connection.update_keys(request_peer_update=request_peer_update)
        self._link.changed(self.connection)
        await self._send_epoch(target)

    async def _send_epoch(self, target: int) -> None:
        """Until our send epoch reaches `target` (a KeyUpdate acknowledged)."""
        future = self._loop.create_future()
        self._key_updates.append((target, future))
        await future

    async def close(self) -> None:
        """Send close_notify (RFC 9846 §6.1) and release the connection."""
        if self._closed is None:
            self.connection.close()
            self._link.changed(self.connection)
            self._link.flush()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed_future)

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.connection.state.value
        return f"<AsyncConnection {self.peer_address!r} {state} {self.cipher_suite or ''}>"

    # ---- from the link ----
    def _check_open(self) -> None:
        if self._closed is not None:
            raise close_error(self._closed)

    def _event(self, event: Event) -> None:
        if isinstance(event, DataReceived | DataReceivedBatch):
            if self._queue_data(event):
                self._wake()
        elif isinstance(event, KeyUpdated):
            if event.direction == "send":
                for target, future in list(self._key_updates):
                    if target <= event.epoch:
                        self._key_updates.remove((target, future))
                        if not future.done():
                            future.set_result(None)
        elif isinstance(event, HandshakeCompleted):
            self.handshake = event
        elif isinstance(event, SessionTicketReceived):
            self.session = event.session
            self._wake()  # wait_session
        elif isinstance(event, AlertReceived):
            self._alert(event.level, event.description, True)
        elif isinstance(event, ConnectionClosed):
            if event.error and event.alert is not None and not event.by_peer:
                self._alert(AlertLevel.FATAL, event.alert, False)  # the one we sent
            self._set_closed(event)
        self._check_state()

    def _set_closed(self, event: ConnectionClosed) -> None:
        if self._closed is not None:
            return
        self._closed = event
        self._check_state()
        self._wake()
        for _, future in self._key_updates:
            if not future.done():
                future.set_exception(close_error(event))
        self._key_updates.clear()
        if not self._closed_future.done():
            self._closed_future.set_result(None)

    def _wake(self) -> None:
        if self._readable is not None:
            if not self._readable.done():
                self._readable.set_result(None)
            self._readable = None


class _Link:
    """What an AsyncConnection needs from the socket side (client or server)."""

    loop: asyncio.AbstractEventLoop
    local_address: Address
    socket: _DatagramSocket
    _changes: int
    _flush_scheduled: bool

    def fileno(self) -> int:
        return self.socket.fd

    def changed(self, connection: Connection) -> None:
        """The application called send/update_keys/close on `connection`: flush once per
        loop iteration, or at once after FLUSH_EVERY changes."""
        self._changes += 1
        if self._changes >= FLUSH_EVERY:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        raise NotImplementedError


# ---- client ----


class _ClientLink(_Link):
    """One client connection on its own (connected) socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 connection: Connection, **callbacks: Any) -> None:
        self.loop = loop
        self.connection = connection
        self.local_address = sock.getsockname()
        self.socket = _DatagramSocket(loop, sock, self._received, on_error=self._socket_error)
        self.timer = _Timer(loop, self._timer)
        self.conn = AsyncConnection(connection, self, **callbacks)
        self.handshake_done: asyncio.Future[None] = loop.create_future()
        self._flush_scheduled = False
        self._changes = 0
        self._heard_from_peer = False

    def _received(self, batch: list[tuple[bytes, Address]]) -> None:
        self._heard_from_peer = True
        self.connection.receive_datagrams(batch, self.loop.time())
        self.flush()

    def _socket_error(self, exc: OSError) -> None:
        # ICMP port unreachable before the server said anything: nobody is there
        if (isinstance(exc, ConnectionRefusedError) and not self._heard_from_peer
                and not self.handshake_done.done()):
            refused = nothing_listens(self.connection.peer_address)
            logger.info("%s", refused.strerror)
            self.handshake_done.set_exception(refused)

    def _timer(self, now: float) -> None:
        self.connection.handle_timer(now)
        self.flush()


    def flush(self) -> None:
        self._flush_scheduled = False
        self._changes = 0
        if self.socket.closed:
            return
        engine = self.connection
        self.socket.send(engine.datagrams_to_send(self.loop.time()))
        while (event := engine.next_event()) is not None:
            self.conn._event(event)
            if isinstance(event, HandshakeCompleted) and not self.handshake_done.done():
                self.handshake_done.set_result(None)
            elif isinstance(event, ConnectionClosed) and not self.handshake_done.done():
                self.handshake_done.set_exception(handshake_error(event))
        self.conn._check_state()  # handshake states move without events
        if engine.state is HandshakeState.CLOSED:
            self.close()
        else:
            self.timer.set(engine.get_timer())

    async def drain(self) -> None:
        await self.socket.drain()

    def close(self) -> None:
        self.timer.cancel()
        self.socket.close()
        self.conn._set_closed(ConnectionClosed("closed"))


async def _resolve(loop: asyncio.AbstractEventLoop, host: str | None, port: int,
                   flags: int = 0) -> list[tuple[int, Address]]:
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=flags)
    return [(family, addr) for family, _, _, _, addr in infos]


async def connect(
    host: str,
    port: int,
    context: Context,
    *,
    server_name: str | None = None,
    local_addr: tuple[str, int] | None = None,
    timeout: float | None = 30.0,
    session: Session | None = None,
    early_data: Sequence[bytes] = (),
    on_state_change: StateCallback | None = None,
    on_alert: AlertCallback | None = None,
) -> AsyncConnection:
    """Connect and complete the handshake. `server_name` (default: `host`) is sent as
    SNI and checked against the certificate; `session` (a previous connection's
    `.session`) asks for resumption. `early_data` messages go before the handshake
    completes: as 0-RTT when the context allows it (`early_data=True`) and the session
    admits it (check `conn.handshake.early_data_accepted`), else right after it. Raises
    a `dtls.errors` exception when the handshake fails and TimeoutError when it does not
    finish within `timeout` seconds. `on_state_change` and `on_alert` are set on the
    connection before the handshake starts (see `AsyncConnection`)."""
    if not context.is_client:
        raise ValueError("connect() needs a client context")
    loop = asyncio.get_running_loop()
    family, addr = (await _resolve(loop, host, port))[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        sock.connect(addr)  # the kernel drops datagrams from anyone else
        engine = Connection(context, server_name=server_name or host, peer_address=addr,
                            session=session)
        link = _ClientLink(loop, sock, engine, on_state_change=on_state_change,
                           on_alert=on_alert)
    except BaseException:
        sock.close()
        raise
    try:
        for message in early_data:
            engine.send(message)  # queued: 0-RTT or sent on completion (RFC 9846 §2.3)
        engine.connect(addr, loop.time())
        link.flush()
        await asyncio.wait_for(asyncio.shield(link.handshake_done), timeout)
        rejected, engine.early_data_rejected = engine.early_data_rejected, []
        if rejected:  # the server refused 0-RTT (RFC 9846 §4.2.10): now as 1-RTT
            await link.conn.send_batch(rejected)
    except BaseException as exc:
        if isinstance(exc, TimeoutError):
            logger.info("%s: no handshake within %s s", addr, timeout)
        link.close()
        raise
    return link.conn


# ---- server ----


class _Listener(_Link):
    """One server socket and the endpoint behind it."""

    def __init__(self, server: Server, sock: socket.socket, endpoint: ServerEndpoint) -> None:
        self.server = server
        self.loop = server.loop
        self.endpoint = endpoint
        self.local_address = sock.getsockname()
        pool = BufferPool(65536, RECEIVE_BATCH) if BufferPool is not None else None
        self.socket = _DatagramSocket(self.loop, sock, self._received, pool)
        self.timer = _Timer(self.loop, self._timer)
        self.conns: dict[Connection, AsyncConnection] = {}
        # events (0-RTT data) of connections whose handshake has not completed yet
        self._early: dict[Connection, list[Event]] = {}
        self._flush_scheduled = False
        self._changes = 0

    def _received(self, batch: list[tuple[bytes, Address]]) -> None:
        self.endpoint.receive_datagrams(batch, self.loop.time())
        self.flush()

    def _timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.flush()

    def changed(self, connection: Connection) -> None:
        self.endpoint.mark_pending(connection)
        super().changed(connection)

    def flush(self) -> None:
        self._flush_scheduled = False
        self._changes = 0
        if self.socket.closed:
            return
        endpoint = self.endpoint
        self.socket.send(endpoint.datagrams_to_send(self.loop.time()))
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ConnectionEvent):
                conn = self.conns.get(event.connection)
                if conn is None and isinstance(event.event, HandshakeCompleted):
                    conn = self.conns[event.connection] = AsyncConnection(
                        event.connection, self, **self.server.callbacks
                    )
                    conn._event(event.event)
                    for early in self._early.pop(event.connection, ()):
                        conn._event(early)
                    self.server._start_handler(conn)
                elif conn is not None:
                    conn._event(event.event)
                elif isinstance(event.event, DataReceived | DataReceivedBatch):
                    self._early.setdefault(event.connection, []).append(event.event)
            elif isinstance(event, ConnectionRemoved):
                self._early.pop(event.connection, None)
                conn = self.conns.pop(event.connection, None)
                if conn is not None:
                    conn._set_closed(ConnectionClosed(event.reason))
            elif isinstance(event, ConnectionAccepted):
                logger.debug("handshake from %s", event.address)
            elif isinstance(event, HandshakeFailed):
                failed = self.server.on_handshake_failed
                if failed is not None:
                    call_safely(failed, event.address, event.alert, event.reason)
        self.timer.set(endpoint.get_timer())

    async def drain(self) -> None:
        await self.socket.drain()

    def close(self) -> None:
        self.endpoint.close(self.loop.time())
        self.flush()
        self.timer.cancel()
        self.socket.close()


class Serving:
    """What `serve()` returns, in one process (`Server`) or many
    (`dtls.workers.Supervisor`): `close()` it, then `wait_closed()`; or `async with`."""

    _done: asyncio.Future[None]

    def close(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Wait until closed and every handler has returned."""
        await asyncio.shield(self._done)

    async def serve_forever(self) -> None:
        try:
            await self.wait_closed()
        finally:
            self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


class Server(Serving):
    """A DTLS server on one or more UDP sockets; `handler(conn)` runs for each
    connection once its handshake completes, and the connection is closed when it
    returns. Made by `serve()`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, handler: Handler,
        on_handshake_failed: HandshakeFailedCallback | None = None, **callbacks: Any
    ) -> None:
        self.loop = loop
        self._handler = handler
        #: on_state_change / on_alert for each connection (from its handshake's completion)
        self.callbacks: dict[str, Any] = callbacks
        #: on_handshake_failed(address, alert, reason) for handshakes that fail after the
        #: cookie; those refused before it are counted in `stats()` (refused_*)
        self.on_handshake_failed = on_handshake_failed
        self._listeners: list[_Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._done: asyncio.Future[None] = loop.create_future()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(listener.socket.sock for listener in self._listeners)

    @property
    def port(self) -> int:
        return int(self._listeners[0].local_address[1])

    @property
    def endpoints(self) -> tuple[ServerEndpoint, ...]:
        return tuple(listener.endpoint for listener in self._listeners)

    @property
    def connections(self) -> list[AsyncConnection]:
        """The established connections."""
        return [c for listener in self._listeners for c in listener.conns.values()]

    def stats(self) -> EndpointStats:
        """The endpoints' counters, added up."""
        totals: dict[str, int] = {}
        for endpoint in self.endpoints:
            for name, value in vars(endpoint.stats()).items():
                totals[name] = totals.get(name, 0) + value
        for listener in self._listeners:  # the receive buffer pools
            pool = listener.socket.pool
            if pool is not None:
                used = pool.stats()
                totals["pool_in_use"] += used.in_use
                totals["pool_peak"] += used.peak
                totals["pool_misses"] += used.misses
        return EndpointStats(**totals)

    def is_serving(self) -> bool:
        return not self._closed

    def close(self) -> None:
        """Stop serving: close_notify to every connection, then the sockets close."""
        if self._closed:
            return
        self._closed = True
        for listener in self._listeners:
            listener.close()
        if not self._tasks and not self._done.done():
            self._done.set_result(None)

    def _start_handler(self, conn: AsyncConnection) -> None:
        task = self.loop.create_task(self._run_handler(conn))
        self._tasks.add(task)
        task.add_done_callback(self._handler_done)

    async def _run_handler(self, conn: AsyncConnection) -> None:
        try:
            result = self._handler(conn)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("handler for %s failed", conn.peer_address)
        finally:
            if not conn.closed:
                await conn.close()

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._closed and not self._tasks and not self._done.done():
            self._done.set_result(None)


async def serve(
    handler: Handler,
    host: str | None,
    port: int,
    context: Context,
    *,
    reuse_port: bool = False,
    on_state_change: StateCallback | None = None,
    on_alert: AlertCallback | None = None,
    workers: int = 1,
    sockets: Sequence[socket.socket] = (),
    on_handshake_failed: HandshakeFailedCallback | None = None,
    **endpoint_options: Any,
) -> Any:  # Server, or with workers a dtls.workers.Supervisor (both Serving)
    """Serve DTLS on `host`:`port` (every address it resolves to; None: all
    interfaces; port 0: any free port). `endpoint_options` go to `ServerEndpoint`:
    max_connections, max_handshakes, rate_limit_per_address, handshake_timeout,
    idle_timeout, cookie_mode, cookie_threshold. With `reuse_port` several processes can
    share the port (SO_REUSEPORT). `on_state_change` and `on_alert` are set on every
    connection as it is handed to `handler` (its handshake complete);
    `on_handshake_failed(address, alert, reason)` is called for each handshake that
    fails after the cookie (alert: the `AlertDescription` sent or received, None for a
    timeout).

    With `workers` > 1, `workers` processes serve the port, each on its own socket, and
    records are steered to their worker by connection ID: this returns the parent's
    `dtls.workers.Supervisor` (see there and docs/fleet.md for the further options).
    `sockets`: serve on these bound sockets instead of resolving `host`."""
    loop = asyncio.get_running_loop()
    if workers != 1 or "cid_layout" in endpoint_options:
        from .workers import Supervisor

        return await Supervisor.start(
            handler, host, port, context, workers=workers,
            on_state_change=on_state_change, on_alert=on_alert,
            on_handshake_failed=on_handshake_failed, **endpoint_options,
        )
    server = Server(loop, handler, on_handshake_failed, on_state_change=on_state_change,
                    on_alert=on_alert)
    if sockets:
        for sock in sockets:
            sock.setblocking(False)
            endpoint = ServerEndpoint(context, **endpoint_options)
            server._listeners.append(_Listener(server, sock, endpoint))
        return server
    addrs = await _resolve(loop, host, port, flags=socket.AI_PASSIVE)
    seen = set()
    try:
        for family, addr in addrs:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                if family == socket.AF_INET6 and host is None:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if port == 0 and server._listeners:  # the same free port on each address
                    addr = (addr[0], server.port, *addr[2:])
                sock.bind(addr)
            except BaseException:
                sock.close()
                raise
            endpoint = ServerEndpoint(context, **endpoint_options)
            server._listeners.append(_Listener(server, sock, endpoint))
    except BaseException:
        server.close()
        raise
    return server
