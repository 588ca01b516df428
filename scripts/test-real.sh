#!/usr/bin/env bash
# The API suite against real services: S3 (a single-node Garage), PostgreSQL and RabbitMQ,
# each started (and installed) here if it is not running. A service that cannot be started
# or reached fails the run; nothing is skipped.
#
# Two passes: every test but the cluster ones, in parallel; then the cluster fault tests one
# at a time, since they restart RabbitMQ and stop Garage under whatever else is running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -d "$HOME/.cargo/bin" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

./scripts/start-postgres.sh
./scripts/start-rabbitmq.sh
./scripts/start-redis.sh
export SATCHEL_TEST_REDIS_URL=redis://127.0.0.1:6379/0
eval "$(./scripts/garage.sh env | grep '^export ')"
export SATCHEL_TEST_BACKEND=real
export SATCHEL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
export SATCHEL_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/%2f'

# --workspace with a filter, not `-p satchel --test api`: the package alone resolves features
# differently and would rebuild much of what the embedded pass just built.
# The decoder mutation fuzz touches no backend (it runs `satchel transform` alone): once, in
# the embedded pass, is enough.
status=0
cargo nextest run --workspace --no-fail-fast \
  -E 'binary(api) & not test(/^cluster::/) & not test(/^hostile::mutations::/)' || status=1
cargo nextest run --workspace --no-fail-fast -j 1 -E 'binary(api) & test(/^cluster::/)' || status=1
exit "$status"
