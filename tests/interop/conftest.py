"""Shared fixtures for the live interop tests (wolfSSL and BoringSSL peers).

The peers are found through environment variables; a test whose peer is not configured is
skipped (a BoringSSL test fails instead under ``CI=true``: ``.ci/run`` builds that peer with
``tests/interop/build_boringssl_peer.sh``):

* ``DTLS13_WOLFSSL_DIR``: a wolfSSL 5.9.x install with DTLS 1.3, holding
  ``bin/wolfssl-server``, ``bin/wolfssl-client`` and ``certs/`` (with ``dh2048.pem``).
* ``DTLS13_BORINGSSL_PEER``: the ``boringssl_peer`` binary built from
  ``tests/interop/boringssl_peer.cc``.

Everything runs as real processes on 127.0.0.1: our side is ``python -m dtls client|server``
(or a short asyncio script for what the command line cannot do), the peers are the
binaries above. Every process is started through `Live`, which gives each one a timeout,
keeps its output in files, kills what is left at the end of the test and attaches all the
output (and the relay's datagram log) to the report of a failed test.

`UdpRelay` is a small loopback relay that can drop chosen datagrams once and logs every
datagram, with a minimal DTLS header decoder for the checks on the wire (MTU, CID bits,
which flight a datagram belongs to).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CREDS = REPO / "tests" / "vectors" / "wolfssl" / "creds"
WOLFSSL_ENV = "DTLS13_WOLFSSL_DIR"
BORINGSSL_ENV = "DTLS13_BORINGSSL_PEER"

HOST = "127.0.0.1"
#: how long any one process may run before it is killed and the test fails
PROCESS_TIMEOUT = 20.0
#: our client's --timeout (handshake, and each reply)
CLIENT_TIMEOUT = 6.0

#: the four secrets every (D)TLS 1.3 key log has for a full or resumed handshake
TRAFFIC_LABELS = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
)
EARLY_LABEL = "CLIENT_EARLY_TRAFFIC_SECRET"

#: the wolfSSL test credentials (server CN www.wolfssl.com, no SAN)
SERVER_NAME = "www.wolfssl.com"
SERVER_CERT = CREDS / "server-ecc.pem"
SERVER_KEY = CREDS / "ecc-key.pem"
CA_CERT = CREDS / "ca-ecc-cert.pem"
CLIENT_CERT = CREDS / "client-ecc-cert.pem"  # self-signed: trusted directly
CLIENT_KEY = CREDS / "ecc-client-key.pem"


# ---------------------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------------------


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def udp_port_bound(port: int) -> bool:
    """Whether some socket on this machine is bound to UDP `port` (from /proc/net/udp*)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 1 and fields[1].endswith(wanted):
                    return True
    return False


# ---------------------------------------------------------------------------------------
# our server that starts KeyUpdates (the command line cannot): dtls.aio in a process
# ---------------------------------------------------------------------------------------

#: `python -c UPDATING_SERVER CERT KEY KEYLOG`: serves one connection on a free port; for
#: each message it receives it sends KeyUpdate(update_requested), waits until that is
#: acknowledged, then echoes the message. Prints `listening on H:P`, then one JSON line.
UPDATING_SERVER = """
import asyncio, json, sys
from dtls import aio
from dtls.config import Context

cert, key, keylog = sys.argv[1:4]
log = open(keylog, "a", buffering=1)
ctx = Context.server(certfile=cert, keyfile=key, keylog=lambda line: log.write(line + "\\n"))

async def main() -> int:
    done = asyncio.Event()
    result = {"received": 0, "key_updates": 0, "error": None}

    async def handle(conn):
        try:
            async for message in conn:
                result["received"] += 1
                await asyncio.wait_for(conn.update_keys(), 5)
                result["key_updates"] += 1
                result["send_epoch"] = conn.connection.send_epoch
                await conn.send(message)
        except Exception as exc:
            result["error"] = repr(exc)
        done.set()

    server = await aio.serve(handle, "127.0.0.1", 0, ctx)
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    try:
        await asyncio.wait_for(done.wait(), 15)
    except TimeoutError:
        result["error"] = "no connection ended within 15 s"
    server.close()
    await server.wait_closed()
    print(json.dumps(result), flush=True)
    return 0 if result["error"] is None and result["key_updates"] else 1

sys.exit(asyncio.run(main()))
"""


#: `python -c SCRIPTED_CLIENT PORT KEYLOG CAFILE SERVER_NAME LINGER RETRY SETTLE AWAIT MESSAGE...`:
#: our dtls.aio client for what the command line cannot pace. SETTLE seconds after the
#: handshake (the server's tickets and our ACK of them play out), for each MESSAGE it sends it
#: and waits for one reply; with RETRY > 0 it resends the message when no reply came
#: within RETRY seconds (datagram semantics: DTLS does not retransmit application data).
#: With AWAIT = 1, after each reply but the last it waits (up to 6 s) until it has keys for a
#: newer receive epoch than at the send and has sent its ACK, i.e. until the peer's
#: KeyUpdate has arrived and been acknowledged.
#: After the last reply it keeps the connection open LINGER seconds (pending ACKs and
#: retransmissions play out), then closes. Prints one JSON line.
SCRIPTED_CLIENT = """
import asyncio, json, sys
from dtls import aio
from dtls.config import Context

port, keylog, cafile, server_name, linger, retry, settle, await_update = sys.argv[1:9]
messages = sys.argv[9:]
log = open(keylog, "a", buffering=1)
ctx = Context.client(cafile=cafile, keylog=lambda line: log.write(line + "\\n"))

async def main() -> int:
    result = {"replies": [], "sends": 0, "send_epoch": None, "retransmissions": None,
              "error": None}
    try:
        conn = await aio.connect("127.0.0.1", int(port), ctx, server_name=server_name,
                                 timeout=6)
        await asyncio.sleep(float(settle))
        for index, message in enumerate(messages):
            epoch = max(conn.connection.stats().receive_epochs)
            for attempt in range(4):
                await conn.send(message.encode())
                result["sends"] += 1
                wait = float(retry) if float(retry) > 0 else 6.0
                try:
                    reply = await asyncio.wait_for(conn.recv(), wait)
                except TimeoutError:
                    if float(retry) > 0 and attempt < 3:
                        continue
                    raise
                result["replies"].append(reply.decode(errors="replace"))
                break
            if await_update == "1" and index < len(messages) - 1:
                for _ in range(1200):
                    # the peer's KeyUpdate has come and our ACK of it, sent after the
                    # post-handshake ACK delay (RFC 9147 §7.1), has gone out
                    if (max(conn.connection.stats().receive_epochs) > epoch
                            and conn.connection._ack_deadline is None):
                        break
                    await asyncio.sleep(0.005)
                else:
                    raise TimeoutError("the peer's KeyUpdate did not come")
        await asyncio.sleep(float(linger))
        result["send_epoch"] = conn.connection.send_epoch
        result["retransmissions"] = conn.connection.retransmissions
        await conn.close()
    except Exception as exc:
        result["error"] = repr(exc)
    print(json.dumps(result), flush=True)
    return 0 if result["error"] is None else 1

sys.exit(asyncio.run(main()))
"""


#: `python -c EARLY_DATA_CLIENT PORT SESSION KEYLOG EARLY MESSAGE`: resumes the session in
#: file SESSION (from `client --sess-out`) with EARLY as 0-RTT data, then sends MESSAGE and
#: waits for one reply (the command line's --early-data waits for a reply to the early
#: data itself, which wolfSSL's example server never sends). Prints one JSON line.
EARLY_DATA_CLIENT = """
import asyncio, json, sys
from pathlib import Path
from dtls import aio
from dtls.config import Context
from dtls.session import Session

port, session_file, keylog, early, message = sys.argv[1:6]
log = open(keylog, "a", buffering=1)
ctx = Context.client(cafile=sys.argv[6], early_data=True,
                     keylog=lambda line: log.write(line + "\\n"))
session = Session.from_bytes(Path(session_file).read_bytes())

async def main() -> int:
    result = {"resumed": None, "early_data_accepted": None, "replies": [], "error": None}
    try:
        conn = await aio.connect("127.0.0.1", int(port), ctx, server_name=sys.argv[7],
                                 timeout=6, session=session, early_data=[early.encode()])
        hs = conn.handshake
        result["resumed"], result["early_data_accepted"] = hs.resumed, hs.early_data_accepted
        await conn.send(message.encode())
        reply = await asyncio.wait_for(conn.recv(), 6)
        result["replies"].append(reply.decode(errors="replace"))
        await conn.close()
    except Exception as exc:
        result["error"] = repr(exc)
    print(json.dumps(result), flush=True)
    return 0 if result["error"] is None else 1

sys.exit(asyncio.run(main()))
"""


# ---------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------


class PeerTimeout(AssertionError):
    """A process did not finish (or print what was waited for) in time."""


@dataclass
class Proc:
    """One process started by `Live`: its output goes to files in the test's directory."""

    name: str
    argv: list[str]
    cwd: Path
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    started: float = field(default_factory=time.monotonic)
    #: the UDP port it serves on, once known
    port: int | None = None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_bytes().decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float = PROCESS_TIMEOUT) -> int:
        """The exit status; a process still running after `timeout` seconds is killed and
        the test fails."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PeerTimeout(
                f"{self.name} still running after {timeout:g} s (killed)\n{self.describe()}"
            ) from None

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first match of `pattern` (a regex, multi-line) in its stdout."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            match = regex.search(self.stdout)
            if match is not None:
                return match
            if self.popen.poll() is not None:
                match = regex.search(self.stdout)  # printed just before it exited
                if match is not None:
                    return match
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) without printing "
                    f"{pattern!r}\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise PeerTimeout(
                    f"{self.name} did not print {pattern!r} within {timeout:g} s\n"
                    f"{self.describe()}"
                )
            time.sleep(0.02)

    def wait_bound(self, port: int, timeout: float = 10.0) -> None:
        """Wait until the process has bound UDP `port` (for peers that print nothing)."""
        deadline = time.monotonic() + timeout
        while not udp_port_bound(port):
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before binding "
                    f"port {port}\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise PeerTimeout(f"{self.name} did not bind UDP port {port}\n{self.describe()}")
            time.sleep(0.02)
        self.port = port

    def json_lines(self) -> list[dict[str, Any]]:
        """The JSON objects it printed, one per line (our `--json` output)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def kill(self) -> None:
        """SIGTERM, then SIGKILL after a second (the process and its children)."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5.0)

    def describe(self) -> str:
        rc = self.popen.poll()
        return (
            f"--- {self.name} (exit {rc if rc is not None else 'running'}) in {self.cwd}\n"
            f"$ {' '.join(self.argv)}\n"
            f"--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-6000:]}"
        )


@dataclass
class ClientResult:
    """Our `python -m dtls client --json` run: exit status and its JSON report."""

    proc: Proc
    rc: int
    report: dict[str, Any]

    @property
    def replies(self) -> list[str]:
        return list(self.report.get("replies") or [])

    def ok(self) -> bool:
        return self.rc == 0 and self.report.get("error") is None


class Live:
    """Starts and tracks the processes, relays and files of one live interop test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: list[Proc] = []
        self.relays: list[UdpRelay] = []
        self.env = dict(os.environ)
        self.env.pop("SSLKEYLOGFILE", None)  # each side gets its key log explicitly
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._names: dict[str, int] = {}

    def _unique(self, name: str) -> str:
        n = self._names.get(name, 0)
        self._names[name] = n + 1
        return name if n == 0 else f"{name}-{n + 1}"

    def workdir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, name: str) -> Path:
        """A file name in the test's directory (not created)."""
        return self.tmp / name

    # ---- processes ----

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None,
              stdin: bytes | None = None) -> Proc:
        """Start a process in its own process group (so it can be killed whole); `stdin`
        is its whole input (else /dev/null)."""
        name = self._unique(name)
        cwd = cwd or self.tmp
        out, err = self.tmp / f"{name}.stdout", self.tmp / f"{name}.stderr"
        inp = self.tmp / f"{name}.stdin"
        inp.write_bytes(stdin or b"")
        with open(out, "wb") as fo, open(err, "wb") as fe, open(inp, "rb") as fi:
            popen = subprocess.Popen(
                list(argv), cwd=cwd, stdin=fi, stdout=fo, stderr=fe,
                env=self.env, start_new_session=True,
            )
        proc = Proc(name, list(argv), cwd, popen, out, err)
        self.procs.append(proc)
        return proc

    def run(self, name: str, argv: Sequence[str], cwd: Path | None = None,
            timeout: float = PROCESS_TIMEOUT, stdin: bytes | None = None) -> tuple[Proc, int]:
        proc = self.start(name, argv, cwd, stdin)
        return proc, proc.wait(timeout)

    # ---- our side: python -m dtls ----

    @staticmethod
    def dtls(*args: str) -> list[str]:
        return [sys.executable, "-m", "dtls", *args]

    def our_server(self, *args: str, keylog: Path | None = None, name: str = "our-server",
                   echo: bool = True, once: bool = True) -> Proc:
        """`python -m dtls server --port 0 --json [--once] [--echo] ...`, once listening.
        Its port is `proc.port`."""
        argv = ["server", "--port", "0", "--json"]
        if once:
            argv.append("--once")
        if echo:
            argv.append("--echo")
        if keylog is not None:
            argv += ["--keylogfile", str(keylog)]
        proc = self.start(name, self.dtls(*argv, *args))
        match = proc.wait_for(r"^listening on [^\s]+:(\d+)$")
        proc.port = int(match.group(1))
        return proc

    def our_cert_server(self, *args: str, keylog: Path | None = None,
                        name: str = "our-server", echo: bool = True) -> Proc:
        """`our_server` with the wolfSSL server certificate."""
        return self.our_server("--cert", str(SERVER_CERT), "--key", str(SERVER_KEY), *args,
                               keylog=keylog, name=name, echo=echo)

    def our_client(self, port: int, *args: str, keylog: Path | None = None,
                   name: str = "our-client", verify: bool = True,
                   timeout: float = CLIENT_TIMEOUT, stdin: bytes | None = None,
                   ) -> ClientResult:
        """`python -m dtls client 127.0.0.1 PORT --json ...` run to the end. With `verify`
        it checks the wolfSSL server certificate by its name (--cafile, --servername).
        With `stdin` (and no --message) each line is a message."""
        argv = ["client", HOST, str(port), "--json", "--timeout", f"{timeout:g}"]
        if verify:
            argv += ["--cafile", str(CA_CERT), "--servername", SERVER_NAME]
        if keylog is not None:
            argv += ["--keylogfile", str(keylog)]
        proc, rc = self.run(name, self.dtls(*argv, *args),
                            timeout=PROCESS_TIMEOUT + 2 * timeout, stdin=stdin)
        reports = proc.json_lines()
        assert reports, f"our client printed no JSON report\n{proc.describe()}"
        return ClientResult(proc, rc, reports[-1])

    def our_python_server(self, script: str, *args: str, name: str = "our-aio-server") -> Proc:
        """`python -c SCRIPT ARGS...`: a server script that prints `listening on H:P`."""
        proc = self.start(name, [sys.executable, "-c", script, *args])
        match = proc.wait_for(r"^listening on [^\s]+:(\d+)$")
        proc.port = int(match.group(1))
        return proc

    def our_updating_server(self, keylog: Path) -> Proc:
        """`UPDATING_SERVER` with the wolfSSL server certificate."""
        return self.our_python_server(UPDATING_SERVER, str(SERVER_CERT), str(SERVER_KEY),
                                      str(keylog), name="our-updating-server")

    def our_scripted_client(self, port: int, keylog: Path, *messages: str,
                            linger: float = 0.0, retry: float = 0.0,
                            settle: float = 0.0, await_update: bool = False) -> ClientResult:
        """`SCRIPTED_CLIENT`: `settle` seconds after the handshake, the messages one by one
        (optionally resent after `retry` seconds without a reply; with `await_update`, each
        but the last followed by a wait for the peer's KeyUpdate), then `linger` seconds
        before close_notify."""
        proc, rc = self.run("our-scripted-client", [
            sys.executable, "-c", SCRIPTED_CLIENT, str(port), str(keylog), str(CA_CERT),
            SERVER_NAME, f"{linger:g}", f"{retry:g}", f"{settle:g}", str(int(await_update)),
            *messages])
        reports = proc.json_lines()
        assert reports, f"no JSON report\n{proc.describe()}"
        return ClientResult(proc, rc, reports[-1])

    def our_early_data_client(self, port: int, session: Path, keylog: Path, early: str,
                              message: str) -> ClientResult:
        """`EARLY_DATA_CLIENT`: resume `session` with 0-RTT `early`, then send `message`."""
        proc, rc = self.run("our-early-data-client", [
            sys.executable, "-c", EARLY_DATA_CLIENT, str(port), str(session), str(keylog),
            early, message, str(CA_CERT), SERVER_NAME])
        reports = proc.json_lines()
        assert reports, f"no JSON report\n{proc.describe()}"
        return ClientResult(proc, rc, reports[-1])

    # ---- network ----

    def relay(self, target_port: int, drop: Sequence[str] = (), cid_len: int = 0) -> UdpRelay:
        """A running `UdpRelay` to 127.0.0.1:`target_port`; see `UdpRelay.RULES`."""
        relay = UdpRelay(target_port, drop, cid_len=cid_len)
        self.relays.append(relay)
        relay.start()
        return relay

    @staticmethod
    def assert_keylogs_agree(ours: Path, theirs: Path, *, connections: int = 1,
                             early: bool = False) -> None:
        """See the module-level `assert_keylogs_agree`."""
        assert_keylogs_agree(ours, theirs, connections=connections, early=early)

    # ---- end of test ----

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
        for relay in self.relays:
            relay.stop()

    def sections(self) -> Iterator[tuple[str, str]]:
        for proc in self.procs:
            yield f"process {proc.name}", proc.describe()
        keylogs = sorted(self.tmp.rglob("*.keys")) + sorted(self.tmp.rglob("sslkeylog.log"))
        for relay in self.relays:
            yield f"relay to port {relay.target_port}", relay.log_text(keylogs)


# ---------------------------------------------------------------------------------------
# key logs
# ---------------------------------------------------------------------------------------


def read_keylog(path: Path) -> dict[tuple[str, str], str]:
    """NSS key-log lines as {(label, client_random hex): secret hex}, in file order."""
    entries: dict[tuple[str, str], str] = {}
    if not path.exists():
        return entries
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            label, random, secret = parts
            key = (label, random.lower())
            assert entries.get(key, secret.lower()) == secret.lower(), f"{path}: two {key}"
            entries[key] = secret.lower()
    return entries


def assert_keylogs_agree(ours: Path, theirs: Path, *, connections: int = 1,
                         early: bool = False) -> None:
    """Both key logs have the same traffic secrets for the same connections (keyed by the
    ClientHello random): the two ends derived the same key schedule. With `early`, the
    last connection also has the same CLIENT_EARLY_TRAFFIC_SECRET (0-RTT). Lines only one
    side writes (EXPORTER_SECRET, post-KeyUpdate secrets) are compared where both have
    them."""
    a, b = read_keylog(ours), read_keylog(theirs)
    randoms = [r for (label, r) in a if label == "CLIENT_TRAFFIC_SECRET_0"]  # file order
    assert len(randoms) == connections, f"{ours}: {len(randoms)} connections logged: {a}"
    their_randoms = sorted(r for (label, r) in b if label == "CLIENT_TRAFFIC_SECRET_0")
    assert their_randoms == sorted(randoms), f"different connections in {ours} and {theirs}"
    required = [(label, random) for random in randoms for label in TRAFFIC_LABELS]
    if early:
        required.append((EARLY_LABEL, randoms[-1]))
    for key in required:
        assert key in a, f"{ours}: no {key[0]} for {key[1]}"
        assert key in b, f"{theirs}: no {key[0]} for {key[1]}"
    for key in a.keys() & b.keys():
        assert a[key] == b[key], f"{key[0]} differs for client random {key[1]}"


# ---------------------------------------------------------------------------------------
# the wire: a minimal DTLS 1.3 header decoder and a lossy relay
# ---------------------------------------------------------------------------------------

CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA, CT_ACK = 21, 22, 23, 26
HT_CLIENT_HELLO = 1


@dataclass(frozen=True)
class RecordHeader:
    """One record of a datagram as the wire shows it. Plaintext records (DTLSPlaintext):
    `epoch` and `content_type` are known. Unified headers (DTLSCiphertext): `epoch` is
    the low two bits of the epoch, `content_type` is None (encrypted)."""

    unified: bool
    epoch: int
    content_type: int | None
    has_cid: bool
    length: int
    handshake_type: int | None = None
    offset: int = 0  # where the record starts in the datagram
    size: int = 0  # header and body


def parse_records(data: bytes, cid_len: int = 0) -> list[RecordHeader]:
    """The records of one datagram. Parsing stops at a record without a length field
    (it runs to the end of the datagram) or at anything malformed."""
    records: list[RecordHeader] = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        if first & 0xE0 == 0x20:  # unified header: 001CSLEE
            has_cid, seq16, with_len = bool(first & 0x10), bool(first & 0x08), bool(first & 0x04)
            hdr = 1 + (cid_len if has_cid else 0) + (2 if seq16 else 1)
            if with_len:
                if pos + hdr + 2 > len(data):
                    break
                length = int.from_bytes(data[pos + hdr:pos + hdr + 2], "big")
                hdr += 2
            else:
                length = len(data) - pos - hdr
            records.append(RecordHeader(True, first & 0x03, None, has_cid, length,
                                        offset=pos, size=hdr + length))
            pos += hdr + length
            if not with_len or (has_cid and cid_len == 0):
                break
        elif first in (CT_ALERT, CT_HANDSHAKE, CT_ACK) and pos + 13 <= len(data):
            epoch = int.from_bytes(data[pos + 3:pos + 5], "big")
            length = int.from_bytes(data[pos + 11:pos + 13], "big")
            htype = data[pos + 13] if first == CT_HANDSHAKE and length else None
            records.append(RecordHeader(False, epoch, first, False, length, htype,
                                        offset=pos, size=13 + length))
            pos += 13 + length
        else:
            break
    return records


HANDSHAKE_NAMES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                   8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest",
                   15: "CertificateVerify", 20: "Finished", 24: "KeyUpdate"}


class KeylogDecoder:
    """Opens the encrypted records of a relay log with the secrets of NSS key logs (ours
    and the peer's), to show what went over the wire in a failed test. It tries every
    connection, suite and epoch (1: early, 2: handshake, 3+: application generations) whose
    two epoch bits match; it is a diagnostic, using dtls.record's record protection."""

    def __init__(self, keylogs: Sequence[Path]) -> None:
        from dtls.iana import CipherSuite
        from dtls.record import RecordCipher, next_traffic_secret

        entries: dict[tuple[str, str], str] = {}
        for path in keylogs:
            with contextlib.suppress(OSError, AssertionError, UnicodeDecodeError):
                entries.update(read_keylog(path))
        self.ciphers: dict[str, list[tuple[int, str, Any]]] = {"c2s": [], "s2c": []}
        suites = list(CipherSuite)
        for (label, _random), secret_hex in entries.items():
            side = "c2s" if label.startswith("CLIENT_") else "s2c"
            epochs = {"CLIENT_EARLY_TRAFFIC_SECRET": 1, "CLIENT_HANDSHAKE_TRAFFIC_SECRET": 2,
                      "SERVER_HANDSHAKE_TRAFFIC_SECRET": 2, "CLIENT_TRAFFIC_SECRET_0": 3,
                      "SERVER_TRAFFIC_SECRET_0": 3}
            if label not in epochs:
                continue
            secret = bytes.fromhex(secret_hex)
            for suite in suites:
                hash_len = 48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32
                if len(secret) != hash_len:
                    continue
                epoch, current = epochs[label], secret
                with contextlib.suppress(Exception):
                    for _ in range(6 if epoch == 3 else 1):  # epochs 3..8
                        self.ciphers[side].append(
                            (epoch, f"{suite.name[4:]}", RecordCipher.from_secret(suite, current)))
                        current = next_traffic_secret(suite, current)
                        epoch += 1

    def open(self, direction: str, record: bytes, epoch_bits: int,
             cid_len: int = 0) -> Opened | None:
        """The record deprotected, or None when no known key opens it."""
        from dtls.record import OpenError

        for epoch, _suite, cipher in self.ciphers[direction]:
            if epoch & 3 != epoch_bits:
                continue
            opened = cipher.open(record, cid_len=cid_len)
            if not isinstance(opened, OpenError):
                return Opened(direction, epoch, opened.seq, opened.content_type,
                              bytes(opened.plaintext))
        return None

    def describe(self, direction: str, record: bytes, epoch_bits: int, cid_len: int) -> str:
        opened = self.open(direction, record, epoch_bits, cid_len)
        return "?" if opened is None else opened.text()


@dataclass(frozen=True)
class Opened:
    """One deprotected record (`KeylogDecoder`)."""

    direction: str
    epoch: int
    seq: int
    content_type: int
    body: bytes

    def handshakes(self) -> list[tuple[int, int, bytes]]:
        """(msg_type, message_seq, fragment) of each handshake fragment."""
        from dtls.messages import decode_handshake_fragments

        if self.content_type != CT_HANDSHAKE:
            return []
        return [(f.msg_type, f.message_seq, f.fragment)
                for f in decode_handshake_fragments(self.body)]

    def acks(self) -> list[tuple[int, int]] | None:
        """The record numbers of an ACK (None: not an ACK)."""
        from dtls.messages import decode_ack

        return decode_ack(self.body) if self.content_type == CT_ACK else None

    def text(self) -> str:
        from dtls.messages import decode_alert, decode_handshake_fragments

        what = f"e{self.epoch}/{self.seq}"
        body = self.body
        try:
            if self.content_type == CT_HANDSHAKE:
                return what + " " + ",".join(
                    f"{HANDSHAKE_NAMES.get(f.msg_type, f.msg_type)}#{f.message_seq}"
                    + (f"[{f.fragment_offset}+{f.fragment_length}/{f.length}]"
                       if f.fragment_length != f.length else "")
                    + (f"(req={f.fragment[0]})" if f.msg_type == 24 and f.fragment else "")
                    for f in decode_handshake_fragments(body))
            if self.content_type == CT_ACK:
                return what + f" ACK{self.acks()}"
            if self.content_type == CT_ALERT:
                return what + f" alert{decode_alert(body)}"
            if self.content_type == CT_APPLICATION_DATA:
                return what + f" data{body[:40]!r}"
        except Exception:  # a diagnostic only
            pass
        return what + f" ct{self.content_type} {len(body)}B"


@dataclass
class Datagram:
    direction: str  # "c2s" or "s2c"
    index: int  # 1-based, per direction
    time: float  # seconds since the relay started
    data: bytes
    dropped: bool = False
    rule: str | None = None

    def records(self, cid_len: int = 0) -> list[RecordHeader]:
        return parse_records(self.data, cid_len)

    def summary(self, cid_len: int = 0, decoder: KeylogDecoder | None = None) -> str:
        parts = []
        for r in self.records(cid_len):
            if r.unified:
                text = f"enc(e{r.epoch}{',cid' if r.has_cid else ''},{r.length})"
                if decoder is not None:
                    record = self.data[r.offset:r.offset + r.size]
                    text += "=" + decoder.describe(self.direction, record, r.epoch, cid_len)
                parts.append(text)
            else:
                hs = f",hs{r.handshake_type}" if r.handshake_type is not None else ""
                parts.append(f"plain(ct{r.content_type},e{r.epoch}{hs},{r.length})")
        return " ".join(parts) or self.data[:8].hex()


def _nth(index: int) -> Callable[[Datagram], bool]:
    def match(d: Datagram) -> bool:
        return d.index == index

    return match


def _epoch2(d: Datagram) -> bool:
    return any(r.unified and r.epoch == 2 for r in d.records())


class UdpRelay:
    """A loopback UDP relay between clients and 127.0.0.1:`target_port`, in a thread.

    Each client address gets its own upstream socket (a resumed connection comes from a
    new port). Every datagram is logged in `datagrams`. Each drop rule drops the first
    datagram it matches, once:

    * ``client_hello``: the client's first datagram holding a ClientHello;
    * ``server_flight``: the server's first datagram with epoch-2 (handshake) records,
      i.e. the start of its encrypted flight EncryptedExtensions..Finished;
    * ``client_finished``: the client's first datagram with epoch-2 records, its
      Finished flight (with Certificate/CertificateVerify under client auth);
    * ``c2s#N`` / ``s2c#N``: the N-th datagram in that direction.
    """

    RULES: dict[str, tuple[str, Callable[[Datagram], bool]]] = {
        "client_hello": ("c2s", lambda d: any(
            r.handshake_type == HT_CLIENT_HELLO for r in d.records())),
        "server_flight": ("s2c", _epoch2),
        "client_finished": ("c2s", _epoch2),
    }

    def __init__(self, target_port: int, drop: Sequence[str] = (), cid_len: int = 0) -> None:
        self.target_port = target_port
        self.cid_len = cid_len
        self.rules: list[tuple[str, str, Callable[[Datagram], bool]]] = []
        for name in drop:
            if "#" in name:
                direction, n = name.split("#")
                self.rules.append((name, direction, _nth(int(n))))
            else:
                direction, predicate = self.RULES[name]
                self.rules.append((name, direction, predicate))
        self.datagrams: list[Datagram] = []
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind((HOST, 0))
        self.port = int(self.front.getsockname()[1])
        self._upstream: dict[tuple[str, int], socket.socket] = {}
        self._by_socket: dict[socket.socket, tuple[str, int]] = {}
        self._counts = {"c2s": 0, "s2c": 0}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-relay", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.front.close()
        for s in self._upstream.values():
            s.close()

    @property
    def dropped(self) -> list[str]:
        """The rules that fired."""
        return [d.rule for d in self.datagrams if d.dropped and d.rule]

    def direction(self, direction: str) -> list[Datagram]:
        return [d for d in self.datagrams if d.direction == direction]

    def decode(self, keylogs: Sequence[Path], direction: str | None = None) -> list[Opened]:
        """Every encrypted record (of `direction`) that the key logs open, in order."""
        decoder = KeylogDecoder(keylogs)
        with self._lock:
            grams = list(self.datagrams)
        out = []
        for d in grams:
            if d.dropped or (direction is not None and d.direction != direction):
                continue
            for r in d.records(self.cid_len):
                if r.unified:
                    opened = decoder.open(d.direction, d.data[r.offset:r.offset + r.size],
                                          r.epoch, self.cid_len)
                    if opened is not None:
                        out.append(opened)
        return out

    def log_text(self, keylogs: Sequence[Path] = ()) -> str:
        """One line per datagram; with key logs the encrypted records are opened too."""
        with self._lock:
            grams = list(self.datagrams)
        decoder = None
        if keylogs:
            try:
                decoder = KeylogDecoder(keylogs)
            except Exception:  # a diagnostic only
                decoder = None
        return "\n".join(
            f"{d.time:8.3f} {d.direction} #{d.index:<3} {len(d.data):5}B "
            f"{'DROPPED(' + str(d.rule) + ') ' if d.dropped else ''}"
            f"{d.summary(self.cid_len, decoder)}"
            for d in grams
        )

    def _record(self, direction: str, data: bytes) -> Datagram:
        self._counts[direction] += 1
        gram = Datagram(direction, self._counts[direction], time.monotonic() - self._started,
                        data)
        for rule in list(self.rules):
            name, rule_dir, predicate = rule
            if rule_dir == direction and predicate(gram):
                gram.dropped, gram.rule = True, name
                self.rules.remove(rule)
                break
        with self._lock:
            self.datagrams.append(gram)
        return gram

    def _run(self) -> None:
        while not self._stop.is_set():
            sockets = [self.front, *self._upstream.values()]
            try:
                readable, _, _ = select.select(sockets, [], [], 0.05)
            except (OSError, ValueError):
                return
            for s in readable:
                try:
                    data, addr = s.recvfrom(65535)
                except (ConnectionRefusedError, BlockingIOError):
                    continue  # ICMP from a peer that has gone
                except OSError:
                    return
                if s is self.front:
                    gram = self._record("c2s", data)
                    up = self._upstream.get(addr)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.connect((HOST, self.target_port))
                        self._upstream[addr] = up
                        self._by_socket[up] = addr
                    if not gram.dropped:
                        with contextlib.suppress(OSError):
                            up.send(data)
                else:
                    gram = self._record("s2c", data)
                    if not gram.dropped:
                        with contextlib.suppress(OSError):
                            self.front.sendto(data, self._by_socket[s])


# ---------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------


@dataclass
class WolfSSL:
    """wolfSSL's example programs from a DTLS 1.3 build (`DTLS13_WOLFSSL_DIR`).

    Each runs in its own directory of the test holding a `certs` link to the install's
    certs/ (the examples look for certs/dh2048.pem and chdir up to find it), so relative
    cert paths work and each side's `sslkeylog.log` is its own."""

    root: Path

    #: what wolfSSL's examples send
    CLIENT_MESSAGE = "hello wolfssl!"
    SERVER_REPLY = "I hear you fa shizzle!"

    def _dir(self, live: Live, name: str) -> Path:
        path = live.workdir(name)
        link = path / "certs"
        if not link.exists():
            link.symlink_to(self.root / "certs")
        return path

    def server(self, live: Live, *args: str, mtu: int | None = None,
               name: str = "wolfssl-server") -> Proc:
        """`wolfssl-server -u[MTU] -v 4 -p PORT ARGS`; returns once it has bound the port.
        Its key log is `keylog(proc)`."""
        port = free_udp_port()
        udp = ["-u", str(mtu)] if mtu else ["-u"]
        proc = live.start(name, [str(self.root / "bin" / "wolfssl-server"), *udp, "-v", "4",
                                 "-p", str(port), *args], cwd=self._dir(live, name))
        proc.wait_bound(port)
        return proc

    def client(self, live: Live, port: int, *args: str, mtu: int | None = None,
               name: str = "wolfssl-client", timeout: float = PROCESS_TIMEOUT,
               ) -> tuple[Proc, int]:
        """`wolfssl-client -u[MTU] -v 4 -p PORT -h 127.0.0.1 ARGS`, run to the end."""
        udp = ["-u", str(mtu)] if mtu else ["-u"]
        argv = [str(self.root / "bin" / "wolfssl-client"), *udp, "-v", "4", "-p", str(port),
                "-h", HOST, *args]
        return live.run(name, argv, cwd=self._dir(live, name), timeout=timeout)

    @staticmethod
    def keylog(proc: Proc) -> Path:
        return proc.cwd / "sslkeylog.log"


@dataclass
class BoringSSL:
    """Our BoringSSL-based peer program (`DTLS13_BORINGSSL_PEER`)."""

    binary: Path

    def server(self, live: Live, *args: str, keylog: Path | None = None,
               name: str = "boringssl-server", once: bool = True) -> Proc:
        """`boringssl_peer server --port 0 [--once] --cert --key ARGS`, once it printed
        its port."""
        argv = [str(self.binary), "server", "--port", "0", "--cert", str(SERVER_CERT),
                "--key", str(SERVER_KEY)]
        if once:
            argv.append("--once")
        if keylog is not None:
            argv += ["--keylog", str(keylog)]
        proc = live.start(name, [*argv, *args])
        proc.port = int(proc.wait_for(r"^PORT (\d+)$").group(1))
        return proc

    def client(self, live: Live, port: int, *args: str, keylog: Path | None = None,
               name: str = "boringssl-client", timeout: float = PROCESS_TIMEOUT,
               ) -> tuple[Proc, int]:
        """`boringssl_peer client --host 127.0.0.1 --port PORT --cafile CA ARGS`, run to
        the end."""
        argv = [str(self.binary), "client", "--host", HOST, "--port", str(port),
                "--cafile", str(CA_CERT), "--timeout", "8"]
        if keylog is not None:
            argv += ["--keylog", str(keylog)]
        return live.run(name, [*argv, *args], timeout=timeout)

    @staticmethod
    def handshake(proc: Proc) -> dict[str, str]:
        """The fields of its `HANDSHAKE k=v ...` line."""
        match = re.search(r"^HANDSHAKE (.*)$", proc.stdout, re.MULTILINE)
        assert match is not None, f"no HANDSHAKE line\n{proc.describe()}"
        return dict(item.split("=", 1) for item in match.group(1).split())

    @staticmethod
    def lines(proc: Proc, prefix: str) -> list[str]:
        """The text after `PREFIX ` on each such line (REPLY, RECV)."""
        return [line[len(prefix) + 1:] for line in proc.stdout.splitlines()
                if line.startswith(prefix + " ")]


# ---------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------

LIVE_KEY = pytest.StashKey["Live"]()


@pytest.fixture
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    """The test's process/relay tracker; everything it started is stopped afterwards."""
    harness = Live(tmp_path)
    request.node.stash[LIVE_KEY] = harness
    try:
        yield harness
    finally:
        harness.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed live test's report carries every process's output and the relay logs."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    harness = item.stash.get(LIVE_KEY, None)
    if harness is not None and report.when == "call" and report.failed:
        for title, text in harness.sections():
            report.sections.append((title, text))


@pytest.fixture(scope="session")
def wolfssl() -> WolfSSL:
    """The wolfSSL install from $DTLS13_WOLFSSL_DIR (skip without it)."""
    value = os.environ.get(WOLFSSL_ENV)
    if not value:
        pytest.skip(f"live wolfSSL tests need {WOLFSSL_ENV} (see docs/interop.md)")
    root = Path(value)
    for needed in ("bin/wolfssl-server", "bin/wolfssl-client", "certs/dh2048.pem"):
        if not (root / needed).exists():
            pytest.skip(f"{WOLFSSL_ENV}={root}: no {needed}")
    return WolfSSL(root)


@pytest.fixture(scope="session")
def boringssl() -> BoringSSL:
    """The boringssl_peer binary from $DTLS13_BORINGSSL_PEER (skip without it, but fail
    under CI=true: .ci/run builds the peer, so these tests never skip there)."""
    missing = pytest.fail if os.environ.get("CI") == "true" else pytest.skip
    value = os.environ.get(BORINGSSL_ENV)
    if not value:
        missing(f"live BoringSSL tests need {BORINGSSL_ENV} (see docs/interop.md)")
    binary = Path(value)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        found = shutil.which(value)
        if found is None:
            missing(f"{BORINGSSL_ENV}={value}: not an executable")
        binary = Path(found)
    return BoringSSL(binary)
