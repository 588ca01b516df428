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
# The API suite again, on real services; a service that is not there fails the run.
check "postgresql" ./scripts/start-postgres.sh
check "cargo nextest (real backends)" env SATCHEL_TEST_BACKEND=real \
  SATCHEL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
  cargo nextest run -p satchel --test api --no-fail-fast

# The API suite again, against real services (tests/api/s3.rs says what only this run checks).
# A service that cannot be started or reached fails the run: nothing is skipped.
section "real backends"
if garage_env="$(./scripts/garage.sh env)"; then
  eval "$garage_env"
  check "cargo nextest (real backends)" env SATCHEL_TEST_BACKEND=real \
    cargo nextest run -p satchel --test api --no-fail-fast
else
  echo "-- garage: FAILED to start"
  failed+=("garage")
fi

if [ "${#failed[@]}" -gt 0 ]; then
  echo "test-all: FAILED: ${failed[*]}"
  exit 1
fi
