#!/usr/bin/env bash
# A newcomer's first run, on a PostgreSQL that has no role or database for OpsDesk yet: a second cluster made with
# `pg_createcluster` on its own port (5439), with Debian's default authentication (passwords over TCP). It runs the
# README's commands against it: `npm run services` (pointed at that cluster), the migrations, the API, then a
# login and a ticket over HTTP; and checks the one-line hints before the role exists and for a wrong password.
# Everything it makes is removed at the end (the cluster, the vhost, the Redis keys); the main cluster is not
# touched. Needs root (or sudo), the PostgreSQL server packages, and Redis and RabbitMQ running (services.sh
# starts them otherwise). Run by hand (README, Run it); it prints what it checked and exits non-zero on the first
# failure.
#
# Settings (environment): NEWCOMER_PG_PORT (5439), NEWCOMER_BUILD=0 to use dist/ as it is (default: build it).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${NEWCOMER_PG_PORT:-5439}
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
cluster=opsdesk_newcomer
vhost=opsdesk_newcomer_$$
prefix="opsdesk-newcomer:$$:"
work=$(mktemp -d)
api_pid=""
if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi

log() { printf '[newcomer] %s\n' "$*"; }
fail() { printf '[newcomer] FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true; fi
  "${as_root[@]}" pg_dropcluster --stop "$version" "$cluster" 2>/dev/null || true
  "${as_root[@]}" rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 --scan --pattern "${prefix}*" | xargs -r redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if pg_lsclusters -h | awk -v p="$port" '$3 == p { found = 1 } END { exit !found }'; then
  fail "a cluster already uses port $port (pg_lsclusters): set NEWCOMER_PG_PORT"
fi
start=$(date +%s)
log "cluster $version/$cluster on port $port (no opsdesk role, no opsdesk database)"
"${as_root[@]}" pg_createcluster "$version" "$cluster" -p "$port" --start >/dev/null

url="postgres://opsdesk:opsdesk@127.0.0.1:$port/opsdesk"
if [ "${NEWCOMER_BUILD:-1}" = 1 ]; then log "npm run build"; npm run -s build >/dev/null; fi

# 1. Before `npm run services`: the defaults' role does not exist here. One line that names DATABASE_URL.
if DATABASE_URL=$url node dist/migrate.mjs >"$work/norole.log" 2>&1; then fail "migrate succeeded without a role"; fi
grep -q 'DatabaseUnavailable: .*DATABASE_URL' "$work/norole.log" || fail "no hint without a role: $(cat "$work/norole.log")"
[ "$(grep -c . "$work/norole.log")" -le 2 ] || fail "the hint is not one line: $(cat "$work/norole.log")"
log "no role: $(grep -o 'DatabaseUnavailable: .*' "$work/norole.log")"

# 2. `npm run services`, pointed at this cluster.
log "npm run services (SERVICES_PG_PORT=$port)"
SERVICES_PG_PORT=$port bash scripts/services.sh --native >"$work/services.log" 2>&1 || fail "services: $(cat "$work/services.log")"
SERVICES_PG_PORT=$port bash scripts/services.sh --native >"$work/services2.log" 2>&1 || fail "services, run again: $(cat "$work/services2.log")"
log "services: role and database made, and a second run changed nothing"

# 3. A wrong password: its own hint.
if DATABASE_URL=postgres://opsdesk:wrong@127.0.0.1:$port/opsdesk node dist/migrate.mjs >"$work/password.log" 2>&1; then
  fail "migrate succeeded with a wrong password"
fi
grep -q 'refused the password of "opsdesk".*DATABASE_URL' "$work/password.log" || fail "no password hint: $(cat "$work/password.log")"
log "wrong password: $(grep -o 'DatabaseUnavailable: .*' "$work/password.log")"

# 4. A database that does not exist yet is created by the migrator.
DATABASE_URL=postgres://opsdesk:opsdesk@127.0.0.1:$port/opsdesk_created node dist/migrate.mjs >"$work/create.log" 2>&1 ||
  fail "migrate on a missing database: $(cat "$work/create.log")"
grep -q 'Created database "opsdesk_created"' "$work/create.log" || fail "no database created: $(cat "$work/create.log")"
log "missing database: created by the migrator"

# 5. The migrations and the API with the defaults (DATABASE_URL unset but for the port), and one request.
"${as_root[@]}" rabbitmqctl -q add_vhost "$vhost" >/dev/null
"${as_root[@]}" rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
api_port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
env -u JWT_SECRET DATABASE_URL=$url AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost" PORT=$api_port \
  LOGIN_THROTTLE_PREFIX="$prefix" node dist/migrate.mjs >"$work/migrate.log" 2>&1 || fail "migrate: $(cat "$work/migrate.log")"
env -u JWT_SECRET DATABASE_URL=$url AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost" PORT=$api_port \
  LOGIN_THROTTLE_PREFIX="$prefix" LOG_FORMAT=logfmt node dist/api.mjs >"$work/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 1 240); do
  if curl -fs -o /dev/null "http://127.0.0.1:$api_port/ready"; then break; fi
  kill -0 "$api_pid" 2>/dev/null || fail "the API stopped: $(cat "$work/api.log")"
  sleep 0.5
done
curl -fs -o /dev/null "http://127.0.0.1:$api_port/ready" || fail "the API is not ready: $(tail -20 "$work/api.log")"
token=$(curl -fsS "http://127.0.0.1:$api_port/v1/auth/login" -H 'content-type: application/json' \
  -d '{"username":"admin","password":"admin123"}' | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).accessToken))')
[ -n "$token" ] && [ "$token" != undefined ] || fail "no token from the login"
status=$(curl -s -o "$work/ticket.json" -w '%{http_code}' "http://127.0.0.1:$api_port/v1/tickets" \
  -H 'content-type: application/json' -H "authorization: Bearer $token" \
  -d '{"title":"First ticket","description":"a newcomer'"'"'s first request"}')
[ "$status" = 201 ] || fail "POST /v1/tickets answered $status: $(cat "$work/ticket.json")"
log "API on the new cluster: login, then POST /v1/tickets answered 201"
log "passed in $(($(date +%s) - start)) s; cleaning up"
