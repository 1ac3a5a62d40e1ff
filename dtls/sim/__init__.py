"""`dtls.sim`: a discrete-event model of DTLS 1.3 deployments around the real engine.

What it is for: sizing. How long do handshakes take at this loss rate, how many handshakes
per second can this server take, what does a crypto accelerator buy? The model runs the
library's own sans-I/O `Connection`s - no second implementation of the protocol - on a
virtual clock, over a modelled network (`network`: latency, jitter, bandwidth with a
bounded queue, independent and Gilbert-Elliott loss, reordering, duplication, MTU), on
modelled CPUs (`cpu`: FIFO queues, so a loaded server answers late) that charge what
each engine call was seen to do (`work`) at per-operation costs (`timing`: the original
design's figures, a crypto accelerator, or `calibrate()`d on this host).

    from dtls.sim import Scenario, LinkModel, simulate
    result = simulate(Scenario(clients=1000, uplink=LinkModel(loss=0.01),
                               downlink=LinkModel(loss=0.01)))
    print(result.summary()["client_time_p99"])

Why a plain event heap and not SimPy: the model has two kinds of actors, links and FIFO
CPUs, whose behaviour is a few lines each (a transmitter that is busy until some time; a
core that takes the next job and is busy for its cost). SimPy's processes and resources
would express the same with generators and an extra dependency, and run slower per event;
the heap (`clock.EventLoop`, ~40 lines) keeps the model small and dependency-free, and
the engine's own work dominates the run time either way.

Determinism: the same scenario and seed give the same results, bit for bit. Every random
choice comes from `random.Random` streams seeded from the scenario's seed (one per link
direction, one for arrivals); events at the same instant run in scheduling order; the
engine's own randomness (`secrets`: randoms, key shares, cookies) changes bytes but never
sizes, because the simulated credentials keep every size fixed (see `credentials`: ECDSA
signatures are made until they are 71 bytes), and the engine reads the virtual clock
for ticket ages and a fixed date for certificate validity.
"""

from __future__ import annotations

from .model import Scenario, Simulation, simulate
from .network import GilbertElliott, LinkModel, LinkStats
from .report import HandshakeRecord, Result
from .sweep import run_seeds, sweep, with_parameter
from .timing import ACCELERATOR, DESIGN, PRESETS, ZERO, TimingModel, accelerate

__all__ = [
    "ACCELERATOR",
    "DESIGN",
    "PRESETS",
    "ZERO",
    "GilbertElliott",
    "HandshakeRecord",
    "LinkModel",
    "LinkStats",
    "Result",
    "Scenario",
    "Simulation",
    "TimingModel",
    "accelerate",
    "run_seeds",
    "simulate",
    "sweep",
    "with_parameter",
]
