"""Stateless cookies (RFC 9147 §5.1): the prepared-key HMAC, the memo of the last cookie
opened, and the HelloRetryRequest encoded from its cached start."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from dtls import cookie as cookie_module
from dtls.cookie import _FIXED, COOKIE_VERSION, make_cookie, open_cookie
from dtls.handshake_server import _HRR_STARTS, _encode_hello_retry, _hello_retry_request
from dtls.iana import CipherSuite
from dtls.messages import ClientHello

ADDR = ("192.0.2.1", 5000)
SECRET = bytes(range(32))
OLD = bytes(range(32, 64))


def test_cookie_mac_is_hmac_sha256_over_address_and_body() -> None:
    cookie = make_cookie(SECRET, ADDR, 1_000.5, 0x1301, 29, b"h" * 32)
    body = _FIXED.pack(COOKIE_VERSION, 1_000_500, 0x1301, 29, 32) + b"h" * 32
    mac = hmac.digest(SECRET, repr(ADDR).encode() + body, "sha256")
    assert cookie == body + mac


def test_opened_twice_still_checks_address_key_and_freshness() -> None:
    cookie = make_cookie(OLD, ADDR, 1_000.0, 0x1301, 0, os.urandom(32))
    first = open_cookie([SECRET, OLD], cookie, ADDR, 1_000.0, 60.0)
    assert first is not None and first.suite == 0x1301
    # the memo of the last authentic cookie answers only what the HMAC would
    assert open_cookie([SECRET, OLD], cookie, ADDR, 1_001.0, 60.0) == first
    assert open_cookie([SECRET, OLD], cookie, ("192.0.2.1", 5001), 1_001.0, 60.0) is None
    assert open_cookie([SECRET], cookie, ADDR, 1_001.0, 60.0) is None  # its key rotated out
    assert open_cookie([SECRET, OLD], cookie, ADDR, 1_061.0, 60.0) is None  # expired
    assert open_cookie([SECRET, OLD], cookie, ADDR, 998.0, 60.0) is None  # from the future
    tampered = cookie[:-1] + bytes((cookie[-1] ^ 1,))
    assert open_cookie([SECRET, OLD], tampered, ADDR, 1_001.0, 60.0) is None
    assert open_cookie([SECRET, OLD], cookie, ADDR, 1_001.0, 60.0) == first


def test_many_keys_keyed_and_forgotten() -> None:
    keys = [os.urandom(32) for _ in range(3 * cookie_module._KEYED_MAX)]
    for key in keys:
        cookie = make_cookie(key, ADDR, 5.0, 0x1301, 0, b"x" * 32)
        assert open_cookie([key], cookie, ADDR, 5.0, 60.0) is not None
        assert open_cookie([keys[0]] if key != keys[0] else [OLD], cookie, ADDR, 5.0, 60.0) is None
    assert len(cookie_module._KEYED) <= cookie_module._KEYED_MAX


class _Context:
    """What _hello_retry_request reads of a Context."""

    def __init__(self) -> None:
        self.secrets = [SECRET]

    def wall_clock(self) -> float:
        return 1_234.0

    def cookie_secrets(self) -> list[bytes]:
        return self.secrets


def _client_hello(session_id: bytes) -> ClientHello:
    return ClientHello(random=os.urandom(32), cipher_suites=[0x1301],
                       legacy_session_id=session_id)


@pytest.mark.parametrize("suite", [CipherSuite.TLS_AES_128_GCM_SHA256,
                                   CipherSuite.TLS_AES_256_GCM_SHA384,
                                   CipherSuite.TLS_CHACHA20_POLY1305_SHA256])
@pytest.mark.parametrize("group", [0, 23, 29])
def test_hello_retry_request_from_its_start_is_the_encoders(suite: int, group: int) -> None:
    ctx = _Context()
    _HRR_STARTS.clear()
    for session_id in (b"", b"\x01" * 32, b"abc", b""):
        ch = _client_hello(session_id)
        body = _hello_retry_request(ctx, ch, b"hello" + session_id, ADDR, suite,  # type: ignore[arg-type]
                                    group)
        size = 48 if suite == CipherSuite.TLS_AES_256_GCM_SHA384 else 32
        cookie = body[-(_FIXED.size + size + 32):]
        assert body == _encode_hello_retry(ch, suite, group, cookie)
        contents = open_cookie([SECRET], cookie, ADDR, 1_234.0, 60.0)
        assert contents is not None and (contents.suite, contents.group) == (suite, group)
        digest = hashlib.new("sha384" if size == 48 else "sha256")
        digest.update(bytes((1, 0, 0, 5 + len(session_id))) + b"hello" + session_id)
        assert contents.client_hello_hash == digest.digest()
    assert (suite, group, _FIXED.size + size + 32) in _HRR_STARTS


def test_first_client_hello_cut_short_anywhere_is_dropped() -> None:
    """A first ClientHello (no cookie extension) is not looked through for a cookie: what
    that look would reject, the decoder does too."""
    from dtls.config import Context
    from dtls.connection import Connection
    from dtls.crypto import self_signed_certificate
    from dtls.handshake_server import _COOKIE_TYPE, client_hello_record, respond_statelessly

    cert, key = self_signed_certificate(["localhost"])
    server = Context.server()
    server.load_cert_chain(certdata=cert, keydata=key)
    for _ in range(20):  # the type's two bytes may turn up in a random or key share
        client = Connection(Context.client(verify=False))
        client.connect(("192.0.2.2", 4433), 0.0)
        record = client.datagrams_to_send(0.0)[0][0]
        body = record[25:]
        if _COOKIE_TYPE not in body:
            break
    assert _COOKIE_TYPE not in body
    assert respond_statelessly(server, record, ADDR).action == "retry"
    for n in range(len(body)):
        cut = client_hello_record(0, 0, body[:n])
        assert respond_statelessly(server, cut, ADDR).action == "drop", n
