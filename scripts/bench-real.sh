#!/usr/bin/env bash
# satchel on real infrastructure, measured (a benchmark, never a test):
#   1. a 1 GiB upload through `satchel serve` into Garage against a direct multipart PUT of the
#      same file with the same SDK, part size, concurrency and payload signing
#      (bench/examples/s3_put.rs), alternated, with the API node's peak RSS and CPU time: once
#      with signed bodies (s3_payload_signing = always, the default over plain http) and once
#      with unsigned bodies carrying a CRC32C (never);
#   2. image jobs per second through RabbitMQ (publisher confirms, acks after the catalog) with
#      1 and then 2 `satchel worker` processes draining a backlog of small photos.
#
#   scripts/bench-real.sh [--runs N] [--jobs M]     (builds the release binaries first;
#                                                    --jobs 0 measures the upload only)
#
# Starts Garage, PostgreSQL and RabbitMQ as the test scripts do. Every figure is printed and
# written to target/bench-real/results.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

runs=3
jobs=200
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--jobs M]" >&2; exit 2 ;;
  esac
done

out=target/bench-real
mkdir -p "$out"
results="$out/results.txt"
: >"$results"
say() { printf '%s\n' "$*" | tee -a "$results"; }

cargo build --release -p satchel  # satchel and the satchel-transform its workers run
cargo build --release -p satchel-bench --example s3_put
bin=target/release/satchel
./scripts/start-postgres.sh >/dev/null
./scripts/start-rabbitmq.sh >/dev/null
eval "$(./scripts/garage.sh env | grep '^export ')"

db="satchel_bench_$$"
psql -h 127.0.0.1 -U postgres -qAtc "CREATE DATABASE $db"
prefix="bench$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

export SATCHEL_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export SATCHEL_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/%2f'
export SATCHEL_AMQP_PREFIX="$prefix"
export SATCHEL_S3_ENDPOINT="$SATCHEL_TEST_S3_ENDPOINT" SATCHEL_S3_REGION="$SATCHEL_TEST_S3_REGION"
export SATCHEL_S3_ACCESS_KEY_ID="$SATCHEL_TEST_S3_ACCESS_KEY_ID"
export SATCHEL_S3_SECRET_ACCESS_KEY="$SATCHEL_TEST_S3_SECRET_ACCESS_KEY"
export SATCHEL_S3_BUCKET_PREFIX="$prefix-" SATCHEL_S3_PATH_STYLE=true
export SATCHEL_API_TOKENS=bench-token SATCHEL_LINK_SECRET=bench-link-secret-0123456789abcdef SATCHEL_LOG=warn
export SATCHEL_MAX_UPLOAD_BYTES=$((2 << 30))
token=bench-token

# Starts a satchel process on a free port; sets $port and appends its pid to pids.
start() {
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  local dir
  dir="$(mktemp -d)"
  SATCHEL_LISTEN="127.0.0.1:$port" SATCHEL_DATA_DIR="$dir" "$bin" "$@" &
  pids+=("$!")
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "satchel $* did not become ready" >&2
  exit 1
}
hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# --- 1. 1 GiB upload -----------------------------------------------------------------------
file="$out/upload-1GiB.bin"
if [ ! -s "$file" ] || [ "$(stat -c %s "$file")" -ne $((1 << 30)) ]; then
  head -c $((1 << 30)) /dev/urandom >"$file"
fi
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# One measurement with SATCHEL_S3_PAYLOAD_SIGNING=$1, which both satchel and the direct PUT
# follow, on a satchel process of its own.
upload_round() {
  export SATCHEL_S3_PAYLOAD_SIGNING="$1"
  start serve
  local api_pid="${pids[-1]}" api="http://127.0.0.1:$port" direct=() through=() run line seconds
  curl -sf -X PUT -H "authorization: Bearer $token" "$api/v1/chats/bench/members/u1"
  say "== 1 GiB upload into Garage, payload signing $1, $runs runs each, alternated (MiB/s)"
  for run in $(seq 1 "$runs"); do
    line="$(target/release/examples/s3_put "$file")"
    direct+=("$(echo "$line" | sed -E 's/.*: ([0-9.]+) MiB\/s/\1/')")
    seconds="$(curl -sf -o /dev/null -w '%{time_total}' -X POST -T "$file" \
      -H "authorization: Bearer $token" -H 'content-type: application/octet-stream' \
      "$api/v1/chats/bench/media?user=u1&filename=$1-run$run.bin")"
    through+=("$(python3 -c "print(f'{1024 / $seconds:.1f}')")")
    say "run $run: direct PUT ${direct[-1]} MiB/s, through satchel ${through[-1]} MiB/s"
  done
  local d t cpu
  d="$(median "${direct[@]}")"
  t="$(median "${through[@]}")"
  say "median: direct ${d} MiB/s, through satchel ${t} MiB/s, ratio $(python3 -c "print(f'{$t / $d:.2f}')")"
  say "API node peak RSS (VmHWM): $(hwm_mib "$api_pid") MiB"
  cpu="$(awk '{print ($14 + $15) / 100}' "/proc/$api_pid/stat")"
  say "API node CPU time for the $runs uploads: $cpu s ($(python3 -c "print(f'{$cpu / $runs:.2f}')") s per GiB)"
  kill "$api_pid"
  wait "$api_pid" 2>/dev/null || true
  unset 'pids[-1]'
  unset SATCHEL_S3_PAYLOAD_SIGNING
}
upload_round always
upload_round never

# --- 2. jobs per second ----------------------------------------------------------------------
photo=fixtures/photo.jpg
jobs_done() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk '/^satchel_jobs_total\{/ && /outcome="ready"/ {s += $NF} END {print s + 0}'
}
backlog() {
  local chat="$1"
  curl -sf -X PUT -H "authorization: Bearer $token" "$api/v1/chats/$chat/members/u1"
  for i in $(seq 1 "$jobs"); do
    curl -sf -o /dev/null -X POST --data-binary @"$photo" -H "authorization: Bearer $token" \
      "$api/v1/chats/$chat/media?user=u1&filename=$i.jpg"
  done
}
drain() {
  local workers="$1" ports=() started
  started="$(date +%s.%N)"
  for _ in $(seq 1 "$workers"); do
    start worker --pools image
    ports+=("$port")
  done
  while :; do
    local total=0 p
    for p in "${ports[@]}"; do total=$((total + $(jobs_done "$p"))); done
    [ "$total" -ge "$jobs" ] && break
    sleep 0.05
  done
  local seconds
  seconds="$(python3 -c "print($(date +%s.%N) - $started)")"
  say "$workers worker process(es): $jobs image jobs in $(printf '%.2f' "$seconds") s (start-up included): $(python3 -c "print(f'{$jobs / $seconds:.1f}')") jobs/s"
  for _ in $(seq 1 "$workers"); do
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
  done
}
if [ "$jobs" -eq 0 ]; then
  exit 0
fi
start serve
api="http://127.0.0.1:$port"
say "== image jobs of a ${photo##*/} ($(stat -c %s "$photo") bytes) through RabbitMQ, backlog of $jobs"
backlog one
drain 1
backlog two
drain 2
say "results in $results"
