"""DTLS-SRTP (RFC 5764, RFC 7714): the use_srtp extension and the SRTP keys exported from
the handshake. In DTLS 1.3 the server's choice is in EncryptedExtensions."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .errors import DecodeError, IllegalParameter
from .extensions import Reader, vec8, vec16

EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"  # RFC 5764 §4.2


class SrtpProfile(IntEnum):
    """SRTP protection profiles (RFC 5764 §4.1.2, RFC 7714 §14.2)."""

    SRTP_AES128_CM_HMAC_SHA1_80 = 0x0001
    SRTP_AES128_CM_HMAC_SHA1_32 = 0x0002
    SRTP_AEAD_AES_128_GCM = 0x0007
    SRTP_AEAD_AES_256_GCM = 0x0008


# (master key length, master salt length) per profile
_LENGTHS = {
    SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_80: (16, 14),
    SrtpProfile.SRTP_AES128_CM_HMAC_SHA1_32: (16, 14),
    SrtpProfile.SRTP_AEAD_AES_128_GCM: (16, 12),
    SrtpProfile.SRTP_AEAD_AES_256_GCM: (32, 12),
}


def encode_use_srtp(profiles: list[int], mki: bytes = b"") -> bytes:
    """UseSRTPData (RFC 5764 §4.1.1)."""
    return vec16(b"".join(p.to_bytes(2, "big") for p in profiles)) + vec8(mki)


def decode_use_srtp(data: bytes) -> tuple[list[int], bytes]:
    r = Reader(data)
    raw = r.pull_vector(2, 2)
    if len(raw) % 2:
        raise DecodeError("odd SRTPProtectionProfiles length")
    mki = r.pull_vector(1)
    if r.pos != r.end:
        raise DecodeError("trailing bytes in use_srtp")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)], mki


@dataclass(frozen=True)
class SrtpKeys:
    """The SRTP master keys and salts of both directions (RFC 5764 §4.2)."""

    profile: SrtpProfile
    client_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    client_salt: bytes = field(repr=False)
    server_salt: bytes = field(repr=False)

    @classmethod
    def from_keying_material(cls, profile: int, material: bytes) -> SrtpKeys:
        key, salt = _LENGTHS[SrtpProfile(profile)]
        k1, k2 = material[:key], material[key : 2 * key]
        s1, s2 = material[2 * key : 2 * key + salt], material[2 * key + salt :]
        return cls(SrtpProfile(profile), k1, k2, s1, s2)


def keying_material_length(profile: int) -> int:
    key, salt = _LENGTHS[SrtpProfile(profile)]
    return 2 * (key + salt)


def select_profile(ours: tuple[int, ...], offered: list[int]) -> int | None:
    """The server's most preferred profile the client offers (RFC 5764 §4.1.1)."""
    return next((p for p in ours if p in offered), None)


def check_server_choice(offered: list[int], chosen: list[int]) -> int:
    if len(chosen) != 1 or chosen[0] not in offered:
        raise IllegalParameter("server chose an SRTP profile we did not offer")
    return chosen[0]
