"""Connection IDs that say where their connection lives (RFC 9147 §9), in the spirit of
QUIC-LB (draft-ietf-quic-load-balancers, plaintext mode): a host id and a worker index at
fixed offsets, the rest random. A reuseport BPF program (`dtls.reuseport`) steers a
record to the worker in its CID; an L4 balancer in front of a fleet can read the host id.

Layout of a CID of `length` bytes (big-endian):

    [0, host_id_length)         host id (0 to 4 bytes; absent on a single host)
    [host_id_length]            worker index (one byte: 0..254)
    (host_id_length, length)    random (at least 4 bytes)

In a DTLS 1.3 record with a CID (unified header first byte 0b001CSLEE with C = 1, RFC 9147
§4) the CID starts right after that first byte: the host id is at UDP payload offset 1,
the worker index at offset 1 + host_id_length. The layout shows which host and worker
hold a connection to anyone on the path, as QUIC-LB's plaintext mode does; the random
part keeps CIDs unguessable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

__all__ = ["MAX_WORKERS", "CidLayout"]

MAX_WORKERS = 255  # one byte of worker index
_MIN_RANDOM = 4
# RFC 9147 §4: a unified header with the C bit set (0b0011xxxx): a CID follows
CID_HEADER_MASK = 0xF0
CID_HEADER = 0x30


@dataclass(frozen=True)
class CidLayout:
    """Where the host id and the worker index sit in the CIDs a server issues."""

    length: int = 8
    host_id: int = 0
    host_id_length: int = 1
    worker: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.host_id_length <= 4:
            raise ValueError("host_id_length must be 0 to 4 bytes")
        if not 0 <= self.host_id < 1 << (8 * self.host_id_length):
            raise ValueError(f"host id {self.host_id} does not fit {self.host_id_length} bytes")
        if not 0 <= self.worker < MAX_WORKERS:
            raise ValueError(f"worker index must be 0 to {MAX_WORKERS - 1}")
        if not self.host_id_length + 1 + _MIN_RANDOM <= self.length <= 255:
            raise ValueError(
                f"a CID of this layout needs {self.host_id_length + 1 + _MIN_RANDOM} to 255 bytes"
            )

    @property
    def worker_offset(self) -> int:
        """The offset of the worker index in a CID."""
        return self.host_id_length

    @property
    def datagram_worker_offset(self) -> int:
        """The offset of the worker index in a datagram whose first record has a CID."""
        return 1 + self.host_id_length

    @property
    def issuer(self) -> bytes:
        """The host id and worker index: what a session ticket names as its issuer."""
        return self.host_id.to_bytes(self.host_id_length, "big") + bytes([self.worker])

    def for_worker(self, worker: int) -> CidLayout:
        return replace(self, worker=worker)

    def generate(self) -> bytes:
        """A new CID of this layout (a `ServerEndpoint` cid_generator)."""
        return self.issuer + os.urandom(self.length - self.host_id_length - 1)

    def host_of(self, cid: bytes) -> int | None:
        if len(cid) != self.length:
            return None
        return int.from_bytes(cid[: self.host_id_length], "big")

    def worker_of(self, cid: bytes) -> int | None:
        if len(cid) != self.length:
            return None
        return cid[self.worker_offset]

    def worker_of_datagram(self, data: bytes) -> int | None:
        """The worker a datagram's CID names, or None for a datagram without a CID of
        this layout (what the reuseport program computes, `dtls.reuseport`)."""
        if len(data) < 1 + self.length or data[0] & CID_HEADER_MASK != CID_HEADER:
            return None
        return data[self.datagram_worker_offset]
