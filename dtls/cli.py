"""`python -m dtls` (console script `dtls`): a DTLS 1.3 client and server in the manner of
`openssl s_client` / `s_server`, a self-contained demo, an end-to-end benchmark and the
simulator.

    python -m dtls demo                                   # server + client in one process
    python -m dtls server --port 4433 --echo              # ephemeral certificate
    python -m dtls client 127.0.0.1 4433 --no-verify --message hello --json

Exit status: 0 on success, 1 when the connection failed (the reason is one line on
stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, errors
from .config import (
    MIN_DATAGRAM_SIZE,
    Context,
    CookieMode,
    open_keylog_file,
    parse_cipher_suites,
    parse_groups,
)
from .crypto import self_signed_certificate
from .iana import CipherSuite, alert_name

if TYPE_CHECKING:
    from .aio import AsyncConnection
    from .session import ExternalPsk, Session

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_PORT = 4433
DEFAULT_TIMEOUT = 10.0
DEMO_ALPN = "dtls-demo"


class UsageError(Exception):
    """Arguments that parse but do not make sense together (exit status 2)."""


# ---------------------------------------------------------------------------------------
# Shared helpers: contexts from arguments, credentials, key logs, reporting
# ---------------------------------------------------------------------------------------


def _hex(text: str, option: str) -> bytes:
    try:
        return bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        raise UsageError(f"{option}: not a hex string: {text!r}") from None


def _split_list(text: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


# ---- argument types: a value out of range is a usage error naming its option ----


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


_port = _int_at_least(1, 65535)
_bind_port = _int_at_least(0, 65535)  # 0: any free port


def _host_and_port(args: argparse.Namespace) -> None:
    """`client HOST PORT`, `client HOST:PORT` or `client [IPv6]:PORT` (port 4433 by
    default, as s_client's)."""
    host, port = args.host, args.port
    if host.startswith("[") and "]" in host:
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":") or port is not None:
                raise UsageError(f"not HOST:PORT: {args.host!r}")
            port = _port_argument(rest[1:])
    elif host.count(":") == 1:
        host, _, text = host.partition(":")
        if port is not None:
            raise UsageError(f"a port twice: {args.host!r} and {port}")
        port = _port_argument(text)
    args.host, args.port = host, DEFAULT_PORT if port is None else port


def _port_argument(text: str) -> int:
    try:
        return _port(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"port: {exc}") from None


def _password(spec: str | None) -> bytes | None:
    """--pass as in openssl: pass:TEXT, env:VARIABLE or file:PATH (its first line)."""
    if spec is None:
        return None
    kind, _, value = spec.partition(":")
    if kind == "pass":
        return value.encode()
    if kind == "env":
        if value not in os.environ:
            raise UsageError(f"--pass env:{value}: no such environment variable")
        return os.environ[value].encode()
    if kind == "file":
        try:
            with open(value, "rb") as f:
                return f.readline().rstrip(b"\r\n")
        except OSError as exc:
            raise UsageError(f"--pass file:{value}: {exc.strerror}") from None
    raise UsageError("--pass takes pass:TEXT, env:VARIABLE or file:PATH")


def _load_credentials(ctx: Context, args: argparse.Namespace) -> None:
    """--cert/--key (--pass) into ctx: a key that does not open or does not match the
    certificate stops here, naming the files."""
    from .crypto import load_private_key

    password = _password(args.password)
    keyfile = args.key or args.cert
    try:
        if args.cert is not None:
            ctx.load_cert_chain(args.cert, args.key, password)
        elif args.raw_public_key:
            ctx.private_key = load_private_key(keyfile=args.key, password=password)
    except errors.ConfigurationError as exc:
        if password is None and b"ENCRYPTED" in _read_bytes(keyfile):
            raise UsageError(f"{keyfile}: the private key is encrypted: give its password "
                             "with --pass") from None
        files = args.cert if args.key is None or args.cert is None else f"{args.cert}, {args.key}"
        raise UsageError(f"{files}: {exc}") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def _open_keylog(path: str | None, stack: contextlib.ExitStack) -> Callable[[str], None] | None:
    """An NSS key-log writer for --keylogfile, else $SSLKEYLOGFILE, else None: secrets are
    written only when asked for."""
    path = path or os.environ.get("SSLKEYLOGFILE") or None
    if path is None:
        return None
    f = stack.enter_context(open_keylog_file(path))

    def write(line: str) -> None:
        f.write(line + "\n")

    return write


def _external_psk(args: argparse.Namespace) -> ExternalPsk | None:
    """--psk-identity/--psk: the PSK's hash follows the cipher suites (SHA-384 only when
    every suite offered is a SHA-384 one)."""
    if args.psk is None and args.psk_identity is None:
        return None
    if args.psk is None or args.psk_identity is None:
        raise UsageError("--psk and --psk-identity go together")
    from .session import ExternalPsk

    suites = parse_cipher_suites(args.ciphers) if args.ciphers is not None else ()
    sha384 = bool(suites) and all(s == CipherSuite.TLS_AES_256_GCM_SHA384 for s in suites)
    key = _hex(args.psk, "--psk")
    if not key:
        raise UsageError("--psk: the key is empty")
    return ExternalPsk(args.psk_identity.encode(), key, "sha384" if sha384 else "sha256")


def _common_settings(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Context settings shared by client and server options."""
    settings: dict[str, Any] = {}
    for option, value, parse, name in (
        ("--ciphers", args.ciphers, parse_cipher_suites, "cipher_suites"),
        ("--groups", args.groups, parse_groups, "groups"),
    ):
        if value is not None:
            try:
                settings[name] = parse(value)
            except errors.ConfigurationError as exc:
                raise UsageError(f"{option}: {exc}") from None
    if args.alpn:
        settings["alpn_protocols"] = _split_list(args.alpn)
    if args.mtu is not None:
        settings["max_datagram_size"] = args.mtu
    if args.cid is not None:
        settings["connection_id"] = _hex(args.cid, "--cid")
    if args.srtp:
        settings["srtp_profiles"] = tuple(_srtp_profile(p) for p in _split_list(args.srtp))
    if args.record_size_limit is not None:
        settings["record_size_limit"] = args.record_size_limit
    if args.confidentiality_limit is not None:
        settings["confidentiality_limit"] = args.confidentiality_limit
    if args.integrity_limit is not None:
        settings["integrity_limit"] = args.integrity_limit
    if args.raw_public_key:
        if args.key is None:
            raise UsageError("--raw-public-key needs --key")
        settings["raw_public_key"] = True
    keylog = _open_keylog(args.keylogfile, stack)
    if keylog is not None:
        settings["keylog"] = keylog
    return settings


def _srtp_profile(name: str) -> int:
    """An SRTP profile by name (SRTP_AEAD_AES_128_GCM, ...) or number (RFC 5764 §4.1.2)."""
    from .srtp import SrtpProfile

    try:
        return int(SrtpProfile[name.upper()])
    except KeyError:
        try:
            return int(SrtpProfile(int(name, 0)))
        except ValueError:
            raise UsageError(f"--srtp: unknown profile {name!r}") from None


def _pin_keys(ctx: Context, args: argparse.Namespace) -> None:
    """RFC 7250: the peers' raw public keys we accept."""
    for path in args.pin_key or ():
        data = Path(path).read_bytes()
        try:
            ctx.pin_public_key(data)
        except errors.BadCertificate:
            hint = (f" but a certificate (its key: openssl x509 -in {path} -pubkey -noout)"
                    if b"-----BEGIN CERTIFICATE" in data else "")
            raise UsageError(f"--pin-key {path}: not a public key{hint}") from None


def client_context(args: argparse.Namespace, stack: contextlib.ExitStack) -> Context:
    """The client's Context from `client` options."""
    settings = _common_settings(args, stack)
    psk = _external_psk(args)
    if psk is not None:
        settings["psk"] = psk
    if args.early_data is not None:
        if args.sess_in is None:
            raise UsageError("--early-data needs --sess-in (0-RTT resumes a session)")
        settings["early_data"] = True
    if args.key is not None and args.cert is None and not args.raw_public_key:
        raise UsageError("--key needs --cert (or --raw-public-key)")
    ctx = Context.client(cafile=args.cafile, verify=not args.no_verify, **settings)
    _load_credentials(ctx, args)
    _pin_keys(ctx, args)
    return ctx


def server_context(args: argparse.Namespace, stack: contextlib.ExitStack) -> Context:
    """The server's Context from `server` options; without --cert (and without a PSK) an
    ephemeral self-signed certificate, announced on stderr."""
    settings = _common_settings(args, stack)
    settings["cookie_mode"] = args.cookie or (
        CookieMode.AUTO if args.early_data else CookieMode.ALWAYS
    )
    if args.early_data:
        settings["max_early_data_size"] = args.max_early_data
    if args.no_tickets:
        settings["session_tickets"] = 0
    psk = _external_psk(args)
    if psk is not None:
        settings["psk_lookup"] = lambda identity: psk if identity == psk.identity else None
    if args.require_client_cert and args.cafile is None:
        raise UsageError("--require-client-cert needs --cafile to verify client certificates")
    if args.key is not None and args.cert is None and not args.raw_public_key:
        raise UsageError("--key needs --cert (or --raw-public-key)")
    ctx = Context.server(
        cafile=args.cafile,
        require_client_certificate=args.require_client_cert,
        **settings,
    )
    _load_credentials(ctx, args)
    _pin_keys(ctx, args)
    if args.cert is None and psk is None and not args.raw_public_key:
        cert_pem, key_pem = self_signed_certificate()
        ctx.load_cert_chain(certdata=cert_pem, keydata=key_pem)
        if not args.quiet:
            _err(
                "no --cert given: using an ephemeral self-signed ECDSA P-256 certificate for "
                f"localhost, 127.0.0.1 and ::1 (SHA-256 {_fingerprint(cert_pem)}); clients "
                "need --no-verify"
            )
    return ctx


def _fingerprint(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _err(message: str) -> None:
    print(f"dtls: {message}", file=sys.stderr, flush=True)


def _write_data(data: bytes) -> None:
    """One received message on stdout, as bytes, with a newline."""
    out = getattr(sys.stdout, "buffer", None)
    if out is not None:
        sys.stdout.flush()
        out.write(bytes(data) + b"\n")
        out.flush()
    else:
        print(bytes(data).decode(errors="replace"), flush=True)


def describe_error(exc: BaseException) -> str:
    """One line for a failure, saying what went wrong in DTLS terms."""
    if isinstance(exc, errors.HandshakeRefused):
        return str(exc)  # the server refused: <alert> (<what it likely means>)
    if isinstance(exc, errors.AlertReceived):
        return f"the peer sent a fatal alert: {alert_name(exc.description)}"
    if isinstance(exc, errors.CertificateError):
        return f"certificate verification failed: {exc}"
    if isinstance(exc, errors.ProtocolError):
        alert = f" ({alert_name(exc.alert)})" if exc.alert is not None else ""
        return f"handshake failed{alert}: {exc}"
    if isinstance(exc, errors.DTLSError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _peer_subject(conn: AsyncConnection) -> str | None:
    certs = conn.peer_certificates
    return certs[0].subject.rfc4514_string() if certs else None


def _cid_hex(conn: AsyncConnection, which: str) -> str | None:
    """A negotiated connection ID (hex; "" when zero-length), or None without CIDs."""
    engine = conn.connection
    if engine.peer_cid is None:
        return None
    value = engine.local_cid if which == "local" else engine.peer_cid
    return (value or b"").hex()


def _handshake_ms(conn: AsyncConnection) -> float | None:
    engine = conn.connection
    if engine.handshake_started is None or engine.handshake_completed_at is None:
        return None
    return round((engine.handshake_completed_at - engine.handshake_started) * 1000, 3)


def _install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM end a server cleanly (only possible in the main thread)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


# ---------------------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------------------


@dataclass
class ClientReport:
    """What `client --json` prints on exit."""

    version: str | None = None
    cipher: str | None = None
    group: str | None = None
    alpn: str | None = None
    resumed: bool = False
    early_data_accepted: bool = False
    local_cid: str | None = None
    peer_cid: str | None = None
    peer_subject: str | None = None
    messages_sent: int = 0
    messages_received: int = 0
    retransmissions: int = 0
    handshake_ms: float | None = None
    key_update: bool = False
    session_saved: bool = False
    replies: list[str] = field(default_factory=list)
    error: str | None = None
    srtp_profile: str | None = None
    #: `Connection.stats()` (dtls.stats.ConnectionStats) as a dict
    stats: dict[str, Any] | None = None

    def fill(self, conn: AsyncConnection) -> None:
        hs = conn.handshake
        if hs is not None:
            self.version = hs.version
            self.cipher = hs.cipher_suite
            self.group = hs.group
            self.alpn = hs.alpn_protocol
            self.resumed = hs.resumed
            self.early_data_accepted = hs.early_data_accepted
        self.local_cid = _cid_hex(conn, "local")
        self.peer_cid = _cid_hex(conn, "peer")
        self.peer_subject = _peer_subject(conn)
        self.retransmissions = conn.connection.retransmissions
        self.handshake_ms = _handshake_ms(conn)
        self.stats = asdict(conn.connection.stats())
        profile = conn.connection.srtp_profile
        if profile is not None:
            from .srtp import SrtpProfile

            self.srtp_profile = SrtpProfile(profile).name


async def _client_exchange(
    args: argparse.Namespace, conn: AsyncConnection, report: ClientReport
) -> None:
    """After the handshake: early-data reply, key update, messages, session ticket."""

    async def reply(what: str) -> None:
        try:
            data = await asyncio.wait_for(conn.recv(), args.timeout)
        except TimeoutError:
            raise TimeoutError(f"no reply to {what} within {args.timeout:g} s") from None
        report.messages_received += 1
        report.replies.append(bytes(data).decode(errors="replace"))
        if not args.json:
            _write_data(data)

    if args.early_data is not None:
        await reply("the early data")  # sent with the ClientHello (or after, if refused)
    if args.key_update:
        try:
            await asyncio.wait_for(conn.update_keys(), args.timeout)
        except TimeoutError:
            raise TimeoutError(f"KeyUpdate not acknowledged within {args.timeout:g} s") from None
        report.key_update = True
    for index, text in enumerate(args.message or (), 1):
        await conn.send(text.encode())
        report.messages_sent += 1
        await reply(f"message {index}")
    if args.message is None and not args.no_stdin:
        await _client_interactive(args, conn, report)
    if args.sess_out is not None:
        session = await _wait_for_session(conn, args.timeout)
        Path(args.sess_out).write_bytes(session.to_bytes())
        with contextlib.suppress(OSError):
            os.chmod(args.sess_out, 0o600)  # it holds the resumption secret
        report.session_saved = True


async def _wait_for_session(conn: AsyncConnection, timeout: float) -> Session:
    # The server's NewSessionTicket follows its handshake; it sets conn.session.
    deadline = time.monotonic() + timeout
    while conn.session is None:
        if conn.closed:
            raise errors.ConnectionStateError("closed before a session ticket arrived")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no session ticket within {timeout:g} s")
        await asyncio.sleep(0.005)
    return conn.session


def _start_stdin_reader(
    loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes | None]
) -> None:
    """stdin lines into `lines` (None at the end), from a daemon thread."""

    def put(line: bytes | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (Ctrl-C)
            loop.call_soon_threadsafe(lines.put_nowait, line)

    threading.Thread(target=_read_lines, args=(put,), name="dtls-stdin", daemon=True).start()


def _read_lines(put: Callable[[bytes | None], None]) -> None:
    """stdin line by line, then None, for a daemon thread (stdin has no portable async
    reader). It reads the file descriptor unbuffered: a thread blocked inside
    sys.stdin.buffer holds its lock, and Python aborts when it exits on Ctrl-C."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # no real stdin (embedded, tests)
        for line in getattr(sys.stdin, "buffer", ()):
            put(line.rstrip(b"\r\n"))
        put(None)
        return
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            put(line.rstrip(b"\r"))
    if pending:
        put(pending.rstrip(b"\r"))
    put(None)


async def _client_interactive(
    args: argparse.Namespace, conn: AsyncConnection, report: ClientReport
) -> None:
    """s_client style: each stdin line is a message; what arrives goes to stdout. At end
    of input, replies still on their way get a short grace period."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    _start_stdin_reader(loop, lines)

    async def receive() -> None:
        with contextlib.suppress(errors.ConnectionStateError):
            async for data in conn:
                report.messages_received += 1
                if args.json:
                    report.replies.append(bytes(data).decode(errors="replace"))
                else:
                    _write_data(data)

    receiver = asyncio.create_task(receive())
    try:
        while True:  # until end of input, or the peer closed
            next_line = asyncio.ensure_future(lines.get())
            await asyncio.wait({next_line, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not next_line.done():
                next_line.cancel()
                break
            line = next_line.result()
            if line is None:
                break
            await conn.send(line)
            report.messages_sent += 1
        grace = time.monotonic() + min(args.timeout, 1.0)
        while report.messages_received < report.messages_sent and time.monotonic() < grace:
            await asyncio.sleep(0.01)
    finally:
        if receiver.done():
            receiver.result()  # an error that ended the connection
        receiver.cancel()


def _load_session(path: str | None) -> Session | None:
    """--sess-in: a session saved by --sess-out."""
    if path is None:
        return None
    from .session import Session

    data = Path(path).read_bytes()
    try:
        return Session.from_bytes(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"no {exc}" if isinstance(exc, KeyError) else type(exc).__name__
        raise UsageError(f"--sess-in {path}: not a session saved by --sess-out ({detail})"
                         ) from None


async def _run_client(
    args: argparse.Namespace, ctx: Context, session: Session | None, report: ClientReport
) -> None:
    from . import aio

    try:
        if args.early_data is not None:
            conn = await aio.connect(
                args.host, args.port, ctx, server_name=args.servername, timeout=args.timeout,
                session=session, early_data=[args.early_data.encode()],
            )
        else:
            conn = await aio.connect(args.host, args.port, ctx, server_name=args.servername,
                                     timeout=args.timeout, session=session)
    except TimeoutError:
        raise TimeoutError(
            f"no handshake with {args.host}:{args.port} within {args.timeout:g} s"
        ) from None
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {args.host!r}: {exc.strerror}") from None
    if args.early_data is not None:
        report.messages_sent += 1
    report.fill(conn)
    if not args.json and not args.quiet:
        _err(_connected_line(args, report))
    try:
        await _client_exchange(args, conn, report)
    finally:
        report.fill(conn)  # retransmissions during the exchange
        await conn.close()


def _connected_line(args: argparse.Namespace, r: ClientReport) -> str:
    parts = [r.version or "?", r.cipher or "?", r.group or "psk_ke"]
    if r.alpn:
        parts.append(f"ALPN {r.alpn}")
    if r.resumed:
        parts.append("resumed")
    if r.early_data_accepted:
        parts.append("0-RTT accepted")
    if r.peer_cid is not None:
        parts.append(f"CID {r.local_cid or '-'}/{r.peer_cid or '-'}")
    if r.peer_subject:
        parts.append(r.peer_subject)
    if r.handshake_ms is not None:
        parts.append(f"{r.handshake_ms:.1f} ms")
    return f"connected to {args.host}:{args.port}: " + ", ".join(parts)


def cmd_client(args: argparse.Namespace) -> int:
    """`client HOST PORT`: connect, exchange messages, report."""
    _host_and_port(args)
    report = ClientReport()
    status = EXIT_OK
    with contextlib.ExitStack() as stack:
        ctx = client_context(args, stack)
        session = _load_session(args.sess_in)
        try:
            asyncio.run(_run_client(args, ctx, session, report))
        except KeyboardInterrupt:
            return 130
        except (errors.DTLSError, TimeoutError, OSError, ValueError) as exc:
            report.error = describe_error(exc)
            if isinstance(exc, errors.UnknownCA) and args.cafile is None:
                report.error += " (give the issuing CA with --cafile, or --no-verify to test)"
            _err(report.error)
            status = EXIT_FAILURE
    if args.json:
        print(json.dumps(asdict(report)), flush=True)
    return status


# ---------------------------------------------------------------------------------------
# server
# ---------------------------------------------------------------------------------------


@dataclass
class _ServerTotals:
    connections: int = 0
    failed: int = 0


def _connection_report(
    conn: AsyncConnection, received: int, sent: int, started: float, error: str | None
) -> dict[str, Any]:
    """What `server --json` prints for each connection when it ends."""
    hs = conn.handshake
    address = conn.peer_address
    return {
        "peer": f"{address[0]}:{address[1]}" if address else None,
        "version": hs.version if hs else None,
        "cipher": hs.cipher_suite if hs else None,
        "group": hs.group if hs else None,
        "alpn": hs.alpn_protocol if hs else None,
        "resumed": hs.resumed if hs else False,
        "early_data_accepted": hs.early_data_accepted if hs else False,
        "local_cid": _cid_hex(conn, "local"),
        "peer_cid": _cid_hex(conn, "peer"),
        "peer_subject": _peer_subject(conn),
        "messages_received": received,
        "messages_sent": sent,
        "retransmissions": conn.connection.retransmissions,
        "handshake_ms": _handshake_ms(conn),
        "duration_ms": round((time.monotonic() - started) * 1000, 3),
        "error": error,
        "stats": asdict(conn.connection.stats()),
    }


async def _run_server(args: argparse.Namespace, ctx: Context) -> int:
    from . import aio

    stop = asyncio.Event()
    totals = _ServerTotals()
    clients: set[AsyncConnection] = set()  # established, for stdin lines

    async def handle(conn: AsyncConnection) -> None:
        started = time.monotonic()
        received = sent = 0
        error = None
        clients.add(conn)
        try:
            async for message in conn:
                received += 1
                if args.echo:
                    try:
                        await conn.send(message)
                    except errors.ConnectionStateError:
                        break  # the peer's close_notify came with its last message: done
                    sent += 1
                elif not args.json:
                    _write_data(message)
        except Exception as exc:  # the connection failed: report it, keep serving
            error = describe_error(exc)
        finally:
            clients.discard(conn)
        totals.connections += 1
        totals.failed += error is not None
        if args.json:
            line = _connection_report(conn, received, sent, started, error)
            print(json.dumps(line), flush=True)
        elif not args.quiet:
            peer = conn.peer_address
            outcome = f"failed: {error}" if error else "closed"
            _err(f"connection from {peer[0]}:{peer[1]} {outcome} ({received} in, {sent} out)")
        if args.once:
            stop.set()

    options: dict[str, Any] = {}
    if args.max_connections is not None:
        options["max_connections"] = args.max_connections
    options.update(_worker_options(args, ctx))
    try:
        server = await aio.serve(handle, args.host, args.port, ctx, **options)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {args.host!r}: {exc.strerror}") from None
    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"listening on {host}:{server.port}", flush=True)
    _install_stop_signals(stop)
    watcher = asyncio.create_task(_watch_failed_handshakes(args, server, totals, stop))
    relay = None
    if not args.echo and not args.no_stdin:
        relay = asyncio.create_task(_send_stdin_lines(clients))
    try:
        await stop.wait()
        await watcher  # one last look at the counters
    finally:
        watcher.cancel()
        if relay is not None:
            relay.cancel()
        server.close()
        await server.wait_closed()
        if args.json and args.workers is not None:
            print(json.dumps(_server_stats_report(server)), flush=True)
    return EXIT_FAILURE if args.once and totals.failed else EXIT_OK


async def _send_stdin_lines(clients: set[AsyncConnection]) -> None:
    """s_server style: each stdin line goes as a message to every connected client."""
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()
    _start_stdin_reader(asyncio.get_running_loop(), lines)
    while (line := await lines.get()) is not None:
        for conn in list(clients):
            with contextlib.suppress(errors.DTLSError, OSError):
                await conn.send(line)


def _worker_options(args: argparse.Namespace, ctx: Context) -> dict[str, Any]:
    """`aio.serve` options from --workers, --secrets, --host-id, --drain-timeout."""
    from .cid_layout import CidLayout
    from .server_secret import ServerSecret
    from .workers import worker_count

    if args.secrets is not None:
        ctx.shared_secret = ServerSecret.from_file(args.secrets)
    try:
        workers = worker_count(args.workers) if args.workers is not None else 1
    except ValueError as exc:
        raise UsageError(f"--workers: {exc}") from None
    if workers == 1 and args.host_id is None:
        return {}
    if args.once and workers > 1:
        raise UsageError("--once serves one connection: it needs one worker")
    try:
        layout = CidLayout(host_id=args.host_id or 0)
    except ValueError as exc:
        raise UsageError(f"--host-id: {exc}") from None
    return {"workers": workers, "cid_layout": layout, "drain_timeout": args.drain_timeout}


def _server_stats_report(server: Any) -> dict[str, Any]:
    """The last `server --json --workers` line: the summed and the per-worker stats."""
    per_worker = getattr(server, "worker_stats", None)
    workers = (
        [{"worker": w.index, "pid": w.pid, "restarts": w.restarts, "stats": asdict(w.stats)}
         for w in per_worker()]
        if per_worker is not None
        else [{"worker": 0, "pid": os.getpid(), "restarts": 0, "stats": asdict(server.stats())}]
    )
    return {"server_stats": asdict(server.stats()), "workers": workers}


async def _watch_failed_handshakes(
    args: argparse.Namespace, server: Any, totals: _ServerTotals, stop: asyncio.Event
) -> None:
    """Handshakes that fail never reach the handler: report them from the endpoint's
    counters (and, with --once, a failed handshake is the one connection)."""
    seen = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
        stats = server.stats()
        failed = stats.handshakes_failed + stats.handshakes_timed_out
        for _ in range(failed - seen):
            totals.connections += 1
            totals.failed += 1
            if args.json:
                print(json.dumps({"error": "handshake failed"}), flush=True)
            elif not args.quiet:
                _err("a handshake failed")
            if args.once:
                stop.set()
        seen = failed


def cmd_server(args: argparse.Namespace) -> int:
    """`server`: answer DTLS clients, echoing or printing what they send."""
    with contextlib.ExitStack() as stack:
        ctx = server_context(args, stack)
        try:
            return asyncio.run(_run_server(args, ctx))
        except KeyboardInterrupt:
            return EXIT_OK
        except (errors.DTLSError, OSError) as exc:
            _err(describe_error(exc))
            return EXIT_FAILURE


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------


@dataclass
class DemoReport:
    """What `demo` measured; `--json` prints it as is."""

    ok: bool = False
    dtls_version: str = __version__
    openssl: str = ""
    server: str = ""
    version: str | None = None
    cipher: str | None = None
    group: str | None = None
    alpn: str | None = None
    peer_subject: str | None = None
    cookie_exchange: bool = False
    handshake_ms: float | None = None
    messages: int = 0
    message_size: int = 0
    messages_checked: int = 0
    echo_seconds: float = 0.0
    messages_per_second: float = 0.0
    megabytes_per_second: float = 0.0
    key_update_ms: float | None = None
    epoch_after_key_update: int | None = None
    messages_after_key_update: int = 0
    resumed: bool | None = None
    resumption_ms: float | None = None
    retransmissions: int = 0
    error: str | None = None


_PATTERN = bytes(range(256)) * 130  # 33,280 bytes: message bodies are slices of it


def _demo_payload(index: int, size: int) -> bytes:
    """Message `index`: its number, then bytes that depend on it (so each echo is checked)."""
    offset = index % 251
    return index.to_bytes(8, "big") + _PATTERN[offset : offset + size - 8]


async def _echo_burst(
    conn: AsyncConnection, count: int, size: int, window: int, timeout: float, first: int = 0
) -> int:
    """Send `count` messages, at most `window` unanswered, in bursts of at least half a
    window; check every echo. Returns the number checked; raises if one is wrong or none
    arrives for `timeout` seconds."""
    expected = {i: _demo_payload(i, size) for i in range(first, first + count)}
    in_flight = 0
    last_progress = time.monotonic()
    room = asyncio.Event()
    room.set()

    async def sender() -> None:
        nonlocal in_flight
        i = first
        while i < first + count:
            await room.wait()
            burst = min(window - in_flight, first + count - i)
            for j in range(i, i + burst):
                await conn.send(expected[j])
            in_flight += burst
            i += burst
            room.clear()

    async def receiver() -> int:
        nonlocal in_flight, last_progress
        checked = 0
        while checked < count:
            data = bytes(await conn.recv())
            index = int.from_bytes(data[:8], "big")
            if expected.pop(index, None) != data:
                raise ValueError(f"the echo of message {index} differs from what was sent")
            checked += 1
            in_flight -= 1
            last_progress = time.monotonic()
            if in_flight <= window // 2:
                room.set()
        return checked

    send_task = asyncio.create_task(sender())
    receive_task = asyncio.create_task(receiver())
    try:
        while not receive_task.done():
            await asyncio.wait([receive_task], timeout=timeout / 4)
            if send_task.done() and send_task.exception() is not None:
                raise send_task.exception()  # type: ignore[misc]
            if not receive_task.done() and time.monotonic() - last_progress > timeout:
                missing = len(expected)
                raise TimeoutError(f"{missing} of {count} echoes missing after {timeout:g} s")
        return receive_task.result()
    finally:
        send_task.cancel()
        receive_task.cancel()


async def _run_demo(args: argparse.Namespace, report: DemoReport) -> None:
    import dtls

    from . import aio

    report.openssl = dtls.openssl_version
    cert_pem, key_pem = self_signed_certificate()
    srv_ctx = Context.server(alpn_protocols=(DEMO_ALPN,), **_demo_suites(args))
    srv_ctx.load_cert_chain(certdata=cert_pem, keydata=key_pem)
    cli_ctx = Context.client(cadata=cert_pem, alpn_protocols=(DEMO_ALPN,), **_demo_suites(args))

    async def echo(conn: AsyncConnection) -> None:
        async for message in conn:
            await conn.send(message)

    async with await aio.serve(echo, "127.0.0.1", 0, srv_ctx) as server:
        report.server = f"127.0.0.1:{server.port}"
        conn = await aio.connect("127.0.0.1", server.port, cli_ctx, server_name="localhost",
                                 timeout=args.timeout)
        async with conn:
            hs = conn.handshake
            assert hs is not None
            report.version, report.cipher, report.group = hs.version, hs.cipher_suite, hs.group
            report.alpn = hs.alpn_protocol
            report.peer_subject = _peer_subject(conn)
            report.handshake_ms = _handshake_ms(conn)
            report.cookie_exchange = server.stats().cookies_sent > 0
            report.messages, report.message_size = args.messages, args.size

            started = time.perf_counter()
            report.messages_checked = await _echo_burst(
                conn, args.messages, args.size, args.window, args.timeout
            )
            elapsed = time.perf_counter() - started
            report.echo_seconds = round(elapsed, 4)
            report.messages_per_second = round(args.messages / elapsed, 1)
            report.megabytes_per_second = round(2 * args.messages * args.size / elapsed / 1e6, 3)

            started = time.perf_counter()
            await asyncio.wait_for(conn.update_keys(), args.timeout)
            report.key_update_ms = round((time.perf_counter() - started) * 1000, 3)
            report.epoch_after_key_update = conn.connection.send_epoch
            after = min(args.messages, 10)
            report.messages_after_key_update = await _echo_burst(
                conn, after, args.size, args.window, args.timeout, first=args.messages
            )
            report.retransmissions = conn.connection.retransmissions
            session = await _wait_for_session(conn, args.timeout)

        # a second connection resumes with the session ticket (RFC 9846 §2.2)
        again = await aio.connect("127.0.0.1", server.port, cli_ctx, server_name="localhost",
                                  timeout=args.timeout, session=session)
        async with again:
            report.resumed = bool(again.handshake and again.handshake.resumed)
            report.resumption_ms = _handshake_ms(again)
    report.ok = True


def _demo_suites(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.ciphers:
        settings["cipher_suites"] = parse_cipher_suites(args.ciphers)
    if args.groups:
        settings["groups"] = parse_groups(args.groups)
    return settings


def format_demo(r: DemoReport) -> str:
    """The human-readable demo report."""
    lines = [
        f"dtls13 {r.dtls_version} demo: a DTLS 1.3 server and client in one process "
        f"over loopback ({r.openssl})",
        f"  server       {r.server}, ephemeral self-signed ECDSA P-256 certificate",
    ]
    if r.version is not None:
        cookie = ", cookie exchange (HelloRetryRequest)" if r.cookie_exchange else ""
        lines += [
            f"  handshake    {r.version}, {r.cipher}, {r.group}, ALPN {r.alpn}{cookie}: "
            f"{r.handshake_ms:.1f} ms",
            f"  server cert  {r.peer_subject}, verified (pinned)",
        ]
    if r.messages_checked:
        lines.append(
            f"  echo         {r.messages_checked:,} messages of {r.message_size:,} bytes "
            f"there and back, every echo checked: {r.echo_seconds:.2f} s, "
            f"{r.messages_per_second:,.0f} messages/s, {r.megabytes_per_second:.1f} MB/s "
            "(both directions)"
        )
    if r.key_update_ms is not None:
        lines.append(
            f"  key update   KeyUpdate acknowledged in {r.key_update_ms:.1f} ms, now epoch "
            f"{r.epoch_after_key_update}; {r.messages_after_key_update} more echoes checked"
        )
    if r.resumed is not None:
        outcome = "resumed" if r.resumed else "NOT resumed (full handshake)"
        lines.append(
            f"  resumption   second connection with the session ticket: {outcome}, "
            f"{r.resumption_ms:.1f} ms"
        )
    lines.append(f"  retransmits  {r.retransmissions}")
    lines.append("  result       " + ("OK" if r.ok else f"FAILED: {r.error}"))
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo`: server and client in one process; handshake, echo burst, key update."""
    if args.size < 8 or args.size > 16384:
        raise UsageError("--size must be 8 to 16384 bytes")
    if args.messages < 1 or args.window < 1:
        raise UsageError("--messages and --window must be at least 1")
    report = DemoReport()
    try:
        asyncio.run(_run_demo(args, report))
    except (errors.DTLSError, TimeoutError, OSError, ValueError) as exc:
        report.error = describe_error(exc)
    if args.json:
        print(json.dumps(asdict(report)), flush=True)
    else:
        print(format_demo(report), flush=True)
    if report.error:
        _err(report.error)
    return EXIT_OK if report.ok else EXIT_FAILURE


# ---------------------------------------------------------------------------------------
# bench and sim: delegated
# ---------------------------------------------------------------------------------------

BENCH_SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "bench_e2e.py"


def cmd_bench(argv: Sequence[str]) -> int:
    """`bench`: bench/bench_e2e.py from the source tree."""
    if not BENCH_SCRIPT.is_file():
        _err(f"the end-to-end benchmark ships with the source tree ({BENCH_SCRIPT} not found)")
        return EXIT_FAILURE
    spec = importlib.util.spec_from_file_location("dtls_bench_e2e", BENCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(list(argv), prog=f"{program_name()} bench"))


def cmd_sim(argv: Sequence[str]) -> int:
    """`sim`: the simulator's own command line (dtls.sim.cli)."""
    try:
        from .sim import cli as sim_cli
    except ImportError as exc:
        _err(f"the simulator (dtls.sim) is not available: {exc}")
        return EXIT_FAILURE
    return int(sim_cli.main(list(argv)))


# ---------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------

EXAMPLES = """\
examples:
  python -m dtls demo
  python -m dtls server --port 4433 --echo
  python -m dtls client 127.0.0.1 4433 --no-verify --message hello --message again
  python -m dtls server --cert cert.pem --key key.pem --cafile ca.pem --require-client-cert
  python -m dtls client localhost 4433 --cafile ca.pem --cert client.pem --key client.key
  python -m dtls bench --duration 1
  python -m dtls sim --clients 1000 --loss 1%
"""


def _add_password_option(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--pass", dest="password", metavar="SOURCE",
                       help="password of an encrypted --key, as in openssl: pass:TEXT, "
                            "env:VARIABLE or file:PATH")


def _add_common_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol")
    g.add_argument("--ciphers", metavar="LIST",
                   help="IANA cipher suite names, comma separated, in preference order")
    g.add_argument("--groups", metavar="LIST",
                   help="key exchange groups, comma separated (x25519, secp256r1, "
                        "secp384r1, x25519mlkem768, ...)")
    g.add_argument("--alpn", metavar="LIST", help="ALPN protocols, comma separated")
    g.add_argument("--mtu", type=_int_at_least(MIN_DATAGRAM_SIZE, 65527), metavar="BYTES",
                   help="largest datagram to send (default 1200); handshake messages are "
                        "fragmented to fit")
    g.add_argument("--cid", nargs="?", const="", metavar="HEX",
                   help="negotiate connection IDs; HEX is the one this side receives "
                        "(no value: zero-length)")
    g.add_argument("--psk-identity", metavar="TEXT", help="external PSK identity")
    g.add_argument("--psk", metavar="HEX", help="external PSK key")
    g.add_argument("--srtp", metavar="LIST",
                   help="DTLS-SRTP protection profiles, comma separated (RFC 5764), e.g. "
                        "SRTP_AEAD_AES_128_GCM,SRTP_AES128_CM_HMAC_SHA1_80")
    g.add_argument("--record-size-limit", type=_int_at_least(64, 16385), metavar="BYTES",
                   help="largest record plaintext this side accepts (RFC 8449, 64..16385)")
    g.add_argument("--confidentiality-limit", type=_int_at_least(1), metavar="RECORDS",
                   help="records sealed per key before a KeyUpdate (RFC 9147 §4.5.3; "
                        "default: the suite's limit)")
    g.add_argument("--integrity-limit", type=_int_at_least(1), metavar="RECORDS",
                   help="records failing authentication per key before closing "
                        "(default: the suite's limit)")
    g.add_argument("--raw-public-key", action="store_true",
                   help="present --key as a raw public key (RFC 7250), no certificate")
    g.add_argument("--pin-key", action="append", metavar="FILE",
                   help="accept the peer's raw public key in FILE (PEM); repeatable")
    g.add_argument("--keylogfile", metavar="FILE",
                   help="append NSS key-log lines (default: $SSLKEYLOGFILE if set)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="machine-readable output")
    o.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    o.add_argument("-v", "--verbose", action="count", default=0,
                   help="log to stderr: handshake failures (-v); also state changes, "
                        "retransmissions and drops (-vv), like s_client -state; never secrets")


def program_name() -> str:
    """How we were run, for usage lines: `dtls` (the console script) or `python -m dtls`."""
    return "dtls" if Path(sys.argv[0]).name == "dtls" else "python -m dtls"


def build_parser() -> argparse.ArgumentParser:
    prog = program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="DTLS 1.3 (RFC 9147) from the command line.",
        epilog=(
            EXAMPLES if BENCH_SCRIPT.is_file()
            else EXAMPLES.replace("  python -m dtls bench --duration 1\n", "")
        ).replace("python -m dtls", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dtls13 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("client", help="connect to a DTLS server (like openssl s_client)",
                       description="Connect, send each --message and print each reply (or "
                                   "send stdin lines), then close.")
    c.add_argument("host", metavar="HOST",
                   help="server name or address; also HOST:PORT or [IPv6]:PORT")
    c.add_argument("port", type=_port, nargs="?", metavar="PORT",
                   help=f"UDP port (default {DEFAULT_PORT})")
    a = c.add_argument_group("authentication")
    a.add_argument("--cafile", metavar="FILE",
                   help="trust anchors for the server certificate (default: the system's)")
    a.add_argument("--no-verify", action="store_true",
                   help="do not verify the server certificate (testing only)")
    a.add_argument("--servername", metavar="NAME",
                   help="SNI and the name checked in the certificate (default: HOST)")
    a.add_argument("--cert", metavar="FILE", help="client certificate chain (PEM)")
    a.add_argument("--key", metavar="FILE", help="client private key (default: in --cert)")
    _add_password_option(a)
    _add_common_options(c)
    x = c.add_argument_group("exchange")
    x.add_argument("--message", action="append", metavar="TEXT",
                   help="send TEXT and print the reply (repeatable); without it stdin "
                        "lines are sent")
    x.add_argument("--no-stdin", action="store_true",
                   help="without --message: do not read stdin, just handshake and close")
    x.add_argument("--key-update", action="store_true",
                   help="send a KeyUpdate (peer asked to update too) before the messages")
    x.add_argument("--sess-out", metavar="FILE",
                   help="save the session from the server's first NewSessionTicket")
    x.add_argument("--sess-in", metavar="FILE", help="resume the session saved in FILE")
    x.add_argument("--early-data", metavar="TEXT",
                   help="send TEXT as 0-RTT early data (with --sess-in) and print the reply")
    x.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"for the handshake and for each reply (default {DEFAULT_TIMEOUT:g})")
    c.set_defaults(func=cmd_client)

    s = sub.add_parser("server", help="serve DTLS (like openssl s_server)",
                       description="Serve DTLS clients: print or echo what they send.")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=_bind_port, default=DEFAULT_PORT,
                   help=f"UDP port (default {DEFAULT_PORT}; 0: any free port)")
    a = s.add_argument_group("authentication")
    a.add_argument("--cert", metavar="FILE",
                   help="certificate chain (PEM); without it an ephemeral self-signed one")
    a.add_argument("--key", metavar="FILE", help="private key (default: in --cert)")
    _add_password_option(a)
    a.add_argument("--cafile", metavar="FILE", help="trust anchors for client certificates")
    a.add_argument("--require-client-cert", action="store_true",
                   help="mutual authentication: require a client certificate that verifies "
                        "against --cafile")
    _add_common_options(s)
    x = s.add_argument_group("serving")
    x.add_argument("--cookie", choices=(CookieMode.ALWAYS, CookieMode.NEVER, CookieMode.AUTO),
                   help="stateless cookie HelloRetryRequest (RFC 9147 §5.1): default always; "
                        "auto with --early-data, as a HelloRetryRequest rules out 0-RTT")
    x.add_argument("--echo", action="store_true",
                   help="send every message back (without it: print them, and send each "
                        "stdin line to the connected clients)")
    x.add_argument("--no-stdin", action="store_true",
                   help="without --echo: do not read stdin (for a server in the background)")
    x.add_argument("--no-tickets", action="store_true",
                   help="send no NewSessionTicket: no resumption (like -no_ticket)")
    x.add_argument("--max-connections", type=_int_at_least(1), metavar="N",
                   help="connections served at once at most")
    x.add_argument("--once", action="store_true", help="exit after one connection ends")
    x.add_argument("--early-data", action="store_true",
                   help="accept 0-RTT early data in resumed sessions")
    x.add_argument("--max-early-data", type=_int_at_least(0, 2**32 - 1), default=16384,
                   metavar="BYTES",
                   help="with --early-data: how much a ticket admits (default 16384)")
    w = s.add_argument_group("workers and fleets (docs/fleet.md)")
    w.add_argument("--workers", metavar="N",
                   help="worker processes on the port (SO_REUSEPORT, records steered by "
                        "CID); auto: one per CPU (default 1)")
    w.add_argument("--secrets", metavar="FILE",
                   help="the master secret cookie and ticket keys derive from, shared by a "
                        "fleet (created 0600 if absent)")
    w.add_argument("--host-id", type=int, metavar="N",
                   help="this host's id in the CIDs it issues (one byte, default 0)")
    w.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="on SIGTERM, how long workers may take to close (default 10)")
    s.set_defaults(func=cmd_server)

    d = sub.add_parser("demo", help="server and client in one process: a guided tour",
                       description="Start a server and a client on loopback in this process, "
                                   "handshake, echo a burst of messages, update keys, resume, "
                                   "and report what was negotiated and how fast it went.")
    d.add_argument("--messages", type=int, default=1000, help="messages to echo (default 1000)")
    d.add_argument("--size", type=int, default=1200, help="bytes per message (default 1200)")
    d.add_argument("--window", type=int, default=64,
                   help="messages in flight at most (default 64)")
    d.add_argument("--ciphers", metavar="LIST", help="cipher suites to offer")
    d.add_argument("--groups", metavar="LIST", help="groups to offer")
    d.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"for the handshake and each step (default {DEFAULT_TIMEOUT:g})")
    d.add_argument("--json", action="store_true", help="one JSON object instead of the report")
    d.set_defaults(func=cmd_demo)

    # These two parse their own arguments (see main()); listed here for --help. `bench`
    # runs bench/bench_e2e.py, which only a source checkout has: installs from a wheel
    # have no `bench` subcommand.
    if BENCH_SCRIPT.is_file():
        sub.add_parser("bench", help="end-to-end loopback benchmark against plain UDP "
                       "(source checkouts only)", add_help=False)
    sub.add_parser("sim", help="discrete-event simulator (dtls.sim)", add_help=False)
    return parser


@contextlib.contextmanager
def _log_to_stderr(verbosity: int) -> Iterator[None]:
    """-v: the library's INFO records (failures) on stderr; -vv: DEBUG too."""
    if verbosity <= 0:
        yield
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dtls: %(name)s: %(message)s"))
    library = logging.getLogger("dtls")
    level = library.level
    library.addHandler(handler)
    library.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m dtls` and the `dtls` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench" and BENCH_SCRIPT.is_file():
        return cmd_bench(argv[1:])
    if argv and argv[0] == "sim":
        return cmd_sim(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _log_to_stderr(getattr(args, "verbose", 0)):
            return int(args.func(args))
    except UsageError as exc:
        parser.error(str(exc))
    except (errors.ConfigurationError, OSError) as exc:
        # a bad file, suite, group, ...: before any connection was tried
        _err(describe_error(exc))
        return EXIT_USAGE if isinstance(exc, errors.ConfigurationError) else EXIT_FAILURE
    return EXIT_FAILURE  # not reached: parser.error exits


if __name__ == "__main__":
    raise SystemExit(main())
