#!/usr/bin/env bash
# Whole-proxy cost of rate limiting: the same rampart config with a per-IP limit that never trips, state in
# memory vs in Redis (loopback redis-server), plus the same without limits, alternated for several rounds with
# wrk against a static nginx upstream. Prints req/s and p99 per run, the medians and the ratios.
# Usage: bench/ratelimit.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
cd "$(dirname "$0")/.."
ROOT=$PWD

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q -p rampart
RAMPART=${CARGO_TARGET_DIR:-$ROOT/target}/release/rampart

WORK=$(mktemp -d)
UP=18281 RED=18282 NOL=18283 MEM=18284 RDS=18285
trap 'kill $(cat $WORK/*.pid 2>/dev/null) 2>/dev/null; redis-cli -p $RED shutdown nosave >/dev/null 2>&1; $NGINX -p $WORK -c $WORK/nginx.conf -s stop 2>/dev/null; rm -rf $WORK' EXIT

cat > $WORK/nginx.conf <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 '{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}'; }
  }
}
CONF
$NGINX -p $WORK -c $WORK/nginx.conf
redis-server --port $RED --bind 127.0.0.1 --save '' --appendonly no --daemonize no > $WORK/redis.log 2>&1 &
echo $! > $WORK/redis.pid

config() { # port state limits
  cat <<CONF
listen: [{ addr: "127.0.0.1:$1" }]
access_log: off
state: $2
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none $3 }
CONF
}
NEVER=', limits: [{ key: ip, rate: 1000000000/s, burst: 1000000 }]'
config $NOL memory "" > $WORK/none.yaml
config $MEM memory "$NEVER" > $WORK/memory.yaml
config $RDS "redis://127.0.0.1:$RED" "$NEVER" > $WORK/redis.yaml
for c in none memory redis; do
  RAMPART_LOG=warn $RAMPART serve --no-watch --config $WORK/$c.yaml 2> $WORK/$c.err &
  echo $! > $WORK/$c.pid
done
for p in $NOL $MEM $RDS; do
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$p/users/1 >/dev/null && break; sleep 0.1; done
done
# The Redis-backed limit must really be answered by Redis (not the local fallback) while measured: count the
# Lua script calls Redis executed. (Cells of a never-tripping limit expire within a millisecond, so there is
# nothing to see with SCAN.)
evals() { redis-cli -p $RED info commandstats | awk -F'[=,]' '/^cmdstat_evalsha:/ {print $2}'; }
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:$RDS/users/1 >/dev/null
  [ "$(evals)" != "" ] && [ "$(evals)" -ge 1 ] && break
  sleep 0.1
done
[ "$(evals)" != "" ] || { echo "Redis ran no limit script: the Redis state is not in use" >&2; exit 1; }

run() { # url → "rps p99_ms"
  wrk -t1 -c$CONNS -d${SECS}s --latency "$1" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {printf "%.0f %.3f\n", rps, p99}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

URLPATH="/users/1"
echo "round  no-limit_rps  p99_ms  memory_rps  p99_ms  redis_rps  p99_ms"
: > $WORK/results
for r in $(seq $ROUNDS); do
  read -r nr np < <(run "http://127.0.0.1:$NOL$URLPATH")
  read -r mr mp < <(run "http://127.0.0.1:$MEM$URLPATH")
  read -r rr rp < <(run "http://127.0.0.1:$RDS$URLPATH")
  echo "$r      $nr        $np   $mr      $mp   $rr     $rp"
  echo "$nr $np $mr $mp $rr $rp" >> $WORK/results
done
FALLBACKS=$(grep -c 'state.degraded' $WORK/redis.err || true)
EVALS=$(evals)
col() { awk -v c=$1 '{print $c}' $WORK/results | median; }
NR=$(col 1); NP=$(col 2); MR=$(col 3); MP=$(col 4); RR=$(col 5); RP=$(col 6)
echo
echo "median no limit:      $NR req/s, p99 $NP ms"
echo "median memory state:  $MR req/s, p99 $MP ms"
echo "median Redis state:   $RR req/s, p99 $RP ms"
awk -v n=$NR -v m=$MR -v r=$RR 'BEGIN {printf "ratio memory/no-limit %.2fx; redis/memory %.2fx (target >= 0.7x)\n", m/n, r/m}'
echo "Redis degraded during the run: $FALLBACKS time(s) (must be 0 for the Redis figure to count); Lua calls Redis ran: $EVALS"
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores, access logs off, redis-server on loopback)"
