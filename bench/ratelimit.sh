#!/usr/bin/env bash
# Whole-proxy cost of rate limiting: the same rampart config with a per-IP limit that never trips, state in
# memory vs in Redis (loopback redis-server), plus the same without limits, alternated for several rounds with
# wrk against a static nginx upstream. Prints req/s and p99 per run, CPU µs per request of rampart (and, for the
# Redis run, of redis-server, which shares the cores), the medians, the ratios, and what Redis says of the limit
# script (calls, calls per request, usec_per_call).
# Usage: bench/ratelimit.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (RAMPART_BIN=path: benchmark that binary)
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
source "$(dirname "$0")/lib.sh"
bench_init
ensure_pkgs nginx:nginx-light wrk:wrk redis-server:redis-server redis-cli:redis-tools
build_rampart
export RAMPART_LOG=warn

UP=18281 RED=18282 NOL=18283 MEM=18284 RDS=18285
start_nginx_upstream $UP "location / { return 200 '{\"id\":1,\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}'; }"
start_bg redis-server redis-server --port $RED --bind 127.0.0.1 --save '' --appendonly no --daemonize no --logfile $WORK/redis-server.log

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
  start_bg $c $RAMPART serve --no-watch --config $WORK/$c.yaml
done
for p in $NOL $MEM $RDS; do wait_http "http://127.0.0.1:$p/users/1"; done

# The Redis-backed limit must really be answered by Redis (not the local fallback) while measured: count the
# Lua script calls Redis executed. (Cells of a never-tripping limit expire within a millisecond, so there is
# nothing to see with SCAN.)
script_stat() { # field of cmdstat_evalsha: calls | usec_per_call
  redis-cli -p $RED info commandstats | tr -d '\r' | awk -F'[:=,]' -v f="$1" \
    '/^cmdstat_evalsha:/ {for (i = 2; i < NF; i += 2) if ($i == f) print $(i + 1)}'
}
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:$RDS/users/1 >/dev/null
  [ -n "$(script_stat calls)" ] && break
  sleep 0.1
done
[ -n "$(script_stat calls)" ] || { echo "Redis ran no limit script: the Redis state is not in use" >&2; exit 1; }
redis-cli -p $RED config resetstat >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
REDIS_PID=$(cat $WORK/redis-server.pid)
URLPATH="/users/1"
echo "round  no-limit_rps p99_ms  memory_rps p99_ms cpu_us  redis_rps p99_ms cpu_us redis-server_cpu_us"
: > $WORK/results
REQS=0
for r in $(seq $ROUNDS); do
  read -r nr np _ < <(wrk_run "http://127.0.0.1:$NOL$URLPATH")
  read -r mr mp mc < <(wrk_run "http://127.0.0.1:$MEM$URLPATH" "$(cat $WORK/memory.pid)")
  before=$(ticks $REDIS_PID)
  read -r rr rp rc < <(wrk_run "http://127.0.0.1:$RDS$URLPATH" "$(cat $WORK/redis.pid)")
  after=$(ticks $REDIS_PID)
  sc=$(awk -v t=$((after - before)) -v hz=$HZ -v n="$rr" -v s=$SECS 'BEGIN {printf "%.1f", (n > 0 ? t * 1e6 / hz / (n * s) : 0)}')
  REQS=$(awk -v a=$REQS -v n="$rr" -v s=$SECS 'BEGIN {printf "%.0f", a + n * s}')
  echo "$r      $nr        $np   $mr      $mp  $mc    $rr     $rp  $rc   $sc"
  echo "$nr $np $mr $mp $rr $rp $mc $rc $sc" >> $WORK/results
done
FALLBACKS=$(grep -c 'state.degraded' $WORK/redis.err || true)
CALLS=$(script_stat calls)
USEC=$(script_stat usec_per_call)
NR=$(col 1 $WORK/results); NP=$(col 2 $WORK/results); MR=$(col 3 $WORK/results); MP=$(col 4 $WORK/results)
RR=$(col 5 $WORK/results); RP=$(col 6 $WORK/results); MC=$(col 7 $WORK/results); RC=$(col 8 $WORK/results)
SC=$(col 9 $WORK/results)
echo
echo "median no limit:      $NR req/s, p99 $NP ms"
echo "median memory state:  $MR req/s, p99 $MP ms, rampart $MC µs CPU/request"
echo "median Redis state:   $RR req/s, p99 $RP ms, rampart $RC µs + redis-server $SC µs CPU/request"
awk -v n=$NR -v m=$MR -v r=$RR 'BEGIN {printf "ratio memory/no-limit %.2fx; redis/memory %.2fx (target >= 0.7x)\n", m/n, r/m}'
awk -v c="$CALLS" -v q=$REQS -v u="$USEC" 'BEGIN {printf "limit script in Redis: %d calls for ~%d requests (%.2f per request), %s usec_per_call\n", c, q, (q > 0 ? c / q : 0), u}'
echo "Redis degraded during the run: $FALLBACKS time(s) (must be 0 for the Redis figure to count)"
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores, access logs off, redis-server on loopback)"
