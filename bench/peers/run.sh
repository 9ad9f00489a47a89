#!/usr/bin/env bash
# The README's comparison, rerun on this machine (issue 22, point 6; not run by CI: it needs
# PyPI and builds apalis-redis): N no-op tasks (default 100,000) queued first, then drained by
# two worker processes of each system (Celery, dramatiq, apalis-redis) on a fresh redis-server
# without persistence; stevedore's stock workers and the raw Redis cycle come from the
# benchmark's per-task mode in the same session.
#
#   bench/peers/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-100000}"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
cargo build --release --locked -q -p stevedore-bench
# apalis is its own workspace (bench/peers/apalis), built into its own target dir.
cargo build --release --locked -q --manifest-path bench/peers/apalis/Cargo.toml \
  --target-dir "$target/peers-apalis"
apalis="$target/peers-apalis/release/stevedore-peer-apalis"
"$target/release/stevedore-bench" --per-task-only 2>/dev/null \
  | python3 -c 'import json, sys; j = json.load(sys.stdin); print("raw cycle: %.0f tasks/s" % j["raw_per_s"]); print("stevedore (two stock workers): %.0f tasks/s" % j["e2e_stock_worker_per_s"])'
venv="$target/peers-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check celery==5.5.3 dramatiq==1.17.1 redis==6.2.0 packaging==24.2
port=26399
# apalis twice: its defaults (fetches of 10 every 100 ms), then tuned for a backlog (fetches of
# 1,000 every 1 ms); it prints the rate its tasks were acknowledged at and the rate they ran.
# With its defaults apalis polls 100 tasks a second per worker: that run takes about 9 minutes.
for peer in celery dramatiq apalis apalis-tuned; do
  dir="$(mktemp -d)"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >/dev/null &
  server=$!
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  tuning=()
  [ "$peer" = apalis-tuned ] && tuning=(PEERS_APALIS_BUFFER=1000 PEERS_APALIS_POLL_MS=1)
  [ "$peer" = apalis-tuned ] && echo -n "(tuned) "
  env "${tuning[@]}" "$venv/bin/python" bench/peers/peers.py "${peer%-tuned}" "$n" \
    "redis://127.0.0.1:$port/0" "$apalis" || true
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$dir"
done
