"""Message decoders that read the common case without a Reader, against the Reader
decoders they replaced (kept here as the reference): on the well-formed messages both give
the same message, and on every truncation and every one-byte change both give the same
message or the same kind of error."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from dtls.errors import DecodeError, IllegalParameter, ProtocolVersionError
from dtls.extensions import (
    CT_EXTENSIONS,
    HRR_EXTENSIONS,
    SH_EXTENSIONS,
    KeyShareEntry,
    Reader,
    decode_extensions,
)
from dtls.iana import HandshakeType
from dtls.messages import (
    HELLO_RETRY_REQUEST_RANDOM,
    Certificate,
    CertificateEntry,
    CertificateVerify,
    HandshakeMessage,
    ServerHello,
    decode_handshake_body,
    encode_handshake_body,
)

ERRORS = (DecodeError, IllegalParameter, ProtocolVersionError)


def reference_certificate(r: Reader) -> Certificate:
    context = r.pull_vector(1)
    block = r.pull_block(3)
    entries = []
    while block.pos < block.end:
        data = block.pull_vector(3, 1)
        entries.append(CertificateEntry(data, decode_extensions(block, CT_EXTENSIONS, None)[0]))
    return Certificate(context, entries)


def reference_server_hello(r: Reader) -> ServerHello:
    legacy_version = r.pull_uint16()
    random = r.pull_bytes(32)
    session_id = r.pull_vector(1, 0, 32)
    suite = r.pull_uint16()
    compression = r.pull_uint8()
    if r.pos == r.end:
        raise ProtocolVersionError("hello without extensions")
    hello = ServerHello(random, suite, session_id, compression, legacy_version=legacy_version)
    table = HRR_EXTENSIONS if random == HELLO_RETRY_REQUEST_RANDOM else SH_EXTENSIONS
    hello.other_extensions, hello.extension_order = decode_extensions(r, table, hello)
    return hello


def reference_certificate_verify(r: Reader) -> CertificateVerify:
    return CertificateVerify(r.pull_uint16(), r.pull_vector(2))


REFERENCES: dict[int, Callable[[Reader], HandshakeMessage]] = {
    HandshakeType.SERVER_HELLO: reference_server_hello,
    HandshakeType.CERTIFICATE: reference_certificate,
    HandshakeType.CERTIFICATE_VERIFY: reference_certificate_verify,
}

SERVER_HELLO = ServerHello(
    bytes(range(32)),
    0x1301,
    supported_versions=0xFEFC,
    key_share=KeyShareEntry(0x1D, b"\x07" * 32),
    extension_order=[43, 51],
)
SAMPLES: list[tuple[int, HandshakeMessage]] = [
    (HandshakeType.SERVER_HELLO, SERVER_HELLO),
    *(
        (HandshakeType.SERVER_HELLO, ServerHello(b"\x05" * 32, 0x1302, echo, extension_order=[]))
        for echo in (b"\x01" * 32, b"\x01")
    ),
    (
        HandshakeType.SERVER_HELLO,
        ServerHello(
            HELLO_RETRY_REQUEST_RANDOM,
            0x1301,
            supported_versions=0xFEFC,
            cookie=b"c" * 40,
            selected_group=0x17,
            extension_order=[43, 44, 51],
        ),
    ),
    (HandshakeType.CERTIFICATE_VERIFY, CertificateVerify(0x0403, b"\x30" * 71)),
    (HandshakeType.CERTIFICATE_VERIFY, CertificateVerify(0x0807, b"")),
    (HandshakeType.CERTIFICATE, Certificate(b"", [])),
    (HandshakeType.CERTIFICATE, Certificate(b"", [CertificateEntry(b"\x30" * 300)])),
    (
        HandshakeType.CERTIFICATE,
        Certificate(b"", [CertificateEntry(b"\x30\x82" * 200), CertificateEntry(b"\x30" * 99)]),
    ),
    (HandshakeType.CERTIFICATE, Certificate(b"\x01\x02", [CertificateEntry(b"x")])),
    (
        HandshakeType.CERTIFICATE,
        Certificate(
            b"",
            [
                CertificateEntry(b"leaf", [(5, b"\x01\x00"), (18, b"sct")]),
                CertificateEntry(b"ca"),
                CertificateEntry(b"root", [(52, b"")]),
            ],
        ),
    ),
]


# bodies the encoder does not make
MALFORMED: list[tuple[int, bytes]] = [
    (HandshakeType.CERTIFICATE, bytes.fromhex("00 000005 000000 0000")),  # empty cert_data
    (HandshakeType.CERTIFICATE, bytes.fromhex("00 000007 000000 0000 000000")),
    (HandshakeType.CERTIFICATE, bytes.fromhex("00 000006 000001 78 0000 00")),
    (HandshakeType.CERTIFICATE, bytes.fromhex("00 000006 000001 78 00 0000")),
    (HandshakeType.CERTIFICATE, bytes.fromhex("00 000005 000001 78 00")),
    (HandshakeType.SERVER_HELLO, encode_handshake_body(SERVER_HELLO)[:38]),  # no extensions
    (HandshakeType.SERVER_HELLO, encode_handshake_body(SERVER_HELLO)[:39]),
    (HandshakeType.CERTIFICATE_VERIFY, bytes.fromhex("0403 0002 00")),
    (HandshakeType.CERTIFICATE_VERIFY, bytes.fromhex("0403 0000 00")),
    (HandshakeType.CERTIFICATE_VERIFY, bytes.fromhex("0403 00")),
]


def reference(msg_type: int, body: bytes) -> tuple[str, Any]:
    r = Reader(body)
    try:
        msg = REFERENCES[msg_type](r)
        r.expect_end("handshake message")
    except ERRORS as e:
        return "error", type(e)
    return "message", msg


def decoded(msg_type: int, body: bytes) -> tuple[str, Any]:
    try:
        return "message", decode_handshake_body(msg_type, body)
    except ERRORS as e:
        return "error", type(e)


def variants(body: bytes, seed: int) -> list[bytes]:
    """Every truncation and extension by a byte, and one-byte changes: every position
    for short bodies, a random sample of them for long ones."""
    rng = random.Random(seed)
    out = [body[:n] for n in range(len(body))] + [body + b"\x00", body + b"\xff"]
    positions = range(len(body)) if len(body) <= 64 else rng.sample(range(len(body)), 64)
    for i in positions:
        for value in (0, 1, 0xFF, body[i] ^ 0x80, rng.randrange(256)):
            out.append(body[:i] + bytes([value]) + body[i + 1 :])
    return out


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_same_message_or_error_as_the_reference(index: int) -> None:
    msg_type, msg = SAMPLES[index]
    body = encode_handshake_body(msg)
    assert decoded(msg_type, body) == reference(msg_type, body) == ("message", msg)
    for variant in variants(body, index):
        assert decoded(msg_type, variant) == reference(msg_type, variant), variant.hex()


@pytest.mark.parametrize("index", range(len(MALFORMED)))
def test_malformed_as_the_reference(index: int) -> None:
    msg_type, body = MALFORMED[index]
    assert reference(msg_type, body)[0] == "error"
    for variant in [body, *variants(body, index)]:
        assert decoded(msg_type, variant) == reference(msg_type, variant), variant.hex()
