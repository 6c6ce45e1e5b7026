#!/usr/bin/env bash
# Console-trigger latency: the rig (ConsoleReader + RE2 + CommandPower, C++)
# beside labgrid 0.4.1 (SerialDriver.expect + ExternalPowerDriver, Debian's
# /usr/bin/python3), same pty, same pattern, same power-off command, same run.
#
#   bench/trigger_latency/run.sh [--events N] [--command CMD] [--realtime]
#
# --realtime runs both under `chrt -f 50` (SCHED_FIFO; needs root or
# CAP_SYS_NICE), which keeps other load on the host out of the tail.
#
# OTARIG_BUILD_DIR picks the build tree (default build/bench, configured here
# with OTARIG_BUILD_BENCH=ON when it does not exist yet). Only the benchmark's
# target is built.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${OTARIG_BUILD_DIR:-$repo/build/bench}
events=1000
command=/bin/true
prefix=()
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --command) command=$2; shift 2 ;;
    --realtime) prefix=(chrt -f 50); shift ;;
    *) echo "usage: $0 [--events N] [--command CMD] [--realtime]" >&2; exit 2 ;;
  esac
done

if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DOTARIG_BUILD_BENCH=ON -DOTARIG_BUILD_TESTS=OFF -DOTARIG_BUILD_PYTHON=OFF >/dev/null
fi
cmake --build "$build" --target otarig-trigger-latency >/dev/null
binary=$(find "$build" -name otarig-trigger-latency -type f -perm -u+x | head -n1)

if ! /usr/bin/python3 -c 'import labgrid' 2>/dev/null; then
  echo "labgrid is missing: OTARIG_SETUP_EXTRA=labgrid ci/setup" >&2
  exit 2
fi

echo "trigger latency: last byte of 'CUT-NOW <n>;' written to a pty -> power-off command about to be spawned"
echo "events=$events command=$command kernel=$(uname -r) cpus=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)${prefix:+ scheduling=SCHED_FIFO/50}"
ours=$(${prefix[@]+"${prefix[@]}"} "$binary" --events "$events" --command "$command")
theirs=$(${prefix[@]+"${prefix[@]}"} /usr/bin/python3 "$here/labgrid_trigger.py" --events "$events" --command "$command")

field() { sed -n "s/.*metric=$2 .*$3=\([0-9.]*\).*/\1/p" <<<"$1"; }
printf '\n%-34s %10s %10s %10s\n' "" "p50 (us)" "p99 (us)" "max (us)"
printf '%-34s %10s %10s %10s\n' "otarig: trigger -> spawn" "$(field "$ours" trigger p50_us)" \
  "$(field "$ours" trigger p99_us)" "$(field "$ours" trigger max_us)"
printf '%-34s %10s %10s %10s\n' "otarig: trigger -> command running" "$(field "$ours" spawned p50_us)" \
  "$(field "$ours" spawned p99_us)" "$(field "$ours" spawned max_us)"
printf '%-34s %10s %10s %10s\n' "otarig: trigger -> command exited" "$(field "$ours" command_done p50_us)" \
  "$(field "$ours" command_done p99_us)" "$(field "$ours" command_done max_us)"
printf '%-34s %10s %10s %10s\n' "labgrid 0.4.1: expect -> off()" "$(field "$theirs" trigger p50_us)" \
  "$(field "$theirs" trigger p99_us)" "$(field "$theirs" trigger max_us)"

ours_p50=$(field "$ours" trigger p50_us); ours_p99=$(field "$ours" trigger p99_us)
lg_p50=$(field "$theirs" trigger p50_us); lg_p99=$(field "$theirs" trigger p99_us)
awk -v o50="$ours_p50" -v o99="$ours_p99" -v l50="$lg_p50" -v l99="$lg_p99" 'BEGIN {
  printf "\nlabgrid / otarig: p50 %.0fx, p99 %.0fx; otarig p99 %s 1 ms\n", l50 / o50, l99 / o99, (o99 <= 1000 ? "<=" : ">")
}'
