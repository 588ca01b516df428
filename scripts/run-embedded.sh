#!/usr/bin/env bash
# Builds satchel and runs `satchel serve` on the embedded defaults: filesystem store, SQLite
# catalog and in-process queue, all under ./satchel-data at the repository root. Debian 12,
# as root; installs what is missing first. Extra arguments go to `satchel serve`
# (e.g. `--config satchel.toml`); SATCHEL_* variables configure it as usual (README).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -d "$HOME/.cargo/bin" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

section() { printf '\n==================== %s ====================\n' "$*"; }

section "dependencies"
./scripts/install-deps.sh

section "build (release)"
cargo build --release --locked -p satchel

data_dir="${SATCHEL_DATA_DIR:-./satchel-data}"
section "satchel serve"
echo "data directory: $data_dir"
if [ -n "${SATCHEL_API_TOKENS:-}" ]; then
  echo "API tokens: the ones in SATCHEL_API_TOKENS"
else
  echo "API token: generated on first start and kept in $data_dir/api-token (mode 0600)"
  echo "           TOKEN=\$(cat $data_dir/api-token)"
fi
echo "listening on ${SATCHEL_LISTEN:-127.0.0.1:8080}; stop with Ctrl-C (SIGINT) or SIGTERM"
exec ./target/release/satchel serve "$@"
