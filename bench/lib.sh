# Shared parts of the whole-proxy benchmarks: sourced, not run. Every function is generic (no script's ports,
# routes or columns): package install, a release build, a scratch directory cleaned on exit, a static nginx
# upstream, wrk runs parsed to numbers, medians.
#
#   source "$(dirname "$0")/lib.sh"
#   bench_init                                  # cd to the repo root, $ROOT, $WORK (removed on exit)
#   ensure_pkgs nginx:nginx-light wrk:wrk       # command:debian-package, installed when the command is missing
#   build_rampart                               # release build, sets $RAMPART (RAMPART_BIN=path: use that)
#   start_nginx_upstream 18191 'location / { return 200 "ok"; }'   # static upstream, server block body
#   start_nginx_proxy 18192 18191               # nginx as the reference reverse proxy, its own instance
#   start_bg name cmd...                        # background process, pid in $WORK/name.pid, killed on exit
#   wait_http URL                               # until it answers 2xx (5 s at most)
#   wrk_run URL [PIDS] [LUA]                    # → "rps p99_ms cpu_us_per_request" (cpu: the user+system time
#                                               #   of PIDS, space-separated; LUA: a wrk script for method,
#                                               #   headers and body)
#   median < numbers; col N FILE                # median of a column of FILE

# Repo root, scratch directory and the exit trap (which also stops nginx and everything `start_bg` started).
bench_init() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  ROOT=$PWD
  WORK=$(mktemp -d)
  chmod 755 "$WORK" # nginx workers (not root) read files from here
  BENCH_CLEANUP=()
  trap bench_cleanup EXIT
}

# Extra commands to run on exit (before the scratch directory goes), e.g. `on_exit "redis-cli -p 1 shutdown"`.
on_exit() { BENCH_CLEANUP+=("$1"); }

bench_cleanup() {
  local c
  for c in "${BENCH_CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
  local p
  for p in "$WORK"/*.pid; do [ -e "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  [ -n "${NGINX:-}" ] && [ -e "$WORK/nginx.conf" ] && "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -s stop 2>/dev/null
  rm -rf "$WORK"
}

# `ensure_pkgs cmd:package ...`: installs (apt) the Debian packages whose command is missing. `nginx` also counts
# as present at /usr/sbin/nginx (not on a user's PATH).
ensure_pkgs() {
  local need=() spec cmd pkg
  for spec in "$@"; do
    cmd=${spec%%:*} pkg=${spec#*:}
    command -v "$cmd" >/dev/null && continue
    [ -x "/usr/sbin/$cmd" ] && continue
    need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# Release build of the gateway (honours CARGO_TARGET_DIR); sets $RAMPART. `RAMPART_BIN=path` benchmarks that
# binary instead, without building (e.g. a copy of an earlier build, for a before/after run).
build_rampart() {
  if [ -n "${RAMPART_BIN:-}" ]; then
    RAMPART=$RAMPART_BIN
    return
  fi
  cargo build --release -q -p rampart
  RAMPART=${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart
}

# `start_nginx_upstream PORT SERVER_BODY [WORKERS]`: nginx on 127.0.0.1:PORT with SERVER_BODY inside its
# `server {}` (locations), root $WORK, access log off, one worker unless told.
start_nginx_upstream() {
  local port=$1 body=$2 workers=${3:-1}
  cat > "$WORK/nginx.conf" <<CONF
worker_processes $workers;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  server {
    listen 127.0.0.1:$port;
    root $WORK;
    $body
  }
}
CONF
  "$NGINX" -p "$WORK" -c "$WORK/nginx.conf"
}

# `start_nginx_proxy PORT UPSTREAM_PORT [WORKERS]`: nginx as a reverse proxy on 127.0.0.1:PORT to
# 127.0.0.1:UPSTREAM_PORT (keep-alive pool of 64, HTTP/1.1, access log to a file), in an instance of its own so
# the upstream's workers never share its processes (two workers unless told). Its worker pids end up in
# $NGINX_PROXY_PIDS.
start_nginx_proxy() {
  local port=$1 upstream=$2 workers=${3:-2} dir="$WORK/nginx-proxy"
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<CONF
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log $dir/access.log;
  upstream app { server 127.0.0.1:$upstream; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
  "$NGINX" -p "$dir" -c "$dir/nginx.conf"
  on_exit "$NGINX -p $dir -c $dir/nginx.conf -s stop"
  local _
  for _ in $(seq 50); do [ -s "$dir/nginx.pid" ] && break; sleep 0.1; done
  sleep 0.2
  NGINX_PROXY_PIDS=$(pgrep -P "$(cat "$dir/nginx.pid")" | tr '\n' ' ')
}

# `start_bg NAME CMD...`: runs CMD in the background (stderr to $WORK/NAME.err), pid in $WORK/NAME.pid.
start_bg() {
  local name=$1
  shift
  "$@" 2> "$WORK/$name.err" &
  echo $! > "$WORK/$name.pid"
}

# `wait_http URL`: polls until URL answers with a 2xx, 5 s at most.
wait_http() {
  local _
  for _ in $(seq 50); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

# `wrk_run URL [PIDS] [LUA]` → "rps p99_ms cpu_us": wrk -t1 -c$CONNS -d${SECS}s; cpu_us is the user+system CPU
# time per request of the processes PIDS (space-separated; steadier than req/s on a busy machine), 0 without
# PIDS (pass "" to give a script only).
wrk_run() {
  local url=$1 pids=${2:-} before=0 after=0 out script=()
  [ -n "${3:-}" ] && script=(-s "$3")
  local tick
  tick=$(getconf CLK_TCK)
  [ -n "$pids" ] && before=$(cpu_ticks $pids)
  out=$(wrk -t1 -c"${CONNS:-32}" -d"${SECS:-10}"s --latency "${script[@]}" "$url" 2>/dev/null)
  [ -n "$pids" ] && after=$(cpu_ticks $pids)
  echo "$out" | awk -v ticks=$((after - before)) -v hz="$tick" '
    /requests in/ {n=$1}
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {printf "%.0f %.3f %.1f\n", rps, p99, (n > 0 ? ticks * 1e6 / hz / n : 0)}'
}

# `cpu_ticks PID...`: user+system clock ticks used so far by the processes, summed.
cpu_ticks() {
  local p
  for p in "$@"; do cat "/proc/$p/stat"; done | awk '{t += $14 + $15} END {print t}'
}

# Median of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# `col N FILE`: median of column N of FILE.
col() { awk -v c="$1" '{print $c}' "$2" | median; }
