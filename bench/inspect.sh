#!/usr/bin/env bash
# Price of the inspect stage (injection detection, level 1) on the whole proxy: Rampart with inspect on vs the
# same config with `inspect: { enabled: false }`, same static upstream, alternated for several rounds on
# loopback, for a typical API GET with a query string and a ~1 KB JSON POST. Prints req/s and p99 per run,
# medians and the on/off ratios (same run, so load on the machine hits both alike).
# Usage: bench/inspect.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
source "$(dirname "$0")/lib.sh"
bench_init
ensure_pkgs nginx:nginx-light wrk:wrk
build_rampart
export RAMPART_LOG=warn

UP=18191 ON=18192 OFF=18193
start_nginx_upstream $UP "location / { return 200 '{\"id\":1,\"name\":\"Ada Lovelace\",\"email\":\"ada@example.com\"}'; }" 2
for variant in on off; do
  port=$ON; enabled=true
  [ $variant = off ] && port=$OFF && enabled=false
  cat > $WORK/$variant.yaml <<CONF
listen: [{ addr: "127.0.0.1:$port" }]
access_log: $WORK/$variant-access.log
inspect: { enabled: $enabled, level: 1 }
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/*", methods: [ANY], upstream: app, auth: none }
CONF
  start_bg rampart-$variant $RAMPART serve --no-watch --config $WORK/$variant.yaml
done

# A ~1 KB order as an API client would send it: ids, names with apostrophes, an address, prose, SKUs.
BODY='{"customer":{"id":"c_8f3a2b71","name":"Siobhán O'"'"'Connor","email":"siobhan.oconnor@example.com","phone":"+353 1 555 0142"},"shipping":{"street":"12 Merrion Sq N","city":"Dublin","postcode":"D02 XY45","country":"IE"},"items":['
for i in 1 2 3 4 5 6; do
  BODY+='{"sku":"KB-10'$i'/US","title":"Mechanical keyboard (rev. '$i')","qty":'$i',"unit_price":"89.90"},'
done
BODY=${BODY%,}'],"note":"Please leave it with the neighbour at no. 14 if nobody is home; thanks!","coupon":"SPRING-24","gift":false}'
printf '%s' "$BODY" > $WORK/body.json
cat > $WORK/post.lua <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/body.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA
GETPATH="/users/1?fields=name,email&expand=orders&q=O%27Brien%20keyboard&page=2"
wait_http "http://127.0.0.1:$ON/users/1"
wait_http "http://127.0.0.1:$OFF/users/1"
for port in $ON $OFF; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' --data-binary @$WORK/body.json "http://127.0.0.1:$port/orders")
  [ "$code" = 200 ] || { echo "the POST is refused on port $port ($code)" >&2; exit 1; }
done

echo "body: $(wc -c < $WORK/body.json) bytes; GET $GETPATH"
echo "round  get_on_rps  get_off_rps  post_on_rps  post_off_rps  (p99 ms: get on/off, post on/off)"
: > $WORK/results
for r in $(seq $ROUNDS); do
  read -r go gop _ < <(wrk_run "http://127.0.0.1:$ON$GETPATH")
  read -r gf gfp _ < <(wrk_run "http://127.0.0.1:$OFF$GETPATH")
  read -r po pop _ < <(wrk_run "http://127.0.0.1:$ON/orders" "" $WORK/post.lua)
  read -r pf pfp _ < <(wrk_run "http://127.0.0.1:$OFF/orders" "" $WORK/post.lua)
  echo "$r      $go       $gf        $po        $pf         ($gop/$gfp, $pop/$pfp)"
  echo "$go $gf $po $pf" >> $WORK/results
done
GO=$(col 1 $WORK/results); GF=$(col 2 $WORK/results); PO=$(col 3 $WORK/results); PF=$(col 4 $WORK/results)
echo
echo "median GET:  inspect on $GO req/s, off $GF req/s"
echo "median POST: inspect on $PO req/s, off $PF req/s"
awk -v go=$GO -v gf=$GF -v po=$PO -v pf=$PF 'BEGIN { printf "ratio inspect on/off: GET %.2fx, JSON POST %.2fx\n", go/gf, po/pf }'
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores; access log on, to a file)"
