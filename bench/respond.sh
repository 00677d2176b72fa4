#!/usr/bin/env bash
# Whole-proxy price of response protection on a ~2 KB JSON list response from a static nginx upstream, alternated
# for several rounds on loopback against the pass-through peer measured in the same run:
#   off           no response rules (`redact: { enabled: false }`, no spec): the body streams through
#   redact        redaction on (the default), clean body: every byte scanned, nothing changed
#   redact_dirty  redaction on, a body with a card number and a JWT: rewritten
#   schema        an OpenAPI response schema in `filter` mode AND redaction on, every property declared, no secrets
#   schema_dirty  the same route, each record with two undeclared properties and the body with secrets: filtered
#                 and redacted (one pass over the bytes, one splice)
# Prints req/s, p99 and the gateway's CPU time per request for each, the medians, and the ratios to `off`.
# Usage: bench/respond.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
source "$(dirname "$0")/lib.sh"
bench_init
ensure_pkgs nginx:nginx-light wrk:wrk
build_rampart
UP=18191 RMP=18193

# The ~2 KB JSON list, with secrets, with undeclared properties, and the spec that declares the clean one.
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
items, i = [], 0
while True:
    items.append({"id": f"usr_{i:05}x8Kq", "name": "Ada Lovelace", "email": f"ada{i}@example.com",
                  "created": "2024-01-15T12:30:00Z", "amount": 1999 + i, "currency": "EUR", "sku": "KB-104/US",
                  "note": "Delivered to the front desk; signed by J. Smith (reception).", "active": True})
    doc = {"items": items, "total": i + 1, "next_page_token": "c2Vjb25kLXBhZ2U"}
    if len(json.dumps(doc, separators=(",", ":"))) >= 2000:
        break
    i += 1
dump = lambda d: json.dumps(d, separators=(",", ":"))
clean = dump(doc)
secrets = lambda s: s.replace("Ada Lovelace", "4111 1111 1111 1111", 1).replace("KB-104/US", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2ln", 1)
open(f"{w}/clean.json", "w").write(clean)
open(f"{w}/dirty.json", "w").write(secrets(clean))
# Undeclared internals in every record (the same size budget: fewer records).
extra = [dict(it, internal_ref=f"db-{n}", shard=n % 4) for n, it in enumerate(items[:-2])]
open(f"{w}/undeclared.json", "w").write(secrets(dump(dict(doc, items=extra, total=len(extra)))))
user = {"type": "object", "properties": {k: {"type": t} for k, t in [("id", "string"), ("name", "string"),
        ("email", "string"), ("created", "string"), ("amount", "integer"), ("currency", "string"),
        ("sku", "string"), ("note", "string"), ("active", "boolean")]}}
spec = {"openapi": "3.0.3", "info": {"title": "bench", "version": "1"},
        "paths": {"/users": {"get": {"responses": {"200": {"description": "a page of users", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
                "total": {"type": "integer"}, "next_page_token": {"type": "string"}}}}}}}}}},
        "components": {"schemas": {"User": user}}}
open(f"{w}/spec.json", "w").write(json.dumps(spec))
PY
chmod 644 $WORK/*.json
start_nginx_upstream $UP "
    location / { try_files /clean.json =404; }
    location /redact_dirty/ { try_files /dirty.json =404; }
    location /schema_dirty/ { try_files /undeclared.json =404; }"

cat > $WORK/rampart.yaml <<CONF
listen: [{ addr: "127.0.0.1:$RMP" }]
access_log: $WORK/rampart-access.log
upstreams:
  app: { targets: ["http://127.0.0.1:$UP"] }
routes:
  - { path: "/off/*", methods: [GET], upstream: app, auth: none, redact: { enabled: false } }
  - { path: "/redact/*", methods: [GET], upstream: app, auth: none }
  - { path: "/redact_dirty/*", methods: [GET], upstream: app, auth: none }
  - { path: "/schema/*", methods: [GET], upstream: app, auth: none, openapi: { spec: spec.json, base_path: /schema, responses: filter } }
  - { path: "/schema_dirty/*", methods: [GET], upstream: app, auth: none, openapi: { spec: spec.json, base_path: /schema_dirty, responses: filter } }
CONF
start_bg rampart env RAMPART_LOG=error $RAMPART serve --no-watch --config $WORK/rampart.yaml
COLS="off redact redact_dirty schema schema_dirty"
for c in $COLS; do wait_http http://127.0.0.1:$RMP/$c/users; done
for c in $COLS; do curl -s http://127.0.0.1:$RMP/$c/users > $WORK/out-$c; done
echo "bodies sent: $(for c in $COLS; do printf '%s %s B; ' $c $(wc -c < $WORK/out-$c); done)"
echo "schema_dirty: $(grep -o internal_ref $WORK/out-schema_dirty | wc -l) undeclared left (of $(grep -o internal_ref $WORK/undeclared.json | wc -l)), $(grep -o '\[redacted:jwt\]' $WORK/out-schema_dirty | wc -l) jwt redacted, card $(grep -o '\*\*\*\* \*\*\*\* \*\*\*\* 1111' $WORK/out-schema_dirty | head -1)"
cmp -s $WORK/out-schema $WORK/clean.json && echo "schema (clean): sent byte for byte as the upstream sent it"
sleep 1

PID=$(cat $WORK/rampart.pid)
printf 'round'; for c in $COLS; do printf '  %s_rps %s_p99_ms %s_cpu_us' $c $c $c; done; echo
: > $WORK/results
for r in $(seq $ROUNDS); do
  line=""
  for c in $COLS; do line="$line $(wrk_run http://127.0.0.1:$RMP/$c/users $PID)"; done
  echo "$r    $line"
  echo "$line" >> $WORK/results
done
echo
i=0
declare -A RPS CPU
for c in $COLS; do
  RPS[$c]=$(col $((i * 3 + 1)) $WORK/results); P99=$(col $((i * 3 + 2)) $WORK/results); CPU[$c]=$(col $((i * 3 + 3)) $WORK/results)
  printf 'median %-13s %6s req/s, p99 %s ms, %s µs CPU per request\n' "$c:" "${RPS[$c]}" "$P99" "${CPU[$c]}"
  i=$((i + 1))
done
for c in $COLS; do
  [ $c = off ] && continue
  awk -v c=$c -v r=${RPS[$c]} -v f=${RPS[off]} -v cc=${CPU[$c]} -v fc=${CPU[off]} \
    'BEGIN { printf "ratio %s/off: throughput %.2fx, by gateway CPU per request %.2fx\n", c, r/f, fc/cc }'
done
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds alternated, $(nproc) cores, nginx static upstream, rampart access log to a file)"
