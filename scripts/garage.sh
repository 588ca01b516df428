#!/usr/bin/env bash
# A single-node Garage (S3) for tests and CI. Idempotent: every step checks before it acts.
#
#   scripts/garage.sh env     install if missing, start if not answering, print `export` lines:
#                             eval "$(scripts/garage.sh env)"
#   scripts/garage.sh start   the same, without printing
#   scripts/garage.sh stop    stop the server (fault tests); the data stays
#
# State lives in ${SATCHEL_GARAGE_DIR:-/tmp/satchel-garage}: config, secrets, data, log, pid.
set -euo pipefail

GARAGE_VERSION=2.5.0
DIR="${SATCHEL_GARAGE_DIR:-/tmp/satchel-garage}"
CONFIG="$DIR/garage.toml"
PIDFILE="$DIR/garage.pid"
S3_ADDR=127.0.0.1:3900
KEY_NAME=satchel-test
# Another account on the same store, for tests of buckets held by someone else (with the
# admin API, which alone can hold a bucket name in Garage's global namespace).
OTHER_KEY_NAME=satchel-test-other

if [ -d "$HOME/.cargo/bin" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

log() { echo "garage.sh: $*" >&2; }

install() {
  if command -v garage >/dev/null && garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    return
  fi
  # Another process may be building it already (CI caches ~/.cargo/bin; a developer may
  # have started it): wait for that rather than compiling twice on a small machine.
  if pgrep -f "cargo install garage" >/dev/null; then
    log "waiting for a running 'cargo install garage' to finish"
    while pgrep -f "cargo install garage" >/dev/null; do sleep 10; done
    command -v garage >/dev/null && return
  fi
  log "installing garage $GARAGE_VERSION (takes a while; cached in ~/.cargo/bin)"
  cargo install garage --locked --version "$GARAGE_VERSION" >&2
}

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

write_config() {
  mkdir -p "$DIR/meta" "$DIR/data"
  chmod 700 "$DIR"
  [ -f "$DIR/rpc_secret" ] || hex 32 >"$DIR/rpc_secret"
  [ -f "$DIR/admin_token" ] || hex 32 >"$DIR/admin_token"
  cat >"$CONFIG" <<EOF
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(cat "$DIR/rpc_secret")"

[s3_api]
s3_region = "garage"
api_bind_addr = "$S3_ADDR"

[admin]
api_bind_addr = "127.0.0.1:3903"
admin_token = "$(cat "$DIR/admin_token")"
EOF
}

g() { garage -c "$CONFIG" "$@"; }

answering() { g status >/dev/null 2>&1; }

start() {
  install
  write_config
  if ! answering; then
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      log "a garage server (pid $(cat "$PIDFILE")) is starting"
    else
      log "starting garage server (log: $DIR/garage.log)"
      RUST_LOG="${GARAGE_LOG:-warn}" nohup garage -c "$CONFIG" server >>"$DIR/garage.log" 2>&1 &
      echo $! >"$PIDFILE"
    fi
    for _ in $(seq 1 100); do
      answering && break
      sleep 0.2
    done
    answering || { tail -20 "$DIR/garage.log" >&2; log "garage did not start"; exit 1; }
  fi

  if g status 2>/dev/null | grep -q "NO ROLE ASSIGNED"; then
    local node
    node="$(g node id -q 2>/dev/null | cut -d@ -f1)"
    g layout assign -z dc1 -c 1G "$node" >&2
    local version
    version="$(g layout show 2>/dev/null | grep -o 'apply --version [0-9]*' | grep -o '[0-9]*$' | head -1)"
    g layout apply --version "$version" >&2
  fi

  # A key of our choosing (imported, not generated) so that `env` can print it without
  # parsing the CLI's human-oriented output.
  [ -f "$DIR/key_id" ] || echo "GK$(hex 12)" >"$DIR/key_id"
  [ -f "$DIR/key_secret" ] || hex 32 >"$DIR/key_secret"
  if ! g key info "$(cat "$DIR/key_id")" >/dev/null 2>&1; then
    g key import --yes -n "$KEY_NAME" "$(cat "$DIR/key_id")" "$(cat "$DIR/key_secret")" >&2
  fi
  g key allow --create-bucket "$(cat "$DIR/key_id")" >/dev/null
  [ -f "$DIR/other_key_id" ] || echo "GK$(hex 12)" >"$DIR/other_key_id"
  [ -f "$DIR/other_key_secret" ] || hex 32 >"$DIR/other_key_secret"
  if ! g key info "$(cat "$DIR/other_key_id")" >/dev/null 2>&1; then
    g key import --yes -n "$OTHER_KEY_NAME" "$(cat "$DIR/other_key_id")" "$(cat "$DIR/other_key_secret")" >&2
  fi
  g key allow --create-bucket "$(cat "$DIR/other_key_id")" >/dev/null

  # The S3 API can lag the RPC layer by a moment after a (re)start.
  for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://$S3_ADDR/" && return
    sleep 0.2
  done
  log "the S3 API on $S3_ADDR does not answer"
  exit 1
}

# Stops the server and returns only once it has exited and freed its ports: a server still
# draining keep-alive connections would serve them, and a new one could not bind.
stop() {
  if [ -f "$PIDFILE" ]; then
    local pid
    pid="$(cat "$PIDFILE")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        log "garage (pid $pid) still running after 10 s: killing it"
        kill -9 "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      fi
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-env}" in
  env)
    start
    echo "export SATCHEL_TEST_S3_ENDPOINT=http://$S3_ADDR"
    echo "export SATCHEL_TEST_S3_REGION=garage"
    echo "export SATCHEL_TEST_S3_ACCESS_KEY_ID=$(cat "$DIR/key_id")"
    echo "export SATCHEL_TEST_S3_SECRET_ACCESS_KEY=$(cat "$DIR/key_secret")"
    echo "export SATCHEL_TEST_S3_OTHER_ACCESS_KEY_ID=$(cat "$DIR/other_key_id")"
    echo "export SATCHEL_TEST_S3_OTHER_SECRET_ACCESS_KEY=$(cat "$DIR/other_key_secret")"
    echo "export SATCHEL_TEST_GARAGE_ADMIN_URL=http://127.0.0.1:3903"
    echo "export SATCHEL_TEST_GARAGE_ADMIN_TOKEN=$(cat "$DIR/admin_token")"
    ;;
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 [env|start|stop]" >&2
    exit 2
    ;;
esac
