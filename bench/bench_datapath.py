"""The data path through the engine (issue 12 §3): 1200-byte records through `Connection`
against the record layer alone, both ends in one process, datagrams moved in memory.

    python bench/bench_datapath.py [--rounds 7]     # interleaved rounds, min / median
    python bench/bench_datapath.py --split          # the batched path piece by piece
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/dev/null \\
        python bench/bench_datapath.py --count batch --records 1280
                                                    # instructions: total Ir / records

Figures, µs per record sent and received:
  one          Connection.send, datagrams_to_send, receive_datagram, next_event
  batch        the same 64 at a time: send_batch, receive_datagrams (one DataReceivedBatch)
  layer        RecordCipher.seal + open per record (no engine)
  layer_batch  RecordCipher.seal_run + open_run, 64 at a time (what the engine calls)

`--count MODE` runs MODE alone for `--records` records with callgrind's instrumentation on
around the loop only (`callgrind_control -i on/off`), so Ir / records is the cost of one.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_handshake import CLIENT, handshake
from compare import BATCH, PAYLOAD, dtls13_contexts, dtls13_records, dtls13_records_batched

from dtls.iana import CipherSuite
from dtls.record import RecordCipher, ReplayWindow

APPLICATION_DATA = 23
TLS_AES_128_GCM_SHA256 = CipherSuite.TLS_AES_128_GCM_SHA256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--records", type=int, default=3200, help="per figure per round")
    parser.add_argument("--count", choices=("one", "batch", "layer", "layer_batch"))
    parser.add_argument("--split", action="store_true")
    args = parser.parse_args()
    client, server = handshake(*dtls13_contexts())
    for conn in (client, server):
        while conn.next_event() is not None:
            pass
    payloads = [PAYLOAD] * BATCH
    # the record layer alone: a cipher pair of its own (the engine's numbers go on)
    secret = os.urandom(32)
    sender = RecordCipher.from_secret(TLS_AES_128_GCM_SHA256, secret)
    receiver = RecordCipher.from_secret(TLS_AES_128_GCM_SHA256, secret)
    window = ReplayWindow(128)
    seqs = itertools.count(0, BATCH)

    def one(n: int) -> None:
        dtls13_records((client, server), n)

    def batch(n: int) -> None:
        dtls13_records_batched((client, server), n // BATCH)

    def layer(n: int) -> None:
        for _ in range(n // BATCH):
            seq = next(seqs)
            for i in range(seq, seq + BATCH):
                if receiver.open(sender.seal(3, i, APPLICATION_DATA, PAYLOAD), window).seq != i:
                    raise RuntimeError("the record was lost")

    def layer_batch(n: int) -> None:
        for _ in range(n // BATCH):
            records = sender.seal_run(3, next(seqs), APPLICATION_DATA, payloads)
            run = bytearray().join(records)  # as receive_datagrams does
            opened = receiver.open_run(run, list(map(len, records)), window, epoch_bits=3)
            if opened.opened != BATCH:
                raise RuntimeError("records lost")

    figures: dict[str, Callable[[int], None]] = {
        "one": one, "batch": batch, "layer": layer, "layer_batch": layer_batch,
    }  # fmt: skip
    if args.count:
        run = figures[args.count]
        run(BATCH)  # warm
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(os.getpid())], capture_output=True, check=False)
        run(args.records)
        subprocess.run([*control, "off", str(os.getpid())], capture_output=True, check=False)
        return
    if args.split:
        split(client, server, sender, receiver, args.rounds)
        return
    rows: dict[str, list[float]] = {name: [] for name in figures}
    for _ in range(args.rounds):  # interleaved: each round runs every figure once
        for name, run in figures.items():
            start = time.perf_counter()
            run(args.records)
            rows[name].append((time.perf_counter() - start) / args.records * 1e6)
    print(f"{args.rounds} interleaved rounds, µs per 1200-byte record sent and received, "
          "min / median")  # fmt: skip
    for name, times in rows.items():
        print(f"  {name:12} {min(times):6.2f} / {statistics.median(times):6.2f}")


def split(client: Any, server: Any, sender: Any, receiver: Any, rounds: int) -> None:
    """The batched path's pieces, ns per record: the engine's send and receive halves,
    what they call in the record layer, and the GSO/GRO segment calls for comparison."""
    payloads = [PAYLOAD] * BATCH
    joined = PAYLOAD * BATCH
    gso = bytearray(BATCH * 1300)
    seqs = itertools.count(1 << 20, BATCH)
    windows = ReplayWindow(128), ReplayWindow(128)
    reps = 40
    rows: dict[str, list[float]] = {}

    def lap(name: str, start: float) -> None:
        rows.setdefault(name, []).append((time.perf_counter() - start) / reps / BATCH * 1e9)

    for _ in range(rounds):
        start = time.perf_counter()
        sent = []
        for _ in range(reps):
            client.send_batch(payloads)
            sent.append([(d, CLIENT) for d, _ in client.datagrams_to_send(0.0)])
        lap("engine send: send_batch + datagrams_to_send", start)
        start = time.perf_counter()
        for batch in sent:
            server.receive_datagrams(batch, 0.0)
            while server.next_event() is not None:
                pass
        lap("engine receive: receive_datagrams + events", start)
        start = time.perf_counter()
        runs = [sender.seal_run(3, next(seqs), APPLICATION_DATA, payloads) for _ in range(reps)]
        lap("RecordCipher.seal_run", start)
        start = time.perf_counter()
        for records in runs:
            receiver.open_run(bytearray().join(records), list(map(len, records)), windows[0],
                              epoch_bits=3)  # fmt: skip
        lap("RecordCipher.open_run", start)
        start = time.perf_counter()
        segments = []
        for _ in range(reps):
            data, stride = sender.seal_segments(3, next(seqs), APPLICATION_DATA, joined, 1200, gso)
            segments.append(bytes(data))
        lap("RecordCipher.seal_segments (+ a copy out)", start)
        start = time.perf_counter()
        for data in segments:
            receiver.open_segments(bytearray(data), stride, windows[1])
        lap("RecordCipher.open_segments (+ a copy in)", start)
    for name, times in rows.items():
        print(f"  {name:45} {min(times):6.0f} / {statistics.median(times):6.0f} ns (min / median)")


if __name__ == "__main__":
    main()
