#!/usr/bin/env bash
# Whole-proxy benchmark: nginx as a reverse proxy vs `rampart serve --upstream` (default protections on), in
# front of the same static upstream (an nginx instance of its own, two workers), driven alternately by the same
# wrk on loopback for several rounds. Two Rampart variants price inspection and response redaction, and a bare
# hyper proxy with Rampart's runtime layout and no protections at all (crates/gateway/examples/hyper_floor.rs)
# shows how much of the distance to nginx is the HTTP library's. Prints req/s,
# p99 and the proxy's own CPU time per request (user + system, all its processes) per run, the medians and the
# ratios to nginx, and Rampart's resident memory idle and after load.
# Usage: bench/proxy.sh [ROUNDS] [SECONDS] [CONNECTIONS]      (RAMPART_BIN=path: benchmark that binary)
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
source "$(dirname "$0")/lib.sh"
bench_init
ensure_pkgs nginx:nginx-light wrk:wrk
build_rampart
if [ -n "${FLOOR_BIN:-}" ]; then FLOOR=$FLOOR_BIN; else
  cargo build --release -q -p rampart-gateway --example hyper_floor
  FLOOR=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hyper_floor
fi
export RAMPART_LOG=warn
UP=18181 NGX=18182 RMP=18183 RNI=18184 RNR=18185 FLR=18186
start_nginx_upstream $UP "location / { return 200 '{\"id\":1,\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}'; }" 2
start_nginx_proxy $NGX $UP

# `rampart serve --upstream`: what a user gets from the one-liner, access log on stdout sent to a file.
start_bg rampart sh -c "exec $RAMPART serve --upstream http://127.0.0.1:$UP --listen 127.0.0.1:$RMP > $WORK/rampart-access.log"
# The same protections through a config file, with one stage switched off to price it.
variant() { # NAME PORT YAML-LINE
  cat > "$WORK/$1.yaml" <<CONF
listen: [{ addr: "127.0.0.1:$2" }]
access_log: $WORK/$1-access.log
$3
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none }
CONF
  start_bg "$1" "$RAMPART" serve --no-watch --config "$WORK/$1.yaml"
}
variant noinspect $RNI "inspect: { enabled: false }"
variant noredact $RNR "respond: { redact: { enabled: false } }"
start_bg floor "$FLOOR" 127.0.0.1:$FLR 127.0.0.1:$UP "$(nproc)"
for port in $NGX $RMP $RNI $RNR $FLR; do wait_http "http://127.0.0.1:$port/users/1"; done
sleep 1
RSS_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$WORK/rampart.pid")/status")

# A typical API GET with a query string, so the inspect stage has values to scan.
URLPATH="/users/1?fields=name,email&expand=orders"
printf '%-6s %-22s %-22s %-22s %-22s %-22s\n' round "nginx rps/p99/cpu" "rampart" "no-inspect" "no-redact" "hyper-floor"
: > "$WORK/results"
for r in $(seq "$ROUNDS"); do
  line=""
  for pair in "$NGX:$NGINX_PROXY_PIDS" "$RMP:$(cat "$WORK/rampart.pid")" "$RNI:$(cat "$WORK/noinspect.pid")" \
    "$RNR:$(cat "$WORK/noredact.pid")" "$FLR:$(cat "$WORK/floor.pid")"; do
    line="$line $(wrk_run "http://127.0.0.1:${pair%%:*}$URLPATH" "${pair#*:}")"
  done
  echo "$line" >> "$WORK/results"
  echo "$line" | awk -v r="$r" '{printf "%-6s", r; for (i = 1; i <= NF; i += 3) printf " %-22s", $i "/" $(i+1) "/" $(i+2); print ""}'
done
# columns: 1-3 nginx, 4-6 rampart, 7-9 no inspect, 10-12 no redact, 13-15 hyper floor (rps, p99 ms, CPU µs/request)
declare -a M
for c in $(seq 15); do M[$c]=$(col "$c" "$WORK/results"); done
echo
echo "medians (req/s, p99 ms, CPU µs/request):"
echo "  nginx reverse proxy        ${M[1]}  ${M[2]}  ${M[3]}"
echo "  rampart serve --upstream   ${M[4]}  ${M[5]}  ${M[6]}"
echo "  rampart, inspect off       ${M[7]}  ${M[8]}  ${M[9]}"
echo "  rampart, redaction off     ${M[10]}  ${M[11]}  ${M[12]}"
echo "  bare hyper proxy (floor)   ${M[13]}  ${M[14]}  ${M[15]}"
awk -v nr="${M[1]}" -v np="${M[2]}" -v nc="${M[3]}" -v rr="${M[4]}" -v rp="${M[5]}" -v rc="${M[6]}" \
  -v xr="${M[7]}" -v dr="${M[10]}" -v dp="${M[11]}" -v dc="${M[12]}" -v fr="${M[13]}" -v fp="${M[14]}" -v fc="${M[15]}" 'BEGIN {
  printf "ratio rampart/nginx: throughput %.2fx, p99 %.2fx, CPU per request %.2fx; inspect on/off: %.2fx\n", rr/nr, rp/np, rc/nc, rr/xr
  printf "ratio rampart (redaction off)/nginx: throughput %.2fx, p99 %.2fx, CPU per request %.2fx; redaction on/off: %.2fx\n", dr/nr, dp/np, dc/nc, rr/dr
  printf "ratio bare hyper proxy/nginx: throughput %.2fx, p99 %.2fx, CPU per request %.2fx; rampart/bare hyper: throughput %.2fx, CPU %.2fx\n", fr/nr, fp/np, fc/nc, rr/fr, rc/fc }'
echo "rampart idle RSS: $((RSS_IDLE / 1024)) MiB; after load: $(($(awk '/VmRSS/ {print $2}' "/proc/$(cat "$WORK/rampart.pid")/status") / 1024)) MiB"
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores; upstream: its own nginx, 2 workers;"
echo " nginx proxy: 2 workers, keep-alive 64; both proxies log every request to a file)"
