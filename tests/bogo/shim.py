"""A BoGo shim (BoringSSL's ssl/test/runner) over the sans-I/O engine, DTLS 1.3 only.

The runner starts this program once per test with BoringSSL's shim flags (test_config.cc),
and it connects back over TCP, sends its 8-byte shim ID and then speaks the runner's DTLS
framing (packeted_bio.cc): 'P' + u32 length + a datagram, either way; 'T' + u64 nanoseconds:
advance the clock by that much and run the timer, answered with 't'; 'M' + u32: the MTU;
'E' + u64: the timeout the shim must have now (all ones: none). The runner owns time, and
the engine takes `now` from us, so the clock here is a plain counter.

After the handshake the shim does what bssl_shim.cc's DoExchange does: checks the `-expect-*`
values, optionally writes first, then echoes every record XORed with 0xff until the peer's
close_notify, and shuts down. A flag or mode not implemented exits 89 (the runner counts it
apart with -allow-unimplemented).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

UNIMPLEMENTED = 89
_log = logging.getLogger("bogo.shim")
DTLS13 = 0xFEFC

# flags that take no value (the ones this shim knows; others exit 89)
_BOOL_FLAGS = {
    "-server",
    "-dtls",
    "-ipv6",
    "-async",
    "-implicit-handshake",
    "-verify-peer",
    "-require-any-client-certificate",
    "-shim-writes-first",
    "-shim-shuts-down",
    "-check-close-notify",
    "-expect-hrr",
    "-expect-no-hrr",
    "-expect-session-miss",
    "-expect-no-session",
    "-key-update",
    "-key-update-before-read",
    "-send-alert",
    "-use-export-context",
    "-expect-no-server-name",
    "-enable-early-data",
    "-expect-ticket-supports-early-data",
    "-verify-fail",
    "-use-custom-verify-callback",
    "-expect-no-session-id",
    "-no-ticket",
    "-decline-alpn",
    "-expect-accept-early-data",
    "-expect-reject-early-data",
    "-expect-no-offer-early-data",
    "-handshake-twice",
    "-no-op-extra-handshake",
    "-reverify-on-resume",
    "-allow-unknown-alpn-protos",
    "-is-handshaker-supported",
    "-expect-verify-result",
    "-use-old-client-cert-callback",
    "-no-tls1",
    "-no-tls11",
    "-no-tls12",
    "-no-tls13",
}
# flags whose effect here is none: BoringSSL internals the engine has no counterpart for
# and that do not change what goes on the wire (sync vs async BIOs, callback styles)
_IGNORED = {
    "-async",
    "-use-custom-verify-callback",
    "-reverify-on-resume",
    "-use-old-client-cert-callback",
    # we implement DTLS 1.3 only: turning the older versions off changes nothing
    "-no-tls1",
    "-no-tls11",
    "-no-tls12",
}
_VALUE_FLAGS = {
    "-port",
    "-shim-id",
    "-cert-file",
    "-key-file",
    "-trust-cert",
    "-resume-count",
    "-mtu",
    "-export-keying-material",
    "-export-label",
    "-export-context",
    "-psk",
    "-psk-identity",
    "-initial-timeout-duration-ms",
    "-advertise-alpn",
    "-select-alpn",
    "-expect-alpn",
    "-expect-server-name",
    "-host-name",
    "-curves",
    "-min-version",
    "-max-version",
    "-read-size",
    "-expect-curve-id",
    "-expect-cipher",
    "-expect-version",
    "-expect-peer-signature-algorithm",
    "-expect-early-data-reason",
    "-cipher",
    "-expect-advertised-alpn",
    "-signing-prefs",
    "-verify-prefs",
    "-srtp-profiles",
}
# flags that are repeated, one value each
_LIST_FLAGS = {"-curves", "-signing-prefs", "-verify-prefs"}


class Unimplemented(Exception):
    """A flag or mode this shim does not implement."""


class Failure(Exception):
    """The test failed on our side; the message goes to stderr for the runner."""


class Config:
    """One connection's flags (bssl_shim's TestConfig): initial, resume or retry."""

    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}

    def has(self, name: str) -> bool:
        return name in self.flags

    def get(self, name: str, default: Any = None) -> Any:
        return self.flags.get(name, default)


def parse(argv: list[str]) -> tuple[Config, Config, Config]:
    """The initial, resume and retry configs (test_config.cc: -on-initial-, -on-resume-,
    -on-retry- apply to one of them; plain flags to all)."""
    initial, resume, retry = Config(), Config(), Config()
    i = 0
    while i < len(argv):
        arg = argv[i]
        targets = [initial, resume, retry]
        for prefix, only in (
            ("-on-initial-", initial),
            ("-on-resume-", resume),
            ("-on-retry-", retry),
        ):
            if arg.startswith(prefix):
                arg = "-" + arg[len(prefix) :]
                targets = [only]
                break
        if arg in _BOOL_FLAGS:
            for t in targets:
                t.flags[arg] = True
            i += 1
            continue
        if arg in _VALUE_FLAGS:
            if i + 1 >= len(argv):
                raise Unimplemented(f"missing value for {arg}")
            value = argv[i + 1]
            for t in targets:
                if arg in _LIST_FLAGS:
                    t.flags.setdefault(arg, []).append(value)
                else:
                    t.flags[arg] = value
            i += 2
            continue
        raise Unimplemented(f"flag {argv[i]}")
    return initial, resume, retry


def check_supported(cfg: Config) -> None:
    if not cfg.has("-dtls"):
        raise Unimplemented("TLS (only DTLS here)")
    if int(cfg.get("-max-version", DTLS13)) != DTLS13 and int(cfg.get("-max-version")) > DTLS13:
        raise Unimplemented("a DTLS version other than 1.3")
    if cfg.has("-min-version") and int(cfg.get("-min-version")) < DTLS13:
        pass  # a lower minimum still negotiates 1.3 with us
    for flag in ("-send-alert", "-enable-early-data", "-no-tls13"):
        if cfg.has(flag):
            raise Unimplemented(flag)


def _alpn_list(wire: str) -> list[str]:
    """-advertise-alpn's value: length-prefixed names, as in the extension (RFC 7301)."""
    raw = wire.encode("latin-1")
    out, i = [], 0
    while i < len(raw):
        n = raw[i]
        out.append(raw[i + 1 : i + 1 + n].decode("latin-1"))
        i += 1 + n
    return out


#: the server's ticket keys, kept from one connection of a test to the next
_SERVER_TICKET_KEYS: list[Any] = [None]
#: the runner's clock, in seconds: it only moves forward, across connections too
_CLOCK: list[float] = [1000.0]
#: the verify callback refused a chain (SSL_get_verify_result; a resumed session keeps it)
_VERIFY_FAILED: list[bool] = [False]


class Shim:
    """One connection to the runner, driving a dtls.Connection."""

    def __init__(self, cfg: Config, session: Any, is_resume: bool) -> None:
        self.cfg = cfg
        self.is_resume = is_resume
        self.offer_session = session
        self.now = _CLOCK[0]
        self.new_session: Any = None
        self.sock = self._connect()
        self.conn = self._new_connection()
        self.done = False  # the peer's close_notify arrived
        self.handshake_done = False
        self.inbox: list[bytes] = []

    def _connect(self) -> socket.socket:
        family, host = (
            (socket.AF_INET6, "::1") if self.cfg.has("-ipv6") else (socket.AF_INET, "127.0.0.1")
        )
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect((host, int(self.cfg.get("-port"))))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(struct.pack("<Q", int(self.cfg.get("-shim-id", "0"))))
        return s

    def _new_connection(self) -> Any:
        import ssl

        import dtls
        from dtls.errors import CertificateError
        from dtls.iana import AlertDescription
        from dtls.session import ExternalPsk
        from dtls.srtp import SrtpProfile

        cfg = self.cfg
        server = cfg.has("-server")
        settings: dict[str, Any] = {
            "check_hostname": False,
            "verify_mode": ssl.CERT_NONE,
            "session_tickets": 0 if cfg.has("-no-ticket") else 2,
            # BoringSSL's DTLS 1.3 initial retransmit timeout (d1_lib.cc), which the
            # runner's timeout checks expect
            "initial_retransmit_timeout": 0.4,
            # BoringSSL fails a handshake after 12 timeouts (DTLS1_MAX_TIMEOUTS) and has
            # no overall handshake deadline; the runner's timeout schedule expects both
            "max_retransmissions": 12,
            "handshake_timeout": float("inf"),
            # BoringSSL's replay window (DTLSReplayBitmap: 256 records), which
            # DTLS-Replay-NonMonotonic's reordering by up to 255 records needs
            "replay_window": 256,
        }
        if cfg.has("-mtu"):
            settings["max_datagram_size"] = int(cfg.get("-mtu"))
        if cfg.has("-initial-timeout-duration-ms"):
            settings["initial_retransmit_timeout"] = (
                int(cfg.get("-initial-timeout-duration-ms")) / 1000
            )
        if cfg.has("-curves"):
            settings["groups"] = tuple(int(c) for c in cfg.get("-curves"))
        if cfg.has("-psk"):
            settings["psk"] = ExternalPsk(
                cfg.get("-psk-identity", "").encode(), cfg.get("-psk").encode()
            )
            settings["psk_key_exchange_modes"] = (1, 0)
        if cfg.has("-srtp-profiles"):
            # OpenSSL's names (SRTP_AES128_CM_SHA1_80), RFC 5764 §4.1.2's code points
            names = {
                "SRTP_AES128_CM_SHA1_80": SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80,
                "SRTP_AES128_CM_SHA1_32": SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_32,
                "SRTP_AEAD_AES_128_GCM": SrtpProfile.SRTP_AEAD_AES_128_GCM,
                "SRTP_AEAD_AES_256_GCM": SrtpProfile.SRTP_AEAD_AES_256_GCM,
            }
            try:
                settings["srtp_profiles"] = tuple(
                    names[n] for n in cfg.get("-srtp-profiles").split(":")
                )
            except KeyError as exc:
                raise Unimplemented(f"SRTP profile {exc}") from None
        if server:
            settings["cookie_mode"] = dtls.CookieMode.NEVER
            if cfg.has("-select-alpn"):
                settings["alpn_protocols"] = (cfg.get("-select-alpn"),)
        elif cfg.has("-advertise-alpn"):
            settings["alpn_protocols"] = tuple(_alpn_list(cfg.get("-advertise-alpn")))
        ctx = dtls.Context(is_client=not server, **settings)
        if server:
            # one SSL_CTX across the test's connections: the same ticket keys
            ctx._ticket_keys = _SERVER_TICKET_KEYS[0]
            _SERVER_TICKET_KEYS[0] = ctx.ticket_keys()
        if cfg.has("-cert-file"):
            ctx.load_cert_chain(cfg.get("-cert-file"), cfg.get("-key-file"))
        if cfg.has("-trust-cert"):
            ctx.load_verify_locations(cafile=cfg.get("-trust-cert"))
        if cfg.has("-verify-peer") or cfg.has("-require-any-client-certificate"):
            required = cfg.has("-require-any-client-certificate") or not server
            ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
            if server:
                ctx.request_client_certificate = True
        if cfg.has("-verify-fail"):
            # As bssl_shim's callbacks: the custom one fails with certificate_unknown, the
            # X509 one with handshake_failure; without -verify-peer (SSL_VERIFY_NONE) the
            # failure is only recorded (the soft-fail tests read it back).
            alert = (
                AlertDescription.CERTIFICATE_UNKNOWN
                if cfg.has("-use-custom-verify-callback")
                else AlertDescription.HANDSHAKE_FAILURE
            )
            hard = cfg.has("-verify-peer") or cfg.has("-require-any-client-certificate")

            def refuse(chain: Any, name: str | None) -> None:
                _VERIFY_FAILED[0] = True
                if hard:
                    raise CertificateError("verify callback refused the chain", alert=alert)

            ctx.verify_callback = refuse
        conn = dtls.Connection(
            ctx,
            server_name=cfg.get("-host-name"),
            session=self.offer_session if not server else None,
            peer_address=("runner", 0),
        )
        return conn

    # ---- the runner's framing ----
    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def flush(self) -> None:
        out = self.conn.datagrams_to_send(self.now)
        for d, _ in out:
            _log.debug("%.3f send %d bytes: %s", self.now, len(d), d[:24].hex())
        if not out:
            return
        try:
            self.sock.sendall(b"".join(b"P" + struct.pack(">I", len(d)) + d for d, _ in out))
        except OSError:
            from dtls.connection import HandshakeState

            # The runner may close its end as soon as it has sent close_notify: our
            # answering close_notify then meets a closed socket, which is no failure.
            if self.conn.state is not HandshakeState.CLOSED:
                raise

    def pump(self) -> None:
        """Read one thing from the runner and act on it."""
        op = self._read_exact(1)
        _log.debug("%.3f runner %r", self.now, op)
        if op == b"P":
            (n,) = struct.unpack(">I", self._read_exact(4))
            self.conn.receive_datagram(self._read_exact(n), ("runner", 0), self.now)
        elif op == b"T":
            (ns,) = struct.unpack(">Q", self._read_exact(8))
            self.sock.sendall(b"t")
            self.now += ns / 1e9
            _CLOCK[0] = self.now
            self.conn.handle_timer(self.now)
        elif op == b"M":
            (mtu,) = struct.unpack(">I", self._read_exact(4))
            self.conn.context.max_datagram_size = mtu
        elif op == b"E":
            (ns,) = struct.unpack(">Q", self._read_exact(8))
            timer = self.conn.get_timer()
            if timer == float("inf"):
                timer = None  # the handshake deadline, which we turned off
            if ns == (1 << 64) - 1:
                if timer is not None:
                    raise Failure(f"Expected no timeout, but got {timer - self.now:.6f}s.")
            elif timer is None:
                raise Failure(f"Expected timeout of {ns / 1e9:.6f}s, but got none.")
            elif abs((timer - self.now) - ns / 1e9) > 1e-6:
                raise Failure(
                    f"Expected timeout of {ns / 1e9:.6f}s, but got {timer - self.now:.6f}s."
                )
        else:
            raise Failure(f"Unknown opcode, {op[0]}")
        self.flush()
        self.events()

    def events(self) -> None:
        from dtls.events import (
            ConnectionClosed,
            DataReceived,
            HandshakeCompleted,
            SessionTicketReceived,
        )

        while (ev := self.conn.next_event()) is not None:
            if isinstance(ev, HandshakeCompleted):
                self.handshake_done = True
            elif isinstance(ev, DataReceived):
                self.inbox.append(ev.data)
            elif isinstance(ev, SessionTicketReceived):
                self.new_session = ev.session
            elif isinstance(ev, ConnectionClosed):
                if ev.error or (ev.alert not in (None, 0)):
                    raise Failure(
                        f"connection failed: {ev.reason} (alert {ev.alert})"
                        f"{' from peer' if ev.by_peer else ''}: {_error_name(ev.alert, ev.reason)}"
                    )
                self.done = True

    # ---- DoExchange ----
    def run(self) -> Any:
        cfg = self.cfg
        if not cfg.has("-server"):
            self.conn.connect(("runner", 0), self.now)
            self.flush()
        while not self.handshake_done:
            if self.done:
                raise Failure("connection closed during the handshake")
            self.pump()
        self.check_handshake()
        if cfg.has("-export-keying-material"):
            label = cfg.get("-export-label", "")
            context = (
                cfg.get("-export-context", "").encode() if cfg.has("-use-export-context") else b""
            )
            # RFC 9846 §7.5: no context and an empty one are the same in (D)TLS 1.3
            self.write(
                self.conn.export_keying_material(
                    label, context, int(cfg.get("-export-keying-material"))
                )
            )
        if cfg.has("-shim-writes-first"):
            self.write(b"hello")
        if not cfg.has("-shim-shuts-down"):
            while True:
                if cfg.has("-key-update-before-read"):
                    self.conn.update_keys(request_peer_update=False)
                    self.flush()
                try:
                    while not self.inbox and not self.done:
                        self.pump()
                except EOFError:
                    break
                if self.done and not self.inbox:
                    break
                data = self.inbox.pop(0)
                if cfg.has("-key-update"):
                    self.conn.update_keys(request_peer_update=False)
                self.write(bytes(b ^ 0xFF for b in data))
        if not cfg.has("-server"):
            expect_new = not any(
                cfg.has(f) for f in ("-expect-no-session", "-shim-shuts-down", "-psk")
            )
            if expect_new != (self.new_session is not None):
                raise Failure(
                    "new session was%s cached, but we expected the opposite"
                    % ("" if self.new_session is not None else " not")
                )
        self.conn.close()
        with contextlib.suppress(OSError):
            self.flush()
        if cfg.has("-shim-shuts-down") and cfg.has("-check-close-notify"):
            try:
                while not self.done:
                    self.pump()
            except EOFError:
                raise Failure("no close_notify from the peer") from None
        return self.new_session

    def linger(self) -> None:
        """After a failure: send what is queued (our alert), then read until the runner
        closes, so that it reads the alert rather than a reset connection."""
        with contextlib.suppress(OSError):
            self.flush()
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(10)
            while self.sock.recv(65536):
                pass

    def write(self, data: bytes) -> None:
        self.conn.send(data)
        self.flush()

    def check_handshake(self) -> None:
        cfg, conn = self.cfg, self.conn
        retried = bool(getattr(conn._handshake, "_retried", False)) if conn.is_client else False
        if cfg.has("-expect-hrr") and conn.is_client and not retried:
            raise Failure("Got no HRR, but wanted opposite.")
        if cfg.has("-expect-no-hrr") and retried:
            raise Failure("Got HRR, but wanted opposite.")
        if (
            self.is_resume
            and not cfg.has("-psk")
            and cfg.has("-expect-session-miss") == bool(conn.resumed)
        ):
            raise Failure(f"session unexpectedly {'' if conn.resumed else 'not '}reused")
        if cfg.has("-expect-alpn") and conn.alpn_protocol != cfg.get("-expect-alpn"):
            raise Failure(f"Bad ALPN: {conn.alpn_protocol!r}")
        if cfg.has("-expect-server-name") and conn.server_name != cfg.get("-expect-server-name"):
            raise Failure(f"Bad server name: {conn.server_name!r}")
        if cfg.has("-expect-no-server-name") and conn.server_name:
            raise Failure("unexpected server name")
        if cfg.has("-expect-curve-id") and conn.group != int(cfg.get("-expect-curve-id")):
            raise Failure(f"Bad group: {conn.group}")
        if cfg.has("-expect-cipher") and conn.cipher_suite != int(cfg.get("-expect-cipher")):
            raise Failure(f"Bad cipher: {conn.cipher_suite}")
        if cfg.has("-expect-version") and int(cfg.get("-expect-version")) != DTLS13:
            raise Failure("Bad version")
        if not conn.resumed and not cfg.has("-verify-fail"):
            _VERIFY_FAILED[0] = False
        if cfg.has("-expect-verify-result") and _VERIFY_FAILED[0] != cfg.has("-verify-fail"):
            raise Failure("Wrong certificate verification result")
        needs_cert = not cfg.has("-psk") and (
            not cfg.has("-server") or cfg.has("-require-any-client-certificate")
        )
        if needs_cert and not (conn.peer_certificates or conn.resumed):
            raise Failure("Received no peer certificate but expected one.")


def _error_name(alert: int | None, reason: str) -> str:
    """A BoringSSL-style error token for an alert we sent or got (the config's ErrorMap
    maps BoringSSL's strings to these)."""
    names = {
        10: "UNEXPECTED_MESSAGE",
        20: "BAD_RECORD_MAC",
        40: "HANDSHAKE_FAILURE",
        42: "BAD_CERTIFICATE",
        47: "ILLEGAL_PARAMETER",
        50: "DECODE_ERROR",
        51: "DECRYPT_ERROR",
        70: "PROTOCOL_VERSION",
        80: "INTERNAL_ERROR",
        109: "MISSING_EXTENSION",
        110: "UNSUPPORTED_EXTENSION",
        120: "NO_APPLICATION_PROTOCOL",
    }
    return f":{names.get(alert or 0, 'ERROR')}:"


def main(argv: list[str]) -> int:
    if "-is-handshaker-supported" in argv:
        print("No")
        return 0
    if os.environ.get("BOGO_SHIM_LOG"):
        # debugging: the engine's log and the runner's opcodes, appended to this file
        logging.basicConfig(
            filename=os.environ["BOGO_SHIM_LOG"], level=logging.DEBUG, format="%(message)s"
        )
        logging.debug("shim %s", " ".join(argv))
    try:
        initial, resume, _retry = parse(argv)
        for cfg in (initial, resume):
            check_supported(cfg)
        session: Any = None
        shim: Shim | None = None
        for i in range(int(initial.get("-resume-count", "0")) + 1):
            cfg = resume if i else initial
            if i and not cfg.has("-server") and session is None and not cfg.has("-psk"):
                print("No session to offer.", file=sys.stderr)
                return 1
            shim = None
            shim = Shim(cfg, session, is_resume=i > 0)
            session = shim.run() or session
    except Unimplemented as exc:
        print(f"unimplemented: {exc}", file=sys.stderr)
        return UNIMPLEMENTED
    except Failure as exc:
        print(exc, file=sys.stderr)
        if shim is not None:
            shim.linger()
        return 1
    except EOFError:
        print("runner closed the connection early", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"runner connection failed: {exc!r}", file=sys.stderr)
        return 1
    return 0


_run: Callable[[list[str]], int] = main

if __name__ == "__main__":
    sys.exit(_run(sys.argv[1:]))
