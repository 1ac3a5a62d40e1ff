"""The server's CPU per handshake in memory, layer by layer (issue 12 §2: what bounds
the 3,000 handshakes per core-second of `dtls.aio`).

    python bench/bench_server_layers.py [--rounds 7] [--handshakes 300]

The server `bench_workers.py` runs (`Context.server()`, a self-signed ECDSA P-256
certificate, X25519, TLS_AES_128_GCM_SHA256), fed by `Connection` clients in the same
process; only the server's calls are timed (`time.process_time` around them, the cost
of the clock calls taken off). Each round runs every layer in turn (interleaved):

    connection            a server `Connection` alone: no cookie, no ticket (its making
                          and the client's close_notify included, in every layer)
    + cookie              the same with the cookie exchange (RFC 9147 §5.1)
    + cookie + ticket     and one NewSessionTicket (the `Context.server()` defaults)
    endpoint              `ServerEndpoint` (8-byte CIDs, as `dtls.aio`) with the
                          defaults: what the `dtls.aio` server runs, without its
                          sockets and event loop
    public-key floor      the server's X25519 key generation and agreement and its
                          ECDSA signature alone, through the same `dtls.crypto` calls

Printed: min / median µs per handshake over the rounds, the handshakes per core-second
that makes, and each layer against the public-key floor of the same rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dtls import crypto
from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.crypto import self_signed_certificate
from dtls.iana import NamedGroup, SignatureScheme
from dtls.server import ServerEndpoint

SERVER = ("192.0.2.2", 4433)
_clock = time.process_time
T = TypeVar("T")


class ServerClock:
    """CPU seconds spent inside the server's calls."""

    def __init__(self) -> None:
        self.spent = 0.0
        start = _clock()
        for _ in range(1000):
            _clock()
        self.cost = (_clock() - start) / 1000  # one clock call, taken off each interval

    def run(self, work: Callable[[], T]) -> T:
        start = _clock()
        result = work()
        self.spent += _clock() - start - self.cost
        return result


def _address(i: int) -> tuple[str, int]:
    return (f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250}", 1024 + i % 60000)


def _server_context(cert: bytes, key: bytes, cookie: bool, tickets: int) -> Context:
    ctx = Context.server(
        cookie_mode=CookieMode.ALWAYS if cookie else CookieMode.NEVER, session_tickets=tickets
    )
    ctx.load_cert_chain(certdata=cert, keydata=key)
    return ctx


Serve = Callable[[list[bytes]], list[bytes]]  # the server's answer to client datagrams


def _handshake(
    client_ctx: Context, clock: ServerClock, serve: Serve, server_done: Callable[[], bool]
) -> None:
    """A client's handshake and close_notify against `serve`, whose calls alone are timed;
    RuntimeError unless both ends completed (`server_done`, asked before the close)."""
    client = Connection(client_ctx, server_name="localhost")
    client.connect(SERVER, 0.0)
    while out := [data for data, _ in client.datagrams_to_send(0.0)]:
        for data in clock.run(lambda: serve(out)):
            client.receive_datagram(data, SERVER, 0.0)
        while client.next_event() is not None:
            pass
    if not (client.handshake_complete and server_done()):
        raise RuntimeError("the handshake did not complete")
    client.close()
    close = [data for data, _ in client.datagrams_to_send(0.0)]
    clock.run(lambda: serve(close))


def connection_layer(
    ctx: Context, client_ctx: Context, clock: ServerClock
) -> Callable[[int], None]:
    """Each handshake against a server `Connection` of its own, made in the timed part
    (as the endpoint makes it)."""

    def handshake(i: int) -> None:
        address = _address(i)
        server: list[Connection] = []

        def serve(datagrams: list[bytes]) -> list[bytes]:
            if not server:
                server.append(Connection(ctx))
            for data in datagrams:
                server[0].receive_datagram(data, address, 0.0)
            out = [data for data, _ in server[0].datagrams_to_send(0.0)]
            while server[0].next_event() is not None:
                pass
            return out

        _handshake(client_ctx, clock, serve, lambda: server[0].handshake_complete)

    return handshake


def endpoint_layer(ctx: Context, client_ctx: Context, clock: ServerClock) -> Callable[[int], None]:
    """Each handshake through one long-lived `ServerEndpoint`, from an address of its own."""
    endpoint = ServerEndpoint(ctx, cid_length=8)

    def handshake(i: int) -> None:
        address = _address(i)
        completed = endpoint.stats().handshakes_completed

        def serve(datagrams: list[bytes]) -> list[bytes]:
            endpoint.receive_datagrams([(data, address) for data in datagrams], 0.0)
            out = [data for data, _ in endpoint.datagrams_to_send(0.0)]
            while endpoint.next_event() is not None:
                pass
            return out

        _handshake(
            client_ctx, clock, serve, lambda: endpoint.stats().handshakes_completed > completed
        )

    return handshake


def public_key_floor(ctx: Context, clock: ServerClock) -> Callable[[int], None]:
    """The server's public-key work of one handshake: X25519 and one ECDSA signature."""
    client_share = crypto.generate_key_share(NamedGroup.X25519).public_bytes
    content = crypto.certificate_verify_content(True, bytes(32))
    key = ctx.private_key

    def work() -> object:
        crypto.server_key_share(NamedGroup.X25519, client_share)
        return crypto.sign(key, SignatureScheme.ECDSA_SECP256R1_SHA256, content)

    def handshake(i: int) -> None:
        clock.run(work)

    return handshake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--handshakes", type=int, default=300, help="per layer per round")
    args = parser.parse_args()
    cert, key = self_signed_certificate(["localhost"])
    client = Context.client(verify=False, connection_id=b"")  # bench_workers.py's client
    clock = ServerClock()
    layers = {
        "connection": connection_layer(_server_context(cert, key, False, 0), client, clock),
        "+ cookie": connection_layer(_server_context(cert, key, True, 0), client, clock),
        "+ cookie + ticket": connection_layer(_server_context(cert, key, True, 1), client, clock),
        "endpoint (dtls.aio in memory)": endpoint_layer(
            _server_context(cert, key, True, 1), client, clock
        ),
        "public-key floor": public_key_floor(_server_context(cert, key, False, 0), clock),
    }
    seen = 0
    for run in layers.values():  # warm up every path
        for _ in range(30):
            run(seen)
            seen += 1
    rows: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(args.rounds):
        for name, run in layers.items():
            clock.spent = 0.0
            for _ in range(args.handshakes):
                run(seen)
                seen += 1
            rows[name].append(clock.spent / args.handshakes)
    floor = rows["public-key floor"]
    print(f"{args.rounds} interleaved rounds of {args.handshakes}; server CPU, min / median")
    for name, values in rows.items():
        low, mid = min(values), statistics.median(values)
        ratio = statistics.median(v / f for v, f in zip(values, floor, strict=True))
        print(
            f"{name:31s} {low * 1e6:6.0f} / {mid * 1e6:6.0f} us per handshake, "
            f"{1 / low:6,.0f} / {1 / mid:6,.0f} per core-second, {ratio:4.2f}x the floor"
        )


if __name__ == "__main__":
    main()
