#!/usr/bin/env bash
# Builds everything and runs every test with Bazel (Debian's bazel-bootstrap 4.2.3, offline),
# compiled by clang-19. Non-interactive; prints one summary line on stdout; the tail of Bazel's
# log goes to stderr on failure. Extra arguments are passed to `bazel test` as flags.
# Always stops the Bazel server at the end. Exit status: 0 when everything built and passed,
# otherwise Bazel's (non-zero) exit status.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd) || exit 1
cd "$root" || exit 1

if ! command -v bazel >/dev/null 2>&1; then
  echo "bazel (clang-19): FAIL - bazel not found (install bazel-bootstrap: tools/lib/deps.sh)"
  exit 127
fi

log=$(mktemp "${TMPDIR:-/tmp}/weft-bazel.XXXXXX") || exit 1
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() { bazel shutdown >/dev/null 2>&1 </dev/null || true; }
trap cleanup EXIT

start=$SECONDS
bazel test --repo_env=CC=clang-19 --color=no --curses=no "$@" -- //... \
  >"$log" 2>&1 </dev/null
rc=$?
secs=$((SECONDS - start))

summary=$(grep -E '^Executed [0-9]+ out of [0-9]+ tests?' "$log" | tail -n 1)
[ -n "$summary" ] || summary=$(grep -E '^(FAILED|ERROR):' "$log" | head -n 1)
[ -n "$summary" ] || summary="no test summary"

if [ "$rc" -eq 0 ]; then
  rm -f "$log"
  echo "bazel test //... (clang-19): PASS - $summary (${secs}s)"
else
  tail -n 120 "$log" >&2
  echo "bazel test //... (clang-19): FAIL (exit $rc) - $summary (${secs}s); full log: $log"
fi
exit "$rc"
