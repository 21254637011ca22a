#!/usr/bin/env bash
# A three-node RabbitMQ cluster beside the default broker, for the cluster tests (tests/api/cluster).
#
#   tests/cluster.sh start            nodes up and joined into one cluster (fresh when none runs)
#   tests/cluster.sh fresh            stop, then start a fresh cluster: no queue of earlier runs
#   tests/cluster.sh stop             every node of this cluster stopped, its data removed
#   tests/cluster.sh status           the cluster's status, as RabbitMQ sees it
#   tests/cluster.sh kill N...        kill -9 the nodes (1-3): a crash
#   tests/cluster.sh stop-node N...   stop the nodes gracefully, keeping their data
#   tests/cluster.sh start-node N...  start stopped or killed nodes again on their data, in parallel
#   tests/cluster.sh leader QUEUE     the node (name) leading a quorum queue
#   tests/cluster.sh port N           the AMQP port of node N
#
# The default node (rabbit@localhost on 5672) is never touched: each node here has its own name
# (relayc1..3@localhost), AMQP port (RELAY_CLUSTER_PORT, default 5781..5783), distribution port
# (+20000), data and log directories and RABBITMQ_CONFIG_FILE under RELAY_CLUSTER_DIR (default
# /tmp/whaticket-relay-cluster), and runs as the `rabbitmq` user with its HOME, so its Erlang cookie
# is the default node's and the CLI tools reach every node.
set -euo pipefail

DIR=${RELAY_CLUSTER_DIR:-/tmp/whaticket-relay-cluster}
BASE_PORT=${RELAY_CLUSTER_PORT:-5781}
NODES=(1 2 3)
RMQ_BIN=/usr/lib/rabbitmq/bin
BOOT_TIMEOUT=${RELAY_CLUSTER_BOOT_TIMEOUT:-120}

die() {
  echo "tests/cluster.sh: $*" >&2
  exit 1
}

[ -x "$RMQ_BIN/rabbitmq-server" ] || die "RabbitMQ is not installed ($RMQ_BIN/rabbitmq-server missing): apt-get install -y rabbitmq-server"
id rabbitmq >/dev/null 2>&1 || die "there is no \`rabbitmq\` user (install the Debian package rabbitmq-server)"

# Everything RabbitMQ runs as the rabbitmq user, with its HOME (the Erlang cookie's place).
as_rabbitmq() {
  if [ "$(id -un)" = rabbitmq ]; then
    env HOME=/var/lib/rabbitmq "$@"
  elif [ "$(id -u)" = 0 ]; then
    runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq "$@"
  else
    die "run as root or as the rabbitmq user (the nodes run as rabbitmq and share its Erlang cookie)"
  fi
}

node_name() { echo "relayc$1@localhost"; }
node_port() { echo $((BASE_PORT + $1 - 1)); }
node_dir() { echo "$DIR/n$1"; }
pid_of() { cat "$(node_dir "$1")/pid" 2>/dev/null || true; }

ctl() {
  local n=$1
  shift
  as_rabbitmq "$RMQ_BIN/rabbitmqctl" -q -n "$(node_name "$n")" "$@"
}

running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

configure() {
  local n=$1 d
  d=$(node_dir "$n")
  mkdir -p "$d/mnesia" "$d/log"
  # Debian's /etc/rabbitmq/rabbitmq.conf pins the listener to 5672: each node has its own file.
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(node_port "$n")
cluster_name = whaticket-relay-test
log.file.level = info
log.console = false
EOF
  # No plugins: the management plugin would want port 15672, which the default node may hold.
  echo "[]." >"$d/enabled_plugins"
  # Read instead of Debian's rabbitmq-env.conf, which names the default node.
  cat >"$d/rabbitmq-env.conf" <<EOF
NODENAME=$(node_name "$n")
EOF
  chown -R rabbitmq:rabbitmq "$DIR"
}

launch() {
  local n=$1 d
  d=$(node_dir "$n")
  configure "$n"
  # setsid: the node must outlive the test process that asked for it.
  as_rabbitmq env \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$(node_port "$n")" \
    RABBITMQ_DIST_PORT=$(($(node_port "$n") + 20000)) \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    setsid "$RMQ_BIN/rabbitmq-server" >"$d/log/stdout" 2>&1 </dev/null &
}

await_node() {
  local n=$1 i
  for i in $(seq 1 "$BOOT_TIMEOUT"); do
    if port_open "$(node_port "$n")" && ctl "$n" await_startup --timeout 5 >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  echo "tests/cluster.sh: node $(node_name "$n") did not start within ${BOOT_TIMEOUT}s; its log:" >&2
  tail -n 30 "$(node_dir "$n")/log/stdout" >&2 || true
  return 1
}

# Starts the given nodes at once and waits for all of them.
start_nodes() {
  local n failed=0
  for n in "$@"; do
    running "$n" || launch "$n"
  done
  for n in "$@"; do
    await_node "$n" || failed=1
  done
  [ "$failed" = 0 ] || die "could not start every node"
}

members_running() {
  ctl 1 eval 'length(rabbit_nodes:all_running()).' 2>/dev/null || echo 0
}

cmd_start() {
  local n any=0
  for n in "${NODES[@]}"; do
    running "$n" && any=1
  done
  if [ "$any" = 0 ]; then
    # Nothing of a previous run is reused: a fresh cluster, no queues of old tests.
    rm -rf "$DIR"
    mkdir -p "$DIR"
  fi
  for n in "${NODES[@]}"; do
    if ! running "$n" && port_open "$(node_port "$n")"; then
      die "port $(node_port "$n") is taken by another process; set RELAY_CLUSTER_PORT to a free range"
    fi
  done
  start_nodes "${NODES[@]}"
  for n in 2 3; do
    if [ "$(ctl 1 eval "lists:member('$(node_name "$n")', rabbit_nodes:all()).")" != true ]; then
      # The CLI reports the tables of a node that is still joining as errors: noise, kept in a log.
      local log
      log="$(node_dir "$n")/log/join"
      { ctl "$n" stop_app && ctl "$n" join_cluster "$(node_name 1)" && ctl "$n" start_app; } >"$log" 2>&1 ||
        die "node $(node_name "$n") could not join $(node_name 1): $(tr '\n' ' ' <"$log")"
      await_node "$n"
    fi
  done
  local count
  count=$(members_running)
  [ "$count" = 3 ] || die "the cluster has $count running nodes, not 3: $(ctl 1 cluster_status 2>&1 | tr '\n' ' ')"
  echo "tests/cluster.sh: 3 nodes running, AMQP on 127.0.0.1:$(node_port 1)-$(node_port 3)"
}

cmd_kill() {
  local n pid
  for n in "$@"; do
    pid=$(pid_of "$n")
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  for n in "$@"; do
    for _ in $(seq 1 100); do
      running "$n" || break
      sleep 0.1
    done
    running "$n" && die "node $n survived kill -9"
    # The port closes with the process; wait so a test sees the node as gone.
    for _ in $(seq 1 100); do
      port_open "$(node_port "$n")" || break
      sleep 0.1
    done
  done
}

cmd_stop_node() {
  local n
  for n in "$@"; do
    running "$n" && { ctl "$n" stop >/dev/null 2>&1 || true; } &
  done
  wait
  cmd_kill "$@"
}

cmd_stop() {
  cmd_stop_node "${NODES[@]}"
  rm -rf "$DIR"
}

case "${1:-}" in
  start) cmd_start ;;
  fresh) cmd_stop && cmd_start ;;
  stop) cmd_stop ;;
  status) ctl 1 cluster_status ;;
  kill) shift; cmd_kill "$@" ;;
  stop-node) shift; cmd_stop_node "$@" ;;
  start-node) shift; start_nodes "$@" ;;
  leader)
    for n in "${NODES[@]}"; do
      if running "$n"; then
        ctl "$n" list_queues --no-table-headers name leader | awk -v q="$2" '$1 == q { print $2 }'
        exit 0
      fi
    done
    die "no node is running"
    ;;
  port) node_port "$2" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
