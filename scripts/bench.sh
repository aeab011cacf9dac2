#!/usr/bin/env bash
# Runs every benchmark of register side by side with its reference and prints a summary table.
#
#   scripts/bench.sh                       # everything (about 5 minutes after the build)
#   scripts/bench.sh --only tcp,captcha    # some of: tcp,https,xmpp,captcha,memory,isolation,pg
#
# The pg section (token checks and registrations on PostgreSQL beside SQLite) runs when the
# selection includes it: a throwaway PostgreSQL is started with scripts/pg-test.sh (installed from
# Debian when missing) and stopped at exit. Pass --pg-url URL to use another one instead.
#
# Installs redis-server/redis-tools (the TCP reference) and prosody (register/bind) from Debian
# when missing, builds the release binaries, raises the open-file limit for the 10,000-connection
# memory benchmark, then runs target/release/register-bench. Loopback only. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v prosody >/dev/null || need+=(prosody prosody-modules)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release -p register -p register-bench

# 10,000 client sockets in the bench plus 10,000 in the service (a child, which inherits this).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# PostgreSQL for the pg section: wanted when there is no --only or it names pg, and no --pg-url.
want_pg=true
prev=""
for a in "$@"; do
    if [ "$prev" = --only ]; then
        case ",$a," in *,pg,*) ;; *) want_pg=false ;; esac
    fi
    [ "$a" = --pg-url ] && want_pg=false
    prev=$a
done
pg_args=()
if $want_pg; then
    pg_dir=$(mktemp -d)
    trap 'scripts/pg-test.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
    if pg_url=$(scripts/pg-test.sh start "$pg_dir"); then
        pg_args=(--pg-url "$pg_url")
    else
        echo "could not start PostgreSQL: the pg section is skipped" >&2
    fi
fi

target_dir="${CARGO_TARGET_DIR:-target}"
timeout 900 "$target_dir/release/register-bench" all --bin "$target_dir/release/register" "${pg_args[@]}" "$@"
