#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests, on a free loopback port, in a directory of its own.
#
#   scripts/pg-test.sh start DIR   install PostgreSQL from Debian when missing, create a cluster in
#                                  DIR (trust authentication, TCP on 127.0.0.1 only, no Unix
#                                  socket), start it and print its URL
#                                  (postgres://postgres@127.0.0.1:PORT/postgres)
#   scripts/pg-test.sh stop DIR    stop it (the caller removes DIR)
#
# initdb refuses to run as root: as root, the cluster belongs to the `postgres` user (created by
# Debian's package) and every server command runs through runuser. .ci/run uses it like this:
#   dir=$(mktemp -d); trap 'scripts/pg-test.sh stop "$dir"; rm -rf "$dir"' EXIT
#   REGISTER_TEST_PG_URL=$(scripts/pg-test.sh start "$dir"); export REGISTER_TEST_PG_URL
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(cd "$2" && pwd)

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    return 1
  fi
  echo "$d"
}

# Run a server command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A port nobody listens on, below Linux's ephemeral range (32768-60999), where an outgoing
# connection's local port could still make the bind fail.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % 22000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

case "$cmd" in
  start)
    if ! bindir >/dev/null; then
      sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      echo "installing postgresql" >&2
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
      # Debian's package may start its own cluster on 5432; ours does not need it.
      if command -v service >/dev/null 2>&1; then timeout 20 service postgresql stop >/dev/null 2>&1 || true; fi
    fi
    bin=$(bindir) || { echo "PostgreSQL's initdb not found under /usr/lib/postgresql" >&2; exit 1; }
    mkdir -p "$dir/data"
    if [ "$(id -u)" -eq 0 ]; then
      chmod 0755 "$dir"
      chown postgres: "$dir/data"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    touch "$dir/server.log"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir/server.log"
    # The port may be taken between the check and the bind: try a few.
    started=false
    for _ in 1 2 3 4 5; do
      port=$(free_port)
      opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories= -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
      if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null; then
        started=true
        break
      fi
    done
    $started || { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    bin=$(bindir) || exit 0
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    ;;
  *) usage ;;
esac
