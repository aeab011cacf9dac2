#!/usr/bin/env bash
# API check (run by CI): the HTTPS API against a real, throwaway deployment.
#
#   1. builds the debug `register` and the examples;
#   2. starts a Prosody on free loopback ports with a generated config in a temporary directory
#      (plaintext c2s, component with a generated secret, the component in `admins` for XEP-0133);
#   3. starts `register` on free loopback ports with a generated register.toml (HTTPS with its
#      self-signed certificate, captcha.fixed_answer = "abcde", a known app key and signing key,
#      rate limits off) and waits for /readyz on the admin port;
#   4. checks the transport rules with curl (404, 405 + Allow, 400, 413, 415, the captcha reply);
#   5. runs the examples, pairing through bind tokens: device_client (signed register + login,
#      issues an 8-digit bind token), phone_client (captcha, register, login, redeems the device's
#      token, roster shows it with subscription both; again with --insecure and a new token of the
#      device's, which must find the account and the binding in place); the other direction: the
#      phone issues a token and a second device_client redeems it (--redeem), and the phone's roster
#      shows both devices; backend_client (the phone's token over TCP is valid; a made-up one is
#      not);
#   6. installs schemathesis (pinned) from PyPI into a cached virtualenv; runs
#      scripts/api-session.py, which walks every endpoint's success and error paths (GET, form and
#      JSON POST; captcha ids by cookie, header and parameter; signed device requests) and checks
#      each reply against docs/openapi.yaml and its sign; then runs schemathesis against
#      docs/openapi.yaml: no 5xx, status codes, content types, headers and bodies as documented,
#      405 for undocumented methods;
#   7. tears everything down (trap on EXIT) and prints a summary; exits non-zero on any failure.
#
# Environment:
#   API_CHECK_MAX_EXAMPLES  schemathesis test cases per operation (default 25)
#   API_CHECK_SEED          schemathesis seed (default: random; printed, to reproduce a failure)
#   API_CHECK_C2S_TLS       off (default) | required: Prosody's c2s with STARTTLS and a test certificate
#   API_CHECK_BINDING       c2s (default) | privileged: register's xmpp.binding (Prosody has mod_privilege)
#   API_CHECK_KEEP=1        keep the temporary directory (configs, logs, schemathesis report)
#   API_CHECK_VENV          where the schemathesis virtualenv lives
#                           (default ~/.cache/register/schemathesis-<version>)
#   API_CHECK_SKIP_BUILD=1  use the binaries already built
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/prosody-lib.sh
. scripts/prosody-lib.sh

SCHEMATHESIS_VERSION=4.32.5
max_examples=${API_CHECK_MAX_EXAMPLES:-25}
seed=${API_CHECK_SEED:-$((RANDOM * 32768 + RANDOM))}
c2s_tls=${API_CHECK_C2S_TLS:-off}
binding=${API_CHECK_BINDING:-c2s}
venv=${API_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/register/schemathesis-$SCHEMATHESIS_VERSION}
app_key="api-check-app-key"
sign_key="api-check-sign-key"
captcha_answer="abcde"

say() { printf 'api-check: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Bookkeeping: every check is a named step with PASS/FAIL, summarised at the end.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/register-api-check.XXXXXX")
mkdir -p "$tmp/logs"
summary=()
passed=0
failed=0
prosody_pid=""
register_pid=""

record() { # record PASS|FAIL|SKIP NAME DETAIL
  summary+=("$(printf '%-4s  %-28s %s' "$1" "$2" "${3:-}")")
  case $1 in
    PASS) passed=$((passed + 1)) ;;
    FAIL) failed=$((failed + 1)) ;;
  esac
}

# step NAME CMD... : run CMD with its output in logs/NAME.log; PASS or FAIL (with the log's tail).
step() {
  local name=$1
  shift
  local log="$tmp/logs/$name.log" start=$SECONDS
  say "-- $name"
  # In a subshell with errexit on, outside any condition, so the first failing command fails it.
  set +e
  (set -e; "$@") >"$log" 2>&1
  local rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    record PASS "$name" "($((SECONDS - start)) s)"
  else
    record FAIL "$name" "($((SECONDS - start)) s, log below)"
    say "FAILED: $name; last lines of its output:"
    tail -n 40 "$log" | cut -c1-300 | sed 's/^/    /' >&2
  fi
}

stop_pid() { # stop_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1 name=$2
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop on SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

finish() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$register_pid" register
  stop_pid "$prosody_pid" prosody
  if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
    for f in register.log prosody/prosody.log; do
      if [ -s "$tmp/$f" ]; then
        say "last lines of $f:"
        tail -n 30 "$tmp/$f" | cut -c1-300 | sed 's/^/    /' >&2
      fi
    done
  fi
  echo
  echo "== api-check summary (c2s TLS $c2s_tls, binding $binding; schemathesis $SCHEMATHESIS_VERSION, seed $seed, max examples $max_examples)"
  local line
  for line in "${summary[@]}"; do echo "$line"; done
  if [ "${API_CHECK_KEEP:-0}" = 1 ]; then
    echo "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
    echo "api-check: aborted (exit status $status)"
  fi
  echo "api-check: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && exit 0
  exit 1
}
trap finish EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools: Prosody (+ prosody-modules), openssl, curl from Debian; python3 with venv for schemathesis.
scripts/install-deps.sh
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${API_CHECK_SKIP_BUILD:-0}" != 1 ]; then
  say "building register and the examples (debug)"
  cargo build --bin register --examples
fi
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target/debug"

# Free loopback ports, all distinct: c2s, component, https, tcp, admin.
read -r c2s_port comp_port http_port tcp_port admin_port < <(python3 - <<'PY'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
base="https://127.0.0.1:$http_port"
admin="http://127.0.0.1:$admin_port"

# ---------------------------------------------------------------------------------------------
# Prosody (the shape of scripts/quickstart.sh, on the ports above).
p="$tmp/prosody"
data="$tmp/data"
mkdir -p "$p/data" "$p/certs" "$data"
chmod 700 "$data"
(umask 077 && openssl rand -hex 24 >"$tmp/component_secret")
if [ "$c2s_tls" = off ]; then
  tls_lua='c2s_require_encryption = false
allow_unencrypted_plain_auth = true'
  register_c2s='c2s_tls = "off"
allow_plain_without_tls = true'
else
  prosody_cert "$p" 2
  tls_lua='c2s_require_encryption = true'
  register_c2s="c2s_tls = \"required\"
tls_ca_file = \"$p/certs/localhost.crt\""
fi
prosody_config "$p" "$c2s_port" "$comp_port" "$tmp/component_secret" scripts/api-check.sh \
  "default_iteration_count = 4096
$tls_lua"
if [ "$c2s_tls" = off ]; then
  sed -i '/^  ssl = /d' "$p/prosody.cfg.lua"
fi

say "starting Prosody: c2s 127.0.0.1:$c2s_port, component 127.0.0.1:$comp_port"
prosody --config "$p/prosody.cfg.lua" -F >"$p/stdout.log" 2>&1 &
prosody_pid=$!
prosody_up() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$comp_port") 2>/dev/null && return 0
    kill -0 "$prosody_pid" 2>/dev/null || { cat "$p/stdout.log" "$p/prosody.log" 2>/dev/null; return 1; }
    sleep 0.1
  done
  return 1
}
step prosody-start prosody_up

# ---------------------------------------------------------------------------------------------
# register
cat >"$tmp/register.toml" <<TOML
# Generated by scripts/api-check.sh.
data_dir = "$data"

[http]
listen = "127.0.0.1:$http_port"
tls = true

[tcp]
listen = "127.0.0.1:$tcp_port"

[admin]
listen = "127.0.0.1:$admin_port"

[xmpp]
domain = "localhost"
component = "register.localhost"
component_addr = "127.0.0.1:$comp_port"
component_secret_file = "$tmp/component_secret"
c2s_addr = "127.0.0.1:$c2s_port"
$register_c2s
binding = "$binding"
timeout_ms = 5000

[security]
sign_key = "$sign_key"
app_keys = ["$app_key"]
rate_per_minute = 0
api_rate_per_minute = 0
account_rate_per_minute = 0

[captcha]
fixed_answer = "$captcha_answer"

[log]
level = "info"
TOML

say "starting register: https $base, tcp 127.0.0.1:$tcp_port, admin $admin"
NO_COLOR=1 "$bin/register" --config "$tmp/register.toml" >"$tmp/register.log" 2>&1 &
register_pid=$!
ready() {
  local body
  for _ in $(seq 300); do
    kill -0 "$register_pid" 2>/dev/null || { echo "register exited"; return 1; }
    body=$(curl -fsS "$admin/readyz" 2>/dev/null) && { echo "$body"; return 0; }
    sleep 0.1
  done
  echo "not ready after 30 s: $(curl -sS "$admin/readyz" 2>&1)"
  return 1
}
step readyz ready
if ! kill -0 "$register_pid" 2>/dev/null; then
  say "register is not running; nothing more to check"
  exit 1
fi
step admin-endpoints bash -c "
  curl -fsS '$admin/healthz' | grep -q '\"ok\"' &&
  curl -fsS '$admin/metrics' | grep -q '^# TYPE'"

# ---------------------------------------------------------------------------------------------
# Transport rules (docs/API.md, the first table).
transport() {
  local c=(curl -sS --cacert "$data/cert.pem" -o "$tmp/body" -D "$tmp/head" -w '%{http_code} %{time_total}\n')
  expect() { # expect STATUS DESCRIPTION CURL-ARGS...
    local want=$1 what=$2 got
    shift 2
    local took
    read -r got took < <("${c[@]}" "$@")
    if [ "$got" != "$want" ]; then
      echo "$what: HTTP $got, expected $want"; cat "$tmp/head" "$tmp/body"; return 1
    fi
    case $want in
      200 | 4* | 5*)
        if grep -qi '^content-type: application/json' "$tmp/head"; then
          python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert isinstance(d["result"], int) and len(d["sign"]) == 64, d' "$tmp/body" ||
            { echo "$what: bad body"; return 1; }
        fi ;;
    esac
    echo "ok   $what: $got in ${took}s $(head -c 200 "$tmp/body" | tr -c '[:print:]' '.')"
  }
  expect 404 "unknown path" "$base/nope"
  expect 405 "PUT" -X PUT "$base/login"
  grep -qi '^allow: GET, POST' "$tmp/head" || { echo "405 without Allow"; return 1; }
  expect 405 "OPTIONS" -X OPTIONS "$base/register"
  expect 400 "parameter twice" "$base/get_users?access_token=a&access_token=b"
  expect 400 "JSON not an object" -H 'Content-Type: application/json' --data '[1]' "$base/login"
  expect 415 "text/plain body" -H 'Content-Type: text/plain' --data 'x=1' "$base/login"
  head -c 70000 /dev/zero | tr '\0' 'a' >"$tmp/big"
  expect 413 "70 kB body" -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$tmp/big" "$base/login"
  expect 200 "login without parameters" "$base/login"
  grep -q '"result":2' "$tmp/body" || { echo "expected result 2"; return 1; }
  expect 200 "captcha" "$base/verify_code"
  grep -qi '^content-type: image/png' "$tmp/head" || { echo "captcha not a PNG"; return 1; }
  grep -qiE '^x-verify-code-id: [0-9a-f]{32}' "$tmp/head" || { echo "no X-Verify-Code-Id"; return 1; }
  grep -qiE '^set-cookie: verify_code_id=[0-9a-f]{32};.*HttpOnly; Secure; SameSite=Strict' "$tmp/head" ||
    { echo "no captcha cookie"; return 1; }
  [ "$(head -c 8 "$tmp/body" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || { echo "bad PNG"; return 1; }
  # A wrong captcha answer is refused (5), and the challenge is then spent.
  local id
  id=$(grep -i '^x-verify-code-id:' "$tmp/head" | tr -d '\r' | awk '{print $2}')
  expect 200 "wrong captcha" --data-urlencode "verify_code=zzzzz" --data "verify_code_id=$id" \
    --data "user_name=api-check-x&password=secret123&type=1" "$base/register"
  grep -q '"result":5' "$tmp/body" || { echo "expected result 5"; return 1; }
}
step transport-rules transport

# ---------------------------------------------------------------------------------------------
# The examples.
export REGISTER_SIGN_KEY="$sign_key" # the examples verify every reply's sign with it
device="cam-$RANDOM$RANDOM"
phone="139$(printf '%08d' $((RANDOM * RANDOM % 100000000)))"
common=(--url "$base" --app-key "$app_key")

device_example() {
  "$bin/examples/device_client" "${common[@]}" --ca-cert "$data/cert.pem" "$device" |
    tee "$tmp/device.out"
  grep -qE '^jid=u[a-z0-9]+@localhost$' "$tmp/device.out" || { echo "no jid line"; return 1; }
  grep -qE '^bind_token=[0-9]{8}$' "$tmp/device.out" || { echo "no bind_token line"; return 1; }
}
step example-device_client device_example

phone_example() { # redeems the bind token the device "shows"
  local bt
  bt=$(sed -n 's/^bind_token=//p' "$tmp/device.out")
  REGISTER_CAPTCHA_ANSWER=$captcha_answer "$bin/examples/phone_client" "${common[@]}" \
    --ca-cert "$data/cert.pem" --user "$phone" --bind-token "$bt" "$device" | tee "$tmp/phone.out"
  grep -qE '^access_token=[0-9a-f]{64}$' "$tmp/phone.out" || { echo "no access_token line"; return 1; }
  grep -qE "^roster_item jid=u[a-z0-9]+@localhost user_name=$device type=2 subscription=both nickname=$device groups=\[\"Device\"\]$" \
    "$tmp/phone.out" || { echo "the device is not in the phone's roster with subscription both"; return 1; }
}
step example-phone_client phone_example

phone_again() { # same phone and device, a new token, --insecure: exists (103) → login; bound already (109)
  local bt
  "$bin/examples/device_client" "${common[@]}" --ca-cert "$data/cert.pem" "$device" >"$tmp/device2.out"
  bt=$(sed -n 's/^bind_token=//p' "$tmp/device2.out")
  REGISTER_CAPTCHA_ANSWER=$captcha_answer "$bin/examples/phone_client" "${common[@]}" \
    --insecure --user "$phone" --bind-token "$bt" "$device" | tee "$tmp/phone2.out"
  grep -q "subscription=both" "$tmp/phone2.out"
}
step example-phone_client-again phone_again

phone_shows_token() { # the other direction: the phone issues, a second device redeems
  local bt
  REGISTER_CAPTCHA_ANSWER=$captcha_answer "$bin/examples/phone_client" "${common[@]}" \
    --ca-cert "$data/cert.pem" --user "$phone" "$device-b" | tee "$tmp/phone3.out"
  bt=$(sed -n 's/^bind_token=//p' "$tmp/phone3.out")
  [ ${#bt} -eq 24 ] || { echo "no bind_token line from the phone"; return 1; }
  "$bin/examples/device_client" "${common[@]}" --ca-cert "$data/cert.pem" --redeem="$bt" "$device-b" |
    tee "$tmp/device3.out"
  grep -q '^paired=1$' "$tmp/device3.out" || { echo "the device did not pair"; return 1; }
  # A used token does not pair twice.
  if "$bin/examples/device_client" "${common[@]}" --ca-cert "$data/cert.pem" --redeem="$bt" \
    "$device-b" >"$tmp/device4.out" 2>&1; then
    echo "a used bind token paired again"; return 1
  fi
  grep -q 'result 111' "$tmp/device4.out" || { cat "$tmp/device4.out"; echo "expected 111"; return 1; }
  REGISTER_CAPTCHA_ANSWER=$captcha_answer "$bin/examples/phone_client" "${common[@]}" \
    --ca-cert "$data/cert.pem" --user "$phone" "$device-b" >"$tmp/phone4.out"
  grep -q "user_name=$device-b type=2 subscription=both" "$tmp/phone4.out" ||
    { echo "the second device is not in the phone's roster"; return 1; }
}
step example-phone_issues_token phone_shows_token

backend_example() {
  local token
  token=$(sed -n 's/^access_token=//p' "$tmp/phone.out" | head -n1)
  [ -n "$token" ] || { echo "no token from phone_client"; return 1; }
  "$bin/examples/backend_client" "127.0.0.1:$tcp_port" "$token" "$(printf '%064d' 0)" | tee "$tmp/backend.out"
  grep -q "valid: user \"$phone\" jid \"u.*@localhost\" type 1" "$tmp/backend.out" || { echo "token not valid"; return 1; }
  grep -q "invalid (result 4)" "$tmp/backend.out" || { echo "made-up token not refused"; return 1; }
}
step example-backend_client backend_example

# ---------------------------------------------------------------------------------------------
# schemathesis against docs/openapi.yaml.
install_schemathesis() {
  if [ -x "$venv/bin/schemathesis" ] &&
    "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    echo "schemathesis $SCHEMATHESIS_VERSION in $venv"
    return 0
  fi
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  "$venv/bin/schemathesis" --version
}
step schemathesis-install install_schemathesis

# Every endpoint's success and error paths (which schemathesis cannot reach: captchas, signatures,
# tokens), each reply checked against docs/openapi.yaml and its sign verified.
if [ -x "$venv/bin/python" ]; then
  step session-conformance "$venv/bin/python" scripts/api-session.py --url "$base" \
    --ca "$data/cert.pem" --app-key "$app_key" --sign-key "$sign_key" \
    --captcha "$captcha_answer" --spec "$root/docs/openapi.yaml"
else
  record FAIL session-conformance "(no Python virtualenv)"
fi

run_schemathesis() {
  # Checks that fit this API: domain errors are 200 + result code by design, so the negative-data
  # check (which expects 4xx for invalid input) is not used; negative data is still generated
  # (mode all) and must get a documented status and body, and never a 5xx.
  # One worker: with two, hypothesis's lambda descriptions hit a CPython 3.11 thread-safety bug in
  # ast.parse ("AST constructor recursion depth mismatch"). The CA variables are dropped so that
  # nothing overrides --tls-verify.
  env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE \
    "$venv/bin/schemathesis" run "$root/docs/openapi.yaml" \
    --url "$base" \
    --tls-verify "$data/cert.pem" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method \
    --mode all \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 30 \
    --generation-database none \
    --suppress-health-check all \
    --no-color \
    --report junit,har --report-dir "$tmp/schemathesis"
}
if [ -x "$venv/bin/schemathesis" ]; then
  step schemathesis run_schemathesis
else
  record FAIL schemathesis "(not installed)"
fi

# The service must have survived all of it.
step still-alive bash -c "kill -0 $register_pid && curl -fsS '$admin/healthz' >/dev/null"
if grep -q 'panicked' "$tmp/register.log"; then
  record FAIL no-panics "(see register.log)"
  grep -n -m5 'panicked' "$tmp/register.log" >&2
else
  record PASS no-panics ""
fi
