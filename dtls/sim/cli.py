"""`python -m dtls sim` (also `python -m dtls.sim`): run a scenario or a sweep."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..config import parse_cipher_suites, parse_groups
from ..errors import DTLSError
from .model import ARRIVALS, TRAFFIC, Scenario
from .network import LinkModel
from .report import Result, format_summary, format_sweep, plot_sweep, to_csv, to_json
from .sweep import (
    Progress,
    parse_burst,
    parse_duration,
    parse_probability,
    parse_rate,
    parse_values,
    run_seeds,
    sweep,
    with_parameter,
)
from .timing import PRESETS, TimingModel, accelerate

EXAMPLES = """\
examples:
  python -m dtls sim                                   100 clients at 100/s, design timing
  python -m dtls sim --clients 1000 --loss 1%          1,000 handshakes over 1 % loss
  python -m dtls sim --sweep loss=0:0.3:0.05 --seeds 5 --plot loss.png
  python -m dtls sim --sweep arrival_rate=500,1000,1500,2000 --clients 2000
  python -m dtls sim --calibrate --save-timing host.json
  python -m dtls sim --timing host.json --accelerator 10,8
  python -m dtls sim --traffic constant --messages 100 --message-rate 50 --key-update-every 20
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dtls sim",
        description="Discrete-event model of DTLS 1.3 clients and a server: the real "
        "engine on a virtual clock over a modelled network and modelled CPUs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = Scenario()
    link = LinkModel()
    g = p.add_argument_group("workload")
    g.add_argument("--clients", type=int, default=d.clients)
    g.add_argument("--arrival", choices=ARRIVALS, default=d.arrival)
    g.add_argument("--arrival-rate", type=float, default=d.arrival_rate, metavar="PER_S")
    g.add_argument("--traffic", choices=TRAFFIC, default=d.traffic)
    g.add_argument("--messages", type=int, default=d.messages, help="records per client")
    g.add_argument("--message-size", type=int, default=d.message_size, metavar="BYTES")
    g.add_argument("--message-rate", type=float, default=d.message_rate, metavar="PER_S")
    g.add_argument("--echo", action="store_true", help="the server echoes every record")
    g.add_argument("--key-update-every", type=int, default=d.key_update_every, metavar="N")
    g = p.add_argument_group("protocol")
    g.add_argument("--suite", default=d.suite)
    g.add_argument("--group", default=d.group)
    g.add_argument("--signature", choices=("ecdsa-p256", "ed25519"), default=d.signature)
    g.add_argument("--mutual", action="store_true", help="client certificates")
    g.add_argument("--cookie", action="store_true", help="cookie HelloRetryRequest always")
    g.add_argument("--session-tickets", type=int, default=d.session_tickets)
    g.add_argument("--max-datagram-size", type=int, default=d.max_datagram_size)
    g.add_argument("--rto", type=parse_duration, default=d.initial_retransmit_timeout,
                   help="initial retransmission timeout (RFC 9147 §5.8.2)")
    g.add_argument("--max-retransmissions", type=int, default=d.max_retransmissions)
    g = p.add_argument_group("network (both directions; override one with --uplink/--downlink)")
    g.add_argument("--latency", type=parse_duration, default=link.latency, help="one way, e.g. 1ms")
    g.add_argument("--jitter", type=parse_duration, default=link.jitter)
    g.add_argument("--bandwidth", type=parse_rate, default=link.bandwidth, help="bit/s, e.g. 1G")
    g.add_argument("--queue", type=int, default=link.queue, help="datagrams")
    g.add_argument("--loss", type=parse_probability, default=link.loss, help="e.g. 0.001 or 1%%")
    g.add_argument("--burst", type=parse_burst, default=None,
                   metavar="P_BAD,P_GOOD[,LOSS_BAD]", help="Gilbert-Elliott bursty loss")
    g.add_argument("--reorder", type=parse_probability, default=link.reorder)
    g.add_argument("--reorder-delay", type=parse_duration, default=link.reorder_delay)
    g.add_argument("--duplicate", type=parse_probability, default=link.duplicate)
    g.add_argument("--mtu", type=int, default=link.mtu)
    g.add_argument("--uplink", action="append", default=[], metavar="KEY=VALUE")
    g.add_argument("--downlink", action="append", default=[], metavar="KEY=VALUE")
    g = p.add_argument_group("processing")
    g.add_argument("--timing", default="design",
                   help=f"preset ({', '.join(PRESETS)}) or a JSON file from --save-timing")
    g.add_argument("--calibrate", action="store_true", help="measure the costs on this host")
    g.add_argument("--calibrate-budget", type=float, default=3.0, metavar="SECONDS")
    g.add_argument("--save-timing", metavar="FILE")
    g.add_argument("--accelerator", metavar="PK[,AEAD]",
                   help="speed-up factors of a crypto offload engine, e.g. 10,8")
    g.add_argument("--message-cost", type=parse_duration, default=None,
                   help="per handshake message protocol cost, e.g. 20us")
    g.add_argument("--server-cores", type=int, default=d.server_cores)
    g.add_argument("--rx-backlog", type=int, default=d.rx_backlog, metavar="DATAGRAMS")
    g = p.add_argument_group("run and output")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--seeds", type=int, default=1, help="runs per point, seeds seed.. seed+N-1")
    g.add_argument("--sweep", metavar="PARAM=VALUES",
                   help="e.g. loss=0,0.01,0.1 or loss=0:0.3:0.05 (inclusive range)")
    g.add_argument("--time-limit", type=parse_duration, default=d.time_limit)
    g.add_argument("--format", choices=("table", "json", "csv"), default="table")
    g.add_argument("--output", "-o", metavar="FILE")
    g.add_argument("--plot", metavar="FILE.png", help="chart of a sweep (needs matplotlib)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    return p


def _timing(args: argparse.Namespace) -> TimingModel:
    if args.calibrate:
        print("calibrating ...", file=sys.stderr)
        from .calibrate import calibrate

        model = calibrate(args.calibrate_budget)
    elif args.timing in PRESETS:
        model = PRESETS[args.timing]
    else:
        model = TimingModel.load(args.timing)
    if args.save_timing:
        model.save(args.save_timing)
    if args.accelerator:
        factors = [float(x) for x in args.accelerator.split(",")]
        model = accelerate(model, *factors[:2])
    if args.message_cost is not None:
        model = model.with_message_cost(args.message_cost)
    return model


def _scenario(args: argparse.Namespace, timing: TimingModel) -> Scenario:
    link = LinkModel(
        latency=args.latency, jitter=args.jitter, bandwidth=args.bandwidth, queue=args.queue,
        loss=args.loss, burst=args.burst, reorder=args.reorder,
        reorder_delay=args.reorder_delay, duplicate=args.duplicate, mtu=args.mtu,
    )
    scenario = Scenario(
        clients=args.clients, arrival=args.arrival, arrival_rate=args.arrival_rate,
        uplink=link, downlink=link, timing=timing, server_cores=args.server_cores,
        rx_backlog=args.rx_backlog, suite=parse_cipher_suites(args.suite)[0].name,
        group=parse_groups(args.group)[0].name.lower(),
        signature=args.signature, mutual=args.mutual, cookie=args.cookie,
        session_tickets=args.session_tickets, max_datagram_size=args.max_datagram_size,
        initial_retransmit_timeout=args.rto, max_retransmissions=args.max_retransmissions,
        traffic=args.traffic, messages=args.messages, message_size=args.message_size,
        message_rate=args.message_rate, echo=args.echo,
        key_update_every=args.key_update_every, seed=args.seed, time_limit=args.time_limit,
    )
    for direction in ("uplink", "downlink"):
        for item in getattr(args, direction):
            key, _, text = item.partition("=")
            name = f"{direction}.{key.strip()}"
            scenario = with_parameter(scenario, name, parse_values(name, text)[0])
    return scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        timing = _timing(args)
        scenario = _scenario(args, timing)
        scenario.timing.prices(scenario.suite, scenario.group, scenario.signature)
        parameter = values = None
        if args.sweep:
            parameter, _, spec = args.sweep.partition("=")
            parameter = parameter.strip()
            values = parse_values(parameter, spec)
            with_parameter(scenario, parameter, values[0])  # fail early on a bad name
    except (ValueError, KeyError, OSError, DTLSError) as exc:
        parser.error(str(exc).strip("'\""))
    if args.plot and not args.sweep:
        parser.error("--plot charts a sweep: give --sweep too")

    started = time.perf_counter()
    rows: list[tuple[Any, dict[str, Any]]]
    if parameter is not None and values is not None:
        progress = Progress(len(values) * args.seeds, enabled=args.progress)
        points = sweep(scenario, parameter, values, args.seeds, progress)
        rows = [(v, r.summary()) for v, r in points]
        handshakes = sum(r.summary()["handshakes"] for _, r in points)
        text = (format_sweep(parameter, rows) if args.format == "table"
                else to_json(parameter, rows, scenario.describe()) if args.format == "json"
                else to_csv(parameter, rows))
    else:
        progress = Progress(args.seeds, enabled=args.progress if args.seeds > 1 else False)
        result: Result = run_seeds(scenario, args.seeds, progress.step)
        rows = [(None, result.summary())]
        handshakes = int(rows[0][1]["handshakes"])
        text = (format_summary(rows[0][1], result.failures(), result.engine_errors)
                if args.format == "table"
                else to_json(None, rows, scenario.describe()) if args.format == "json"
                else to_csv(None, rows))
    wall = time.perf_counter() - started
    if args.output:
        with open(args.output, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    else:
        print(text)
    if args.plot and parameter is not None:
        try:
            plot_sweep(parameter, rows, args.plot, title=_title(scenario))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"{handshakes} handshakes simulated in {wall:.2f} s (timing: {timing.name})",
          file=sys.stderr)
    return 0


def _title(s: Scenario) -> str:
    link = s.uplink
    bw = "unlimited" if link.bandwidth is None else f"{link.bandwidth / 1e6:g} Mbit/s"
    return (f"{s.clients} clients, {s.timing.name} timing, {link.latency * 1e3:g} ms, {bw}\n"
            f"{s.suite.removeprefix('TLS_')}, {s.group}, {s.signature}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
