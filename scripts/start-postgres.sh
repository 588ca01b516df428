#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 for the real-backend tests (Debian 12, as
# root): installs it if missing, trusts connections from 127.0.0.1 (a test machine, never a
# server), starts the cluster, creates the `test` database, and drops the per-test
# `satchel_t_*` databases that an interrupted run left behind.
#
# Called by scripts/test-all.sh before the run with SATCHEL_TEST_BACKEND=real.
set -euo pipefail

say() { printf '==> %s\n' "$*"; }
sql() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAtc "$1"; }

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  say "installing postgresql"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
fi
version="$(ls /etc/postgresql | sort -V | tail -n1)"
hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
  say "trusting connections from 127.0.0.1 in $hba"
  # The first matching line wins: put this one ahead of the packaged password rules.
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
fi
if ! pg_isready -h 127.0.0.1 -q; then
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
for _ in $(seq 30); do
  pg_isready -h 127.0.0.1 -q && break
  sleep 1
done
pg_isready -h 127.0.0.1

if [ -z "$(sql "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
  sql "CREATE DATABASE test"
fi
for db in $(sql "SELECT datname FROM pg_database WHERE datname LIKE 'satchel\_t\_%'"); do
  sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
done
