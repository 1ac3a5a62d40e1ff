"""`calibrate()`: a timing model measured on this host, through this library.

Each cost is the process CPU time of the operation as the engine does it:
- AEAD: `RecordCipher.seal` at two payload sizes, fitted as per record + per byte (opening
  is taken to cost what sealing does);
- key exchange: `crypto.generate_key_share` and `KeyShare.agree` for each group;
- signatures: `crypto.sign` and `crypto.verify_signature` for each algorithm;
- the per-message protocol cost: whole handshakes between two in-memory connections (a
  fresh trust store each, so chains are really verified), minus the priced crypto work the
  `Observer` sees, divided by the handshake messages it counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .. import crypto
from ..config import parse_groups
from ..connection import Connection
from ..events import Event
from ..iana import CipherSuite, SignatureScheme
from ..record import RecordCipher
from .credentials import SERVER_NAME, credentials
from .timing import (
    AeadCost,
    KeyExchangeCost,
    SignatureCost,
    TimingModel,
    Work,
)
from .work import Observer, snapshot

DEFAULT_GROUPS = ("secp256r1", "secp384r1", "x25519")
_SCHEMES = {
    "ecdsa-p256": SignatureScheme.ECDSA_SECP256R1_SHA256,
    "ed25519": SignatureScheme.ED25519,
}


def _per_call(fn: Callable[[], object], budget: float, minimum: int = 5) -> float:
    """CPU seconds per call of `fn`, timed for about `budget` seconds (best of 3 rounds)."""
    fn()  # warm up
    start = time.process_time()
    calls = 0
    while calls < minimum or time.process_time() - start < budget / 3:
        fn()
        calls += 1
    best = (time.process_time() - start) / calls
    for _ in range(2):
        t = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t) / calls)
    return best


def _aead(suite: CipherSuite, budget: float) -> AeadCost:
    cipher = RecordCipher.from_secret(int(suite), bytes(48 if suite == 0x1302 else 32))
    sizes = (64, 16384)  # far apart: noise cannot turn the per-byte slope around
    seqs = iter(range(1 << 40))
    times = []
    for size in sizes:
        payload = bytes(size)

        def seal(p: bytes = payload) -> bytes:
            return cipher.seal(3, next(seqs), 23, p)

        times.append(_per_call(seal, budget / 2))
    per_byte = max(0.0, (times[1] - times[0]) / (sizes[1] - sizes[0]))
    return AeadCost(max(0.0, times[0] - per_byte * sizes[0]), per_byte)


def _key_exchange(group: str, budget: float) -> KeyExchangeCost:
    code = int(parse_groups(group)[0])
    peer = crypto.generate_key_share(code).public_bytes
    generate = _per_call(lambda: crypto.generate_key_share(code), budget / 2)
    share = crypto.generate_key_share(code)
    agree = _per_call(lambda: share.agree(peer), budget / 2)
    return KeyExchangeCost(generate, agree)


def _signature(name: str, budget: float) -> SignatureCost:
    scheme = int(_SCHEMES[name])
    key = ed25519.Ed25519PrivateKey.generate() if name == "ed25519" else (
        ec.generate_private_key(ec.SECP256R1())
    )
    data = bytes(130)
    signature = crypto.sign(key, scheme, data)
    public = key.public_key()
    sign = _per_call(lambda: crypto.sign(key, scheme, data), budget / 2)
    verify = _per_call(lambda: crypto.verify_signature(public, scheme, signature, data), budget / 2)
    return SignatureCost(sign, verify)


def _message_cost(partial: TimingModel, budget: float) -> float:
    """Protocol CPU per handshake message: handshakes minus their priced crypto."""
    from .model import Scenario, make_contexts

    scenario = Scenario(timing=partial, cookie=False, session_tickets=0)
    prices = partial.prices(scenario.suite, scenario.group, scenario.signature)
    creds = credentials(scenario.signature)
    observers = (Observer(True), Observer(False))
    total = Work()
    spent = 0.0
    count = 0
    while count < 3 or spent < budget:
        client_ctx, server_ctx = make_contexts(scenario, time.time)
        client_ctx.trust = crypto.TrustStore.from_certificates([creds.ca])
        conns = (Connection(client_ctx, server_name=SERVER_NAME), Connection(server_ctx))
        start = time.process_time()
        before = snapshot(conns[0])
        conns[0].connect("server", 0.0)
        pending = [(0, [d for d, _ in conns[0].datagrams_to_send(0.0)], before)]
        while pending:
            side, outputs, before = pending.pop()
            sender = conns[side]
            work, _ = observers[side].observe(sender, before, outputs, _drain(sender))
            total.add(work)
            if outputs:
                peer = conns[1 - side]
                before = snapshot(peer)
                for data in outputs:
                    peer.receive_datagram(data, "peer", 0.0)
                pending.append((1 - side, [d for d, _ in peer.datagrams_to_send(0.0)], before))
        spent += time.process_time() - start
        count += 1
        if not all(c.handshake_complete for c in conns):
            raise RuntimeError("calibration handshake did not complete")
    crypto_time = prices.seconds(Work(
        aead_records=total.aead_records, aead_bytes=total.aead_bytes,
        key_generations=total.key_generations, key_agreements=total.key_agreements,
        signatures=total.signatures, verifications=total.verifications,
        chain_verifications=total.chain_verifications,
    ))
    return max(0.0, (spent - crypto_time) / max(1, total.messages))


def _drain(conn: Connection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def calibrate(
    budget: float = 3.0,
    *,
    suites: Iterable[CipherSuite | int] | None = None,
    groups: Iterable[str] = DEFAULT_GROUPS,
    signatures: Iterable[str] = tuple(_SCHEMES),
    progress: Callable[[str], None] | None = None,
) -> TimingModel:
    """Measure a timing model in about `budget` seconds of CPU time."""
    chosen = tuple(CipherSuite(s) for s in (suites or CipherSuite))
    groups = tuple(groups)
    signatures = tuple(signatures)
    if "ecdsa-p256" not in signatures:
        signatures += ("ecdsa-p256",)  # certificate chains are priced with it
    share = budget / (len(chosen) + len(groups) + len(signatures) + 3)
    say = progress or (lambda _: None)
    aead = {}
    for suite in chosen:
        say(f"AEAD {suite.name}")
        aead[suite.name] = _aead(suite, share)
    kex = {}
    for group in groups:
        say(f"key exchange {group}")
        kex[group] = _key_exchange(group, share)
    sig = {}
    for name in signatures:
        say(f"signature {name}")
        sig[name] = _signature(name, share)
    model = TimingModel("calibrated", aead, kex, sig, 0.0)
    say("handshake messages")
    return model.with_message_cost(_message_cost(model, 3 * share))
