#!/usr/bin/env bash
# CPU cost per request, user and system time apart, of nginx as a reverse proxy and of `rampart serve
# --upstream` (with and without response redaction), each read from /proc for the proxy's own processes while
# wrk drives it, in front of the same static upstream (an nginx instance of its own). Throughput ratios hide
# where the time goes; this shows it. Usage: bench/cpu_per_request.sh [SECONDS] [ROUNDS]
set -euo pipefail
SECS=${1:-8}
ROUNDS=${2:-3}
source "$(dirname "$0")/lib.sh"
bench_init
ensure_pkgs nginx:nginx-light wrk:wrk
build_rampart
export RAMPART_LOG=warn
UP=18381 NGX=18382 RMP=18383 RNR=18384
start_nginx_upstream $UP "location / { return 200 '{\"id\":1,\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}'; }" 2
start_nginx_proxy $NGX $UP
start_bg rampart sh -c "exec $RAMPART serve --upstream http://127.0.0.1:$UP --listen 127.0.0.1:$RMP > $WORK/rampart-access.log"
cat > "$WORK/noredact.yaml" <<CONF
listen: [{ addr: "127.0.0.1:$RNR" }]
access_log: $WORK/noredact-access.log
respond: { redact: { enabled: false } }
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none }
CONF
start_bg noredact "$RAMPART" serve --no-watch --config "$WORK/noredact.yaml"
for port in $NGX $RMP $RNR; do wait_http "http://127.0.0.1:$port/users/1"; done

# `measure URL PIDS...` → "user_µs sys_µs" per request
measure() {
  local url=$1 n u0 s0 u1 s1
  shift
  read -r u0 s0 < <(for p in "$@"; do cat "/proc/$p/stat"; done | awk '{u += $14; s += $15} END {print u, s}')
  n=$(wrk -t1 -c32 -d"${SECS}"s "$url" | awk '/requests in/ {print $1}')
  read -r u1 s1 < <(for p in "$@"; do cat "/proc/$p/stat"; done | awk '{u += $14; s += $15} END {print u, s}')
  awk -v n="$n" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.2f %.2f\n", u * 1e6 / hz / n, s * 1e6 / hz / n}'
}
: > "$WORK/results"
for _ in $(seq "$ROUNDS"); do
  # shellcheck disable=SC2086 # several worker pids
  echo "$(measure "http://127.0.0.1:$NGX/users/1" $NGINX_PROXY_PIDS) \
$(measure "http://127.0.0.1:$RMP/users/1" "$(cat "$WORK/rampart.pid")") \
$(measure "http://127.0.0.1:$RNR/users/1" "$(cat "$WORK/noredact.pid")")" >> "$WORK/results"
done
awk -v r="$ROUNDS" '{for (i = 1; i <= NF; i++) t[i] += $i} END {
  for (i = 1; i <= 6; i++) m[i] = t[i] / r
  printf "CPU per request (µs, mean of %d rounds)  user    sys   total\n", r
  printf "nginx reverse proxy                  %6.1f %6.1f %7.1f\n", m[1], m[2], m[1] + m[2]
  printf "rampart serve --upstream             %6.1f %6.1f %7.1f\n", m[3], m[4], m[3] + m[4]
  printf "ratio rampart/nginx                  %6.2f %6.2f %7.2f\n", m[3] / m[1], m[4] / m[2], (m[3] + m[4]) / (m[1] + m[2])
  printf "rampart, redaction off               %6.1f %6.1f %7.1f\n", m[5], m[6], m[5] + m[6]
  printf "ratio (redaction off)/nginx          %6.2f %6.2f %7.2f\n", m[5] / m[1], m[6] / m[2], (m[5] + m[6]) / (m[1] + m[2]) }' "$WORK/results"
echo "(wrk -t1 -c32 -d${SECS}s per proxy per round, $(nproc) cores; upstream: its own nginx, 2 workers; nginx proxy: 2 workers)"
