#!/bin/bash
# Syscalls per 16-byte upload, counted by strace on the whole server process (every thread), over `count`
# uploads from 16 clients after 48 warm-up uploads: a figure no noise moves. Build first (npm run build).
#
#   bench/syscalls.sh ours rest 200     our server (dist/main.js), REST multipart at speed=0
#   bench/syscalls.sh ours tus 200      our server, tus creation-with-upload
#   bench/syscalls.sh peer tus 200      bare @tus/server + @tus/file-store (bench/peers.ts)
# SYSCALLS_SIZE=65536 SYSCALLS_SPEED=32768 sends figure 10's throttled uploads instead (see syscalls-client.ts);
# the count then waits for their transfers too.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1 protocol=$2 count=${3:-200}
dir=$(mktemp -d /tmp/bench-syscalls-XXXX)
if [ "$kind" = ours ]; then
  NODE_ENV=production UPLOAD_DIR=$dir/up PORT=0 HOST=127.0.0.1 node dist/main.js >"$dir/out" 2>&1 &
else
  node --import tsx bench/peers.ts tus "$dir/up" >"$dir/out" 2>&1 &
fi
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/up"
for _ in $(seq 1 120); do grep -q 'http://127.0.0.1:[0-9]*' "$dir/out" && break; sleep 0.5; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/out" | head -1)
node --import tsx bench/syscalls-client.ts "$url" "$protocol" 48 >/dev/null
sleep 2
strace -f -c -p $pid -o "$dir/strace" 2>/dev/null &
tracer=$!
sleep 1
node --import tsx bench/syscalls-client.ts "$url" "$protocol" "$count"
# Transfers and journal writes that follow the answers: a throttled one takes size / speed seconds.
speed=${SYSCALLS_SPEED:-0}
sleep $((3 + (speed > 0 ? ${SYSCALLS_SIZE:-16} / (speed > 0 ? speed : 1) : 0)))
kill -INT $tracer
wait $tracer 2>/dev/null || true
echo "$kind $protocol: syscalls per upload"
awk -v n="$count" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "%8.2f  %s\n", $4 / n, $NF }' "$dir/strace" | sort -rn | head -25
