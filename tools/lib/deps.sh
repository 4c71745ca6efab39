#!/usr/bin/env bash
# Installs the Debian packages weft's builds need, once. Idempotent and non-interactive:
# when every package is already present it returns without touching apt.
set -euo pipefail

WEFT_PACKAGES=(
  build-essential g++-12 cmake ninja-build pkg-config
  libtbb-dev libbenchmark-dev libgtest-dev libgmock-dev libabsl-dev
  clang-19 libclang-rt-19-dev bazel-bootstrap bazel-rules-java python3
)

weft_missing_packages() {
  local p
  for p in "${WEFT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

weft_ensure_packages() {
  local missing
  missing=$(weft_missing_packages | tr '\n' ' ')
  [ -z "${missing// }" ] && return 0
  echo "weft: installing missing packages: $missing" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q </dev/null
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q $missing </dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  weft_ensure_packages
fi
