"""The sdist builds and installs on its own: `python -m build --sdist`, then `pip install`
of the tarball into a fresh venv, and `dtls._native` (compiled from the sdist's csrc/)
imports there, from outside the source tree.

About a minute or more (a build in an isolated environment, then cffi and cryptography
from the package index), so it runs under CI=true (.ci/run) or DTLS13_PACKAGING=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(
        os.environ.get("CI") != "true" and os.environ.get("DTLS13_PACKAGING") != "1",
        reason="builds and installs the sdist (minutes): set DTLS13_PACKAGING=1 or CI=true",
    ),
]


def _run(cmd: list[str], cwd: Path) -> str:
    # without PYTHONPATH, which would point the venv's python at this source tree
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_sdist_installs_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(ROOT)], ROOT)
    (sdist,) = dist.glob("dtls13-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("csrc/build.py", "csrc/dtls_native.h", "tests/conftest.py", "tests/pki.py",
                   "tests/vectors/wolfssl/basic.json"):
        assert needed in names, needed
    assert not any(n.endswith((".so", ".o")) for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(sdist)], tmp_path)
    out = _run([str(python), "-c",
                "import dtls, dtls._native as n; print(n.__file__); print(dtls.__file__);"
                "print(hasattr(n.lib, 'dtls_cipher_new'))"], tmp_path)
    native, package, has_cipher = out.split()
    assert Path(native).is_relative_to(env_dir)
    assert Path(package).is_relative_to(env_dir)
    assert has_cipher == "True"
