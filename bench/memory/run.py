#!/usr/bin/env python3
"""Peak RSS of `otarig run` beside the limits it must stay under (docs/evidence.md, "Limits").

  bench/memory/run.py [--otarig BIN] [--tool-path DIR] [--trials N] [--flood-mib M] [--only flood|campaign]

flood:    one trial on boards/vboard-ab.yaml whose device prints a FLOOD MiB line
          without a newline and then FLOOD MiB of short lines at every power-on;
          the figure beside it is the console volume the device printed.
campaign: N trials (default 100,000) of bench/memory/memory-campaign.yaml on the
          in-process boards/virtual-ab.yaml, beside the 512 MiB the issue names.
Peak RSS is the rig's own (wait4's ru_maxrss). Prints one table.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def newest(pattern):
    found = sorted(ROOT.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    return str(found[0]) if found else None


def measure(argv, env=None):
    start = time.monotonic()
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        log.seek(0)
        return os.waitstatus_to_exitcode(status), usage.ru_maxrss, time.monotonic() - start, log.read().decode(
            errors="replace")


def flood(args, work):
    text = (ROOT / "boards/vboard-ab.yaml").read_text()
    # A pty carries some 30 MB/s: the device takes seconds to boot through its flood.
    assert "  boot_timeout: 5s\n" in text
    text = text.replace("  boot_timeout: 5s\n", "  boot_timeout: 60s\n")
    text = text.replace("device:\n  kind: process\n",
                        "device:\n  kind: process\n  power_loss: {model: kill, reason: \"memory benchmark\"}\n")
    command = re.search(r"^  command: (otarig-vboard .*)$", text, re.M).group(1)
    vboard = shutil.which("otarig-vboard", path=(args.tool_path or "") + os.pathsep + os.environ.get("PATH", ""))
    if not vboard:
        sys.exit("run.py: otarig-vboard not found (build it, or give --tool-path)")
    m = args.flood_mib
    script = (f"head -c {m}M /dev/zero | tr '\\0' x; echo; yes 'flood: the device prints without end' | "
              f"head -c {m}M; exec {command.replace('otarig-vboard', shlex.quote(vboard), 1)}")
    text = text.replace(f"  command: {command}", f"  command: {json.dumps(['sh', '-c', script])}")
    board = work / "vboard-flood.yaml"
    board.write_text(text.replace("name: vboard-ab", "name: vboard-flood"))
    env = dict(os.environ)
    if args.tool_path:
        env["OTARIG_TOOL_PATH"] = args.tool_path
    out = work / "flood"
    status, rss, secs, log = measure([args.otarig, "run", "--board", str(board), "--scenario", "tampered-image",
                                      "--trials", "1", "--seed", "1", "--out", str(out)], env)
    if status not in (0, 1):
        sys.exit(f"flood run failed ({status}):\n{log[-3000:]}")
    trial = json.loads((out / "run.json").read_text())["trials"][0]
    printed = trial.get("console", {}).get("dropped_bytes", 0) + (out / "trials" / trial["id"] /
                                                                  "console.log").stat().st_size
    return {"what": f"console flood ({m} MiB line + {m} MiB lines per power-on)", "rss_kib": rss,
            "reference": f"{printed / 2**20:.0f} MiB printed (kept: console.log "
                         f"{(out / 'trials' / trial['id'] / 'console.log').stat().st_size / 2**20:.1f} MiB)",
            "seconds": secs, "status": status}


def campaign(args, work):
    out = work / "campaign"
    status, rss, secs, log = measure([args.otarig, "run", "--board", str(ROOT / "boards/virtual-ab.yaml"),
                                      "--scenario", str(HERE / "memory-campaign.yaml"), "--trials",
                                      str(args.trials), "--seed", "1", "--out", str(out), "--quiet"])
    if status not in (0, 1):
        sys.exit(f"campaign run failed ({status}):\n{log[-3000:]}")
    run_json = (out / "run.json").stat().st_size
    return {"what": f"campaign of {args.trials} trials (virtual-ab)", "rss_kib": rss,
            "reference": f"limit 512 MiB; run.json {run_json / 2**20:.0f} MiB", "seconds": secs,
            "status": status}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--otarig", default=newest("build/*/harness/otarig"))
    ap.add_argument("--tool-path", default=os.path.dirname(newest("build/*/tools/vboard/otarig-vboard") or ""))
    ap.add_argument("--trials", type=int, default=100000)
    ap.add_argument("--flood-mib", type=int, default=50)
    ap.add_argument("--only", choices=["flood", "campaign"])
    args = ap.parse_args()
    if not args.otarig:
        sys.exit("run.py: build the target otarig first (or give --otarig)")
    work = Path(tempfile.mkdtemp(prefix="otarig-memory-bench-"))
    rows = []
    try:
        if args.only in (None, "flood"):
            rows.append(flood(args, work))
        if args.only in (None, "campaign"):
            rows.append(campaign(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'benchmark':58} {'peak RSS':>12} {'time':>9}  reference")
    for r in rows:
        print(f"{r['what']:58} {r['rss_kib'] / 1024:>8.1f} MiB {r['seconds']:>8.1f}s  {r['reference']}")


if __name__ == "__main__":
    main()
