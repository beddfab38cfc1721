#!/usr/bin/env bash
# Installs the system packages ambit's tests, demo and benchmarks use, when they are missing.
# Runs as root only (elsewhere it just reports what is missing). Package post-install scripts are
# told not to start services (policy-rc.d), so nothing listens in the host's network namespace.
set -euo pipefail

# command -> Debian package: every binary the runtime, the benchmarks and the tests run, as declared in
# src/ambit/runtime/sysdeps.py (tests/unit/runtime/test_sysdeps.py holds this table to that list).
declare -A WANT=(
  # runtime (and `ambit demo`)
  [ip]=iproute2
  [nft]=nftables
  [sysctl]=procps
  [tcpdump]=tcpdump
  [curl]=curl
  [sleep]=coreutils
  # benchmarks
  [nginx]=nginx
  [wrk]=wrk
  [iperf3]=iperf3
  [stunnel]=stunnel4
  [prlimit]=util-linux
  [ss]=iproute2
  [setpriv]=util-linux
  # tests
  [openssl]=openssl
  [node]=nodejs
  [sh]=dash
  [python3]=python3
)

missing=()
for cmd in "${!WANT[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${WANT[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "sysdeps: missing ${missing[*]}; run as root (or install them) to continue" >&2
  exit 1
fi

echo "sysdeps: installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
placed_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  placed_policy=1
fi
cleanup() { [ "$placed_policy" = 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
