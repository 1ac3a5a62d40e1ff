"""Tests of dtls.keyschedule: RFC 8448 vectors (with the TLS 1.3 prefix) and independent
cross-checks of the DTLS 1.3 ("dtls13") derivations."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given
from hypothesis import strategies as st

from dtls import crypto
from dtls.errors import DecryptError
from dtls.iana import CipherSuite, HandshakeType, SignatureScheme
from dtls.keyschedule import (
    LABEL_PREFIX,
    KeySchedule,
    Transcript,
    compute_binder,
    empty_hash,
    export_keying_material,
    finished_verify_data,
    hkdf_expand,
    hkdf_expand_label,
    message_hash,
    next_application_traffic_secret,
    resumption_psk,
    suite_hash_name,
    verify_finished,
)

TLS13 = b"tls13 "
AES128 = CipherSuite.TLS_AES_128_GCM_SHA256
AES256 = CipherSuite.TLS_AES_256_GCM_SHA384


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# ---------------------------------------------------------------------------------------
# RFC 8448 §3, "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256, x25519, RSA certificate)
# ---------------------------------------------------------------------------------------

CLIENT_HELLO = h(
    """
    010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113031302
    010000910000000b0009000006736572766572ff01000100000a00140012001d001700180019010001010102010301
    0400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c
    002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d0002
    0101001c00024001
    """
)
SERVER_HELLO = h(
    """
    020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e269280013010000
    2e00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304
    """
)
ENCRYPTED_EXTENSIONS = h(
    "080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000"
)
CERTIFICATE = h(
    """
    0b0001b9000001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c30
    0a06035504031303727361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c
    300a0603550403130372736130819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f8279
    303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c
    7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8ca9d9efbf
    ae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f0203010001a31a301830090603551d13040230
    00300b0603551d0f0404030205a0300d06092a864886f70d01010b05000381810085aad2a0e5b9276b908c65f73a72
    67170618a54c5f8a7b337d2df7a594365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd
    335e5e67f2dbf102702e608ccae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3
    eac9d91d402dcc0cc8f8961229ac9187b42b4de10000
    """
)
CERTIFICATE_VERIFY = h(
    """
    0f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90db78e2
    d33a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671459e46
    445c9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3
    """
)
ECDHE = h("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d")
HASH_CH_SH = h("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8")
HASH_CH_SF = h("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13")
HASH_CH_CF = h("209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d")
C_HS_TRAFFIC = h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
S_HS_TRAFFIC = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
C_AP_TRAFFIC = h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
S_AP_TRAFFIC = h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
EXP_MASTER = h("fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50")
RES_MASTER = h("7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c")
SERVER_FINISHED = h("9b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718")
CLIENT_FINISHED = h("a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61")

# RFC 8448 §4, "Resumed 0-RTT Handshake": the ticket of §3 (ticket_nonce 00 00)
RESUMPTION_PSK = h("4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3")
RES_BINDER_KEY = h("69fe131a3bbad5d63c64eebcc30e395b9d8107726a13d074e389dbc8a4e47256")
TRUNCATED_CH_HASH = h("63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14")
BINDER = h("3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d")
CH_HASH_0RTT = h("08ad0fa05d7c7233b1775ba2ff9f4c5b8b59276b7f227f13a976245f5d960913")
C_E_TRAFFIC = h("3fbbe6a60deb66c30a32795aba0eff7eaa10105586e7be5c09678d63b6caab62")


def test_rfc8448_simple_1rtt_handshake() -> None:
    """The whole §3 key schedule, driven by the trace's own handshake messages."""
    transcript = Transcript()  # hash unknown while the ClientHello goes out
    transcript.add(CLIENT_HELLO)
    transcript.set_hash(suite_hash_name(AES128))
    transcript.add(SERVER_HELLO)
    assert transcript.digest() == HASH_CH_SH

    ks = KeySchedule(AES128, prefix=TLS13)
    assert (ks.hash_name, ks.hash_len) == ("sha256", 32)
    ks.early_secret()
    ks.handshake_secret(ECDHE)
    c_hs = ks.client_handshake_traffic_secret(HASH_CH_SH)
    s_hs = ks.server_handshake_traffic_secret(HASH_CH_SH)
    assert c_hs == C_HS_TRAFFIC
    assert s_hs == S_HS_TRAFFIC

    for message in (ENCRYPTED_EXTENSIONS, CERTIFICATE, CERTIFICATE_VERIFY):
        transcript.add(message)
    server_finished = finished_verify_data("sha256", s_hs, transcript.digest(), TLS13)
    assert server_finished == SERVER_FINISHED
    verify_finished("sha256", s_hs, transcript.digest(), SERVER_FINISHED, TLS13)
    transcript.add(bytes([HandshakeType.FINISHED, 0, 0, 32]) + server_finished)
    assert transcript.digest() == HASH_CH_SF

    ks.master_secret()
    assert ks.client_application_traffic_secret(HASH_CH_SF) == C_AP_TRAFFIC
    assert ks.server_application_traffic_secret(HASH_CH_SF) == S_AP_TRAFFIC
    assert ks.exporter_master_secret(HASH_CH_SF) == EXP_MASTER

    client_finished = finished_verify_data("sha256", c_hs, transcript.digest(), TLS13)
    assert client_finished == CLIENT_FINISHED
    transcript.add(bytes([HandshakeType.FINISHED, 0, 0, 32]) + client_finished)
    assert transcript.digest() == HASH_CH_CF
    assert ks.resumption_master_secret(HASH_CH_CF) == RES_MASTER


def test_rfc8448_traffic_keys() -> None:
    # RFC 8448 §3: server handshake write key/iv, server application write key/iv
    assert hkdf_expand_label("sha256", S_HS_TRAFFIC, b"key", b"", 16, TLS13) == h(
        "3fce516009c21727d0f2e4e86ee403bc"
    )
    assert hkdf_expand_label("sha256", S_HS_TRAFFIC, b"iv", b"", 12, TLS13) == h(
        "5d313eb2671276ee13000b30"
    )
    assert hkdf_expand_label("sha256", S_AP_TRAFFIC, b"key", b"", 16, TLS13) == h(
        "9f02283b6c9c07efc26bb9f2ac92e356"
    )
    assert hkdf_expand_label("sha256", C_AP_TRAFFIC, b"iv", b"", 12, TLS13) == h(
        "5b78923dee08579033e523d9"
    )


def test_rfc8448_server_certificate_verify() -> None:
    """The trace's rsa_pss_rsae_sha256 CertificateVerify checks with dtls.crypto."""
    # Certificate: context<0>, certificate_list<3>, cert_data<3>
    length = int.from_bytes(CERTIFICATE[8:11], "big")
    certificate = x509.load_der_x509_certificate(CERTIFICATE[11 : 11 + length])
    assert CERTIFICATE_VERIFY[4:6] == SignatureScheme.RSA_PSS_RSAE_SHA256.to_bytes(2, "big")
    signature = CERTIFICATE_VERIFY[8:]
    th = hashlib.sha256(CLIENT_HELLO + SERVER_HELLO + ENCRYPTED_EXTENSIONS + CERTIFICATE).digest()
    content = crypto.certificate_verify_content(True, th)
    crypto.verify_signature(certificate, SignatureScheme.RSA_PSS_RSAE_SHA256, signature, content)
    with pytest.raises(DecryptError):  # the client context string does not verify
        crypto.verify_signature(
            certificate,
            SignatureScheme.RSA_PSS_RSAE_SHA256,
            signature,
            crypto.certificate_verify_content(False, th),
        )


def test_rfc8448_resumption_binder_and_early_secret() -> None:
    assert resumption_psk("sha256", RES_MASTER, b"\x00\x00", TLS13) == RESUMPTION_PSK
    ks = KeySchedule(AES128, prefix=TLS13)
    ks.early_secret(RESUMPTION_PSK)
    binder_key = ks.binder_key(external=False)
    assert binder_key == RES_BINDER_KEY
    assert ks.binder_key(external=True) != binder_key
    assert compute_binder("sha256", binder_key, TRUNCATED_CH_HASH, TLS13) == BINDER
    verify_finished("sha256", binder_key, TRUNCATED_CH_HASH, BINDER, TLS13)
    assert ks.client_early_traffic_secret(CH_HASH_0RTT) == C_E_TRAFFIC


# ---------------------------------------------------------------------------------------
def _key_stages() -> list[object]:
    """The KeyStage implementations: none (the schedule's own HKDF calls) and the C one."""
    record = pytest.importorskip("dtls.record")
    return [None, record.key_stage]


@pytest.mark.parametrize("c_stage", [False, True], ids=["python", "c"])
def test_rfc8448_simple_1rtt_handshake_by_stage(c_stage: bool) -> None:
    """§3 again through handshake_stage/application_stage/verify_data, the calls the
    handshake makes: in one C call per stage, or the schedule's own HKDF calls."""
    ks = KeySchedule(AES128, prefix=TLS13, key_stage=_key_stages()[c_stage])  # type: ignore[arg-type]
    c_hs, s_hs = ks.handshake_stage(ECDHE, HASH_CH_SH)
    assert (c_hs, s_hs) == (C_HS_TRAFFIC, S_HS_TRAFFIC)
    transcript = Transcript("sha256")
    for message in (CLIENT_HELLO, SERVER_HELLO, ENCRYPTED_EXTENSIONS, CERTIFICATE):
        transcript.add(message)
    transcript.add(CERTIFICATE_VERIFY)
    assert ks.verify_data(s_hs, transcript.digest()) == SERVER_FINISHED
    transcript.add(bytes([HandshakeType.FINISHED, 0, 0, 32]) + SERVER_FINISHED)
    assert ks.application_stage(HASH_CH_SF) == (C_AP_TRAFFIC, S_AP_TRAFFIC, EXP_MASTER)
    assert ks.verify_data(c_hs, transcript.digest()) == CLIENT_FINISHED
    assert ks.resumption_master_secret(HASH_CH_CF) == RES_MASTER
    # a secret the stage did not derive: its finished key is derived on demand
    assert ks.verify_data(C_AP_TRAFFIC, HASH_CH_CF) == finished_verify_data(
        "sha256", C_AP_TRAFFIC, HASH_CH_CF, TLS13
    )


@pytest.mark.parametrize("c_stage", [False, True], ids=["python", "c"])
def test_stage_calls_enforce_the_order(c_stage: bool) -> None:
    ks = KeySchedule(AES128, key_stage=_key_stages()[c_stage])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ks.application_stage(HASH_CH_SF)
    ks.handshake_stage(ECDHE, HASH_CH_SH)
    with pytest.raises(ValueError):
        ks.handshake_stage(ECDHE, HASH_CH_SH)
    ks.application_stage(HASH_CH_SF)
    with pytest.raises(ValueError):
        ks.application_stage(HASH_CH_SF)


# An independent reference (cryptography's HKDFExpand) for the DTLS prefix and SHA-384
# ---------------------------------------------------------------------------------------

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}


def ref_expand_label(
    hash_name: str, secret: bytes, label: bytes, context: bytes, length: int, prefix: bytes
) -> bytes:
    full = prefix + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(_HASHES[hash_name](), length, info).derive(secret)


def ref_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hash_name).digest()


def ref_schedule(hash_name: str, psk: bytes | None, shared: bytes | None) -> dict[str, bytes]:
    n = hashlib.new(hash_name).digest_size
    zeros = bytes(n)
    empty = hashlib.new(hash_name).digest()

    def derive(secret: bytes, label: bytes, th: bytes) -> bytes:
        return ref_expand_label(hash_name, secret, label, th, n, b"dtls13")

    early = ref_extract(hash_name, zeros, psk or zeros)
    hs = ref_extract(hash_name, derive(early, b"derived", empty), shared or zeros)
    main = ref_extract(hash_name, derive(hs, b"derived", empty), zeros)
    th1, th2, th3 = (hashlib.new(hash_name, bytes([i])).digest() for i in (1, 2, 3))
    return {
        "ext binder": derive(early, b"ext binder", empty),
        "c e traffic": derive(early, b"c e traffic", th1),
        "c hs traffic": derive(hs, b"c hs traffic", th1),
        "s hs traffic": derive(hs, b"s hs traffic", th1),
        "c ap traffic": derive(main, b"c ap traffic", th2),
        "s ap traffic": derive(main, b"s ap traffic", th2),
        "exp master": derive(main, b"exp master", th2),
        "res master": derive(main, b"res master", th3),
    }


@pytest.mark.parametrize("suite", [AES128, AES256, CipherSuite.TLS_CHACHA20_POLY1305_SHA256])
@pytest.mark.parametrize("with_psk", [False, True])
@pytest.mark.parametrize("with_dhe", [False, True])
def test_dtls13_schedule_matches_reference(suite: int, with_psk: bool, with_dhe: bool) -> None:
    hash_name = suite_hash_name(suite)
    n = hashlib.new(hash_name).digest_size
    psk = b"\x42" * n if with_psk else None
    shared = b"\x17" * 32 if with_dhe else None
    ref = ref_schedule(hash_name, psk, shared)
    th1, th2, th3 = (hashlib.new(hash_name, bytes([i])).digest() for i in (1, 2, 3))

    ks = KeySchedule(suite)
    assert ks.prefix == LABEL_PREFIX == b"dtls13"
    assert ks.hash_len == n
    ks.early_secret(psk)
    assert ks.binder_key(external=True) == ref["ext binder"]
    assert ks.client_early_traffic_secret(th1) == ref["c e traffic"]
    ks.handshake_secret(shared)
    assert ks.client_handshake_traffic_secret(th1) == ref["c hs traffic"]
    assert ks.server_handshake_traffic_secret(th1) == ref["s hs traffic"]
    ks.master_secret()
    assert ks.client_application_traffic_secret(th2) == ref["c ap traffic"]
    assert ks.server_application_traffic_secret(th2) == ref["s ap traffic"]
    assert ks.exporter_master_secret(th2) == ref["exp master"]
    assert ks.resumption_master_secret(th3) == ref["res master"]
    assert all(len(v) == n for v in ref.values())


@pytest.mark.parametrize("suite", [AES128, AES256])
@pytest.mark.parametrize("with_psk", [False, True])
@pytest.mark.parametrize("with_dhe", [False, True])
@pytest.mark.parametrize("c_stage", [False, True], ids=["python", "c"])
def test_dtls13_stages_match_reference(
    suite: int, with_psk: bool, with_dhe: bool, c_stage: bool
) -> None:
    hash_name = suite_hash_name(suite)
    n = hashlib.new(hash_name).digest_size
    psk = b"\x42" * n if with_psk else None
    shared = b"\x17" * 32 if with_dhe else None
    ref = ref_schedule(hash_name, psk, shared)
    th1, th2, th3 = (hashlib.new(hash_name, bytes([i])).digest() for i in (1, 2, 3))

    ks = KeySchedule(suite, key_stage=_key_stages()[c_stage])  # type: ignore[arg-type]
    if psk is not None:
        ks.early_secret(psk)
    client, server = ks.handshake_stage(shared, th1)
    assert (client, server) == (ref["c hs traffic"], ref["s hs traffic"])
    for secret in (client, server):
        finished_key = ref_expand_label(hash_name, secret, b"finished", b"", n, b"dtls13")
        assert ks.verify_data(secret, th2) == hmac.new(finished_key, th2, hash_name).digest()
    application = (ref["c ap traffic"], ref["s ap traffic"], ref["exp master"])
    assert ks.application_stage(th2) == application
    assert ks.resumption_master_secret(th3) == ref["res master"]


def test_dtls13_prefix_separates_from_tls13() -> None:
    ks_d, ks_t = KeySchedule(AES128), KeySchedule(AES128, prefix=TLS13)
    for ks in (ks_d, ks_t):
        ks.early_secret()
        ks.handshake_secret(ECDHE)
    assert ks_t.client_handshake_traffic_secret(HASH_CH_SH) == C_HS_TRAFFIC
    assert ks_d.client_handshake_traffic_secret(HASH_CH_SH) != C_HS_TRAFFIC


def test_handshake_secret_without_explicit_early_secret() -> None:
    a, b = KeySchedule(AES128), KeySchedule(AES128)
    a.early_secret(None)
    a.handshake_secret(ECDHE)
    b.handshake_secret(ECDHE)  # no PSK: the zero early secret is implied
    assert a.client_handshake_traffic_secret(HASH_CH_SH) == b.client_handshake_traffic_secret(
        HASH_CH_SH
    )


def test_psk_ke_uses_zero_ikm() -> None:
    a, b = KeySchedule(AES128), KeySchedule(AES128)
    for ks in (a, b):
        ks.early_secret(RESUMPTION_PSK)
    a.handshake_secret(None)
    b.handshake_secret(bytes(32))
    assert a.server_handshake_traffic_secret(HASH_CH_SH) == b.server_handshake_traffic_secret(
        HASH_CH_SH
    )


def test_stage_order_is_enforced() -> None:
    ks = KeySchedule(AES128)
    with pytest.raises(ValueError):
        ks.client_handshake_traffic_secret(HASH_CH_SH)
    with pytest.raises(ValueError):
        ks.master_secret()
    ks.early_secret()
    with pytest.raises(ValueError):
        ks.client_application_traffic_secret(HASH_CH_SF)
    ks.handshake_secret(ECDHE)
    with pytest.raises(ValueError):
        ks.binder_key(external=True)
    with pytest.raises(ValueError):
        ks.handshake_secret(ECDHE)
    ks.master_secret()
    with pytest.raises(ValueError):
        ks.server_handshake_traffic_secret(HASH_CH_SH)


def test_repr_shows_no_secret() -> None:
    ks = KeySchedule(AES128)
    ks.early_secret(b"\xaa" * 32)
    ks.handshake_secret(b"\xbb" * 32)
    text = repr(ks)
    assert "sha256" in text
    assert ks._secret.hex() not in text
    assert repr(ks._secret) not in text


def test_next_application_traffic_secret() -> None:
    secret = b"\x33" * 48
    expected = ref_expand_label("sha384", secret, b"traffic upd", b"", 48, b"dtls13")
    assert next_application_traffic_secret("sha384", secret) == expected
    assert next_application_traffic_secret("sha384", expected) != expected


def test_export_keying_material() -> None:
    ems = b"\x5a" * 32
    derived = ref_expand_label("sha256", ems, b"EXPORTER-test", empty_hash("sha256"), 32, b"dtls13")
    context_hash = hashlib.sha256(b"ctx").digest()
    expected = ref_expand_label("sha256", derived, b"exporter", context_hash, 50, b"dtls13")
    assert export_keying_material("sha256", ems, b"EXPORTER-test", b"ctx", 50) == expected
    # the label, the context and the length all change the output
    a = export_keying_material("sha256", ems, b"EXPORTER-test", b"", 16)
    assert len(a) == 16
    assert a != export_keying_material("sha256", ems, b"EXPORTER-test", b"", 32)[:16]
    assert a != export_keying_material("sha256", ems, b"EXPORTER-other", b"", 16)
    assert a != export_keying_material("sha256", ems, b"EXPORTER-test", b"\0", 16)
    for bad_length in (0, -1, 255 * 32 + 1):
        with pytest.raises(ValueError):
            export_keying_material("sha256", ems, b"EXPORTER-test", b"", bad_length)
    with pytest.raises(ValueError):
        export_keying_material("sha256", ems, b"x" * 250, b"", 16)


def test_finished_and_binder() -> None:
    base_key = b"\x01" * 32
    th = hashlib.sha256(b"transcript").digest()
    finished_key = ref_expand_label("sha256", base_key, b"finished", b"", 32, b"dtls13")
    expected = hmac.new(finished_key, th, "sha256").digest()
    assert finished_verify_data("sha256", base_key, th) == expected
    assert compute_binder("sha256", base_key, th) == expected
    verify_finished("sha256", base_key, th, expected)
    for bad in (expected[:-1], expected[:-1] + bytes([expected[-1] ^ 1]), b"", expected + b"\0"):
        with pytest.raises(DecryptError):
            verify_finished("sha256", base_key, th, bad)
    with pytest.raises(DecryptError):
        verify_finished("sha256", base_key, hashlib.sha256(b"other").digest(), expected)


def test_resumption_psk_uses_nonce() -> None:
    rms = b"\x07" * 48
    a = resumption_psk("sha384", rms, b"\x00")
    assert a == ref_expand_label("sha384", rms, b"resumption", b"\x00", 48, b"dtls13")
    assert a != resumption_psk("sha384", rms, b"\x01")


@given(
    prk=st.binary(min_size=32, max_size=64),
    info=st.binary(max_size=80),
    length=st.integers(min_value=1, max_value=600),
)
def test_hkdf_expand_matches_cryptography(prk: bytes, info: bytes, length: int) -> None:
    assert hkdf_expand("sha256", prk, info, length) == HKDFExpand(
        hashes.SHA256(), length, info
    ).derive(prk)


# ---------------------------------------------------------------------------------------
# Transcript (RFC 9846 §4.4.1)
# ---------------------------------------------------------------------------------------


def test_transcript_buffers_until_hash_is_known() -> None:
    early, direct = Transcript(), Transcript("sha384")
    for t in (early, direct):
        t.add(b"\x01\x00\x00\x02ab")
    with pytest.raises(ValueError):
        early.digest()
    early.set_hash("sha384")
    early.set_hash("sha384")  # the same hash again is fine
    with pytest.raises(ValueError):
        early.set_hash("sha256")
    assert early.digest() == direct.digest() == hashlib.sha384(b"\x01\x00\x00\x02ab").digest()


def test_transcript_digest_is_not_destructive_and_copy_is_independent() -> None:
    t = Transcript("sha256")
    t.add(b"one")
    assert t.digest() == t.digest() == hashlib.sha256(b"one").digest()
    fork = t.copy()
    fork.add(b"two")
    t.add(b"three")
    assert fork.digest() == hashlib.sha256(b"onetwo").digest()
    assert t.digest() == hashlib.sha256(b"onethree").digest()
    # a copy taken before the hash is known keeps buffering
    pending = Transcript()
    pending.add(b"x")
    other = pending.copy()
    other.set_hash("sha256")
    assert other.digest() == hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError):
        pending.digest()


@pytest.mark.parametrize("hash_name", ["sha256", "sha384"])
def test_transcript_hello_retry_request(hash_name: str) -> None:
    ch1 = b"\x01\x00\x00\x05hello"
    hrr = b"\x02\x00\x00\x03hrr"
    ch2 = b"\x01\x00\x00\x06hello2"
    n = hashlib.new(hash_name).digest_size

    t = Transcript()
    t.add(ch1)
    t.set_hash(hash_name)  # the HRR names the suite
    t.restart_after_hello_retry()
    t.add(hrr)
    t.add(ch2)
    ch1_hash = hashlib.new(hash_name, ch1).digest()
    synthetic = bytes([254, 0, 0, n]) + ch1_hash
    assert message_hash(ch1_hash) == synthetic
    assert t.digest() == hashlib.new(hash_name, synthetic + hrr + ch2).digest()

    # a stateless server rebuilds the same transcript from Hash(ClientHello1) in its cookie
    s = Transcript(hash_name)
    s.restart_after_hello_retry(ch1_hash)
    s.add(hrr)
    s.add(ch2)
    assert s.digest() == t.digest()


def test_transcript_restart_needs_the_hash() -> None:
    t = Transcript()
    t.add(b"\x01\x00\x00\x00")
    with pytest.raises(ValueError):
        t.restart_after_hello_retry()


def test_deferred_resumption_master_secret() -> None:
    """RFC 8448 §3's resumption_master_secret, derived later from what the deferred call
    kept: the schedule may move on (or be dropped) in between."""
    ks = KeySchedule(AES128, prefix=TLS13)
    ks.early_secret()
    ks.handshake_secret(ECDHE)
    with pytest.raises(ValueError):
        ks.deferred_resumption_master_secret(HASH_CH_CF)  # before the Main Secret
    ks.master_secret()
    derive = ks.deferred_resumption_master_secret(HASH_CH_CF)
    del ks
    assert derive() == RES_MASTER
    assert resumption_psk("sha256", derive(), b"\x00\x00", TLS13) == RESUMPTION_PSK
