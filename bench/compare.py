"""dtls13 against pyOpenSSL's DTLS 1.2, side by side in one run (issue 12's anchor).

    pip install -e '.[bench]'        # pyOpenSSL
    python bench/compare.py [--rounds 15] [--handshakes 100] [--records 5000]

Both libraries, both ends in one process, datagrams moved in memory (pyOpenSSL over its
memory BIOs): X25519, an ECDSA P-256 leaf + intermediate verified against the root with
the host name checked, AES-128-GCM, no cookie exchange, no session ticket. Each round
times, in turn, full handshakes and 1200-byte records sent and received through each
library (one at a time, and for dtls13 also 64 at a time with send_batch /
receive_datagrams, set against pyOpenSSL's one at a time); the figures are the min and
median over the rounds, and the ratios dtls13 / pyOpenSSL of the rates (above 1.0: dtls13
is faster). The public-key work of a dtls13 pair (`public_key_floor`) is timed alone in the
same rounds, to split a pair's time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_handshake import CLIENT, handshake
from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib
from pki import build_pki

from dtls import crypto
from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.events import DataReceived, DataReceivedBatch
from dtls.iana import NamedGroup, SignatureScheme

PAYLOAD = bytes(1200)
HOST = b"localhost"
DTLS1_2_VERSION = 0xFEFD  # RFC 6347 §4.1


# ---- dtls13 ----
def dtls13_contexts() -> tuple[Context, Context]:
    pki = build_pki()
    suites = ("TLS_AES_128_GCM_SHA256",)
    client = Context.client(cadata=pki.ca_pem, cipher_suites=suites, groups=("x25519",))
    server = Context.server(
        cookie_mode=CookieMode.NEVER, session_tickets=0, cipher_suites=suites, groups=("x25519",)
    )
    server.load_cert_chain(certdata=pki.chain_pem, keydata=pki.key_pem)
    return client, server


def dtls13_records(pair: tuple[Connection, Connection], count: int) -> None:
    client, server = pair
    for _ in range(count):
        client.send(PAYLOAD)
        for data, _ in client.datagrams_to_send(0.0):
            server.receive_datagram(data, CLIENT, 0.0)
        event = server.next_event()
        if event.__class__ is not DataReceived:
            raise RuntimeError(f"expected the record, got {event!r}")


def public_key_floor(client_ctx: Context, server_ctx: Context) -> Callable[[], object]:
    """The public-key work of one dtls13 handshake pair alone, through the same `dtls.crypto`
    calls the handshake makes: X25519 key generation and agreement on both sides, the
    server's ECDSA signature, and the client's chain and CertificateVerify checks."""
    chain = server_ctx.certificate_chain_der()
    key = server_ctx.private_key
    content = crypto.certificate_verify_content(True, bytes(32))
    scheme = SignatureScheme.ECDSA_SECP256R1_SHA256
    group = NamedGroup.X25519

    def pair() -> object:
        share = crypto.generate_key_share(group)
        server_public, _ = crypto.server_key_share(group, share.public_bytes)
        share.agree(server_public)
        signature = crypto.sign(key, scheme, content)
        certs = crypto.verify_certificate_chain(
            chain, client_ctx.trust_store(), server_name="localhost", is_server_cert=True,
            when=client_ctx.certificate_time(),
        )  # fmt: skip
        crypto.verify_signature(certs[0], scheme, signature, content)
        return certs

    return pair


BATCH = 64


def dtls13_records_batched(pair: tuple[Connection, Connection], count: int) -> None:
    """`count` batches of BATCH records: send_batch, then receive_datagrams (one
    DataReceivedBatch event per batch)."""
    client, server = pair
    payloads = [PAYLOAD] * BATCH
    for _ in range(count):
        client.send_batch(payloads)
        server.receive_datagrams([(d, CLIENT) for d, _ in client.datagrams_to_send(0.0)], 0.0)
        got = 0
        while (event := server.next_event()) is not None:
            got += len(event.data) if event.__class__ is DataReceivedBatch else 1
        if got != BATCH:
            raise RuntimeError(f"expected {BATCH} records, got {got}")


# ---- pyOpenSSL (DTLS 1.2) ----
def openssl_contexts(directory: str) -> tuple[SSL.Context, SSL.Context]:
    paths = build_pki().write(directory)
    server_paths = paths.credentials["server"]
    contexts = []
    for method in (SSL.DTLS_CLIENT_METHOD, SSL.DTLS_SERVER_METHOD):
        ctx = SSL.Context(method)
        ctx.set_min_proto_version(DTLS1_2_VERSION)
        ctx.set_max_proto_version(DTLS1_2_VERSION)
        ctx.set_cipher_list(b"ECDHE-ECDSA-AES128-GCM-SHA256")
        ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        # X25519 for the key exchange; P-256 listed too, as TLS 1.2 needs the
        # certificate's curve among the groups (RFC 8422 §5.1.1)
        if _ssl_lib.SSL_CTX_set1_curves_list(ctx._context, b"X25519:P-256") != 1:
            raise RuntimeError("X25519 unavailable")
        contexts.append(ctx)
    client, server = contexts
    client.load_verify_locations(str(paths.cafile))
    client.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    server.use_certificate_chain_file(str(server_paths.certfile))
    server.use_privatekey_file(str(server_paths.keyfile))
    return client, server


def openssl_handshake(client_ctx: SSL.Context, server_ctx: SSL.Context) -> tuple[Any, Any]:
    client = SSL.Connection(client_ctx, None)
    server = SSL.Connection(server_ctx, None)
    for conn in (client, server):
        conn.set_ciphertext_mtu(1400)
    client.set_connect_state()
    client.set_tlsext_host_name(HOST)
    # the host name checked against the certificate, as dtls13 does (RFC 6125)
    param = _ssl_lib.SSL_get0_param(client._ssl)
    if _ssl_lib.X509_VERIFY_PARAM_set1_host(param, HOST, len(HOST)) != 1:
        raise RuntimeError("X509_VERIFY_PARAM_set1_host failed")
    server.set_accept_state()
    done = [False, False]
    for _ in range(20):
        for index, (me, peer) in enumerate(((client, server), (server, client))):
            if not done[index]:
                try:
                    me.do_handshake()
                    done[index] = True
                except SSL.WantReadError:
                    pass
            try:
                data = me.bio_read(65536)
            except SSL.WantReadError:
                continue
            peer.bio_write(data)
        if all(done):
            return client, server
    raise RuntimeError("pyOpenSSL handshake did not complete")


def openssl_records(pair: tuple[Any, Any], count: int) -> None:
    client, server = pair
    for _ in range(count):
        client.write(PAYLOAD)
        server.bio_write(client.bio_read(65536))
        if len(server.read(65536)) != len(PAYLOAD):
            raise RuntimeError("record lost")


# ---- the run ----
def timed(fn: Callable[[], object], count: int) -> float:
    """Seconds per operation of `count` calls."""
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--handshakes", type=int, default=100, help="per library per round")
    parser.add_argument("--records", type=int, default=5000, help="per library per round")
    args = parser.parse_args()
    d_client, d_server = dtls13_contexts()
    with tempfile.TemporaryDirectory() as directory:
        o_client, o_server = openssl_contexts(directory)
    d_pair = handshake(d_client, d_server)
    for conn in d_pair:
        while conn.next_event() is not None:
            pass
    o_pair = openssl_handshake(o_client, o_server)
    if o_pair[0].get_protocol_version_name() != "DTLSv1.2":
        raise RuntimeError("pyOpenSSL did not negotiate DTLS 1.2")
    if o_pair[0].get_cipher_name() != "ECDHE-ECDSA-AES128-GCM-SHA256":
        raise RuntimeError(f"pyOpenSSL negotiated {o_pair[0].get_cipher_name()}")
    if o_pair[0].get_group_name() != "x25519":
        raise RuntimeError(f"pyOpenSSL negotiated {o_pair[0].get_group_name()}")
    if d_pair[0].cipher_suite != 0x1301 or d_pair[0].group != 0x001D:
        raise RuntimeError("dtls13 did not negotiate AES-128-GCM with X25519")
    floor = public_key_floor(d_client, d_server)
    rows: dict[str, list[float]] = {
        k: [] for k in ("d_hs", "o_hs", "floor", "d_rec", "o_rec", "d_bat")
    }
    for _ in range(args.rounds):  # interleaved: each round runs every figure once
        rows["d_hs"].append(timed(lambda: handshake(d_client, d_server), args.handshakes))
        rows["o_hs"].append(timed(lambda: openssl_handshake(o_client, o_server), args.handshakes))
        rows["floor"].append(timed(floor, args.handshakes))
        rows["d_rec"].append(timed(lambda: dtls13_records(d_pair, 1), args.records))
        rows["o_rec"].append(timed(lambda: openssl_records(o_pair, 1), args.records))
        batches = max(1, args.records // BATCH)
        rows["d_bat"].append(timed(lambda: dtls13_records_batched(d_pair, 1), batches) / BATCH)
    print(f"{args.rounds} interleaved rounds; min / median")
    _report("full handshakes, both ends (/s)", rows["d_hs"], rows["o_hs"], rate=True)
    f_min, f_med = min(rows["floor"]), statistics.median(rows["floor"])
    d_min, d_med = min(rows["d_hs"]), statistics.median(rows["d_hs"])
    print(
        f"  of a dtls13 pair (us): public-key work alone {f_min * 1e6:.0f} / {f_med * 1e6:.0f}, "
        f"the rest (the engine's Python, HKDF, records) {(d_min - f_min) * 1e6:.0f} / "
        f"{(d_med - f_med) * 1e6:.0f}"
    )
    _report("one 1200 B record, send + receive (us)", rows["d_rec"], rows["o_rec"], rate=False)
    _report(
        f"1200 B records, dtls13 send_batch + receive_datagrams of {BATCH} (us per record)",
        rows["d_bat"], rows["o_rec"], rate=False,
    )  # fmt: skip


def _report(what: str, ours: list[float], theirs: list[float], *, rate: bool) -> None:
    def fmt(seconds: float) -> str:
        return f"{1 / seconds:,.0f}" if rate else f"{seconds * 1e6:.2f}"

    o_min, o_med = min(ours), statistics.median(ours)
    t_min, t_med = min(theirs), statistics.median(theirs)
    print(
        f"{what}: dtls13 {fmt(o_min)} / {fmt(o_med)}, pyOpenSSL DTLS 1.2 {fmt(t_min)} / "
        f"{fmt(t_med)}; ratio (dtls13 rate / pyOpenSSL rate) {t_min / o_min:.2f} / "
        f"{t_med / o_med:.2f}"
    )


if __name__ == "__main__":
    main()
