"""The client's first ClientHello from its Context's template (RFC 9846 §4.1.2): the
random and the key share values spliced into the encoding kept from the previous
connection give exactly the bytes the encoder gives; PSK, resumption and retried
ClientHellos go through the encoder."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from loopback import Loopback
from test_connection import exchange, handshake, make_pair
from test_session import Clock

from dtls import handshake_client
from dtls.config import Context, CookieMode
from dtls.connection import Connection
from dtls.errors import DecodeError
from dtls.events import HandshakeCompleted, SessionTicketReceived
from dtls.handshake_client import MAX_CLIENT_HELLO_TEMPLATES, ClientHandshake
from dtls.iana import HandshakeType, NamedGroup
from dtls.messages import (
    ClientHello,
    ClientHelloTemplate,
    KeyShareEntry,
    decode_handshake_body,
    decode_handshake_fragments,
    encode_handshake_body,
)
from dtls.session import ExternalPsk
from dtls.srtp import SrtpProfile

SERVER = ("192.0.2.2", 4433)
PLAINTEXT_HEADER = 13  # type, version, epoch, sequence_number, length (RFC 9147 §4)


class FixedRandomness:
    """The same random values and key shares for every connection it is given to."""

    _shares: dict[tuple[int, int], Any] = {}  # (seed, group): one key pair for all

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def give_to(self, conn: Connection) -> None:
        hs = conn._handshake
        counter = itertools.count()

        def random(n: int) -> bytes:
            value = self._seed * 1000 + next(counter)
            return (value.to_bytes(8, "big") * (n // 8 + 1))[:n]

        def generate_key_share(group: int) -> Any:
            key = (self._seed, group)
            if key not in self._shares:
                self._shares[key] = base.generate_key_share(group)
            return self._shares[key]

        base = hs._crypto
        hs._crypto = dataclasses.replace(
            base, random=random, generate_key_share=generate_key_share
        )


def sent_client_hello(conn: Connection) -> bytes:
    """The body of the ClientHello `conn` sends first, reassembled from its datagrams."""
    fragments = {}
    for data, _ in conn.datagrams_to_send(0.0):
        pos = 0
        while pos < len(data):
            assert data[pos] == 22  # handshake, in plaintext records
            length = int.from_bytes(data[pos + 11 : pos + 13], "big")
            payload = data[pos + PLAINTEXT_HEADER : pos + PLAINTEXT_HEADER + length]
            for f in decode_handshake_fragments(payload):
                assert f.msg_type == HandshakeType.CLIENT_HELLO and f.message_seq == 0
                fragments[f.fragment_offset] = f.fragment
                total = f.length
            pos += PLAINTEXT_HEADER + length
    body = b"".join(fragments[k] for k in sorted(fragments))
    assert len(body) == total
    return body


def first_flight(
    ctx: Context, randomness: FixedRandomness, server_name: str | None, **kwargs: Any
) -> tuple[ClientHandshake, bytes]:
    conn = Connection(ctx, server_name=server_name, **kwargs)
    randomness.give_to(conn)
    conn.connect(SERVER, 0.0)
    hs = conn._handshake
    assert isinstance(hs, ClientHandshake)
    return hs, sent_client_hello(conn)


def decoded(body: bytes) -> Any:
    """The ClientHello `body` encodes, as the client made it (in canonical order)."""
    hello = decode_handshake_body(HandshakeType.CLIENT_HELLO, body)
    return dataclasses.replace(hello, extension_order=None)


class EncoderCalls:
    """Counts the ClientHandshake's calls of the ClientHello encoder."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        encode = handshake_client.encode_handshake_body

        def counting(msg: Any) -> bytes:
            self.count += isinstance(msg, ClientHello)
            return encode(msg)

        monkeypatch.setattr(handshake_client, "encode_handshake_body", counting)


CONFIGURATIONS: dict[str, tuple[dict[str, Any], str | None, dict[str, Any]]] = {
    "default": ({}, "localhost", {}),
    "other-name": ({}, "example.com", {}),
    "no-name": ({}, None, {}),
    "ip-address": ({}, "192.0.2.7", {}),
    "alpn": ({"alpn_protocols": ("h3", "webrtc")}, "localhost", {}),
    "cid": ({"connection_id": b"\x01\x02\x03"}, "localhost", {}),
    "empty-cid": ({"connection_id": b""}, "localhost", {}),
    "cid-without-rrc": (
        {"connection_id": b"\x07" * 8, "return_routability_check": False},
        "localhost",
        {},
    ),
    "cid-per-connection": ({}, "localhost", {"connection_id": b"\xaa\xbb"}),
    "groups": ({"groups": ("secp256r1", "x25519")}, "localhost", {}),
    "two-key-shares": (
        {"key_share_groups": ("x25519", "secp256r1"), "groups": ("x25519", "secp256r1")},
        "localhost",
        {},
    ),
    "three-key-shares": (
        {"key_share_groups": ("secp384r1", "x25519", "secp256r1")},
        "localhost",
        {},
    ),
    "post-quantum-fragmented": (
        {
            "key_share_groups": ("x25519mlkem768",),
            "fragment_first_client_hello": True,
        },
        "localhost",
        {},
    ),
    "suites": ({"cipher_suites": "TLS_CHACHA20_POLY1305_SHA256"}, "localhost", {}),
    "srtp": (
        {
            "srtp_profiles": (
                SrtpProfile.SRTP_AEAD_AES_128_GCM,
                SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80,
            )
        },
        "localhost",
        {},
    ),
    "record-size-limit": ({"record_size_limit": 1024}, "localhost", {}),
    "psk-modes": ({"psk_key_exchange_modes": (0, 1)}, "localhost", {}),
    "everything": (
        {
            "alpn_protocols": ("coap",),
            "connection_id": b"",
            "key_share_groups": ("x25519", "secp384r1"),
            "srtp_profiles": (SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80,),
            "record_size_limit": 512,
            "signature_algorithms": (0x0403, 0x0807),
        },
        "dtls.example",
        {},
    ),
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_template_gives_the_encoders_bytes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, server_name, connection_args = CONFIGURATIONS[name]
    calls = EncoderCalls(monkeypatch)
    ctx = Context.client(verify=False, **settings)
    first, first_body = first_flight(ctx, FixedRandomness(1), server_name, **connection_args)
    assert calls.count == 1 and ctx._client_hello_templates is not None
    # the same randomness on the same Context: the template, no encoder, the same bytes
    second, second_body = first_flight(ctx, FixedRandomness(1), server_name, **connection_args)
    assert calls.count == 1
    assert second_body == first_body
    hello = second._client_hello
    assert hello is not None and hello is not first._client_hello
    assert encode_handshake_body(hello) == second_body
    assert decoded(second_body) == hello
    assert hello == first._client_hello
    # other randomness: the new random and shares, and still the encoder's bytes
    third, third_body = first_flight(ctx, FixedRandomness(2), server_name, **connection_args)
    assert calls.count == 1
    hello = third._client_hello
    assert hello is not None and hello.random == third.client_random != first.client_random
    assert hello.key_share == [
        KeyShareEntry(g, s.public_bytes) for g, s in third._key_shares.items()
    ]
    assert encode_handshake_body(hello) == third_body != first_body
    assert decoded(third_body) == hello
    # and a fresh Context, which encodes, agrees byte for byte
    fresh = Context.client(verify=False, **settings)
    _, fresh_body = first_flight(fresh, FixedRandomness(2), server_name, **connection_args)
    assert calls.count == 2
    assert fresh_body == third_body


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"alpn_protocols": ("h3",)},
        {"connection_id": b"\x01\x02"},
        {"key_share_groups": ("x25519", "secp256r1")},
        {"srtp_profiles": (SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80,)},
        {"record_size_limit": 1024},
    ],
    ids=["default", "alpn", "cid", "two-key-shares", "srtp", "record-size-limit"],
)
def test_handshakes_from_the_template_complete(
    pki: Any, settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server_settings = {
        key: value
        for key, value in settings.items()
        if key in ("alpn_protocols", "connection_id", "srtp_profiles", "record_size_limit")
    }
    link = make_pair(pki, client_settings=settings, server_settings=server_settings)
    handshake(link)
    calls = EncoderCalls(monkeypatch)
    for _ in range(2):
        again = Loopback(
            Connection(link.client.context, server_name="localhost"),
            Connection(link.server.context),
        )
        c, _ = handshake(again)
        exchange(again, [b"from the template"])
        assert again.client.alpn_protocol == link.client.alpn_protocol
        assert again.client.srtp_profile == link.client.srtp_profile
        assert (again.client.peer_cid is None) == (link.client.peer_cid is None)
        assert c.group == "x25519"
    assert calls.count == 0


def test_a_changed_context_gets_a_new_template(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = EncoderCalls(monkeypatch)
    ctx = Context.client(verify=False)
    first_flight(ctx, FixedRandomness(1), "localhost")
    changes: list[tuple[str, Any]] = [
        ("alpn_protocols", ("h3",)),
        ("groups", (NamedGroup.SECP256R1, NamedGroup.X25519)),
        ("key_share_groups", (NamedGroup.X25519, NamedGroup.SECP256R1)),
        ("signature_algorithms", (0x0403,)),
        ("cipher_suites", ctx.cipher_suites[:1]),
        ("record_size_limit", 2048),
        ("srtp_profiles", (SrtpProfile.SRTP_AEAD_AES_256_GCM,)),
        ("psk_key_exchange_modes", (0, 1)),
        ("connection_id", b"\x05"),
        ("return_routability_check", False),
        ("pinned_public_keys", (b"a key",)),
    ]
    for n, (name, value) in enumerate(changes, start=2):
        setattr(ctx, name, value)
        hs, body = first_flight(ctx, FixedRandomness(n), "localhost")
        assert calls.count == n, name  # encoded again
        assert hs._client_hello is not None and encode_handshake_body(hs._client_hello) == body
        fresh = dataclasses.replace(ctx, _client_hello_templates=None)
        assert first_flight(fresh, FixedRandomness(n), "localhost")[1] == body, name
        calls.count -= 1
        _, again = first_flight(ctx, FixedRandomness(n), "localhost")
        assert calls.count == n and again == body, name  # the new template


def test_one_template_per_server_name_and_cid(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = EncoderCalls(monkeypatch)
    ctx = Context.client(verify=False)
    names = ["a.example", "b.example", None]
    bodies = {name: first_flight(ctx, FixedRandomness(1), name)[1] for name in names}
    assert calls.count == 3
    for name in names:
        assert first_flight(ctx, FixedRandomness(1), name)[1] == bodies[name]
    assert calls.count == 3
    # a new CID per connection: each encoded, and the Context keeps few templates
    ctx.connection_id = iter(bytes([i]) * 4 for i in range(100)).__next__
    for _ in range(MAX_CLIENT_HELLO_TEMPLATES + 4):
        hs, body = first_flight(ctx, FixedRandomness(1), "a.example")
        assert hs._client_hello is not None and encode_handshake_body(hs._client_hello) == body
    assert len(ctx._client_hello_templates[1]) <= MAX_CLIENT_HELLO_TEMPLATES


def test_hello_retry_after_a_templated_client_hello(
    pki: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server wants a group we sent no share for, then a cookie: each retry goes
    through the encoder, and the template stays as it was for the next connection."""
    settings = {"groups": ("x25519", "secp256r1")}
    link = make_pair(pki, client_settings=settings, server_settings={"groups": ("secp256r1",)})
    c, _ = handshake(link)
    assert c.group == "secp256r1"
    ctx = link.client.context
    _, body = first_flight(ctx, FixedRandomness(1), "localhost")
    calls = EncoderCalls(monkeypatch)
    for server_settings in ({"groups": ("secp256r1",)}, {"cookie_mode": CookieMode.ALWAYS}):
        server = Context.server(**server_settings)
        server.load_cert_chain(certdata=pki.server.chain_pem, keydata=pki.server.key_pem)
        retry = Loopback(Connection(ctx, server_name="localhost"), Connection(server))
        handshake(retry)
        assert calls.count == 1  # the second ClientHello
        calls.count = 0
        exchange(retry, [b"after a retry"])
    assert first_flight(ctx, FixedRandomness(1), "localhost")[1] == body
    assert calls.count == 0
    fresh = dataclasses.replace(ctx, _client_hello_templates=None)
    assert first_flight(fresh, FixedRandomness(1), "localhost")[1] == body


def test_external_psk_uses_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    psk = ExternalPsk(b"Client_identity", bytes(range(32)))
    ctx = Context.client(verify=False, psk=psk)
    server_ctx = Context.server(psk_lookup={psk.identity: psk}.get, cookie_mode=CookieMode.NEVER)
    calls = EncoderCalls(monkeypatch)
    for n in (1, 2):
        link = Loopback(Connection(ctx), Connection(server_ctx))
        handshake(link)
        assert calls.count == n
    assert ctx._client_hello_templates is None


def test_resumption_uses_the_encoder(pki: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    first = make_pair(
        pki, server_settings={"wall_clock": clock}, client_settings={"wall_clock": clock}
    )
    handshake(first)
    session = first.events_of("client", SessionTicketReceived)[0].session
    calls = EncoderCalls(monkeypatch)
    again = Loopback(
        Connection(first.client.context, server_name="localhost", session=session),
        Connection(first.server.context),
    )
    handshake(again)
    assert again.events_of("client", HandshakeCompleted)[0].resumed
    assert calls.count == 1
    exchange(again, [b"resumed"])


def test_a_client_hello_too_big_for_a_datagram_keeps_no_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its key share is left out (the server's HRR picks the group): not a template."""
    calls = EncoderCalls(monkeypatch)
    ctx = Context.client(verify=False, key_share_groups=("x25519mlkem768",))
    for n in (1, 2):
        hs, body = first_flight(ctx, FixedRandomness(1), "localhost")
        assert hs._client_hello is not None and hs._client_hello.key_share == []
        assert encode_handshake_body(hs._client_hello) == body
        assert calls.count == 2 * n  # once to find it too big, once without the share
    assert ctx._client_hello_templates[1] == {}


def test_template_refuses_what_it_cannot_fill() -> None:
    ctx = Context.client(verify=False, key_share_groups=("x25519", "secp256r1"))
    hs, body = first_flight(ctx, FixedRandomness(1), "localhost")
    hello = hs._client_hello
    assert hello is not None and hello.key_share is not None
    template = ClientHelloTemplate(hello, body)
    x25519, p256 = hello.key_share
    assert template.fill(bytes(32), [x25519, p256]) is not None
    assert template.fill(bytes(31), [x25519, p256]) is None
    assert template.fill(bytes(32), [x25519]) is None
    assert template.fill(bytes(32), [p256, x25519]) is None
    assert template.fill(bytes(32), [x25519, KeyShareEntry(p256.group, b"\x04" * 64)]) is None
    share = body.index(p256.key_exchange)
    for wrong in (
        body[:5] + bytes([body[5] ^ 1]) + body[6:],  # in the random
        body[:share] + bytes([body[share] ^ 1]) + body[share + 1 :],  # in a key share
    ):
        with pytest.raises(ValueError):
            ClientHelloTemplate(hello, wrong)
    with pytest.raises(ValueError):
        ClientHelloTemplate(dataclasses.replace(hello, key_share=[x25519]), body)
    with pytest.raises(DecodeError):
        ClientHelloTemplate(hello, body[:50])
