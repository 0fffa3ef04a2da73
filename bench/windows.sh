#!/usr/bin/env bash
# A forward through the Windows agent under Wine, beside the Linux agent
# and direct TCP (informative: Wine is not Windows). Cross-builds the
# release doorman.exe first; needs what .ci/run installs for the Windows
# tests (wine64, mingw-w64). See docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --target x86_64-pc-windows-gnu -p doorman --locked
DOORMAN_WINDOWS_EXE="$PWD/target/x86_64-pc-windows-gnu/release/doorman.exe" \
    exec cargo bench -p doorman --bench windows_forward
