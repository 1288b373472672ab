#!/usr/bin/env bash
# scripts/bench-dispatch.sh -- calls per second through Kamailio (the shipped
# deploy/kamailio/kamailio.cfg) in front of one ansim node, then two, in one run.
#
#   scripts/bench-dispatch.sh            # from the project root
#
# Needs target/release/ansim (cargo build --release), kamailio, sipp, and a
# PostgreSQL role that may create databases in BENCH_DATABASE_URL
# [postgres://ansim@127.0.0.1:55432/postgres]. For each N in $NODES_LIST
# [1 2]: a fresh database, N `ansim serve` nodes on 127.0.0.11, 127.0.0.12, …
# ([node] id n1, n2, …; shared key directory and recording directory),
# $SESSIONS sessions provisioned through n1's API, Kamailio on
# 127.0.0.1:$KAM_PORT with a dispatcher list of the N nodes, then the step
# test of ../shared/peer-bench/run-cps.sh (SIPp UAC -> Kamailio -> nodes ->
# SIPp UAS on 127.0.0.1:5080; scenarios/uac_inf.xml, every call a real
# masked call). Knobs: RATES, SECS (run-cps.sh), SESSIONS [1000], POOL [20],
# PEER_BENCH [/work/shared/peer-bench], KAM_PORT [25070], OUT.
# Last line: dispatch_1node_max_cps=A dispatch_2node_max_cps=B
set -u -o pipefail
PROJECT=$(cd "$(dirname "$0")/.." && pwd)
PEER_BENCH=${PEER_BENCH:-/work/shared/peer-bench}
BIN=${BIN:-$PROJECT/target/release/ansim}
[ -x "$BIN" ] || { echo "no ansim binary at $BIN (cargo build --release)" >&2; exit 2; }
PG=${BENCH_DATABASE_URL:-postgres://ansim@127.0.0.1:55432/postgres}
NODES_LIST=${NODES_LIST:-"1 2"} SESSIONS=${SESSIONS:-1000} POOL=${POOL:-20}
KAM_PORT=${KAM_PORT:-25070}
OUT=${OUT:-$PROJECT/target/bench-dispatch-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
PIDS=() WD= DB=
stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done; kill -KILL "$p" 2>/dev/null; done
  PIDS=()
  [ -n "$DB" ] && psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  [ -n "$WD" ] && rm -rf "$WD"
  DB= WD=
}
trap stop_all EXIT
trap 'exit 130' INT TERM

run_with() { # N
  local n=$1 i ip list="" pids=""
  WD=$(mktemp -d /tmp/bench-dispatch.XXXXXX) DB="bench_dispatch_$$_$n"
  psql "$PG" -qc "CREATE DATABASE $DB" >/dev/null || exit 4
  local url="${PG%/*}/$DB"
  common() { # the settings every node shares, as ANSIM_* variables
    echo ANSIM_STORE__DATABASE_URL="$url" ANSIM_STORE__RECORDINGS="file://$WD/rec" \
      ANSIM_KEYS__MASTER_KEY_FILE="$WD/master.key" ANSIM_KEYS__STORE="dir:$WD/keys" ANSIM_KEYS__DEV=true \
      ANSIM_TRUNK__ADDRESS=127.0.0.1:5080 ANSIM_TRUNK__ALLOW='["127.0.0.1/32"]' \
      ANSIM_LIMITS__MAX_TRANSACTIONS=400000 ANSIM_LOG=warn
  }
  env $(common) "$BIN" migrate >"$OUT/migrate-$n.log" 2>&1 || { tail -5 "$OUT/migrate-$n.log"; exit 4; }
  local admin prov
  admin=$(env $(common) "$BIN" staff add --name bench-admin --role admin 2>>"$OUT/migrate-$n.log" | tail -1)
  prov=$(env $(common) "$BIN" staff add --name bench-prov --role provisioner 2>>"$OUT/migrate-$n.log" | tail -1)
  for i in $(seq "$n"); do
    ip=127.0.0.$((10 + i))
    env $(common) ANSIM_NODE__ID="n$i" ANSIM_SIP__LISTEN="[\"udp:$ip:5060\"]" ANSIM_API__LISTEN="$ip:28080" \
      ANSIM_MEDIA__BIND="$ip" ANSIM_MEDIA__ADVERTISE="$ip" ANSIM_MEDIA__PORTS=40000-49999 \
      timeout -k 5 3600 "$BIN" serve >"$OUT/n$i-$n.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do curl -sf "http://$ip:28080/healthz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://$ip:28080/healthz" >/dev/null || { echo "node n$i did not start:"; tail -20 "$OUT/n$i-$n.log"; exit 4; }
    list+="1 sip:$ip:5060 0 0 duid=n$i"$'\n'
    pids+=" $(cat /proc/$!/task/*/children 2>/dev/null | awk '{print $1}')"
  done
  printf '%s' "$list" >"$WD/dispatcher.list"
  python3 - "$admin" "$prov" "$SESSIONS" "$POOL" "$WD/callers.csv" <<'PY' || exit 4
import json, sys, urllib.request
admin, prov, n, pool, out = sys.argv[1:]
def call(path, body, token):
    req = urllib.request.Request("http://127.0.0.11:28080" + path, json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())
call("/v1/numbers", {"numbers": ["+8250%08d" % (70000000 + i) for i in range(int(pool))]}, admin)
rows = []
for i in range(int(n)):
    s = call("/v1/sessions", {"a": "+8210%08d" % (10000000 + i), "b": "+8210%08d" % (60000000 + i), "ttl": "1d"}, prov)
    rows.append("%s;%s;" % (s["a"]["number"], s["a"]["proxy_number"]))
open(out, "w").write("SEQUENTIAL\n" + "\n".join(rows) + "\n")
PY
  kamailio -DD -E -m 1024 -M 64 -x tlsf -X tlsf -f "$PROJECT/deploy/kamailio/kamailio.cfg" \
    -A "LISTEN=udp:127.0.0.1:$KAM_PORT" -A "DISPATCHER_LIST=\"$WD/dispatcher.list\"" -A CHILDREN=4 \
    -P "$WD/kamailio.pid" -Y "$WD" >"$OUT/kamailio-$n.log" 2>&1 &
  PIDS+=($!)
  sleep 3 # the first OPTIONS probes mark the nodes active
  echo "# $n node(s):$pids behind kamailio $(cat "$WD/kamailio.pid" 2>/dev/null)"
  UAC_SCEN="$PEER_BENCH/scenarios/uac_inf.xml" UAC_INF="$WD/callers.csv" \
    TARGET_PIDS="$pids $(pgrep -P "$(cat "$WD/kamailio.pid")" | tr '\n' ' ') $(cat "$WD/kamailio.pid")" \
    OUT="$OUT/run-$n" "$PEER_BENCH/run-cps.sh" --no-direct "127.0.0.1:$KAM_PORT" | tee "$OUT/result-$n.txt"
  stop_all
}

line=""
for n in $NODES_LIST; do
  run_with "$n"
  line+="dispatch_${n}node_max_cps=$(awk -F= '/^max_cps_zero_fail=/{print $2}' "$OUT/result-$n.txt" | tail -1) "
done
echo "$line"
