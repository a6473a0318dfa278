#!/usr/bin/env bash
# Installs what ringmail needs to build and test, from Debian 12 packages only.
# Idempotent: when every package is already installed it returns at once.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  liburing-dev libwolfssl-dev libssl-dev libc-ares-dev libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 swaks dnsmasq-base curl openssl
  clang libclang-rt-14-dev llvm-14
  libhttp-parser-dev libsimdjson-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
