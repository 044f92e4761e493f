#!/usr/bin/env bash
# The centre at city scale on this machine: a real mosquitto, edge-centre
# (SQLite, or PostgreSQL with --pg URL) and `edge-centre simulate` playing
# 480 boxes x 32 cameras at a given rate, all on 127.0.0.1. Prints what was
# sent and stored, publish-to-commit latency (p50/p99), the centre's CPU and
# peak RSS, and the database and snapshot growth per simulated day.
#
#   scripts/centre-bench.sh [--rate 3400] [--duration 300] [--instances 1|2] [--pg URL]
#
# Release build first: cargo build --release -p edge-centre. The logs are
# left in target/centre-bench/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin="$repo/target/release/edge-centre"
rate=3400 duration=300 instances=1 pg=""
while (($#)); do
  case $1 in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --instances) instances=$2; shift 2 ;;
    --pg) pg=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "build first: cargo build --release -p edge-centre" >&2; exit 2; }
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pids=()
logs="$repo/target/centre-bench"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mkdir -p "$logs" && cp "$work"/*.log "$logs"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
message_size_limit 0
CONF
[[ $(id -u) == 0 ]] && echo "user root" >> "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 & pids+=($!)
sleep 0.5
if [[ -n $pg ]]; then store="kind = \"postgres\"
url = \"$pg\""; else store='path = "centre.db"'; fi
centres=()
for i in $(seq 1 "$instances"); do
  cat > "$work/c$i.toml" <<CONF
[centre]
id = "bench-$i"
[mqtt]
url = "mqtt://127.0.0.1:$port"
[store]
$store
[snapshots]
dir = "snapshots"
CONF
  RUST_LOG=info "$bin" run --config "$work/c$i.toml" 2>"$work/c$i.log" & centres+=($!); pids+=($!)
done
for i in $(seq 1 "$instances"); do
  for _ in $(seq 100); do grep -q subscribed "$work/c$i.log" 2>/dev/null && break; sleep 0.1; done
done
cpu0=0; for p in "${centres[@]}"; do cpu0=$((cpu0 + $(awk '{print $14+$15}' /proc/$p/stat))); done
t0=$(date +%s.%N)
"$bin" simulate --broker "mqtt://127.0.0.1:$port" --rate "$rate" --duration "${duration}s" | tee "$work/sim.txt"
events=$(sed -n 's/.*(\([0-9]*\) lifecycle events).*/\1/p' "$work/sim.txt")
# Wait until every event is stored (or 120 s).
stored=0
for _ in $(seq 600); do
  stored=$("$bin" stats --config "$work/c1.toml" | awk '/^events/{print $2}')
  ((stored >= events)) && break
  sleep 0.2
done
t1=$(date +%s.%N)
cpu1=0; for p in "${centres[@]}"; do cpu1=$((cpu1 + $(awk '{print $14+$15}' /proc/$p/stat))); done
hz=$(getconf CLK_TCK)
for p in "${centres[@]}"; do grep VmHWM /proc/$p/status | sed "s/^/centre $p peak RSS: /"; done
for p in "${centres[@]}"; do kill -TERM "$p"; done
for p in "${centres[@]}"; do wait "$p" 2>/dev/null || true; done
echo "stored $stored of $events lifecycle events (lost: $((events - stored)))"
python3 - "$cpu0" "$cpu1" "$hz" "$t0" "$t1" <<PY
import sys
c0,c1,hz,t0,t1=map(float,sys.argv[1:])
print(f"centre CPU: {100*(c1-c0)/hz/(t1-t0):.0f} % of one core over {t1-t0:.0f} s (incl. draining)")
PY
for i in $(seq 1 "$instances"); do grep -h "edge-centre stopped" "$work/c$i.log" | sed 's/^.*INFO //'; done
db=$(du -sb "$work"/centre.db* 2>/dev/null | awk '{s+=$1} END {print s+0}')
snaps=$(du -sb "$work/snapshots" | awk '{print $1}')
python3 - "$db" "$snaps" "$duration" <<PY
import sys
db,snaps,d=map(float,sys.argv[1:])
day=86400/d
print(f"growth per simulated day: database {db*day/1e9:.1f} GB (SQLite file; 0 with --pg), snapshots {snaps*day/1e9:.0f} GB")
PY
