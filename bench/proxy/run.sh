#!/bin/sh
# Prints one table: the otarig fault proxy beside socat on loopback.
#   bench/proxy/run.sh [BENCH_EXECUTABLE] [-- extra args for "run"]
# Without an argument the newest build/*/bench/proxy/otarig_proxy_bench is used.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-}
if [ -z "$bin" ] || [ "$bin" = "--" ]; then
  bin=$(ls -t "$root"/build/*/bench/proxy/otarig_proxy_bench 2>/dev/null | head -n 1 || true)
else
  shift
fi
[ "${1:-}" = "--" ] && shift
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "run.sh: build the target otarig_proxy_bench first (cmake -DOTARIG_BUILD_BENCH=ON)" >&2
  exit 3
fi
if ! command -v socat >/dev/null 2>&1; then
  echo "run.sh: socat is not installed (apt-get install socat)" >&2
  exit 3
fi
exec "$bin" run --bytes "${OTARIG_BENCH_BYTES:-1GiB}" --pings "${OTARIG_BENCH_PINGS:-10000}" \
  --runs "${OTARIG_BENCH_RUNS:-3}" --socat "$(command -v socat)" "$@"
