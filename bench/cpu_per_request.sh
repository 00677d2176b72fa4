#!/usr/bin/env bash
# CPU cost per request, user and system time, of nginx as a reverse proxy and of `rampart serve --upstream`
# (read from /proc while wrk drives each in turn). Throughput ratios hide where the time goes; this shows it.
# Usage: bench/cpu_per_request.sh [SECONDS]
set -euo pipefail
SECS=${1:-8}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null && { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q -p rampart
W=$(mktemp -d)
trap '$NGINX -p $W -c $W/nginx.conf -s stop 2>/dev/null; kill $(cat $W/rampart.pid $W/rampart-noredact.pid 2>/dev/null) 2>/dev/null; rm -rf $W' EXIT
cat > $W/nginx.conf <<CONF
worker_processes 2;
pid $W/nginx.pid;
error_log $W/error.log warn;
events { worker_connections 4096; }
http {
  access_log $W/nginx-access.log;
  server { listen 127.0.0.1:18381; location / { default_type application/json; return 200 '{"id":1,"name":"Ada Lovelace","email":"ada@example.com"}'; } }
  upstream app { server 127.0.0.1:18381; keepalive 64; }
  server { listen 127.0.0.1:18382; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
$NGINX -p $W -c $W/nginx.conf
RAMPART_LOG=warn ${CARGO_TARGET_DIR:-target}/release/rampart serve --upstream http://127.0.0.1:18381 --listen 127.0.0.1:18383 > $W/rampart-access.log 2>/dev/null &
echo $! > $W/rampart.pid
# The same with response redaction off (JSON bodies stream instead of being read whole and scanned).
cat > $W/noredact.yaml <<CONF
listen: [{ addr: "127.0.0.1:18384" }]
access_log: $W/rampart-noredact-access.log
respond: { redact: { enabled: false } }
upstreams:
  app: { targets: ["http://127.0.0.1:18381"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none }
CONF
RAMPART_LOG=warn ${CARGO_TARGET_DIR:-target}/release/rampart serve --no-watch --config $W/noredact.yaml 2>/dev/null &
echo $! > $W/rampart-noredact.pid
sleep 1
NPIDS=$(pgrep -P "$(cat $W/nginx.pid)" | tr "\n" " ")   # this run's workers only
RPID=$(cat $W/rampart.pid)
XPID=$(cat $W/rampart-noredact.pid)
TICK=$(getconf CLK_TCK)
cpu() { for p in "$@"; do cat /proc/$p/stat; done | awk '{u+=$14; s+=$15} END {print u, s}'; }
# prints "requests user_ticks sys_ticks"
measure() { local url=$1; shift; read -r u0 s0 < <(cpu "$@"); n=$(wrk -t1 -c32 -d${SECS}s "$url" | awk '/requests in/ {print $1}'); read -r u1 s1 < <(cpu "$@"); echo "$n $((u1-u0)) $((s1-s0))"; }
read -r pn pu ps < <(measure http://127.0.0.1:18382/users/1 $NPIDS)   # nginx proxy + its upstream (same workers)
read -r un uu us < <(measure http://127.0.0.1:18381/users/1 $NPIDS)   # the upstream alone
read -r rn ru rs < <(measure http://127.0.0.1:18383/users/1 $RPID)    # rampart alone (upstream not counted)
read -r xn xu xs < <(measure http://127.0.0.1:18384/users/1 $XPID)    # rampart, redaction off
awk -v pn=$pn -v pu=$pu -v ps=$ps -v un=$un -v uu=$uu -v us=$us -v rn=$rn -v ru=$ru -v rs=$rs -v xn=$xn -v xu=$xu -v xs=$xs -v t=$TICK 'BEGIN {
  f = 1e6 / t;   # ticks → µs
  nu = pu*f/pn - uu*f/un; ns = ps*f/pn - us*f/un;
  printf "CPU per request (µs)      user    sys   total\n";
  printf "nginx reverse proxy     %6.1f %6.1f %7.1f\n", nu, ns, nu+ns;
  printf "rampart serve --upstream%6.1f %6.1f %7.1f\n", ru*f/rn, rs*f/rn, (ru+rs)*f/rn;
  printf "ratio rampart/nginx     %6.2f %6.2f %7.2f\n", (ru*f/rn)/nu, (rs*f/rn)/ns, ((ru+rs)*f/rn)/(nu+ns);
  printf "rampart, redaction off  %6.1f %6.1f %7.1f\n", xu*f/xn, xs*f/xn, (xu+xs)*f/xn;
  printf "ratio (redaction off)   %6.2f %6.2f %7.2f\n", (xu*f/xn)/nu, (xs*f/xn)/ns, ((xu+xs)*f/xn)/(nu+ns) }'
