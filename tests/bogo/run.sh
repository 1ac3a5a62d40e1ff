#!/usr/bin/env bash
# Run BoringSSL's runner (BoGo) against tests/bogo/shim.py, DTLS 1.3 tests only, and print
# passed/failed/unimplemented/disabled by category. Exit 1 if any non-disabled test failed.
# Extra arguments go to the runner (e.g. -test 'DTLS-Replay-*').
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runner="$(bash "$here/build_runner.sh")"
src="$(dirname "$runner")/src/ssl/test/runner"
out="${BOGO_JSON:-$(mktemp -t bogo.XXXXXX.json)}"
# the DTLS 1.3 subset: names with DTLS and TLS13 (e.g. Resume-Client-TLS13-DTLS, DTLS-TLS13-*),
# and the DTLS tests that run DTLS 1.3 without saying so (MaxVersion TLS13, or the runner's
# default, which is 1.3)
subset='*DTLS*TLS13*;*TLS13*DTLS*;*DTLS13*;KeyUpdate-*-DTLS'
subset+=';Alert-DTLS;DoubleAlert-DTLS;FragmentAlert-DTLS;SendBogusAlertType-DTLS'
subset+=';AppDataBeforeHandshake-DTLS;UnencryptedEncryptedExtensions-DTLS;DisableEverything-DTLS'
subset+=';DTLSIgnoreBadPackets*;FragmentMessage*Mismatch-DTLS;SendEmptyFragments*-DTLS'
subset+=';SplitFragments-*-DTLS;SplitAndPackAppData-DTLS;SendInvalidRecordType-DTLS'
subset+=';LargeCiphertext-DTLS;LargePlaintext-DTLS;LargeMessage*-DTLS'
subset+=';NoSupportedVersions-DTLS;VersionTooLow-DTLS'
# extra arguments follow: a -test among them replaces the subset (the runner keeps the last)
set +e
# every test of the subset, disabled ones too (a shim that exits 89 at once: a second)
(cd "$src" && "$runner" -shim-path "$here/list_shim.sh" -include-disabled -allow-unimplemented \
    -pipe -json-output "$out.all" -num-workers 4 -test "$subset" "$@" >/dev/null 2>&1)
(cd "$src" && "$runner" -shim-path "$here/shim.sh" -shim-config "$here/config.json" \
    -allow-unimplemented -loose-errors -pipe -json-output "$out" \
    -num-workers "${BOGO_WORKERS:-2}" -test "$subset" "$@" >"$out.log" 2>&1)
set -e
python3 "$here/summary.py" "$out" "$here/config.json" "$out.all"
