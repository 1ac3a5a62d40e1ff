"""How fast `dtls.sim` runs, and how much of that is the engine itself.

    python bench/bench_sim.py [--clients 1000] [--loss 0.01] [--repeat 3]

Runs N handshakes at the given loss (design timing, 1 ms, 1 Gbit/s, 1,000 arrivals/s)
and prints wall time, process CPU time, simulated events, and the share of CPU time spent
inside `Connection` calls (the engine) rather than in the model around them. The issue's
budget: 1,000 handshakes over 1 % loss in at most 10 s.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

from dtls.connection import Connection
from dtls.sim import LinkModel, Scenario, simulate

_ENGINE_CALLS = ("connect", "receive_datagram", "datagrams_to_send", "handle_timer",
                 "get_timer", "next_event", "send", "update_keys")


def _timed(method: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - start

    return wrapper


def run(clients: int, loss: float, measure_engine: bool) -> dict[str, float]:
    link = LinkModel(loss=loss)
    scenario = Scenario(clients=clients, arrival_rate=1000, uplink=link, downlink=link)
    spent = [0.0]
    originals = {name: getattr(Connection, name) for name in _ENGINE_CALLS}
    if measure_engine:
        for name, method in originals.items():
            setattr(Connection, name, _timed(method, spent))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        result = simulate(scenario)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        for name, method in originals.items():
            setattr(Connection, name, method)
    s = result.summary()
    return {
        "wall_s": wall, "cpu_s": cpu, "events": result.events,
        "completed": s["completed"], "retx_per_hs": s["retransmissions_per_handshake"],
        "engine_share": spent[0] / cpu if measure_engine and cpu else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    simulate(Scenario(clients=2))  # credentials, caches
    for i in range(args.repeat):
        r = run(args.clients, args.loss, measure_engine=i == args.repeat - 1)
        share = "" if r["engine_share"] != r["engine_share"] else (
            f"  engine {100 * r['engine_share']:.0f} % of CPU (timing wrappers on)"
        )
        print(f"{args.clients} handshakes at {args.loss:.1%} loss: wall {r['wall_s']:.2f} s, "
              f"CPU {r['cpu_s']:.2f} s, {r['events']:.0f} events, "
              f"{r['completed']:.0f} completed, {r['retx_per_hs']:.3f} retx/hs{share}")


if __name__ == "__main__":
    main()
