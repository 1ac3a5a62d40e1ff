"""The sdist builds and installs on its own: `python -m build --sdist`, then `pip install`
of the tarball into a fresh venv, and `dtls._native` (compiled from the sdist's csrc/)
imports there, from outside the source tree. The binary wheel, made self-contained by
`auditwheel repair`, installs in a fresh venv and runs `python -m dtls demo`.

About a minute or more (a build in an isolated environment, then cffi and cryptography
from the package index), so it runs under CI=true (.ci/run) or DTLS13_PACKAGING=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from test_bundled_openssl import check_bundled_native, round_trip_without_config

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.skipif(
        os.environ.get("CI") != "true" and os.environ.get("DTLS13_PACKAGING") != "1",
        reason="builds and installs the sdist (minutes): set DTLS13_PACKAGING=1 or CI=true",
    ),
]


def _call(
    cmd: list[str], cwd: Path, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    # without PYTHONPATH, which would point the venv's python at this source tree
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_vars)
    # the bundled build compiles OpenSSL when its cache is empty: minutes on 2 cores
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)


def _run(cmd: list[str], cwd: Path, **env_vars: str) -> str:
    proc = _call(cmd, cwd, **env_vars)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_sdist_installs_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(ROOT)], ROOT)
    (sdist,) = dist.glob("dtls13-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("csrc/build.py", "csrc/build_openssl.sh", "csrc/dtls_native.h",
                   "tests/conftest.py", "tests/pki.py",
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


@pytest.mark.parametrize("openssl", ["system", "bundled"])
def test_manylinux_wheel_runs_the_demo_in_a_fresh_venv(tmp_path: Path, openssl: str) -> None:
    """`python -m build --wheel`, `auditwheel repair`, `auditwheel show`; installed in a
    fresh venv, `python -m dtls demo` passes and `bench` (a source-tree script) is not
    offered. Against the system libcrypto the repaired wheel carries a copy of it, which
    the native module loads; the bundled build (DTLS13_OPENSSL=bundled, the release
    wheel) carries OpenSSL 3.5 inside the module, hidden and needing no config file."""
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], ROOT,
         DTLS13_OPENSSL=openssl)
    (wheel,) = dist.glob("dtls13-*.whl")
    fixed = tmp_path / "fixed"
    _run([sys.executable, "-m", "auditwheel", "repair", "-w", str(fixed), str(wheel)], tmp_path)
    (repaired,) = fixed.glob("dtls13-*manylinux*.whl")
    show = _run([sys.executable, "-m", "auditwheel", "show", str(repaired)], tmp_path)
    assert "is consistent with" in show
    with zipfile.ZipFile(repaired) as z:
        grafted = [n for n in z.namelist() if n.startswith("dtls13.libs/libcrypto")]
    assert bool(grafted) == (openssl == "system"), grafted

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(repaired)], tmp_path)
    maps = _run([python, "-c", "import dtls._native; print(open('/proc/self/maps').read())"],
                tmp_path)
    crypto = {line.split()[-1] for line in maps.splitlines() if "libcrypto" in line}
    if openssl == "system":
        assert crypto and all("dtls13.libs" in path for path in crypto), crypto
    else:
        assert not crypto, crypto  # no libcrypto.so at all: it is inside dtls._native
        proc = round_trip_without_config(python, tmp_path)
        assert proc.returncode == 0, proc.stderr
        native, version = proc.stdout.split("\n")[:2]
        assert Path(native).is_relative_to(env_dir) and version.startswith("OpenSSL 3.5."), (
            native, version)
        check_bundled_native(Path(native))
    report = json.loads(_run([python, "-m", "dtls", "demo", "--json"], tmp_path))
    assert report["ok"] is True and report["messages_checked"] == report["messages"]
    assert "bench" not in _run([python, "-m", "dtls", "--help"], tmp_path)
    proc = _call([python, "-m", "dtls", "bench"], tmp_path)
    assert proc.returncode != 0 and "invalid choice: 'bench'" in proc.stderr
