# Shared setup for the whole-proxy benchmark scripts (sourced, not run): tools, the release binary, a work
# directory removed on exit, a static nginx upstream, the load generator and medians.
# After `source bench/lib.sh`: $ROOT, $WORK, $NGINX, $RAMPART; functions bench_upstream PORT, bench_wait URL...,
# bench_run URL [LUA_SCRIPT] → "rps p99_ms", median (stdin → median of the first column).

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p rampart
RAMPART=${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart

WORK=$(mktemp -d)
bench_cleanup() {
  kill $(cat $WORK/*.pid 2>/dev/null) 2>/dev/null || true
  [ -f $WORK/upstream.conf ] && $NGINX -p $WORK -c $WORK/upstream.conf -s stop 2>/dev/null || true
  rm -rf $WORK
}
trap bench_cleanup EXIT

# A static upstream on 127.0.0.1:PORT answering every request (any method) with a small JSON object.
bench_upstream() {
  cat > $WORK/upstream.conf <<CONF
worker_processes auto;
pid $WORK/upstream.nginx;
error_log $WORK/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$1;
    location / { default_type application/json; return 200 '{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}'; }
  }
}
CONF
  $NGINX -p $WORK -c $WORK/upstream.conf
}

# Waits until every URL answers 2xx (up to 5 s).
bench_wait() {
  for _ in $(seq 50); do
    local ok=1
    for u in "$@"; do curl -sf "$u" >/dev/null || ok=0; done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  echo "not answering: $*" >&2
  return 1
}

# wrk against URL (optionally with a Lua script for method, headers and body) → "rps p99_ms".
bench_run() {
  local script=()
  [ -n "${2:-}" ] && script=(-s "$2")
  wrk -t1 -c${CONNS:-32} -d${SECS:-10}s --latency "${script[@]}" "$1" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {printf "%.0f %.3f\n", rps, p99}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
