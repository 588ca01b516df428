#!/usr/bin/env bash
# Makes sure RabbitMQ answers on 127.0.0.1:5672 (guest/guest) for the real-backend tests
# (Debian 12, as root): installs it if missing, starts the node if it is down, starts the
# broker application if a test stopped it. (Each test deletes its own queues.)
set -euo pipefail

say() { printf '==> %s\n' "$*"; }

if ! command -v rabbitmq-server >/dev/null; then
  say "installing rabbitmq-server"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  if ! rabbitmqctl -q ping >/dev/null 2>&1; then
    say "starting RabbitMQ"
    rabbitmq-server -detached
  fi
  timeout 90 bash -c 'until rabbitmqctl -q ping >/dev/null 2>&1; do sleep 1; done'
fi
# A node whose application was stopped (the fault tests do) answers ping but not AMQP.
rabbitmqctl -q start_app >/dev/null 2>&1 || true
rabbitmqctl -q await_startup --timeout 90

say "RabbitMQ is up"
