#!/usr/bin/env bash
# The whole system on one machine, with binaries already built (scripts/demo.sh
# builds them, then runs this): edge-node on the bundled clip with its
# embedded MQTT broker, and edge-centre on SQLite storing everything and
# serving the operators' console. Prints the console's address and a login,
# then keeps serving it until Ctrl-C; --once stops after the clip, once the
# centre has stored every event (for the tests).
#
#   scripts/run-demo.sh [--fast] [--once]
#
# Environment (all optional): EDGE_DEMO_BIN (folder of the binaries,
# default target/release), EDGE_DEMO_OUT (default out/demo),
# EDGE_DEMO_BROKER_PORT (18830), EDGE_DEMO_CONSOLE_PORT (8080),
# EDGE_DEMO_PASSWORD (the demo login's password; random when unset).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${EDGE_DEMO_BIN:-$repo/target/release}
out=${EDGE_DEMO_OUT:-$repo/out/demo}
broker_port=${EDGE_DEMO_BROKER_PORT:-18830}
console_port=${EDGE_DEMO_CONSOLE_PORT:-8080}
once=0
node_args=()
for a in "$@"; do
  case $a in
    --once) once=1 ;;
    --fast) node_args+=(--fast) ;;
    *) echo "unknown argument $a (use --fast, --once)" >&2; exit 2 ;;
  esac
done
for b in edge-node edge-centre; do
  [[ -x $bin/$b ]] || { echo "$bin/$b is missing: cargo build --release -p edge-node -p edge-centre" >&2; exit 2; }
done
for p in "$broker_port" "$console_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is in use: stop what uses it, or set EDGE_DEMO_BROKER_PORT / EDGE_DEMO_CONSOLE_PORT" >&2
    exit 2
  fi
done

rm -rf "$out"
mkdir -p "$out"
# The demo pipeline, with the clip's path made absolute and the broker's port.
sed -e "s#\.\./tests/fixtures/#$repo/tests/fixtures/#" \
    -e "s#^url = \"embedded\".*#url = \"embedded\"\nembedded_port = $broker_port#" \
    "$repo/pipelines/demo.toml" > "$out/pipeline.toml"
cat > "$out/centre.toml" <<EOF
# The demo's centre: SQLite next to this file, the console on loopback.
[centre]
id = "demo"

[mqtt]
url = "mqtt://127.0.0.1:$broker_port"
topic_prefix = "edge"

[store]
kind = "sqlite"
path = "centre.db"

[snapshots]
dir = "snapshots"

[replay]
grace_s = 3                 # the demo is short: ask for missing events quickly
retry_s = 5

[console]
listen = "127.0.0.1:$console_port"
EOF

password=${EDGE_DEMO_PASSWORD:-$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 12)}
EDGE_DEMO_PASSWORD=$password "$bin/edge-centre" user add --config "$out/centre.toml" \
  --name operator --role operator --password-env EDGE_DEMO_PASSWORD > /dev/null

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# The node first (it hosts the broker); the centre subscribes as soon as the
# broker listens, while the node is still loading its model. Anything the
# centre misses all the same is found as a gap and replayed by the node.
EDGE_NODE_STATE_DIR="$out/node-state" "$bin/edge-node" demo --pipeline "$out/pipeline.toml" \
  --out "$out/node-snapshots" "${node_args[@]}" > "$out/node.txt" 2> "$out/node.log" &
node=$!
pids+=("$node")
for _ in $(seq 1 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break
  kill -0 "$node" 2>/dev/null || { cat "$out/node.log" >&2; echo "edge-node stopped before its broker listened" >&2; exit 1; }
  sleep 0.05
done
RUST_LOG=${RUST_LOG:-info} "$bin/edge-centre" run --config "$out/centre.toml" 2> "$out/centre.log" &
centre=$!
pids+=("$centre")

echo "edge-node is playing the bundled clip; its lines: $out/node.txt"
echo "edge-centre stores into $out/centre.db and serves the console:"
echo
echo "    http://127.0.0.1:$console_port/    login: operator    password: $password"
echo
tail -n +1 -f "$out/node.txt" --pid "$node" &
pids+=("$!")
wait "$node" || { echo "edge-node failed: $out/node.log" >&2; exit 1; }

# Every event the node published must be in the centre's database.
want=$(sed -n 's/^subscriber: \([0-9]*\) events.*/\1/p' "$out/node.txt")
stored=0
for _ in $(seq 1 150); do
  stored=$("$bin/edge-centre" stats --config "$out/centre.toml" | sed -n 's/^events //p')
  [[ -n $want && $stored -ge $want ]] && break
  sleep 0.2
done
echo
echo "the centre stored $stored of ${want:-?} events:"
"$bin/edge-centre" stats --config "$out/centre.toml" | sed 's/^/    /'
"$bin/edge-centre" gaps --config "$out/centre.toml" | sed 's/^/    gaps: /'
if ((once)); then
  [[ -n $want && $stored -ge $want ]] || { echo "events missing at the centre: see $out/centre.log" >&2; exit 1; }
  echo "demo finished (--once)"
  exit 0
fi
echo
echo "The console keeps serving: http://127.0.0.1:$console_port/ (operator / $password). Ctrl-C stops it."
wait "$centre"
