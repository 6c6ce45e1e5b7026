#!/usr/bin/env bash
# Console-trigger latency: the rig (ConsoleReader + RE2 + CommandPower, C++)
# beside labgrid 0.4.1 (SerialDriver.expect + ExternalPowerDriver, Debian's
# /usr/bin/python3), same pty, same pattern, same power-off command, same run.
# The events are split into rounds that alternate between the two, so load
# that comes and goes on the host falls on both alike.
#
#   bench/trigger_latency/run.sh [--events N] [--rounds R] [--command CMD] [--realtime]
#
# --realtime runs both under `chrt -f 50` (SCHED_FIFO; needs root or
# CAP_SYS_NICE).
# OTARIG_BUILD_DIR picks the build tree (default build/bench, configured here
# with OTARIG_BUILD_BENCH=ON when it does not exist yet). Only the benchmark's
# target is built.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${OTARIG_BUILD_DIR:-$repo/build/bench}
events=1000
rounds=4
command=/bin/true
prefix=()
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --command) command=$2; shift 2 ;;
    --realtime) prefix=(chrt -f 50); shift ;;
    *) echo "usage: $0 [--events N] [--rounds R] [--command CMD] [--realtime]" >&2; exit 2 ;;
  esac
done

if ! /usr/bin/python3 -c 'import labgrid' 2>/dev/null; then
  echo "labgrid is missing: OTARIG_SETUP_EXTRA=labgrid ci/setup" >&2
  exit 2
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DOTARIG_BUILD_BENCH=ON -DOTARIG_BUILD_TESTS=OFF -DOTARIG_BUILD_PYTHON=OFF >/dev/null
fi
cmake --build "$build" --target otarig-trigger-latency >/dev/null
binary=$(find "$build" -name otarig-trigger-latency -type f -perm -u+x | head -n1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
per_round=$(( (events + rounds - 1) / rounds ))

echo "trigger latency: last byte of 'CUT-NOW <n>;' written to a pty -> power-off command about to be spawned"
echo "events=$((per_round * rounds)) (${rounds} alternating rounds) command=$command kernel=$(uname -r) cpus=$(nproc)" \
     "load=$(cut -d' ' -f1-3 /proc/loadavg)${prefix:+ scheduling=SCHED_FIFO/50}"
for ((r = 0; r < rounds; r++)); do
  ${prefix[@]+"${prefix[@]}"} "$binary" --events "$per_round" --command "$command" --samples "$work/ours" >/dev/null
  ${prefix[@]+"${prefix[@]}"} /usr/bin/python3 "$here/labgrid_trigger.py" --events "$per_round" --command "$command" \
    --samples "$work/labgrid" >/dev/null
done

/usr/bin/python3 - "$work/ours" "$work/labgrid" <<'PY'
import sys
def load(path):
    return sorted(float(line) for line in open(path) if line.strip())
def pct(v, p):
    return v[min(len(v) - 1, int(p / 100.0 * (len(v) - 1) + 0.5))]
ours, lg = load(sys.argv[1]), load(sys.argv[2])
print(f"\n{'':36} {'events':>7} {'p50 (us)':>10} {'p99 (us)':>10} {'max (us)':>10}")
for name, v in (("otarig (Asio + RE2 + CommandPower)", ours), ("labgrid 0.4.1 (expect + off())", lg)):
    print(f"{name:36} {len(v):>7} {pct(v, 50):>10.1f} {pct(v, 99):>10.1f} {v[-1]:>10.1f}")
o50, o99, l50, l99 = pct(ours, 50), pct(ours, 99), pct(lg, 50), pct(lg, 99)
print(f"\nlabgrid / otarig: p50 {l50 / o50:.1f}x, p99 {l99 / o99:.1f}x; "
      f"otarig p99 {'<=' if o99 <= 1000 else '>'} 1 ms")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
