#!/usr/bin/env bash
# A three-node RabbitMQ cluster on loopback ports of its own, for running OpsDesk against a cluster
# (README, "Running against a RabbitMQ cluster") and for the cluster test and `npm run chaos:cluster`.
#
# Usage: scripts/cluster.sh start | stop | status | kill N | revive N | url [VHOST] | leader QUEUE [VHOST] | ctl ARGS
#        | node-ctl N ARGS
#   start      starts the nodes that are not running (idempotent); the first start forms the cluster,
#              creates OpsDesk's broker users (scripts/broker-users.sh) on vhost "/", and prints AMQP_URL
#   stop       stops every node and deletes the data directory (the cluster is gone)
#   status     each node: running or down, and the cluster's view of itself
#   kill N     kill -9 of node N (1..3): a crash, not a shutdown
#   revive N   starts node N again after a kill; it rejoins the cluster
#   url        the comma-separated AMQP_URL of the three nodes as guest (for VHOST, default "/")
#   leader Q   the node (1..3) that leads quorum queue Q on VHOST (default "/")
#   ctl ARGS   rabbitmqctl ARGS on the first running node (add_vhost, list_queues, ...)
#   node-ctl N ARGS  rabbitmqctl ARGS on node N, running or not (stop_app, start_app, await_startup)
#
# Nodes: rabbit-od1@localhost .. rabbit-od3@localhost, AMQP on 127.0.0.1:5681..5683, Erlang distribution
# on 127.0.0.1:25681..25683. Everything lives under $CLUSTER_DIR (default .cluster/ beside scripts/,
# git-ignored): per node its own config file (listeners on 127.0.0.1 only), env file, plugins file,
# database and logs, and the cluster's own Erlang cookie ($CLUSTER_DIR/home/.erlang.cookie).
#
# The machine's own broker (rabbit@localhost on 5672) is never touched: its config and env files under
# /etc/rabbitmq are not read (each node gets RABBITMQ_CONFIG_FILE and RABBITMQ_CONF_ENV_FILE of its
# own), its cookie in /var/lib/rabbitmq stays its own (the nodes and the CLI calls here run with
# HOME=$CLUSTER_DIR/home), and every CLI call names its node (-n). The nodes share the machine's epmd.
# Settings: CLUSTER_DIR, CLUSTER_AMQP_BASE_PORT (5680: node N on base+N), CLUSTER_DIST_BASE_PORT (25680),
# CLUSTER_SIZE (3; 1 gives a lone node, which `npm run chaos` stops and starts instead of the machine's broker),
# CLUSTER_NAME (od: nodes rabbit-<name>N@localhost; give another set of nodes another name, ports and dir),
# RABBITMQ_BIN_DIR (/usr/lib/rabbitmq/bin: the server's own scripts, not the su-ing wrappers in /usr/sbin).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${CLUSTER_DIR:-$here/../.cluster}
amqp_base=${CLUSTER_AMQP_BASE_PORT:-5680}
dist_base=${CLUSTER_DIST_BASE_PORT:-25680}
bin=${RABBITMQ_BIN_DIR:-/usr/lib/rabbitmq/bin}
size=${CLUSTER_SIZE:-3}
name=${CLUSTER_NAME:-od}
mapfile -t nodes < <(seq 1 "$size")

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$bin/rabbitmq-server" ] || die "RabbitMQ server binaries not found in $bin (set RABBITMQ_BIN_DIR)"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
home=$dir/home

node_name() { printf 'rabbit-%s%s@localhost' "$name" "$1"; }
node_dir() { printf '%s/%s%s' "$dir" "$name" "$1"; }
amqp_port() { printf '%s' $((amqp_base + $1)); }

# The environment every rabbitmq-server and CLI call of node N runs with.
node_env() {
  local n=$1 d
  d=$(node_dir "$n")
  printf '%s\n' \
    "HOME=$home" \
    "RABBITMQ_NODENAME=$(node_name "$n")" \
    "RABBITMQ_USE_LONGNAME=false" \
    "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf" \
    "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf" \
    "RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config" \
    "RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins" \
    "RABBITMQ_MNESIA_BASE=$d/mnesia" \
    "RABBITMQ_LOG_BASE=$d/log" \
    "RABBITMQ_PID_FILE=$d/rabbitmq.pid" \
    "RABBITMQ_DIST_PORT=$((dist_base + n))" \
    "ERL_EPMD_ADDRESS=127.0.0.1" \
    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

# rabbitmqctl (or another CLI) against node N, with the cluster's cookie.
ctl_on() { # N tool args...
  local n=$1 tool=$2
  shift 2
  (
    while IFS= read -r kv; do export "${kv?}"; done < <(node_env "$n")
    exec "$bin/$tool" -n "$(node_name "$n")" "$@"
  )
}
ctl() { local n=$1; shift; ctl_on "$n" rabbitmqctl "$@"; }

prepare() {
  umask 077
  mkdir -p "$home"
  if [ ! -s "$home/.erlang.cookie" ]; then
    od -An -tx1 -N20 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' >"$home/.erlang.cookie"
  fi
  chmod 400 "$home/.erlang.cookie"
  umask 022
  local n d
  for n in "${nodes[@]}"; do
    d=$(node_dir "$n")
    mkdir -p "$d/mnesia" "$d/log"
    # Empty env file: /etc/rabbitmq/rabbitmq-env.conf names the machine's node.
    : >"$d/rabbitmq-env.conf"
    printf '[].\n' >"$d/enabled_plugins"
    printf '[].\n' >"$d/advanced.config"
    {
      echo "# Node $n of the OpsDesk test cluster (scripts/cluster.sh). Loopback only."
      echo "listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")"
      echo "cluster_formation.peer_discovery_backend = classic_config"
      for m in "${nodes[@]}"; do echo "cluster_formation.classic_config.nodes.$m = $(node_name "$m")"; done
      # A crashed node is noticed by its peers through the closed distribution connection at once;
      # this bounds the wait when a node hangs instead.
      echo "net_ticktime = 10"
      # Node 1 forms the cluster alone at its first boot: a short search for peers that are not there yet.
      echo "cluster_formation.discovery_retry_limit = 3"
      echo "cluster_formation.discovery_retry_interval = 200"
      # Memory and disk alarms at their defaults would block publishers for the whole machine's sake.
      echo "vm_memory_high_watermark.absolute = 1GB"
      echo "disk_free_limit.absolute = 50MB"
    } >"$d/rabbitmq.conf"
  done
}

pid_of() { # the node's beam pid, if it runs
  local f
  f="$(node_dir "$1")/rabbitmq.pid"
  [ -s "$f" ] || return 1
  local pid
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Running = its process is alive and its AMQP listener (opened at the end of the boot) accepts.
running() { pid_of "$1" >/dev/null && port_open "$(amqp_port "$1")"; }

start_node() {
  local n=$1 port
  port=$(amqp_port "$n")
  if pid_of "$n" >/dev/null; then return 0; fi
  port_open "$port" && die "port $port is taken by another process: set CLUSTER_AMQP_BASE_PORT"
  log "starting $(node_name "$n") on 127.0.0.1:$port"
  rm -f "$(node_dir "$n")/rabbitmq.pid"
  (
    while IFS= read -r kv; do export "${kv?}"; done < <(node_env "$n")
    # Many connections per test: the default 1024 descriptors are too few for a broker.
    ulimit -n 65536 2>/dev/null || true
    cd "$(node_dir "$n")"
    setsid "$bin/rabbitmq-server" >"$(node_dir "$n")/log/console.log" 2>&1 </dev/null &
    echo $! >"$(node_dir "$n")/launcher.pid"
  )
}

await_node() { # up to 180 s for the node's AMQP listener
  local n=$1 launcher
  launcher=$(cat "$(node_dir "$n")/launcher.pid" 2>/dev/null || echo 0)
  for _ in $(seq 1 900); do
    if port_open "$(amqp_port "$n")"; then return 0; fi
    if ! pid_of "$n" >/dev/null && ! kill -0 "$launcher" 2>/dev/null; then break; fi
    sleep 0.2
  done
  tail -n 30 "$(node_dir "$n")/log/console.log" >&2 || true
  die "$(node_name "$n") did not start (logs in $(node_dir "$n")/log)"
}

users() {
  # OpsDesk's per-process users on the cluster (definitions are cluster-wide): scripts/broker-users.sh's
  # own logic, imported through node 1, with the passwords the machine's broker has (.broker-users/
  # passwords.env) when there are some; each process's env file, listing the three nodes in AMQP_URL,
  # goes to $CLUSTER_DIR/broker-users/.
  local hosts="" main_dir=${BROKER_USERS_DIR:-$here/../.broker-users}
  for n in "${nodes[@]}"; do hosts+="${hosts:+,}127.0.0.1:$(amqp_port "$n")"; done
  (
    if [ -f "$main_dir/passwords.env" ]; then set -a; . "$main_dir/passwords.env"; set +a; fi
    BROKER_USERS_DIR=$dir/broker-users BROKER_USERS_AMQP_HOST=$hosts \
      bash "$here/broker-users.sh" --print / | ctl 1 -q import_definitions >/dev/null
  )
  log "broker users opsdesk-api, opsdesk-worker, opsdesk-ops on vhost /; AMQP_URL per process in $dir/broker-users/{api,worker,ops}.env"
}

url() {
  local vhost=${1:-/} out="" enc
  enc=$(node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$vhost")
  for n in "${nodes[@]}"; do out+="${out:+,}amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/$enc"; done
  printf '%s\n' "$out"
}

cmd=${1:-}
case $cmd in
  start)
    prepare
    first=1
    [ -d "$(node_dir 1)/mnesia/$(node_name 1)" ] && first=0
    if [ "$first" = 1 ]; then
      # Node 1 first: the others find it through classic_config and join its cluster.
      start_node 1
      await_node 1
      for n in "${nodes[@]:1}"; do start_node "$n"; done
      for n in "${nodes[@]:1}"; do await_node "$n"; done
    else
      # A cluster that existed: its nodes wait for each other's tables at boot, so all start at once.
      for n in "${nodes[@]}"; do start_node "$n"; done
      for n in "${nodes[@]}"; do await_node "$n"; done
    fi
    members=$(ctl 1 -q cluster_status --formatter json | node -e '
      let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
        const c = JSON.parse(s); process.stdout.write(String((c.running_nodes ?? []).length)) })')
    [ "$members" = "$size" ] || die "the cluster has $members running node(s), not $size: see scripts/cluster.sh status"
    if [ "$first" = 1 ] || [ "${CLUSTER_USERS:-}" = 1 ]; then users; fi
    log "$size node(s) running. AMQP_URL=$(url)"
    ;;
  stop)
    # SIGTERM is a clean shutdown for the Erlang VM; the data goes anyway, so no CLI round trips.
    pids=()
    for n in "${nodes[@]}"; do
      if pid=$(pid_of "$n"); then log "stopping $(node_name "$n")"; kill -TERM "$pid"; pids+=("$pid"); fi
    done
    for _ in $(seq 1 150); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$dir"
    log "stopped; $dir removed"
    ;;
  status)
    for n in "${nodes[@]}"; do
      if running "$n"; then state="running (pid $(pid_of "$n"))"; elif pid_of "$n" >/dev/null; then state="starting"; else state=down; fi
      printf '%s  127.0.0.1:%s  %s\n' "$(node_name "$n")" "$(amqp_port "$n")" "$state"
    done
    for n in "${nodes[@]}"; do
      if running "$n"; then
        ctl "$n" -q cluster_status --formatter json 2>/dev/null | node -e '
          let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
            const c = JSON.parse(s)
            console.log(`cluster: ${(c.disk_nodes ?? []).length} member(s), running: ${(c.running_nodes ?? []).join(" ")}`)
          })'
        break
      fi
    done
    ;;
  kill)
    n=${2:?kill needs a node number (1..$size)}
    pid=$(pid_of "$n") || die "$(node_name "$n") is not running"
    kill -9 "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "killed $(node_name "$n") (pid $pid)"
    ;;
  revive)
    n=${2:?revive needs a node number (1..$size)}
    prepare
    start_node "$n"
    await_node "$n"
    log "$(node_name "$n") is back"
    ;;
  url) url "${2:-/}" ;;
  node-ctl)
    n=${2:?node-ctl needs a node number (1..$size)}
    shift 2
    ctl "$n" "$@"
    ;;
  ctl)
    shift
    for n in "${nodes[@]}"; do
      if running "$n"; then ctl "$n" "$@"; exit $?; fi
    done
    die "no node is running"
    ;;
  leader)
    queue=${2:?leader needs a queue name} vhost=${3:-/}
    for n in "${nodes[@]}"; do
      running "$n" || continue
      leader=$(ctl "$n" -q list_queues -p "$vhost" name leader --no-table-headers 2>/dev/null |
        awk -v q="$queue" '$1 == q { print $2 }')
      case $leader in "rabbit-$name"?@*) leader=${leader#"rabbit-$name"}; printf '%s\n' "${leader%%@*}"; exit 0 ;; esac
    done
    die "no leader found for $queue on vhost $vhost"
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; [ -n "$cmd" ] && exit 2 || exit 0 ;;
esac
