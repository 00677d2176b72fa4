#!/usr/bin/env bash
# Whole-proxy price of response redaction: the same 2 KB JSON response (a realistic list, no secrets — the common
# case, every byte still scanned) through a route with redaction on (the default) and a route with
# `redact: { enabled: false }` (streamed through), alternated for several rounds on loopback; a third column runs
# a body with secrets in it (redacted and rewritten). Prints req/s and p99 per run, the medians and the ratios.
# Usage: bench/respond.sh [ROUNDS] [SECONDS] [CONNECTIONS]
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
chmod 755 $WORK                  # nginx workers (not root) read the bodies from here
UP=18191 RMP=18193
trap 'kill $(cat $WORK/*.pid 2>/dev/null) 2>/dev/null; $NGINX -p $WORK -c $WORK/nginx.conf -s stop 2>/dev/null; rm -rf $WORK' EXIT

# A ~2 KB JSON list response, and the same with a card number, a JWT and a password hash in it.
python3 - "$WORK" <<'PY'
import json, sys
items, i = [], 0
while True:
    items.append({"id": f"usr_{i:05}x8Kq", "name": "Ada Lovelace", "email": f"ada{i}@example.com",
                  "created": "2024-01-15T12:30:00Z", "amount": 1999 + i, "currency": "EUR", "sku": "KB-104/US",
                  "note": "Delivered to the front desk; signed by J. Smith (reception).", "active": True})
    doc = json.dumps({"items": items, "total": i + 1, "next_page_token": "c2Vjb25kLXBhZ2U"}, separators=(",", ":"))
    if len(doc) >= 2000:
        break
    i += 1
open(f"{sys.argv[1]}/clean.json", "w").write(doc)
dirty = doc.replace("Ada Lovelace", "4111 1111 1111 1111", 1).replace("KB-104/US", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln", 1)
open(f"{sys.argv[1]}/dirty.json", "w").write(dirty)
PY
chmod 644 $WORK/*.json
cat > $WORK/nginx.conf <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  server {
    listen 127.0.0.1:$UP;
    location / { root $WORK; try_files /clean.json =404; }
    location /dirty/ { root $WORK; try_files /dirty.json =404; }
  }
}
CONF
$NGINX -p $WORK -c $WORK/nginx.conf

cat > $WORK/rampart.yaml <<CONF
listen: [{ addr: "127.0.0.1:$RMP" }]
access_log: $WORK/rampart-access.log
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/on/*", methods: [GET], upstream: app, auth: none }
  - { path: "/dirty/*", methods: [GET], upstream: app, auth: none }
  - { path: "/off/*", methods: [GET], upstream: app, auth: none, redact: { enabled: false } }
CONF
RAMPART_LOG=error $RAMPART serve --no-watch --config $WORK/rampart.yaml 2> $WORK/rampart.err &
echo $! > $WORK/rampart.pid
for _ in $(seq 50); do curl -sf http://127.0.0.1:$RMP/on/x >/dev/null && break; sleep 0.1; done
ON=$(curl -s http://127.0.0.1:$RMP/on/x | wc -c); OFF=$(curl -s http://127.0.0.1:$RMP/off/x | wc -c)
DIRTY=$(curl -s http://127.0.0.1:$RMP/dirty/x)
echo "body: $OFF bytes passed through, $ON bytes redacted (clean: unchanged); dirty body redacted: $(echo "$DIRTY" | grep -c '\[redacted:jwt\]') jwt, card $(echo "$DIRTY" | grep -o '\*\*\*\* \*\*\*\* \*\*\*\* 1111' | head -1)"
sleep 1

PID=$(cat $WORK/rampart.pid)
TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
run() { # url → "rps p99_ms cpu_us_per_request" (the gateway's own user+system CPU time, steadier than req/s on a busy box)
  local before after out
  before=$(cpu)
  out=$(wrk -t1 -c$CONNS -d${SECS}s --latency "$1" 2>/dev/null)
  after=$(cpu)
  echo "$out" | awk -v ticks=$((after - before)) -v hz=$TICK '
    /requests in/ {n=$1}
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {printf "%.0f %.3f %.1f\n", rps, p99, ticks * 1e6 / hz / n}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "round  off_rps  off_p99_ms  off_cpu_us  on_rps  on_p99_ms  on_cpu_us  dirty_rps  dirty_p99_ms  dirty_cpu_us"
: > $WORK/results
for r in $(seq $ROUNDS); do
  read -r fr fp fc < <(run "http://127.0.0.1:$RMP/off/users")
  read -r nr np nc < <(run "http://127.0.0.1:$RMP/on/users")
  read -r dr dp dc < <(run "http://127.0.0.1:$RMP/dirty/users")
  echo "$r      $fr    $fp      $fc        $nr   $np      $nc       $dr     $dp        $dc"
  echo "$fr $fp $fc $nr $np $nc $dr $dp $dc" >> $WORK/results
done
col() { awk -v c=$1 '{print $c}' $WORK/results | median; }
FR=$(col 1); FP=$(col 2); FC=$(col 3); NR=$(col 4); NP=$(col 5); NC=$(col 6); DR=$(col 7); DP=$(col 8); DC=$(col 9)
echo
echo "median redaction off (streamed):  $FR req/s, p99 $FP ms, $FC µs CPU per request"
echo "median redaction on (clean body): $NR req/s, p99 $NP ms, $NC µs CPU per request"
echo "median redaction on (secrets):    $DR req/s, p99 $DP ms, $DC µs CPU per request"
awk -v f=$FR -v n=$NR -v d=$DR -v fc=$FC -v nc=$NC -v dc=$DC 'BEGIN {
  printf "ratio on/off: throughput %.2fx (clean body), %.2fx (body with secrets)\n", n/f, d/f
  printf "ratio on/off by gateway CPU per request (the throughput ratio when the gateway owns the cores): %.2fx (clean), %.2fx (secrets)\n", fc/nc, fc/dc }'
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores, nginx static upstream, rampart access log to a file)"
