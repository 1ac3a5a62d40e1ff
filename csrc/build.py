"""cffi builder for dtls._native, the C record layer (API mode, out of line).

setup.py names it (`cffi_modules=["csrc/build.py:ffibuilder"]`); `python csrc/build.py`
builds the extension in place as well. The cdef is csrc/dtls_native.h itself, with the
preprocessor lines cffi cannot take rewritten (see `cdef_from_header`).

Environment:
  DTLS13_OPENSSL       `system` (the default): link the system's libcrypto (libssl-dev);
                       `bundled`: link a static libcrypto of OpenSSL 3.5 LTS that
                       csrc/build_openssl.sh builds (once) into ${DTLS13_CACHE:-~/.cache/dtls13},
                       its symbols hidden (-Wl,--exclude-libs,ALL) so they cannot clash with
                       the libcrypto `cryptography` or the interpreter loads. The release
                       wheel is built this way (docs/packaging.md).
  DTLS_OPENSSL_PREFIX  (system mode) build against the OpenSSL installed under this prefix
                       (prefix/include, prefix/lib64 or prefix/lib, linked with an rpath)
  DTLS_SANITIZE=1      compile and link with AddressSanitizer and UBSan (for .ci/sanitize)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADER = HERE / "dtls_native.h"
C_SOURCES = ("record.c", "kdf.c", "replay.c", "pool.c", "batch.c", "bench.c", "py_app_record.c")

_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)\s+(.+?)\s*$")


def cdef_from_header(text: str) -> str:
    """The header as a cffi cdef: include guards and #include lines go, and every macro
    constant becomes `#define NAME ...` (its value is taken from the compiler)."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            m = _DEFINE.match(line)
            if m and not m.group(1).endswith("_H"):
                out.append(f"#define {m.group(1)} ...")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _rel(path: Path) -> str:
    # distutils wants source paths relative to the directory setup.py runs from
    return os.path.relpath(path, Path.cwd())


def _openssl_prefix() -> tuple[list[str], list[str], list[str]]:
    """include dirs, library dirs and link args for DTLS_OPENSSL_PREFIX (if set)."""
    prefix = os.environ.get("DTLS_OPENSSL_PREFIX")
    if not prefix:
        return [], [], []
    base = Path(prefix).expanduser().resolve()
    libdirs = [str(d) for d in (base / "lib64", base / "lib") if d.is_dir()]
    return [str(base / "include")], libdirs, [f"-Wl,-rpath,{d}" for d in libdirs]


def _bundled_openssl() -> tuple[list[str], list[str], list[str]]:
    """include dirs, extra objects (the static libcrypto) and link args for
    DTLS13_OPENSSL=bundled; builds the library first if it is not in the cache."""
    proc = subprocess.run(
        ["bash", str(HERE / "build_openssl.sh")], stdout=subprocess.PIPE, text=True
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        sys.exit("dtls13: csrc/build_openssl.sh failed (DTLS13_OPENSSL=bundled); see above")
    prefix = Path(proc.stdout.strip().splitlines()[-1])
    return (
        [str(prefix / "include")],
        [str(prefix / "lib" / "libcrypto.a")],
        ["-Wl,--exclude-libs,ALL"],  # libcrypto's symbols stay inside the .so
    )


def _mode_stamp(mode: str) -> str:
    """A file rewritten when DTLS13_OPENSSL changes between two builds in one tree; as a
    dependency of the extension it makes setuptools relink instead of reusing a module
    built against the other libcrypto from build/."""
    stamp = ROOT / "build" / "dtls13-openssl-mode"  # where setuptools builds
    if not stamp.is_file() or stamp.read_text() != mode:
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(mode)
    return _rel(stamp)


def _openssl() -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """include dirs, library dirs, libraries, extra objects and link args for the
    libcrypto that DTLS13_OPENSSL selects."""
    mode = os.environ.get("DTLS13_OPENSSL", "system")
    if mode == "bundled":
        if os.environ.get("DTLS_OPENSSL_PREFIX"):
            sys.exit("dtls13: DTLS_OPENSSL_PREFIX and DTLS13_OPENSSL=bundled exclude each other")
        include_dirs, objects, link_args = _bundled_openssl()
        return include_dirs, [], [], objects, link_args
    if mode != "system":
        sys.exit(f"dtls13: DTLS13_OPENSSL={mode!r}: expected 'system' or 'bundled'")
    include_dirs, library_dirs, link_args = _openssl_prefix()
    _check_openssl_headers(include_dirs)
    return include_dirs, library_dirs, ["crypto"], [], link_args


_MISSING_HEADERS = (
    "dtls13: the OpenSSL headers (openssl/evp.h) were not found{where}; install libssl-dev "
    "(Debian/Ubuntu) or openssl-devel (Fedora), or set DTLS_OPENSSL_PREFIX to an OpenSSL "
    "installation."
)


def _check_openssl_headers(include_dirs: list[str]) -> None:
    """Stop with one sentence if openssl/evp.h cannot be found."""
    for d in include_dirs:
        if (Path(d) / "openssl" / "evp.h").is_file():
            return
    if include_dirs:  # DTLS_OPENSSL_PREFIX names an installation without headers
        sys.exit(_MISSING_HEADERS.format(where=f" under {Path(include_dirs[0]).parent}"))
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        return  # no compiler to ask: let the build report what it finds
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("#include <openssl/evp.h>\n")
        cmd = [*cc, "-E", *(f"-I{d}" for d in include_dirs), str(probe), "-o", os.devnull]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return
    sys.exit(_MISSING_HEADERS.format(where=""))


# cffi releases the GIL around every call. The one-record calls of the application epoch
# (dtls_app_*, ~0.6 µs of AEAD for 1200 bytes) keep it: releasing and taking it again
# costs ~0.1 µs a call, a sixth of the work. The wrappers name the function they call in
# __func__ ("_cffi_f_dtls_app_seal"), a constant the compiler folds the test on.
_PREAMBLE = """#include "dtls_native.h"
#include <string.h>
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define DTLS_KEEPS_GIL (strncmp(__func__, "_cffi_f_dtls_app_", 17) == 0)
#define Py_BEGIN_ALLOW_THREADS { PyThreadState *_save = DTLS_KEEPS_GIL ? NULL : PyEval_SaveThread();
#define Py_END_ALLOW_THREADS if (_save != NULL) PyEval_RestoreThread(_save); }
"""


def _make_builder() -> FFI:
    include_dirs, library_dirs, libraries, objects, link_args = _openssl()
    compile_args = ["-std=c11", "-O2", "-Wall", "-Wextra"]
    if os.environ.get("DTLS_SANITIZE") == "1":
        sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
        compile_args += sanitize
        link_args = [*link_args, "-fsanitize=address,undefined"]
    builder = FFI()
    builder.cdef(cdef_from_header(HEADER.read_text()))
    builder.set_source(
        "dtls._native",
        _PREAMBLE,
        sources=[_rel(HERE / name) for name in C_SOURCES],
        include_dirs=[_rel(HERE), *include_dirs],
        library_dirs=library_dirs,
        libraries=libraries,
        extra_objects=objects,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=[
            _rel(HERE / "dtls_native.h"),
            _rel(HERE / "dtls_internal.h"),
            _mode_stamp(os.environ.get("DTLS13_OPENSSL", "system")),
        ],
        # The full C API: the limited (abi3) one costs ~80 ns more per call here.
        py_limited_api=False,
    )
    return builder


ffibuilder = _make_builder()

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder = _make_builder()  # paths relative to the project root
    ffibuilder.compile(tmpdir=str(ROOT), verbose=True)
