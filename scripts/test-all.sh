#!/usr/bin/env bash
# Every check satchel has, as CI runs them (.ci/run calls this), on Debian 12 as root:
# installs what is missing, then formatting, clippy, hadolint, the whole workspace test
# suite with cargo-nextest on the embedded backends, and the API suite on the real ones
# (scripts/test-real.sh). Runs them all even when one fails; exits non-zero if any did.
# The test suites run last so that a nextest summary closes the output.
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
# The crates have no doctests, which nextest does not run. The S3, broker, cluster and
# TLS-to-backend tests need the real services: they run in the next step, not here. The
# rate-limit tests use the machine's Redis in both passes.
./scripts/start-redis.sh
export SATCHEL_TEST_REDIS_URL=redis://127.0.0.1:6379/0
check "cargo nextest (embedded backends)" cargo nextest run --workspace --no-fail-fast \
  -E 'not (binary(api) & test(/^(s3|cluster|broker|tls_backends)::/))'
# The whole API suite again on Garage (S3), PostgreSQL and RabbitMQ, started here if they are
# down, then the multi-process fault tests.
check "cargo nextest (real backends)" ./scripts/test-real.sh

if [ "${#failed[@]}" -gt 0 ]; then
  echo "test-all: FAILED: ${failed[*]}"
  exit 1
fi
