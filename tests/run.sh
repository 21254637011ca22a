#!/usr/bin/env bash
# The test command: makes sure the local RabbitMQ runs (starting it when installed), then runs
# every test. Integration tests need a real broker at amqp://guest:guest@127.0.0.1:5672/%2f.
set -euo pipefail
cd "$(dirname "$0")/.."

broker_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! broker_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "tests/run.sh: starting RabbitMQ (rabbitmq-server -detached)"
    rabbitmq-server -detached || true
  else
    echo "tests/run.sh: RabbitMQ is not running and not installed." >&2
    echo "  install it: apt-get install -y rabbitmq-server   (then rerun)" >&2
    exit 1
  fi
  for _ in $(seq 1 90); do
    broker_up && break
    sleep 1
  done
  if ! broker_up; then
    echo "tests/run.sh: RabbitMQ did not come up on 127.0.0.1:5672 within 90 s" >&2
    exit 1
  fi
  # The port opens before the broker finishes booting; wait for it to be fully up.
  command -v rabbitmqctl >/dev/null 2>&1 && timeout 60 rabbitmqctl -q await_startup || true
fi

# The cluster tests start three more nodes (tests/cluster.sh); stop them however the tests end.
trap 'tests/cluster.sh stop >/dev/null 2>&1 || true' EXIT
cargo test --locked "$@"
