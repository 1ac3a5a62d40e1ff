"""The bundled libcrypto (DTLS13_OPENSSL=bundled, csrc/build_openssl.sh): OpenSSL 3.5
linked statically into dtls._native, none of its symbols exported (so it cannot clash
with the libcrypto `cryptography`, `_hashlib` or `_ssl` load into the same process), no
dlopen at all, and its default provider working without a config file.

These run when the dtls._native imported here is a bundled build; tests/test_packaging.py
runs the same checks on the bundled release wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dtls._native as native

# A config that, if it were read, would leave no usable AES-GCM in the default provider:
# the system libcrypto autoloads it (OPENSSL_CONF) and its record layer fails; the bundled
# one reads no config and keeps working.
FIPS_ONLY_CONFIG = """\
openssl_conf = init
[init]
alg_section = evp_properties
[evp_properties]
default_properties = fips=yes
"""

ROUND_TRIP = """\
import os
import dtls._native as n
from dtls.record import RecordCipher
cipher = RecordCipher.from_secret(0x1301, os.urandom(32))  # TLS_AES_128_GCM_SHA256
record = cipher.seal(3, 1, 23, b"x" * 1200)
assert cipher.open(record).plaintext == b"x" * 1200
print(n.__file__)
print(n.ffi.string(n.lib.dtls_openssl_version()).decode())
"""

# Names OpenSSL's libcrypto defines (public API and internals).
_OPENSSL_SYMBOL = re.compile(
    r"^(EVP|OSSL|OPENSSL|CRYPTO|ERR|BIO|BN|EC|RSA|DH|DSA|X509|PEM|ASN1|HMAC|RAND|OBJ|"
    r"SHA|AES|ossl|openssl)_"
)


def _tool(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def is_bundled(so: Path) -> bool:
    """True if `so` carries its libcrypto (no libcrypto among its DT_NEEDED)."""
    return "libcrypto" not in _tool(["readelf", "-d", str(so)])


def dynamic_symbols(so: Path, which: str) -> list[str]:
    """The dynamic symbols `so` defines (`which` "defined") or needs ("undefined")."""
    out = _tool(["nm", "-D", f"--{which}-only", str(so)])
    return [line.split()[-1] for line in out.splitlines()]


def check_bundled_native(so: Path) -> None:
    """What a bundled dtls._native must show in its ELF tables."""
    assert is_bundled(so), _tool(["readelf", "-d", str(so)])
    exported = dynamic_symbols(so, "defined")
    leaked = [s for s in exported if _OPENSSL_SYMBOL.match(s)]
    assert not leaked, leaked[:20]
    # Only the module's own API: what the cffi cdef declares (dtls_*) and the init.
    assert all(s.startswith("dtls_") or s == "PyInit__native" for s in exported), exported
    assert "dtls_seal" in exported and "PyInit__native" in exported
    imported = dynamic_symbols(so, "undefined")
    assert not [s for s in imported if s.startswith(("dlopen", "dlsym"))], imported
    assert not [s for s in imported if _OPENSSL_SYMBOL.match(s)], imported


def round_trip_without_config(python: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """ROUND_TRIP under `python`, with the FIPS-only OPENSSL_CONF and a module directory
    that does not exist; it prints the module's path and its OpenSSL version."""
    config = cwd / "fips-only.cnf"
    config.write_text(FIPS_ONLY_CONFIG)
    env = dict(os.environ, OPENSSL_CONF=str(config), OPENSSL_MODULES=str(cwd / "no-modules"))
    if python != sys.executable:
        env.pop("PYTHONPATH", None)  # a venv's python imports its own install
    return subprocess.run(
        [python, "-c", ROUND_TRIP], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


NATIVE = Path(native.__file__)
needs_bundled = pytest.mark.skipif(
    not is_bundled(NATIVE),
    reason="dtls._native links the system libcrypto (build with DTLS13_OPENSSL=bundled)",
)


@needs_bundled
def test_bundled_native_exports_no_openssl_symbol() -> None:
    check_bundled_native(NATIVE)


@needs_bundled
def test_bundled_default_provider_needs_no_config_or_module(tmp_path: Path) -> None:
    proc = round_trip_without_config(sys.executable, tmp_path)
    assert proc.returncode == 0, proc.stderr
    path, version = proc.stdout.split("\n")[:2]
    assert Path(path) == NATIVE
    assert version.startswith("OpenSSL 3.5."), version


def test_the_system_libcrypto_reads_that_config(tmp_path: Path) -> None:
    """The control for the test above: a libcrypto that autoloads OPENSSL_CONF fails the
    round trip under that config, so the config does what it is meant to."""
    if is_bundled(NATIVE):
        pytest.skip("dtls._native is a bundled build")
    assert round_trip_without_config(sys.executable, tmp_path).returncode != 0
