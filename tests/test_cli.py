"""The command line (`python -m dtls`), end to end over loopback.

Servers run as real processes (`python -m dtls server --port 0 ...`); most clients run in
this process through `dtls.cli.main(argv)`, and one runs as a process too. Every exchange
goes over real UDP sockets on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dtls import cli

PYTHON = [sys.executable, "-m", "dtls"]
PSK_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


# ---- helpers ----


@dataclass
class ServerProcess:
    """A `python -m dtls server` process and what it printed."""

    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    stderr: str = ""

    def reports(self) -> list[dict[str, Any]]:
        """The --json lines (one per connection that ended)."""
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the server to exit by itself (--once) and collect its output."""
        out, err = self.proc.communicate(timeout=timeout)
        self.lines += out.splitlines()
        self.stderr += err
        return self.proc.returncode

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then collect the output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.wait(timeout=5)


@contextlib.contextmanager
def dtls_server(*args: str | Path, stdin: bool = False) -> Iterator[ServerProcess]:
    """Start `python -m dtls server --port 0 ARGS` and wait for its `listening on` line;
    its stdin is /dev/null, or a pipe (`proc.stdin`) with `stdin=True`."""
    proc = subprocess.Popen(
        [*PYTHON, "server", "--port", "0", *map(str, args)],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the server printed it (or died)
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first)
        if match is None:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            pytest.fail(f"server did not start: {first!r} {err}")
        server = ServerProcess(proc, int(match.group(1)))
        yield server
    finally:
        if proc.poll() is None:
            server.stop()


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_main(*args: str | Path) -> Result:
    """`dtls.cli.main(args)` in this process, with its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
    return Result(status, out.getvalue(), err.getvalue())


def client(port: int, *args: str | Path) -> Result:
    """An in-process `client 127.0.0.1 PORT ARGS --json`."""
    return run_main("client", "127.0.0.1", port, "--json", "--timeout", "5", *args)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A server shared by the tests that need no special server options.
@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    keylog = tmp_path_factory.mktemp("keylog") / "server.log"
    with dtls_server(
        "--echo", "--json", "--early-data", "--alpn", "dtls-test,other", "--cid", "aabbcc",
        "--keylogfile", keylog,
    ) as server:
        server.keylog = keylog  # type: ignore[attr-defined]
        yield server


# ---- handshake and echo ----


def test_echo_between_processes() -> None:
    with dtls_server("--once", "--echo", "--json") as server:
        done = subprocess.run(
            [*PYTHON, "client", "127.0.0.1", str(server.port), "--no-verify", "--json",
             "--message", "hello", "--message", "second message"],
            capture_output=True, text=True, timeout=30,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["error"] is None
        assert report["version"] == "DTLSv1.3"
        assert report["cipher"] == "TLS_AES_128_GCM_SHA256"
        assert report["group"] == "x25519"
        assert report["peer_subject"] == "CN=localhost"  # the ephemeral certificate
        assert report["replies"] == ["hello", "second message"]
        assert report["messages_sent"] == report["messages_received"] == 2
        assert report["resumed"] is False and report["early_data_accepted"] is False
        assert report["local_cid"] is None and report["peer_cid"] is None
        assert report["retransmissions"] == 0
        assert 0 < report["handshake_ms"] < 5000
        # --once: the server ends by itself when the client has closed
        assert server.wait() == 0
    assert "ephemeral self-signed ECDSA P-256" in server.stderr
    (line,) = server.reports()
    assert line["messages_received"] == line["messages_sent"] == 2
    assert line["cipher"] == "TLS_AES_128_GCM_SHA256" and line["error"] is None


def test_without_json_prints_replies_and_status(echo_server: ServerProcess) -> None:
    done = subprocess.run(
        [*PYTHON, "client", "127.0.0.1", str(echo_server.port), "--no-verify"],
        input="one\ntwo\n", capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["one", "two"]  # stdin lines, echoed
    assert re.search(r"connected to 127\.0\.0\.1:\d+: DTLSv1\.3, TLS_AES_128_GCM_SHA256",
                     done.stderr)


def test_negotiation_options(echo_server: ServerProcess) -> None:
    result = client(
        echo_server.port, "--no-verify", "--ciphers", "TLS_CHACHA20_POLY1305_SHA256",
        "--groups", "secp256r1", "--alpn", "nope,dtls-test", "--message", "x",
    )
    assert result.status == 0, result.stderr
    report = result.json
    assert report["cipher"] == "TLS_CHACHA20_POLY1305_SHA256"
    assert report["group"] == "secp256r1"
    assert report["alpn"] == "dtls-test"
    assert report["replies"] == ["x"]


@pytest.mark.parametrize(
    ("group", "cipher"),
    [("x25519mlkem768", "TLS_AES_256_GCM_SHA384"), ("secp384r1", "TLS_AES_128_CCM_SHA256"),
     ("x25519", "TLS_AES_128_CCM_8_SHA256")],
)
def test_groups_and_suites(group: str, cipher: str) -> None:
    # The echo server accepts every suite, CCM-8 included when asked for by name.
    with dtls_server("--echo", "--json", "--ciphers",
                     "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_AES_128_CCM_SHA256,"
                     "TLS_AES_128_CCM_8_SHA256") as server:
        result = client(server.port, "--no-verify", "--groups", group, "--ciphers", cipher,
                        "--message", group)
        assert result.status == 0, result.stderr
        assert (result.json["group"], result.json["cipher"]) == (group, cipher)
        assert result.json["replies"] == [group]


def test_key_update(echo_server: ServerProcess) -> None:
    result = client(echo_server.port, "--no-verify", "--key-update",
                    "--message", "after the update", "--message", "and again")
    assert result.status == 0, result.stderr
    report = result.json
    assert report["key_update"] is True
    assert report["replies"] == ["after the update", "and again"]


def test_small_mtu_fragments_the_handshake(pki_paths: Any) -> None:
    # The server's chain (leaf + intermediate) cannot fit one 300-byte datagram: the
    # handshake only completes if its messages are fragmented and reassembled.
    assert pki_paths.certfile.stat().st_size > 600
    with dtls_server("--cert", pki_paths.certfile, "--key", pki_paths.keyfile,
                     "--mtu", "300", "--echo", "--json", "--once") as server:
        result = client(server.port, "--cafile", pki_paths.cafile, "--servername", "localhost",
                        "--mtu", "300", "--message", "y" * 250)
        assert result.status == 0, result.stderr
        assert result.json["replies"] == ["y" * 250]
        assert result.json["peer_subject"] is not None
        assert server.wait() == 0


# ---- authentication ----


def test_mutual_authentication(pki_paths: Any) -> None:
    client_cred = pki_paths["client"]
    with dtls_server("--cert", pki_paths.certfile, "--key", pki_paths.keyfile,
                     "--cafile", pki_paths.cafile, "--require-client-cert",
                     "--echo", "--json") as server:
        result = client(server.port, "--cafile", pki_paths.cafile, "--servername", "localhost",
                        "--cert", client_cred.certfile, "--key", client_cred.keyfile,
                        "--message", "mutual")
        assert result.status == 0, result.stderr
        assert "localhost" in result.json["peer_subject"]
        assert result.json["replies"] == ["mutual"]

        refused = client(server.port, "--cafile", pki_paths.cafile, "--servername", "localhost",
                         "--message", "no certificate", "--timeout", "3")
        assert refused.status == 1
        assert refused.json["error"]
        assert len(refused.stderr.strip().splitlines()) == 1
        server.stop()
    reports = server.reports()
    assert any(r.get("peer_subject") and "client.example" in r["peer_subject"] for r in reports)
    assert any(r.get("error") for r in reports)  # the refused client's handshake


def test_verification_failure(echo_server: ServerProcess, pki_paths: Any) -> None:
    # The server's certificate is self-signed; the test CA did not issue it.
    started = time.monotonic()
    result = client(echo_server.port, "--cafile", pki_paths.cafile, "--message", "never")
    assert result.status == 1
    assert time.monotonic() - started < 5
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dtls: certificate verification failed")
    assert result.json["error"] == line.removeprefix("dtls: ")
    assert result.json["version"] is None


def test_default_verification_uses_the_system_store(echo_server: ServerProcess) -> None:
    result = client(echo_server.port, "--servername", "localhost", "--no-stdin")
    assert result.status == 1
    assert "certificate verification failed" in result.stderr
    assert "--cafile, or --no-verify" in result.stderr  # the hint


def test_timeout_without_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # reads, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = client(port, "--no-verify", "--timeout", "1", "--message", "anyone?")
        elapsed = time.monotonic() - started
    assert result.status == 1
    assert elapsed < 4
    assert result.stderr.strip() == f"dtls: no handshake with 127.0.0.1:{port} within 1 s"
    assert result.json["error"].startswith("no handshake")


def test_nothing_listens() -> None:
    port = free_udp_port()  # closed: the kernel answers ICMP port unreachable
    started = time.monotonic()
    result = client(port, "--no-verify", "--timeout", "10", "--message", "anyone?")
    assert time.monotonic() - started < 1.5
    assert result.status == 1
    assert result.stderr.strip() == f"dtls: nothing listens on 127.0.0.1:{port}"
    assert result.json["error"] == f"nothing listens on 127.0.0.1:{port}"


def test_the_servers_alert_is_reported_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as refusing:
        refusing.bind(("127.0.0.1", 0))
        refusing.settimeout(5)

        def refuse() -> None:  # one handshake_failure alert, as a server that cannot agree
            with contextlib.suppress(OSError):
                _, addr = refusing.recvfrom(65536)
                refusing.sendto(bytes.fromhex("15fefd000000000000000000020228"), addr)

        thread = threading.Thread(target=refuse, daemon=True)
        thread.start()
        started = time.monotonic()
        result = client(refusing.getsockname()[1], "--no-verify", "--timeout", "10",
                        "--no-stdin")
        assert time.monotonic() - started < 1.5
        thread.join()
    assert result.status == 1
    assert result.stderr.strip() == ("dtls: the server refused: handshake_failure (no common "
                                     "cipher suite, group or signature scheme?)")


# ---- key log ----


def _keylog(path: Path) -> dict[tuple[str, str], str]:
    entries = {}
    for line in path.read_text().splitlines():
        label, client_random, secret = line.split()
        assert re.fullmatch(r"[0-9a-f]{64}", client_random)
        entries[(label, client_random)] = secret
    return entries


def test_keylog_files_agree(
    echo_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client honours SSLKEYLOGFILE; the server was given --keylogfile.
    client_log = tmp_path / "client.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(client_log))
    result = client(echo_server.port, "--no-verify", "--message", "logged")
    assert result.status == 0, result.stderr
    ours = _keylog(client_log)
    labels = {label for label, _ in ours}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels
    assert len({random for _, random in ours}) == 1  # one connection
    theirs = _keylog(echo_server.keylog)  # type: ignore[attr-defined]
    for key, secret in ours.items():
        assert theirs.get(key) == secret, key
    # they hold the traffic secrets: created 0600, like the session file
    assert client_log.stat().st_mode & 0o777 == 0o600
    assert echo_server.keylog.stat().st_mode & 0o777 == 0o600  # type: ignore[attr-defined]

    # Without the flag or the variable nothing is written anywhere.
    monkeypatch.delenv("SSLKEYLOGFILE")
    before = client_log.read_text()
    assert client(echo_server.port, "--no-verify", "--no-stdin").status == 0
    assert client_log.read_text() == before


# ---- PSK, resumption, 0-RTT, connection IDs ----


def test_external_psk() -> None:
    with dtls_server("--psk-identity", "device-7", "--psk", PSK_HEX,
                     "--echo", "--json") as server:
        result = client(server.port, "--psk-identity", "device-7", "--psk", PSK_HEX,
                        "--message", "psk")
        assert result.status == 0, result.stderr
        assert result.json["replies"] == ["psk"]
        assert result.json["peer_subject"] is None  # no certificate in a PSK handshake

        wrong = client(server.port, "--psk-identity", "device-7", "--psk", "ff" * 32,
                       "--no-stdin", "--timeout", "3")
        assert wrong.status == 1
        assert wrong.json["error"]


@pytest.fixture(scope="module")
def session_file(echo_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("session") / "session.json"
    result = client(echo_server.port, "--no-verify", "--message", "first", "--sess-out", path)
    assert result.status == 0, result.stderr
    assert result.json["session_saved"] is True and result.json["resumed"] is False
    return path


def test_resumption(echo_server: ServerProcess, session_file: Path) -> None:
    result = client(echo_server.port, "--no-verify", "--sess-in", session_file,
                    "--message", "resumed")
    assert result.status == 0, result.stderr
    assert result.json["resumed"] is True
    assert result.json["peer_subject"] is None  # no Certificate when resuming
    assert result.json["replies"] == ["resumed"]


def test_early_data(echo_server: ServerProcess, session_file: Path) -> None:
    result = client(echo_server.port, "--no-verify", "--sess-in", session_file,
                    "--early-data", "zero round trips", "--message", "then one")
    assert result.json["resumed"] is True
    assert result.json["early_data_accepted"] is True
    assert result.status == 0, result.stderr
    assert result.json["replies"] == ["zero round trips", "then one"]


def test_connection_ids(echo_server: ServerProcess) -> None:
    result = client(echo_server.port, "--no-verify", "--cid", "0102", "--message", "cid")
    assert result.status == 0, result.stderr
    assert result.json["local_cid"] == "0102"
    assert result.json["peer_cid"] == "aabbcc"
    assert result.json["replies"] == ["cid"]

    zero = client(echo_server.port, "--no-verify", "--cid", "--message", "zero-length")
    assert zero.status == 0, zero.stderr
    assert zero.json["local_cid"] == "" and zero.json["peer_cid"] == "aabbcc"

    plain = client(echo_server.port, "--no-verify", "--no-stdin")
    assert plain.json["local_cid"] is None and plain.json["peer_cid"] is None


def test_srtp_and_record_size_limit() -> None:
    with dtls_server("--echo", "--json", "--srtp", "SRTP_AES128_CM_HMAC_SHA1_80",
                     "--record-size-limit", "512") as server:
        result = client(server.port, "--no-verify", "--srtp",
                        "SRTP_AEAD_AES_128_GCM,SRTP_AES128_CM_HMAC_SHA1_80",
                        "--record-size-limit", "256", "--message", "x" * 255)
        assert result.status == 0, result.stderr
        assert result.json["srtp_profile"] == "SRTP_AES128_CM_HMAC_SHA1_80"
        assert result.json["replies"] == ["x" * 255]
        # over the server's limit of 512: refused before anything is sent (RFC 8449)
        big = client(server.port, "--no-verify", "--record-size-limit", "256",
                     "--message", "y" * 600)
        assert big.status == 1 and "511" in big.json["error"]


def test_raw_public_keys(tmp_path: Path, pki: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    def write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    server_key = write("server.key", pki.server.key_pem)
    server_pub = write("server.pub", pki.server.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    other_pub = write("other.pub", pki.client.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with dtls_server("--echo", "--json", "--raw-public-key", "--key", server_key) as server:
        result = client(server.port, "--servername", "localhost", "--pin-key", server_pub,
                        "--message", "pinned")
        assert result.status == 0, result.stderr
        assert result.json["replies"] == ["pinned"] and result.json["peer_subject"] is None
        wrong = client(server.port, "--servername", "localhost", "--pin-key", other_pub,
                       "--no-stdin", "--timeout", "3")
        assert wrong.status == 1 and "not one we pinned" in wrong.json["error"]


def test_aead_confidentiality_limit_updates_keys() -> None:
    with dtls_server("--echo", "--json", "--once") as server:
        messages = [f"m{i}" for i in range(12)]
        args = [a for m in messages for a in ("--message", m)]
        result = client(server.port, "--no-verify", "--confidentiality-limit", "8", *args)
        assert result.status == 0, result.stderr
        assert result.json["replies"] == messages
        # 12 records under a limit of 8 per key: the client moved to a new epoch (§4.5.3)
        assert result.json["stats"]["send_epoch"] >= 4


# ---- demo, usage, delegation ----


def test_demo_json() -> None:
    result = run_main("demo", "--messages", "50", "--json")
    assert result.status == 0, result.stderr
    report = result.json
    assert report["ok"] is True and report["error"] is None
    assert report["version"] == "DTLSv1.3"
    assert report["messages_checked"] == 50
    assert report["messages_after_key_update"] == 10
    assert report["epoch_after_key_update"] == 4
    assert report["resumed"] is True
    assert report["messages_per_second"] > 0 and report["megabytes_per_second"] > 0


def test_demo_report_is_readable() -> None:
    result = run_main("demo", "--messages", "20", "--size", "100")
    assert result.status == 0, result.stderr
    assert "handshake    DTLSv1.3, TLS_AES_128_GCM_SHA256" in result.stdout
    assert "20 messages of 100 bytes" in result.stdout
    assert result.stdout.rstrip().endswith("result       OK")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["client", "127.0.0.1", "1", "--early-data", "x"], "--early-data needs --sess-in"),
        (["client", "127.0.0.1", "1", "--ciphers", "TLS_NULL"], "unknown DTLS 1.3 cipher"),
        (["client", "127.0.0.1", "1", "--psk", "00"], "--psk and --psk-identity"),
        (["server", "--require-client-cert"], "--require-client-cert needs --cafile"),
        (["client", "127.0.0.1", "1", "--cid", "xyz"], "not a hex string"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = run_main(*args)
    assert result.status == 2
    assert message in result.stderr


def test_ctrl_c_in_the_interactive_client_exits_cleanly(echo_server: ServerProcess) -> None:
    """SIGINT while the stdin thread waits for a line: exit 130, no "Fatal Python error"
    (a daemon thread inside sys.stdin.buffer made Python abort with status 134)."""
    proc = subprocess.Popen(
        [*PYTHON, "client", "127.0.0.1", str(echo_server.port), "--no-verify"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(b"before ctrl-c\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"before ctrl-c\n"  # stdin is open, the thread waits
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=10)
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 130, err
    assert "Fatal Python error" not in err and "Traceback" not in err


# ---- configuration errors: one sentence, at once, never a traceback ----


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--max-connections", "0"], "argument --max-connections: must be at least 1"),
        (["server", "--port", "99999"], "argument --port: must be 0..65535, not 99999"),
        (["client", "127.0.0.1", "70000"], "argument PORT: must be 1..65535, not 70000"),
        (["client", "127.0.0.1:0"], "port: must be 1..65535, not 0"),
        (["client", "127.0.0.1", "1", "--mtu", "50"], "argument --mtu: must be 256..65527"),
        (["client", "127.0.0.1", "1", "--timeout", "-1"], "argument --timeout: must be more"),
        (["client", "127.0.0.1", "1", "--timeout", "nan"], "argument --timeout: must be more"),
        (["client", "127.0.0.1", "1", "--confidentiality-limit", "0"],
         "argument --confidentiality-limit: must be at least 1"),
        (["server", "--early-data", "--max-early-data", "-1"],
         "argument --max-early-data: must be 0.."),
        (["client", "127.0.0.1", "1", "--ciphers", ""], "--ciphers: no cipher suites"),
        (["client", "127.0.0.1", "1", "--groups", "x25519,ffdhe2048"],
         "--groups: unknown group 'ffdhe2048' (groups known here: x25519"),
        (["client", "127.0.0.1", "1", "--groups", "foo"], "--groups: unknown group 'foo'"),
        (["client", "127.0.0.1", "1", "--pass", "secret"], "--pass takes pass:TEXT"),
        (["client", "127.0.0.1", "1", "--pass", "env:DTLS13_NO_SUCH_VARIABLE"],
         "--pass env:DTLS13_NO_SUCH_VARIABLE: no such environment variable"),
    ],
)
def test_out_of_range_options_are_usage_errors(args: list[str], message: str) -> None:
    result = run_main(*args)
    assert result.status == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_pin_key_given_a_certificate(pki_paths: Any) -> None:
    cert = pki_paths["server"].leaf_certfile
    result = run_main("client", "127.0.0.1", "1", "--pin-key", cert)
    assert result.status == 2
    assert f"--pin-key {cert}: not a public key but a certificate" in result.stderr


def test_sess_in_missing_a_field(tmp_path: Path) -> None:
    broken = tmp_path / "session.json"
    broken.write_text('{"psk": ""}')
    result = run_main("client", "127.0.0.1", "1", "--no-verify", "--sess-in", broken)
    assert result.status == 2
    assert f"--sess-in {broken}: not a session saved by --sess-out (no 'ticket')" in result.stderr
    broken.write_text("[1, 2]")
    result = run_main("client", "127.0.0.1", "1", "--no-verify", "--sess-in", broken)
    assert result.status == 2 and "not a session saved by --sess-out" in result.stderr


def test_unresolvable_host_is_named() -> None:
    result = run_main("client", "no-such-host.invalid", "4433", "--no-verify", "--no-stdin")
    assert result.status == 1
    assert "cannot resolve 'no-such-host.invalid'" in result.stderr
    served = run_main("server", "--host", "no-such-host.invalid", "--port", "0")
    assert served.status == 1 and "cannot resolve 'no-such-host.invalid'" in served.stderr


def test_server_refuses_a_key_that_does_not_match(pki_paths: Any) -> None:
    cert, key = pki_paths["server"].certfile, pki_paths["client"].keyfile
    done = subprocess.run(
        [*PYTHON, "server", "--port", "0", "--cert", str(cert), "--key", str(key)],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2
    assert "listening" not in done.stdout
    assert f"{cert}, {key}: the private key does not match the certificate" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def encrypted_client_key(tmp_path: Path, pki: Any) -> Path:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "client-encrypted.key"
    path.write_bytes(pki.client.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret pass")))
    return path


def _client_context(*args: str | Path) -> Any:
    parsed = cli.build_parser().parse_args(["client", "127.0.0.1", *map(str, args)])
    with contextlib.ExitStack() as stack:
        return cli.client_context(parsed, stack)


def test_pass_opens_an_encrypted_key(
    encrypted_client_key: Path, pki: Any, pki_paths: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert = pki_paths["client"].certfile
    want = pki.client.key.private_numbers()
    monkeypatch.setenv("DTLS13_TEST_PASS", "s3cret pass")
    password_file = tmp_path / "pass.txt"
    password_file.write_text("s3cret pass\nnot this line\n")
    for source in ("pass:s3cret pass", "env:DTLS13_TEST_PASS", f"file:{password_file}"):
        ctx = _client_context("--no-verify", "--cert", cert, "--key", encrypted_client_key,
                              "--pass", source)
        assert ctx.private_key.private_numbers() == want, source

    missing = run_main("client", "127.0.0.1", "1", "--cert", cert, "--key",
                       encrypted_client_key)
    assert missing.status == 2
    assert (f"{encrypted_client_key}: the private key is encrypted: give its password with "
            "--pass") in missing.stderr
    wrong = run_main("client", "127.0.0.1", "1", "--cert", cert, "--key", encrypted_client_key,
                     "--pass", "pass:wrong")
    assert wrong.status == 2 and "cannot load the private key" in wrong.stderr
    assert "wrong" not in wrong.stderr.replace("wrong password", "")  # never the password


def test_server_with_an_encrypted_key(encrypted_client_key: Path, pki: Any,
                                      tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"  # the client credential serves as well as any
    chain.write_bytes(pki.client.chain_pem)
    with dtls_server("--echo", "--json", "--once", "--cert", chain,
                     "--key", encrypted_client_key, "--pass", "pass:s3cret pass") as server:
        result = client(server.port, "--no-verify", "--message", "locked")
        assert result.status == 0, result.stderr
        assert result.json["replies"] == ["locked"]
        assert result.json["peer_subject"] == pki.client.cert.subject.rfc4514_string()


def test_host_colon_port(echo_server: ServerProcess) -> None:
    result = run_main("client", f"127.0.0.1:{echo_server.port}", "--json", "--timeout", "5",
                      "--no-verify", "--message", "colon")
    assert result.status == 0, result.stderr
    assert result.json["replies"] == ["colon"]
    twice = run_main("client", f"127.0.0.1:{echo_server.port}", str(echo_server.port))
    assert twice.status == 2 and "a port twice" in twice.stderr


# ---- s_client / s_server habits ----


def test_server_sends_its_stdin_to_the_client() -> None:
    with dtls_server("--once", stdin=True) as server:
        proc = subprocess.Popen(
            [*PYTHON, "client", f"127.0.0.1:{server.port}", "--no-verify", "-q"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            assert server.proc.stdin is not None and server.proc.stdout is not None
            proc.stdin.write("from the client\n")
            proc.stdin.flush()
            assert server.proc.stdout.readline() == "from the client\n"  # it printed it
            server.proc.stdin.write("from the server\n")
            server.proc.stdin.flush()
            assert proc.stdout.readline() == "from the server\n"
            proc.stdin.close()  # end of input: the client closes, the --once server exits
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert server.wait() == 0


def test_no_tickets(tmp_path: Path) -> None:
    with dtls_server("--echo", "--json", "--no-tickets") as server:
        result = client(server.port, "--no-verify", "--message", "hi", "--timeout", "1",
                        "--sess-out", tmp_path / "session.json")
        assert result.status == 1
        assert result.json["replies"] == ["hi"]
        assert result.json["error"] == "no session ticket within 1 s"
        assert not (tmp_path / "session.json").exists()


def _options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """(command, action) for every argument of every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for inner in sub._actions:
                    if not isinstance(inner, argparse._HelpAction):
                        yield name, inner


def test_every_option_and_positional_has_help() -> None:
    missing = [(command, action.dest) for command, action in _options(cli.build_parser())
               if not action.help]
    assert missing == []


def test_docs_list_every_option() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    missing = sorted(
        (command, option)
        for command, action in _options(cli.build_parser())
        for option in action.option_strings
        if option.startswith("--") and not re.search(re.escape(option) + r"(?![\w-])", docs)
    )
    assert missing == []


def test_usage_says_dtls_when_run_as_dtls(tmp_path: Path) -> None:
    script = tmp_path / "dtls"  # what the console script is called
    script.write_text("import sys\nfrom dtls.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, str(script), "client", "--help"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: dtls client ")
    module = subprocess.run([*PYTHON, "--help"], capture_output=True, text=True, timeout=30,
                            env=env)
    assert module.stdout.startswith("usage: python -m dtls ")
    assert "\n  python -m dtls demo\n" in module.stdout
    bad = subprocess.run([sys.executable, str(script), "server", "--port", "-1"],
                         capture_output=True, text=True, timeout=30, env=env)
    assert bad.returncode == 2 and "dtls server: error: argument --port" in bad.stderr


def test_bench_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_e2e_progress", cli.BENCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    class Stderr(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for tty in (False, True):
        err = Stderr(tty)
        monkeypatch.setattr(sys, "stderr", err)
        progress = bench.Progress(2)
        progress.show("plain single ...")
        progress.step("plain single: 1/s")
        progress.finish()
        if tty:
            assert "\r[############............] 1/2 plain single: 1/s" in err.getvalue()
        else:
            assert err.getvalue() == ""


def test_sim_is_delegated() -> None:
    result = run_main("sim", "--help")
    assert result.status == 0
    assert "python -m dtls sim" in result.stdout


def test_console_entry_point_help() -> None:
    done = subprocess.run([*PYTHON, "--help"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0
    for command in ("client", "server", "demo", "bench", "sim"):
        assert command in done.stdout
