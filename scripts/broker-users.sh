#!/usr/bin/env bash
# OpsDesk's RabbitMQ users, one per process, each limited to the exchanges and
# queues it uses (docs/SECURITY.md, "Broker permissions", has the table):
#   opsdesk-api     the API and its outbox relay: declares the topology, publishes to opsdesk.events
#   opsdesk-worker  the worker: declares the topology, consumes the event queues, publishes retries
#                   (opsdesk.retry) and DLQ copies (default exchange); NOT to opsdesk.events
#   opsdesk-ops     the operator tools (`opsdesk dlq ...`, the ops dashboard): as the API, plus read
#                   on tickets.dlq (list, replay, purge)
#
# Usage: scripts/broker-users.sh [--print | --definitions FILE | --env-files-only] [--no-env-files] [VHOST]   (VHOST: "/")
#   (default)           imports the users and their permissions on VHOST with `rabbitmqctl import_definitions`
#                       (idempotent: one call, users updated in place; `guest` is left as it is)
#   --print             prints those definitions (JSON) instead; the tests add their vhosts this way
#   --definitions FILE  writes them to FILE for a node to load at boot (docker-compose.yml)
#   --no-env-files      does not write the per-process env files
#   --env-files-only    only writes them (the users exist already: compose's, for `npm run services -- --docker`)
#
# Passwords: OPSDESK_AMQP_{API,WORKER,OPS,ADMIN}_PASSWORD when set; else the ones kept in
# $BROKER_USERS_DIR/passwords.env by an earlier run; else random ones, written there (mode 600).
# Nothing secret is printed or passed on a command line: the definitions carry salted hashes.
# For VHOST it writes $BROKER_USERS_DIR/{api,worker,ops}.env with each process's AMQP_URL
# (the API's also has OPS_AMQP_URL, for the dashboard), to source before starting a process:
#   set -a; . .broker-users/worker.env; set +a; npm run start:worker
#
# Settings (environment): BROKER_USERS_DIR (default: .broker-users beside scripts/, git-ignored),
# BROKER_USERS_AMQP_HOST (host:port in the URLs, default 127.0.0.1:5672; a comma-separated list of a cluster's
# nodes gives each AMQP_URL as that list, scripts/cluster.sh), BROKER_USERS_OWNER
# (user:group given the files, for a container that reads them), BROKER_ADMIN_USER (an administrator
# for the management UI, with its own password; none by default).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${BROKER_USERS_DIR:-$here/../.broker-users}
amqp_host=${BROKER_USERS_AMQP_HOST:-127.0.0.1:5672}
admin_user=${BROKER_ADMIN_USER:-}

mode=import definitions_file="" env_files=1 vhost="/"
while [ $# -gt 0 ]; do
  case $1 in
    --print) mode=print ;;
    --definitions) mode=file definitions_file=${2:?--definitions needs a file}; shift ;;
    --no-env-files) env_files=0 ;;
    --env-files-only) mode=none ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "broker-users: unknown option $1" >&2; exit 2 ;;
    *) vhost=$1 ;;
  esac
  shift
done

# --- The permissions. Names from src/Broker/Topology.ts (the event queues: EVENT_NAMES in
# src/Domain/Events.ts); test/security/broker-permissions.test.ts runs the processes under them.
events='opsdesk\.events'
retry='opsdesk\.retry'
retry_return='opsdesk\.retry\.return'
retry_queues='opsdesk\.retry\.[0-9]+ms'
dlq='tickets\.dlq'
event_queues='(ticket\.created|ticket\.updated|ticket\.status_changed|message\.sent)\.queue'
default_exchange='amq\.default'

# Every process declares the whole topology (idempotent), so that any of them works on a fresh
# broker: configure on every name; queue.bind needs write on the queue and read on the exchange;
# creating a queue with a dead-letter exchange needs write on that exchange and read on the queue
# (the event queues dead-letter through the default exchange, the retry queues to opsdesk.retry.return).
configure="^($events|$retry|$retry_return|$dlq|$event_queues|$retry_queues)\$"
declare_write="$event_queues|$retry_queues|$default_exchange|$retry_return"
declare_read="$events|$retry|$retry_return|$event_queues|$retry_queues"

api_write="^($declare_write|$events)\$"
api_read="^($declare_read)\$"
worker_write="^($declare_write|$retry)\$"
worker_read="^($declare_read)\$"
ops_write="^($declare_write|$events)\$"
ops_read="^($declare_read|$dlq)\$"

# --- Passwords
umask 077
mkdir -p "$dir"
passwords=$dir/passwords.env
random_password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
if [ ! -f "$passwords" ]; then
  tmp=$(mktemp "$dir/.passwords.XXXXXX")
  {
    echo "# RabbitMQ passwords of OpsDesk's users, written by scripts/broker-users.sh. Keep private."
    for who in API WORKER OPS ADMIN; do echo "OPSDESK_AMQP_${who}_PASSWORD=$(random_password)"; done
  } >"$tmp"
  # `ln` fails when another run wrote the file meanwhile: then its passwords are the ones.
  ln "$tmp" "$passwords" 2>/dev/null || true
  rm -f "$tmp"
fi
stored() { sed -n "s/^$1=//p" "$passwords" | tail -1; }
password_of() { # API | WORKER | OPS | ADMIN
  local var=OPSDESK_AMQP_$1_PASSWORD
  if [ -n "${!var:-}" ]; then printf '%s' "${!var}"; else stored "$var"; fi
}

# --- Definitions (RabbitMQ's rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)))
bytes() { printf "$(printf '%s' "$1" | sed 's/../\\x&/g')"; }
password_hash() {
  local salt digest
  salt=$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')
  digest=$({ bytes "$salt"; printf '%s' "$1"; } | sha256sum | cut -d' ' -f1)
  { bytes "$salt"; bytes "$digest"; } | base64 | tr -d '\n'
}
json() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
user() { # name password tags
  printf '{"name":%s,"password_hash":%s,"hashing_algorithm":"rabbit_password_hashing_sha256","tags":%s,"limits":{}}' \
    "$(json "$1")" "$(json "$(password_hash "$2")")" "$3"
}
permission() { # user configure write read
  printf '{"user":%s,"vhost":%s,"configure":%s,"write":%s,"read":%s}' \
    "$(json "$1")" "$(json "$vhost")" "$(json "$2")" "$(json "$3")" "$(json "$4")"
}
definitions() {
  local users permissions
  users="$(user opsdesk-api "$(password_of API)" '[]'),$(user opsdesk-worker "$(password_of WORKER)" '[]'),$(user opsdesk-ops "$(password_of OPS)" '[]')"
  permissions="$(permission opsdesk-api "$configure" "$api_write" "$api_read"),$(permission opsdesk-worker "$configure" "$worker_write" "$worker_read"),$(permission opsdesk-ops "$configure" "$ops_write" "$ops_read")"
  if [ -n "$admin_user" ]; then
    users="$users,$(user "$admin_user" "$(password_of ADMIN)" '["administrator"]')"
    permissions="$permissions,$(permission "$admin_user" '.*' '.*' '.*')"
  fi
  printf '{"vhosts":[{"name":%s}],"users":[%s],"permissions":[%s]}\n' "$(json "$vhost")" "$users" "$permissions"
}

# --- Per-process env files
encode() { # percent-encodes a URL component
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [A-Za-z0-9._~-]) out+=$c ;; *) out+=$(printf '%%%02X' "'$c") ;; esac
  done
  printf '%s' "$out"
}
url() { # user password: one URL per host of BROKER_USERS_AMQP_HOST, comma-separated (a cluster's nodes)
  local out="" h
  for h in ${amqp_host//,/ }; do out+="${out:+,}amqp://$1:$(encode "$2")@$h/$(encode "$vhost")"; done
  printf '%s' "$out"
}
write_env_files() {
  printf 'AMQP_URL=%s\nOPS_AMQP_URL=%s\n' "$(url opsdesk-api "$(password_of API)")" "$(url opsdesk-ops "$(password_of OPS)")" >"$dir/api.env"
  printf 'AMQP_URL=%s\n' "$(url opsdesk-worker "$(password_of WORKER)")" >"$dir/worker.env"
  printf 'AMQP_URL=%s\n' "$(url opsdesk-ops "$(password_of OPS)")" >"$dir/ops.env"
  # The administrator's, for the tests' vhost management when there is no guest (test/support/BrokerAdmin.ts).
  if [ -n "$admin_user" ]; then printf 'AMQP_URL=%s\n' "$(url "$admin_user" "$(password_of ADMIN)")" >"$dir/admin.env"; fi
}

case $mode in
  print) definitions ;;
  file)
    definitions >"$definitions_file"
    # Salted hashes: readable by the broker's own user (the passwords and env files stay 600).
    chmod 644 "$definitions_file"
    chmod 755 "$(dirname "$definitions_file")"
    ;;
  import) definitions | rabbitmqctl -q import_definitions >/dev/null ;;
esac
if [ "$env_files" = 1 ]; then write_env_files; fi
if [ -n "${BROKER_USERS_OWNER:-}" ]; then chown -R "$BROKER_USERS_OWNER" "$dir"; fi
if [ "$mode" != print ]; then
  echo "broker-users: opsdesk-api, opsdesk-worker, opsdesk-ops${admin_user:+, $admin_user} on vhost $vhost" \
    "(passwords in $passwords$([ "$env_files" = 1 ] && echo "; AMQP_URL per process in $dir/{api,worker,ops}.env"))"
fi
