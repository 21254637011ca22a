#!/usr/bin/env bash
# The test command: makes sure the local RabbitMQ runs (starting it when installed) and the
# browser test's node packages are installed, then runs every test. Integration tests need a real
# broker at amqp://guest:guest@127.0.0.1:5672/%2f; the status page's browser test needs Debian's
# chromium and nodejs/npm (`.ci/run` installs all three) and fails, not skips, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

# playwright-core, pinned by tests/browser/package-lock.json.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "tests/run.sh: installing the browser test's node packages (npm ci)"
    (cd tests/browser && npm ci --no-audit --no-fund)
  else
    echo "tests/run.sh: npm is missing, so the browser test will fail:" >&2
    echo "  apt-get install -y chromium nodejs npm   (or run .ci/run)" >&2
  fi
fi

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
