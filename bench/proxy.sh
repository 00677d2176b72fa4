#!/usr/bin/env bash
# Whole-proxy benchmark: nginx as a reverse proxy vs `rampart serve --upstream`, same static upstream, same
# load generator, alternated for several rounds on loopback. Prints req/s and p99 per run, the medians and the
# ratios. Usage: bench/proxy.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
cd "$(dirname "$0")/.."
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
UP=18181 NGX=18182 RMP=18183 RNI=18184 RNR=18185
trap 'kill $(cat $WORK/*.pid 2>/dev/null) 2>/dev/null; $NGINX -p $WORK -c $WORK/nginx.conf -s stop 2>/dev/null; rm -rf $WORK' EXIT

cat > $WORK/nginx.conf <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log $WORK/nginx-access.log;
  server {                       # the static upstream both proxies forward to
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 '{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}'; }
  }
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {                       # nginx as the reference reverse proxy
    listen 127.0.0.1:$NGX;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
$NGINX -p $WORK -c $WORK/nginx.conf

RAMPART_LOG=warn $RAMPART serve --upstream http://127.0.0.1:$UP --listen 127.0.0.1:$RMP > $WORK/rampart-access.log 2> $WORK/rampart.err &
echo $! > $WORK/rampart.pid
# The same, with the inspect stage (injection detection) switched off, to price it.
cat > $WORK/noinspect.yaml <<CONF
listen: [{ addr: "127.0.0.1:$RNI" }]
access_log: $WORK/rampart-noinspect-access.log
inspect: { enabled: false }
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none }
CONF
RAMPART_LOG=warn $RAMPART serve --no-watch --config $WORK/noinspect.yaml 2> $WORK/rampart-noinspect.err &
echo $! > $WORK/rampart-noinspect.pid
# And with response redaction off (JSON/text bodies stream instead of being read whole and scanned).
cat > $WORK/noredact.yaml <<CONF
listen: [{ addr: "127.0.0.1:$RNR" }]
access_log: $WORK/rampart-noredact-access.log
respond: { redact: { enabled: false } }
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none }
CONF
RAMPART_LOG=warn $RAMPART serve --no-watch --config $WORK/noredact.yaml 2> $WORK/rampart-noredact.err &
echo $! > $WORK/rampart-noredact.pid
for _ in $(seq 50); do curl -sf http://127.0.0.1:$RMP/users/1 >/dev/null && curl -sf http://127.0.0.1:$RNI/users/1 >/dev/null && curl -sf http://127.0.0.1:$RNR/users/1 >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:$NGX/users/1 >/dev/null
sleep 1
RSS_IDLE=$(awk '/VmRSS/ {print $2}' /proc/$(cat $WORK/rampart.pid)/status)

run() { # url → "rps p99_ms"
  wrk -t1 -c$CONNS -d${SECS}s --latency "$1" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {printf "%.0f %.3f\n", rps, p99}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# A typical API GET with a query string, so the inspect stage has values to scan.
URLPATH="/users/1?fields=name,email&expand=orders"
echo "round  nginx_rps  nginx_p99_ms  rampart_rps  rampart_p99_ms  no-inspect_rps  no-inspect_p99_ms  no-redact_rps  no-redact_p99_ms"
: > $WORK/results
for r in $(seq $ROUNDS); do
  read -r nr np < <(run "http://127.0.0.1:$NGX$URLPATH")
  read -r rr rp < <(run "http://127.0.0.1:$RMP$URLPATH")
  read -r xr xp < <(run "http://127.0.0.1:$RNI$URLPATH")
  read -r dr dp < <(run "http://127.0.0.1:$RNR$URLPATH")
  echo "$r      $nr      $np          $rr      $rp           $xr      $xp             $dr      $dp"
  echo "$nr $np $rr $rp $xr $xp $dr $dp" >> $WORK/results
done
col() { awk -v c=$1 '{print $c}' $WORK/results | median; }
NR=$(col 1); NP=$(col 2); RR=$(col 3); RP=$(col 4); XR=$(col 5); XP=$(col 6); DR=$(col 7); DP=$(col 8)
echo
echo "median nginx:                $NR req/s, p99 $NP ms"
echo "median rampart:              $RR req/s, p99 $RP ms"
echo "median rampart (no inspect): $XR req/s, p99 $XP ms"
echo "median rampart (no redact):  $DR req/s, p99 $DP ms"
awk -v rr=$RR -v nr=$NR -v rp=$RP -v np=$NP -v xr=$XR -v dr=$DR -v dp=$DP 'BEGIN {
  printf "ratio rampart/nginx: throughput %.2fx, p99 %.2fx; inspect on/off: %.2fx\n", rr/nr, rp/np, rr/xr
  printf "ratio rampart (redaction off)/nginx: throughput %.2fx, p99 %.2fx; redaction on/off: %.2fx\n", dr/nr, dp/np, rr/dr }'
echo "rampart idle RSS: $((RSS_IDLE / 1024)) MiB; after load: $(( $(awk '/VmRSS/ {print $2}' /proc/$(cat $WORK/rampart.pid)/status) / 1024 )) MiB"
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores; rampart access log on, to a file like nginx's)"
