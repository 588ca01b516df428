#!/usr/bin/env bash
# Makes sure Redis answers on 127.0.0.1:6379 for the rate-limit tests (Debian 12, as root):
# installs it if missing, starts it (in memory only, nothing on disk) if it is down. Each test
# uses a key prefix of its own.
set -euo pipefail

say() { printf '==> %s\n' "$*"; }

if ! command -v redis-server >/dev/null; then
  say "installing redis-server"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/satchel-tests.log
  timeout 30 bash -c 'until redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; do sleep 0.2; done'
fi
say "Redis is up"
