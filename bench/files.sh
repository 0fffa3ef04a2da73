#!/usr/bin/env bash
# The file-copy benchmark in one command: installs its peers (OpenSSH's
# server and client, for scp and tar over ssh) when missing, then runs it.
# See docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/sshd ] || ! command -v scp >/dev/null || ! command -v tar >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq openssh-server openssh-client tar >/dev/null
fi
exec cargo bench -p doorman --bench files
