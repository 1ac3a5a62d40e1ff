"""A SO_REUSEPORT socket group and the classic-BPF program that steers each record with a
CID we issued to the worker that issued it (Linux).

The sockets of a reuseport group are numbered in the order they were bound; a program
attached with SO_ATTACH_REUSEPORT_CBPF runs on every datagram with the packet data at the
UDP payload and returns the number of the socket to deliver to. An index at or past the
number of sockets makes the kernel fall back to its 4-tuple hash (net/core/sock_reuseport.c,
run_bpf_filter: `if (index >= socks) return NULL`, then select by hash). So the program
returns the CID's worker index (`dtls.cid_layout`) for a record with a CID of ours, and
0xFFFFFFFF for everything else: ClientHellos, records without a CID, short datagrams.

Only `reuseport_group` binds: socket i is bound i-th, and every socket stays open in
the parent for the group's life, since closing one renumbers the others (the kernel moves
the last socket into the freed slot).
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import sys
from typing import Any, NamedTuple

from .cid_layout import CID_HEADER, CID_HEADER_MASK, CidLayout

__all__ = [
    "FALLBACK",
    "SO_ATTACH_REUSEPORT_CBPF",
    "Instruction",
    "attach_cid_steering",
    "cid_steering_program",
    "reuseport_group",
]

logger = logging.getLogger("dtls.reuseport")

SO_ATTACH_REUSEPORT_CBPF = 51  # include/uapi/asm-generic/socket.h
FALLBACK = 0xFFFFFFFF  # an index past the group: the kernel hashes the 4-tuple

# Classic BPF (include/uapi/linux/filter.h, bpf_common.h)
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_ABS, BPF_LEN = 0x20, 0x80
BPF_AND, BPF_RSH = 0x50, 0x70
BPF_JEQ, BPF_JGE = 0x10, 0x30
BPF_K, BPF_A = 0x00, 0x10


class Instruction(NamedTuple):
    """One classic-BPF instruction (struct sock_filter)."""

    code: int
    jt: int
    jf: int
    k: int


def _load(size: int, offset: int) -> list[Instruction]:
    """A = the `size`-byte big-endian value at payload `offset`."""
    if size == 1:
        return [Instruction(BPF_LD | BPF_B | BPF_ABS, 0, 0, offset)]
    if size == 2:
        return [Instruction(BPF_LD | BPF_H | BPF_ABS, 0, 0, offset)]
    if size == 3:
        return [Instruction(BPF_LD | BPF_W | BPF_ABS, 0, 0, offset),
                Instruction(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 8)]
    return [Instruction(BPF_LD | BPF_W | BPF_ABS, 0, 0, offset)]


def cid_steering_program(layout: CidLayout, workers: int) -> list[Instruction]:
    """The program: the worker index of a record with a CID of `layout` (this host's id),
    else FALLBACK. Every load is after a length check: a load past the end would end the
    program with 0, i.e. socket 0."""
    checks: list[tuple[list[Instruction], int, int]] = []  # (loads, compare code, k)
    # RFC 9147 §4: unified header 0b001CSLEE with C = 1, and room for the whole CID
    checks.append(([Instruction(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0)], BPF_JGE, 1 + layout.length))
    checks.append(([Instruction(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
                    Instruction(BPF_ALU | BPF_AND | BPF_K, 0, 0, CID_HEADER_MASK)],
                   BPF_JEQ, CID_HEADER))
    if layout.host_id_length:
        checks.append((_load(layout.host_id_length, 1), BPF_JEQ, layout.host_id))
    body: list[list[Instruction]] = []
    for loads, compare, k in checks:
        body.append([*loads, Instruction(BPF_JMP | compare | BPF_K, 0, 0xFF, k)])
    worker = [Instruction(BPF_LD | BPF_B | BPF_ABS, 0, 0, layout.datagram_worker_offset),
              Instruction(BPF_JMP | BPF_JGE | BPF_K, 0xFF, 0, workers),
              Instruction(BPF_RET | BPF_A, 0, 0, 0)]
    body.append(worker)
    program = [i for block in body for i in block]
    fallback = len(program)  # the instruction after the program: ret FALLBACK
    out = []
    for pc, ins in enumerate(program):  # 0xFF marks "jump to fallback"
        jt = fallback - pc - 1 if ins.jt == 0xFF else ins.jt
        jf = fallback - pc - 1 if ins.jf == 0xFF else ins.jf
        out.append(Instruction(ins.code, jt, jf, ins.k))
    out.append(Instruction(BPF_RET | BPF_K, 0, 0, FALLBACK))
    return out


def attach_cid_steering(sock: socket.socket, program: list[Instruction]) -> bool:
    """Attach `program` to the reuseport group of `sock` (any socket of it). False,
    logged once per process, where it cannot be (not Linux, refused): the group then runs
    on the kernel's hash alone."""
    if not sys.platform.startswith("linux"):
        _log_once("SO_ATTACH_REUSEPORT_CBPF needs Linux: records are spread by 4-tuple hash")
        return False
    filters = (ctypes.c_ubyte * (8 * len(program)))()
    struct.pack_into("=" + "HBBI" * len(program), filters, 0, *(f for i in program for f in i))
    fprog = struct.pack("HP", len(program), ctypes.addressof(filters))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        _log_once(f"cannot attach the CID steering program ({exc}): records are spread by "
                  "4-tuple hash, and records with a CID may reach another worker")
        return False
    return True


_logged: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logger.warning(message)


def reuseport_group(
    family: int, address: Any, count: int, *, v6only: bool = False
) -> list[socket.socket]:
    """`count` UDP sockets with SO_REUSEPORT bound to `address`, socket i bound i-th (its
    index in the group). Port 0: the first socket's port for all."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and v6only:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if len(socks) > 1:
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks
