#!/bin/sh
# Trials per minute on a real client's board (docs/ota-clients.md): the same
# campaign with one device and with two devices in parallel (--jobs 2),
# each device its own process group, storage and mount namespaces.
#   bench/clients/run.sh [OTARIG] [-- SCENARIO [BOARD]]
# Without an argument the newest build/*/harness/otarig is used. Default
# scenario: nightly; default board: boards/swupdate-ab.yaml (also
# boards/rauc-ab.yaml, boards/mender-ab.yaml).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-}
if [ -z "$bin" ] || [ "$bin" = "--" ]; then
  bin=$(ls -t "$root"/build/*/harness/otarig 2>/dev/null | head -n 1 || true)
else
  shift
fi
[ "${1:-}" = "--" ] && shift
scenario=${1:-nightly}
board=${2:-$root/boards/swupdate-ab.yaml}
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "run.sh: build otarig first (cmake --build BUILD)" >&2
  exit 3
fi
# The client the board runs, and the U-Boot environment tools every one uses.
case "$(grep -o 'otarig-clientboard --client [a-z]*' "$board" | head -n 1)" in
  *rauc) client=rauc ;;
  *mender) client=mender ;;
  *) client=swupdate ;;
esac
for tool in "$client" fw_setenv unshare; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool is not installed (OTARIG_SETUP_EXTRA=clients ci/setup)" >&2
    exit 3
  fi
done
# otarig-clientboard from the same build tree.
tools=$(cd "$(dirname "$bin")/../tools/clientboard" 2>/dev/null && pwd || true)
export OTARIG_TOOL_PATH="${tools}${OTARIG_TOOL_PATH:+:$OTARIG_TOOL_PATH}"
py=/usr/bin/python3
[ -x "$py" ] || py=python3
out=$(mktemp -d "${TMPDIR:-/tmp}/otarig-clients-bench-XXXXXX")
trap 'rm -rf "$out"' EXIT

printf '%-10s %-28s %7s %9s %11s %14s %20s\n' jobs scenario trials wall_s trials/min median_trial_ms "trials/min (<5 s)"
for jobs in 1 2; do
  start=$(date +%s.%N)
  status=0
  "$bin" run --board "$board" --scenario "$scenario" --seed 1 --jobs "$jobs" --no-progress \
    --out "$out/jobs$jobs" >"$out/jobs$jobs.log" 2>&1 || status=$?
  end=$(date +%s.%N)
  if [ "$status" -ge 2 ]; then
    echo "run.sh: otarig exited $status:" >&2
    tail -5 "$out/jobs$jobs.log" >&2
    exit 3
  fi
  "$py" - "$out/jobs$jobs/run.json" "$start" "$end" "$jobs" "$scenario" <<'PY'
import json, statistics, sys
run = json.load(open(sys.argv[1]))
start, end, jobs, scenario = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
wall = end - start
trials = run["trials"]
ms = [t.get("duration_ms", 0.0) for t in trials]
# Trials that wait out a deadline by design (slow retrieval, stalled server)
# measure the deadline, not the board: the rate without them, per device.
quick = [m for m in ms if m < 5000]
quick_rate = len(quick) / (sum(quick) / 1000.0 / jobs) * 60 if quick else 0.0
print("%-10d %-28s %7d %9.1f %11.1f %14.0f %20.1f" % (jobs, scenario, len(trials), wall, len(trials) / wall * 60,
                                                    statistics.median(ms) if ms else 0, quick_rate))
PY
done
