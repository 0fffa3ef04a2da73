#!/usr/bin/env bash
# The relay benchmark in one command: installs its peers (iperf3 for the
# bulk transfers, socat, OpenSSH's server, rathole from crates.io) when
# missing, then runs it. See docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v iperf3 >/dev/null || ! command -v socat >/dev/null || [ ! -x /usr/sbin/sshd ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq iperf3 socat openssh-server openssh-client >/dev/null
fi
if ! command -v rathole >/dev/null; then
    # Its own features only: no TLS or noise transport, whose default
    # pulls native-tls (and an old lock that no longer builds).
    cargo install rathole --no-default-features --features server,client
fi
exec cargo bench -p doorman --bench relay
