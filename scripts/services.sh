#!/usr/bin/env bash
# `npm run services`: PostgreSQL, Redis and RabbitMQ for OpsDesk on this machine, with the user, password and
# database of docker-compose.yml (opsdesk / opsdesk / opsdesk), which are also OpsDesk's defaults (src/Config.ts).
# Idempotent: what already runs is kept as it is and only what is missing is added (a role, a database, a
# plugin, the broker users), so it is safe to run before every `npm test` (.ci/run does).
#
# Usage: scripts/services.sh [--native | --docker]
#   (default)  --docker when a Docker engine answers (`docker info`), else --native
#   --native   Debian or Ubuntu packages (apt-get, as root or through sudo): installs what is missing, starts
#              what is down, every listener on loopback; creates the role (a superuser, as compose's
#              POSTGRES_USER is) and the database; enables RabbitMQ's management plugin (the tests use its
#              HTTP API where `rabbitmqctl` is missing); creates OpsDesk's broker users (scripts/broker-users.sh)
#   --docker   `docker compose up -d postgres redis rabbitmq` (ports on 127.0.0.1 only), waits until they are
#              healthy, and copies the broker users' passwords the compose step generated into .broker-users/,
#              with an admin.env the tests use to manage their vhosts (the container has no `guest`)
#
# Settings (environment): SERVICES_PG_PORT (5432: the cluster to use or start, `pg_lsclusters`),
# SERVICES_DB_USER / SERVICES_DB_PASSWORD / SERVICES_DB_NAME (opsdesk / opsdesk / opsdesk),
# SERVICES_SKIP (space-separated: postgres, redis, rabbitmq; the ones not to touch).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_port=${SERVICES_PG_PORT:-5432}
db_user=${SERVICES_DB_USER:-opsdesk}
db_password=${SERVICES_DB_PASSWORD:-opsdesk}
db_name=${SERVICES_DB_NAME:-opsdesk}
skip=" ${SERVICES_SKIP:-} "

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] %s\n' "$*" >&2; exit 1; }
wants() { [[ $skip != *" $1 "* ]]; }

wait_for() { # name, command...: up to 60 s
  local name=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then log "$name is up"; return 0; fi
    sleep 0.5
  done
  die "$name did not come up"
}

mode=""
case ${1:-} in
  --native) mode=native ;;
  --docker) mode=docker ;;
  "") if command -v docker >/dev/null && docker info >/dev/null 2>&1; then mode=docker; else mode=native; fi ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option $1 (--native or --docker)" ;;
esac

# ---------------------------------------------------------------------------------------------------- Docker
if [ "$mode" = docker ]; then
  if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
  log "docker: ${compose[*]} up -d postgres redis rabbitmq"
  "${compose[@]}" up -d postgres redis rabbitmq
  healthy() { [ "$(docker inspect -f '{{.State.Health.Status}}' "$("${compose[@]}" ps -q "$1")" 2>/dev/null)" = healthy ]; }
  for service in postgres redis rabbitmq; do wait_for "$service" healthy "$service"; done
  # The passwords of the broker users the compose step made; local env files point at the published port.
  mkdir -p .broker-users && chmod 700 .broker-users
  "${compose[@]}" run --rm --no-deps -T --entrypoint cat broker-users /run/opsdesk/broker/passwords.env \
    >.broker-users/passwords.env.new
  chmod 600 .broker-users/passwords.env.new && mv .broker-users/passwords.env.new .broker-users/passwords.env
  BROKER_ADMIN_USER=opsdesk-admin bash scripts/broker-users.sh --env-files-only
  log "ready: DATABASE_URL=postgres://$db_user:***@127.0.0.1:5432/$db_name, Redis 127.0.0.1:6379, RabbitMQ 127.0.0.1:5672 (management http://127.0.0.1:15672 as opsdesk-admin)"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------- native
if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
as_user() { # user, command...
  if [ "$(id -u)" = 0 ]; then runuser -u "$1" -- "${@:2}"; else sudo -u "$1" -- "${@:2}"; fi
}
apt_updated=0
apt_install() {
  [ -f /etc/debian_version ] || die "$* missing and this is not Debian or Ubuntu: install it yourself, or use Docker (README)"
  if [ "$apt_updated" = 0 ]; then "${as_root[@]}" apt-get update -qq; apt_updated=1; fi
  log "installing $*"
  # --force-confold: keep the loopback-only configuration written below, should the package ship its own.
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "$@" >/dev/null
}
systemd=0
if [ -d /run/systemd/system ]; then systemd=1; fi

# --- PostgreSQL (Debian's clusters listen on localhost only unless told otherwise).
pg_up() { pg_isready -h 127.0.0.1 -p "$pg_port" -q; }
if wants postgres; then
  if ! command -v pg_lsclusters >/dev/null; then apt_install postgresql; fi
  if ! pg_up; then
    read -r version cluster _ < <(pg_lsclusters -h | awk -v p="$pg_port" '$3 == p { print $1, $2 }') || true
    if [ -z "${version:-}" ]; then
      [ "$pg_port" = 5432 ] || die "no PostgreSQL cluster on port $pg_port (pg_lsclusters)"
      version=$(ls /usr/lib/postgresql | sort -n | tail -1) cluster=main
      log "creating PostgreSQL cluster $version/$cluster"
      "${as_root[@]}" pg_createcluster "$version" "$cluster" -p "$pg_port" >/dev/null
    fi
    log "starting PostgreSQL $version/$cluster"
    if [ "$systemd" = 1 ]; then
      "${as_root[@]}" systemctl start "postgresql@$version-$cluster"
    else
      "${as_root[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
    fi
  fi
  wait_for PostgreSQL pg_up
  # As the server's superuser over its socket (Debian's peer authentication); names and password as literals
  # quoted by format(), so any value works.
  as_user postgres psql -X -q -p "$pg_port" -d postgres -v ON_ERROR_STOP=1 \
    -v user="$db_user" -v password="$db_password" -v db="$db_name" <<'SQL'
-- Compose's POSTGRES_USER is a superuser; the tests create and drop their own databases with it.
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  if ! PGPASSWORD=$db_password psql -X -q -h 127.0.0.1 -p "$pg_port" -U "$db_user" -d "$db_name" -c 'SELECT 1' >/dev/null 2>&1; then
    die "role $db_user exists but cannot log in over TCP with the password given (an older role, or pg_hba.conf): fix it, or set DATABASE_URL to what works"
  fi
  log "PostgreSQL: role $db_user and database $db_name (DATABASE_URL=postgres://$db_user:***@127.0.0.1:$pg_port/$db_name)"
fi

# --- Redis
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
if wants redis && ! redis_up; then
  if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
  if ! redis_up; then
    log "starting Redis"
    if [ "$systemd" = 1 ]; then
      "${as_root[@]}" systemctl start redis-server
    else
      "${as_root[@]}" mkdir -p /var/lib/redis /var/log/redis
      # A cache: nothing to persist.
      "${as_root[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/services.log
    fi
  fi
fi
if wants redis; then wait_for Redis redis_up; fi

# --- RabbitMQ
rabbit_up() { "${as_root[@]}" rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; }
if wants rabbitmq; then
  if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
    # Loopback only, written before the package starts the node for the first time: AMQP, the management
    # UI, and Erlang's distribution (epmd, 25672) that rabbitmqctl uses.
    "${as_root[@]}" mkdir -p /etc/rabbitmq
    if [ ! -f /etc/rabbitmq/rabbitmq.conf ]; then
      printf 'listeners.tcp.local = 127.0.0.1:5672\nmanagement.tcp.ip = 127.0.0.1\n' |
        "${as_root[@]}" tee /etc/rabbitmq/rabbitmq.conf >/dev/null
    fi
    if [ ! -f /etc/rabbitmq/rabbitmq-env.conf ]; then
      printf 'NODENAME=rabbit@localhost\nERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n' |
        "${as_root[@]}" tee /etc/rabbitmq/rabbitmq-env.conf >/dev/null
    fi
    apt_install rabbitmq-server
  fi
  if ! rabbit_up; then
    log "starting RabbitMQ"
    if [ "$systemd" = 1 ]; then
      "${as_root[@]}" systemctl start rabbitmq-server
    else
      # The default 1,024 descriptors crash queues under many connections (the test suite makes many).
      "${as_root[@]}" bash -c 'ulimit -n 65536 2>/dev/null || true; rabbitmq-server -detached'
    fi
  fi
  wait_for RabbitMQ rabbit_up
  # The management plugin: the UI, and the HTTP API the tests manage their vhosts with where rabbitmqctl is
  # missing. Loopback only: at the next boot from the configuration, on this boot from the application's
  # environment, set before the plugin starts.
  if ! grep -qs '^management\.tcp\.' /etc/rabbitmq/rabbitmq.conf; then
    printf 'management.tcp.ip = 127.0.0.1\n' | "${as_root[@]}" tee -a /etc/rabbitmq/rabbitmq.conf >/dev/null
  fi
  if ! "${as_root[@]}" rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
    log "enabling the RabbitMQ management plugin (127.0.0.1:15672)"
    "${as_root[@]}" rabbitmqctl -q eval \
      'application:load(rabbitmq_management), application:set_env(rabbitmq_management, tcp_config, [{ip, "127.0.0.1"}, {port, 15672}]).' >/dev/null
    "${as_root[@]}" rabbitmq-plugins -q enable rabbitmq_management >/dev/null
  fi
  mgmt_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15672/api/overview)" = 401 ]; }
  wait_for "RabbitMQ management API" mgmt_up
  "${as_root[@]}" env BROKER_USERS_DIR="$PWD/.broker-users" bash scripts/broker-users.sh
  # The files belong to whoever runs the tests, not to root through sudo.
  if [ "$(id -u)" != 0 ]; then "${as_root[@]}" chown -R "$(id -u):$(id -g)" .broker-users; fi
fi

log "ready"
