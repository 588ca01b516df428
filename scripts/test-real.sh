#!/usr/bin/env bash
# The API suite against real services: S3 (a single-node Garage), PostgreSQL and RabbitMQ.
# A service that cannot be started or reached fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH="$HOME/.cargo/bin:$PATH"

./scripts/start-postgres.sh
if ! rabbitmqctl status >/dev/null 2>&1; then
  rabbitmq-server -detached
  timeout 60 bash -c 'until rabbitmqctl status >/dev/null 2>&1; do sleep 1; done'
fi
eval "$(./scripts/garage.sh env | grep '^export ')"
export SATCHEL_TEST_BACKEND=real
export SATCHEL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
export SATCHEL_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/%2f'
exec cargo nextest run -p satchel --test api --no-fail-fast
