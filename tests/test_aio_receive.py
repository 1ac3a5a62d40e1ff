"""How many datagrams a dtls.aio socket asks of each recvmmsg: as many as its last wakeup
brought (at least RECEIVE_FIRST), twice as many after a full read, RECEIVE_BATCH at most."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from dtls import aio


@pytest.mark.parametrize("pooled", [True, False])
def test_receive_counts_follow_the_wakeups(monkeypatch: pytest.MonkeyPatch, pooled: bool) -> None:
    if pooled and aio.BufferPool is None:
        pytest.skip("no C extension")
    asked: list[int] = []
    receive = aio.receive_datagrams

    def counted(fd: int, count: int, *args: Any, **kwargs: Any) -> Any:
        asked.append(count)
        return receive(fd, count, *args, **kwargs)

    monkeypatch.setattr(aio, "receive_datagrams", counted)

    async def main() -> list[list[bytes]]:
        loop = asyncio.get_running_loop()
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        batches: list[list[bytes]] = []
        pool = aio.BufferPool(65536, aio.RECEIVE_BATCH) if pooled else None
        sock = aio._DatagramSocket(
            loop, server, lambda batch: batches.append([bytes(d) for d, _ in batch]), pool)
        try:
            for burst in (100, 2, 40):
                for i in range(burst):
                    sender.sendto(b"%d-%d" % (burst, i), server.getsockname())
                while sum(map(len, batches)) < {100: 100, 2: 102, 40: 142}[burst]:
                    await asyncio.sleep(0.01)
                asked.append(-1)  # a wakeup ends
        finally:
            sock.close()
            sender.close()
        return batches

    batches = asyncio.run(main())
    got = [d for batch in batches for d in batch]
    assert got == [b"%d-%d" % (burst, i) for burst in (100, 2, 40) for i in range(burst)]
    wakeups: list[list[int]] = [[]]
    for n in asked:
        if n < 0:
            wakeups.append([])
        else:
            wakeups[-1].append(n)
    first, quiet, last = wakeups[0], wakeups[1], wakeups[2]
    assert first[:3] == [aio.RECEIVE_FIRST, 2 * aio.RECEIVE_FIRST, aio.RECEIVE_BATCH]
    assert max(first) == aio.RECEIVE_BATCH
    assert quiet[0] == aio.RECEIVE_BATCH  # the wakeup before brought more than 32
    assert last[0] == aio.RECEIVE_FIRST  # ... and this one's brought 2
