#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds the consumer project
# against it, and runs it on the installed reference board.
set -euo pipefail
build="$1"; src="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/consumer" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
OTARIG_DATA_DIR="$work/prefix/share/otarig" "$work/build/consumer" \
  "$work/prefix/share/otarig/boards/virtual-ab.yaml" unsigned "$work/out"
test -f "$work/out/run.json"
"$work/prefix/bin/otarig" list boards >"$work/boards.txt"
grep -q virtual-ab.yaml "$work/boards.txt"
