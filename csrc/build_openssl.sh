#!/usr/bin/env bash
# Builds the static libcrypto that DTLS13_OPENSSL=bundled links into dtls._native:
# OpenSSL 3.5 LTS from Debian's `openssl` source package (the version trixie ships),
# pinned by version and sha256, with Debian's patches applied.
#
# Output: ${DTLS13_CACHE:-~/.cache/dtls13}/openssl-<version>-<options id>/{include,lib/libcrypto.a};
# reused when present. Prints that prefix as its last line.
#
# The library is self-contained: no DSO support (nothing is ever dlopened, so no module
# directory of the build machine is looked for), no engines, and no automatic load of
# openssl.cnf (the default provider is built in and loads without a config file).
set -euo pipefail

DEB_VERSION="3.5.4-1~deb13u1"
UPSTREAM="3.5.4"
ORIG_SHA256="967311f84955316969bdb1d8d4b983718ef42338639c621ec4c34fddef355e99"
DEBIAN_SHA256="3659d7e13ee91c9a97570b084f6e32c4f4a5fb29cd846be05863323ad312ce4e"
POOL="http://deb.debian.org/debian/pool/main/o/openssl"

# --prefix is only compiled in (the files are copied out below): MODULESDIR and ENGINESDIR
# name a directory that exists nowhere, and are never used (no-dso). --openssldir only
# names the default CA paths (no config file is autoloaded).
CONFIG=(--prefix=/nonexistent/dtls13-openssl --libdir=lib --openssldir=/etc/ssl
    no-shared no-dso no-engine no-autoload-config no-apps no-docs no-tests no-legacy
    enable-ec_nistp_64_gcc_128 -fPIC -O2)
CONFIG_ID="$(echo "${CONFIG[*]}" | sha256sum | cut -c1-8)"  # a new build when they change

CACHE="${DTLS13_CACHE:-$HOME/.cache/dtls13}"
PREFIX="$CACHE/openssl-$DEB_VERSION-$CONFIG_ID"
if [[ -f "$PREFIX/lib/libcrypto.a" && -f "$PREFIX/include/openssl/evp.h" ]]; then
    echo "$PREFIX"
    exit 0
fi

DL="$CACHE/dl"
mkdir -p "$DL"
fetch() {  # fetch NAME SHA256
    local name="$1" sum="$2"
    if ! echo "$sum  $DL/$name" | sha256sum -c --status 2>/dev/null; then
        curl -fsS --retry 3 -o "$DL/$name.part" "$POOL/$name" \
            || { echo "build_openssl.sh: cannot download $POOL/$name" >&2; exit 1; }
        mv "$DL/$name.part" "$DL/$name"
    fi
    echo "$sum  $DL/$name" | sha256sum -c --status \
        || { echo "build_openssl.sh: sha256 mismatch for $name" >&2; exit 1; }
}
fetch "openssl_$UPSTREAM.orig.tar.gz" "$ORIG_SHA256"
fetch "openssl_$DEB_VERSION.debian.tar.xz" "$DEBIAN_SHA256"

WORK="$(mktemp -d "$CACHE/openssl-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
tar -C "$WORK" -xzf "$DL/openssl_$UPSTREAM.orig.tar.gz"
SRC="$WORK/openssl-$UPSTREAM"
tar -C "$SRC" -xJf "$DL/openssl_$DEB_VERSION.debian.tar.xz"
while read -r patch; do
    [[ -z "$patch" || "$patch" == \#* ]] && continue
    patch -s -p1 -d "$SRC" < "$SRC/debian/patches/$patch"
done < "$SRC/debian/patches/series"

cd "$SRC"
./Configure "${CONFIG[@]}" >/dev/null 2>&1 \
    || { echo "build_openssl.sh: Configure failed" >&2; ./Configure "${CONFIG[@]}" >&2; exit 1; }
quiet() { "$@" >/dev/null 2> >(grep -Ev '^(DEBUG:|No value given for)' >&2); }  # the Makefile's path dumps
quiet make -s -j"$(nproc)" build_generated
quiet make -s -j"$(nproc)" libcrypto.a

STAGE="$PREFIX.part"
rm -rf "$STAGE"
mkdir -p "$STAGE/lib" "$STAGE/include/openssl"
cp libcrypto.a "$STAGE/lib/"
cp include/openssl/*.h "$STAGE/include/openssl/"
rm -rf "$PREFIX"
mv "$STAGE" "$PREFIX"
echo "$PREFIX"
