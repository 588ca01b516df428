#!/usr/bin/env bash
# Every check satchel has, as CI runs them (.ci/run calls this), on Debian 12 as root:
# installs what is missing, then formatting, clippy, hadolint, and the whole workspace test
# suite with cargo-nextest. Runs them all even when one fails; exits non-zero if any did.
# The test suite runs last so that its summary closes the output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -d "$HOME/.cargo/bin" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

section() { printf '\n==================== %s ====================\n' "$*"; }

failed=()
check() {
  local name="$1"
  shift
  section "$name"
  # Quiet on success, so that nextest's summary stays the last line of a green run.
  if ! "$@"; then
    echo "-- $name: FAILED"
    failed+=("$name")
  fi
}

section "dependencies"
./scripts/install-deps.sh --test
hash -r

check "cargo fmt" cargo fmt --all -- --check
check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
check "hadolint" hadolint Dockerfile
# The crates have no doctests, which nextest does not run: nothing is skipped here.
check "cargo nextest" cargo nextest run --workspace --no-fail-fast
# The real-backend run (S3 on Garage, PostgreSQL, RabbitMQ) is scripts/test-real.sh. It is not
# part of CI yet: on this machine it still has two failing S3 tests and takes ~15 minutes.

if [ "${#failed[@]}" -gt 0 ]; then
  echo "test-all: FAILED: ${failed[*]}"
  exit 1
fi
