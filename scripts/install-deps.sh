#!/usr/bin/env bash
# Install what register's quick start and test suite need from Debian, when missing:
# Prosody with its community modules (mod_privilege), and openssl for test certificates.
set -euo pipefail
need=()
command -v prosody >/dev/null 2>&1 || need+=(prosody)
[ -d /usr/lib/prosody/modules/mod_privilege ] || need+=(prosody-modules)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v nc >/dev/null 2>&1 || need+=(netcat-openbsd)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's package may start a system-wide Prosody; ours run on their own ports, so it can stay.
