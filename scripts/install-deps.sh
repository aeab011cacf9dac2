#!/usr/bin/env bash
# Install what register's quick start needs from Debian, when missing: Prosody with its
# community modules (mod_privilege), openssl for certificates, make and a C compiler for the
# allocator, curl and netcat for the README.
# With --tests, also what the test suite needs: ejabberd (interop tests), promtool (alert rules).
set -euo pipefail
tests=false
[ "${1:-}" = "--tests" ] && tests=true
need=()
command -v prosody >/dev/null 2>&1 || need+=(prosody)
[ -d /usr/lib/prosody/modules/mod_privilege ] || need+=(prosody-modules)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if $tests && ! [ -x /usr/sbin/ejabberdctl ]; then need+=(ejabberd); fi
# The release binary's allocator (jemalloc, built from C by tikv-jemalloc-sys) needs make and a
# C compiler; a Rust toolchain has the compiler already as its linker.
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# promtool (Debian's `prometheus`) checks dist/prometheus/alerts.yml in CI; without the
# recommended exporters.
if $tests && ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing prometheus (for promtool)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# Debian's packages may start system-wide servers on the standard ports (5222, 5269, 5280),
# where the quick start's Prosody wants to listen: stop them; ours run with their own configs.
for svc in prosody ejabberd prometheus; do
  if command -v service >/dev/null 2>&1; then timeout 20 service "$svc" stop >/dev/null 2>&1 || true; fi
done
