#!/usr/bin/env bash
# Build tests/interop/boringssl_peer.cc against BoringSSL taken from the PyPI `boringssl`
# wheel (it carries BoringSSL's source), pinned by version and sha256. Prints the path of
# the peer binary on its last line of stdout; everything else goes to stderr.
#
#   peer="$(tests/interop/build_boringssl_peer.sh)"
#   DTLS13_BORINGSSL_PEER="$peer" python -m pytest tests/interop
#
# Everything is cached outside the repository in ${DTLS13_CACHE:-$HOME/.cache/dtls13}:
#   boringssl-1.0.0.post1-py2.py3-none-any.whl   the downloaded wheel (shared with others
#                                                  that unpack it, under its own file name)
#   boringssl-1.0.0.post1/src                     its BoringSSL source tree
#   boringssl-1.0.0.post1/build                   libssl.a, libcrypto.a (cmake + ninja)
#   boringssl-1.0.0.post1/peer-<sha of .cc>       the peer binary
# A second run only checks the wheel's hash and finds the binary.
# Needs: python3 -m pip, cmake, ninja, g++.
set -euo pipefail

version=1.0.0.post1
sha256=f06132a37552e91ca2a534ee260909bac84a837f07cec838f6823122d2ed8377
wheel_name="boringssl-${version}-py2.py3-none-any.whl"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_cc="$here/boringssl_peer.cc"
cache="${DTLS13_CACHE:-$HOME/.cache/dtls13}"
work="$cache/boringssl-$version"
mkdir -p "$work"

fail() { echo "build_boringssl_peer: $*" >&2; exit 1; }
log() { echo "build_boringssl_peer: $*" >&2; }

for tool in cmake ninja g++; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install cmake ninja-build g++)"
done

peer="$work/peer-$(sha256sum "$source_cc" | cut -c1-16)"
if [ -x "$peer" ]; then
    echo "$peer"
    exit 0
fi

wheel="$cache/$wheel_name"
if [ ! -f "$wheel" ] || ! echo "$sha256  $wheel" | sha256sum -c --status; then
    log "downloading boringssl==$version"
    rm -f "$wheel"
    python3 -m pip download -q --no-deps --only-binary :all: "boringssl==$version" \
        -d "$cache" >&2 || fail "pip could not download boringssl==$version"
    [ -f "$wheel" ] || fail "pip did not save $wheel_name in $cache"
fi
echo "$sha256  $wheel" | sha256sum -c --status \
    || fail "$wheel: sha256 is not $sha256"

src="$work/src"
if [ ! -f "$src/CMakeLists.txt" ]; then
    log "unpacking BoringSSL's source from $wheel_name"
    rm -rf "$src" "$work/unpack"
    python3 - "$wheel" "$work/unpack" <<'EOF' || fail "could not unpack $wheel"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("boringssl/boringssl/")])
EOF
    mv "$work/unpack/boringssl/boringssl" "$src"
    rm -rf "$work/unpack"
fi

build="$work/build"
if [ ! -f "$build/libssl.a" ] || [ ! -f "$build/libcrypto.a" ]; then
    log "building BoringSSL (cmake + ninja, about a minute on 2 cores)"
    # -D_strdup=strdup: this source snapshot calls the Windows name in one place.
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS=-D_strdup=strdup -DCMAKE_CXX_FLAGS=-D_strdup=strdup \
        >"$work/cmake.log" 2>&1 || { tail -30 "$work/cmake.log" >&2; fail "cmake failed (log: $work/cmake.log)"; }
    ninja -C "$build" ssl crypto >"$work/ninja.log" 2>&1 \
        || { tail -30 "$work/ninja.log" >&2; fail "building BoringSSL failed (log: $work/ninja.log)"; }
fi

log "compiling $source_cc"
g++ -std=c++17 -O2 -I"$src/include" -o "$peer.tmp" "$source_cc" \
    "$build/libssl.a" "$build/libcrypto.a" -lpthread \
    || fail "compiling boringssl_peer.cc failed"
mv "$peer.tmp" "$peer"
echo "$peer"
