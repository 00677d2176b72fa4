#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: deterministic where req/s on a shared machine
# is not. nginx as a reverse proxy and Rampart each run under callgrind in front of the same static upstream
# (an nginx outside valgrind); the counters are zeroed after warm-up, `wrk` drives the proxy for SECONDS, and the
# counters are dumped and divided by the requests wrk completed. Kernel time is not counted (callgrind sees user space only).
# Usage: bench/callgrind.sh [SECONDS] [CONFIG]   CONFIG: a rampart config for the proxy (default: serve --upstream);
#        it must listen on 127.0.0.1:18483 and forward to http://127.0.0.1:18481 (with CG_PORT=N: N+2 and N).
# CG_PORT=N: the four ports N..N+3 (upstream, nginx, rampart, floor) instead of 18481..18484, so two copies can run.
# ONLY=rampart skips nginx (for quick before/after comparisons). Set KEEP=DIR to keep the callgrind files (then: callgrind_annotate DIR/rampart.out | head -60).
# BODY=FILE: the upstream answers with FILE (as application/json) instead of its small JSON object;
# URLPATH=/path?query: the path requested (default below); RAMPART_BIN=path: that binary, without building;
# LUA=FILE: wrk drives the proxies with that script (method, headers, body: e.g. the JSON POST of bench/inspect.sh).
# FLOOR=1: also count the bare hyper proxy with no protections (crates/gateway/examples/hyper_floor.rs).
set -euo pipefail
UP=${CG_PORT:-18481}
NGX=$((UP + 1)) RMP=$((UP + 2)) FLR=$((UP + 3))
SECS=${1:-10}
CONFIG=${2:+$(realpath "$2")}
cd "$(dirname "$0")/.."
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -n "${RAMPART_BIN:-}" ]; then
  RAMPART=$(realpath "$RAMPART_BIN")   # a given build (e.g. a copy of an earlier one, for before/after)
else
  cargo build --release -q -p rampart
  RAMPART=${CARGO_TARGET_DIR:-$PWD/target}/release/rampart
fi
W=$(mktemp -d)
chmod 755 $W # the upstream's nginx workers read BODY from here
OUT=${KEEP:-$W}
mkdir -p "$OUT"
cleanup() {
  kill $(cat $W/*.vpid 2>/dev/null) 2>/dev/null || true
  $NGINX -p $W -c $W/upstream.conf -s stop 2>/dev/null || true
  sleep 0.5
  rm -rf $W
}
trap cleanup EXIT
UPSTREAM_ANSWER="return 200 '{\"id\":1,\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}';"
if [ -n "${BODY:-}" ]; then
  install -m 644 "$BODY" $W/body.json
  UPSTREAM_ANSWER="try_files /body.json =404;"
fi
cat > $W/upstream.conf <<CONF
worker_processes 1;
pid $W/upstream.pid;
error_log $W/upstream-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$UP; root $W; location / { default_type application/json; $UPSTREAM_ANSWER } }
}
CONF
# The reference proxy: one process (no master), so one callgrind run sees all of its work.
cat > $W/proxy.conf <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $W/proxy.pid;
error_log $W/proxy-error.log warn;
events { worker_connections 1024; }
http {
  access_log $W/nginx-access.log;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
$NGINX -p $W -c $W/upstream.conf
export RAMPART_LOG=${RAMPART_LOG:-warn}  # RAMPART_LOG=error: without security events (as bench/respond.sh runs)
URLPATH=${URLPATH:-"/users/1?fields=name,email&expand=orders"}
WRK_SCRIPT=()
[ -n "${LUA:-}" ] && WRK_SCRIPT=(-s "$(realpath "$LUA")")

# measure NAME URL CMD... → prints "NAME instructions/request (requests)"
measure() {
  local name=$1 url=$2; shift 2
  valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=$OUT/$name.out.%p "$@" > $W/$name.stdout 2> $W/$name.stderr &
  local vpid=$!
  echo $vpid > $W/$name.vpid
  for _ in $(seq 300); do curl -sf "$url" >/dev/null 2>&1 && break; sleep 0.2; done
  wrk -t1 -c4 -d3s "${WRK_SCRIPT[@]}" "$url" >/dev/null 2>&1     # warm-up: pools, caches, lazy statics
  callgrind_control -z $vpid >/dev/null
  local done
  done=$(wrk -t1 -c4 -d${SECS}s "${WRK_SCRIPT[@]}" "$url" 2>/dev/null | awk '/requests in/ {print $1}')
  callgrind_control -d $vpid >/dev/null
  sleep 1
  kill $vpid 2>/dev/null || true
  wait $vpid 2>/dev/null || true
  rm -f $W/$name.vpid
  # the dump made by -d is numbered .1; the one written at exit (start-up and shutdown) is left out
  local ir
  ir=$(awk '/^summary:|^totals:/ {print $2; exit}' $OUT/$name.out.$vpid.1)
  mv $OUT/$name.out.$vpid.1 $OUT/$name.out
  rm -f $OUT/$name.out.$vpid
  awk -v n=$done -v ir=$ir -v name=$name 'BEGIN {printf "%-28s %8.0f instructions/request (%d requests)\n", name, ir/n, n}'
}

if [ -n "${FLOOR:-}" ]; then
  cargo build --release -q -p rampart-gateway --example hyper_floor
  measure floor "http://127.0.0.1:$FLR$URLPATH" ${CARGO_TARGET_DIR:-$PWD/target}/release/examples/hyper_floor \
    127.0.0.1:$FLR 127.0.0.1:$UP 1
fi
[ "${ONLY:-}" = rampart ] || measure nginx "http://127.0.0.1:$NGX$URLPATH" $NGINX -p $W -c $W/proxy.conf
if [ -n "$CONFIG" ]; then
  measure rampart "http://127.0.0.1:$RMP$URLPATH" $RAMPART serve --no-watch --config "$CONFIG"
else
  measure rampart "http://127.0.0.1:$RMP$URLPATH" $RAMPART serve \
    --upstream http://127.0.0.1:$UP --listen 127.0.0.1:$RMP
fi
