"""Instructions per full handshake pair (callgrind), which the machine's load does not move.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --toggle-collect=functools_reduce \\
        --callgrind-out-file=/tmp/hs.out python bench/callgrind_handshake.py 40

The handshakes of `bench_handshake.py` (3 warm-up ones, then N): only the N run inside
`functools.reduce`, so `--toggle-collect=functools_reduce` counts exactly them ("Collected"
/ N = instructions per pair). `callgrind_annotate --inclusive=no /tmp/hs.out` splits them by
library: _rust.abi3.so (cryptography: X25519, ECDSA) and libcrypto.so are the public-key
and AEAD/HKDF work, libpython and the rest the engine.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_handshake import contexts, handshake


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    client_ctx, server_ctx = contexts()
    for _ in range(3):
        handshake(client_ctx, server_ctx)
    functools.reduce(lambda _, __: handshake(client_ctx, server_ctx), range(count), None)


if __name__ == "__main__":
    main()
