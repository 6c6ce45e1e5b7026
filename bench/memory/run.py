#!/usr/bin/env python3
"""Peak RSS of `otarig run`, `otarig report verify` and `otarig report merge`
beside the limits they must stay under (docs/evidence.md, "Limits").

  bench/memory/run.py [--otarig BIN] [--tool-path DIR] [--trials N[,N...]] [--flood-mib M]
                      [--reference BIN] [--only flood|campaign]

flood:    one trial on boards/vboard-ab.yaml whose device prints a FLOOD MiB line
          without a newline and then FLOOD MiB of short lines at every power-on;
          the figure beside it is the console volume the device printed.
campaign: for each N (default 10,000 and 100,000) N trials of
          bench/memory/memory-campaign.yaml on the in-process boards/virtual-ab.yaml,
          beside the 512 MiB the issue names and the figure of otarig before run.json
          and the reports were streamed; then `report verify` and `report merge` (the
          bundle as the one shard of its campaign) of that bundle. With --reference
          BIN, an older otarig runs the smallest campaign and checks and merges
          its bundle, in the same run, as the reference.
Peak RSS is the measured process's own: GNU time's %M (wait4's ru_maxrss of a
process forked by a small one) when /usr/bin/time is there, else wait4 here,
which also counts this script's own peak. Prints one table.
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


GNU_TIME = shutil.which("time", path="/usr/bin")

# Figures of otarig before run.json and the reports were streamed (a1bb4ae,
# the commands of campaign() on this machine's kind, 2 cores): where no
# --reference binary ran in this run, the table shows these.
RECORDED = {
    "run": {10000: "192 MiB", 100000: "~1.9 GiB (10,000 trials' growth, extrapolated)"},
    "verify": {10000: "420 MB"},
}
RECORDED_FROM = "recorded with otarig a1bb4ae, the same command"


def measure(argv, env=None):
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        log, rss_file = Path(tmp) / "log", Path(tmp) / "rss"
        with open(log, "wb") as out:
            if GNU_TIME:
                p = subprocess.run([GNU_TIME, "-f", "%M", "-o", str(rss_file), *map(str, argv)], stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
                status, rss = p.returncode, int(rss_file.read_text().split()[-1])
            else:
                p = subprocess.Popen(list(map(str, argv)), stdout=out, stderr=subprocess.STDOUT, env=env)
                _, wait_status, usage = os.wait4(p.pid, 0)
                status, rss = os.waitstatus_to_exitcode(wait_status), usage.ru_maxrss
        return status, rss, time.monotonic() - start, log.read_bytes().decode(errors="replace")


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


def run_campaign(otarig, trials, out):
    status, rss, secs, log = measure([otarig, "run", "--board", ROOT / "boards/virtual-ab.yaml", "--scenario",
                                      HERE / "memory-campaign.yaml", "--trials", trials, "--seed", "1", "--out", out,
                                      "--quiet"])
    if status not in (0, 1):
        sys.exit(f"campaign run failed ({status}):\n{log[-3000:]}")
    return rss, secs


def check_and_merge(otarig, out, merged):
    """Peak RSS and time of `report verify` of the bundle and of `report merge`
    of it as the one shard of its campaign."""
    status, verify_rss, verify_secs, log = measure([otarig, "report", "verify", out])
    if status != 0:
        sys.exit(f"report verify failed ({status}):\n{log[-3000:]}")
    status, merge_rss, merge_secs, log = measure([otarig, "report", "merge", out, "--out", merged])
    if status not in (0, 1):
        sys.exit(f"report merge failed ({status}):\n{log[-3000:]}")
    shutil.rmtree(merged, ignore_errors=True)
    return (verify_rss, verify_secs), (merge_rss, merge_secs)


def campaign(args, work, report):
    counts = sorted(int(n) for n in str(args.trials).split(","))
    reference = {}
    if args.reference:
        n = counts[0]
        out = work / "reference"
        rss, _ = run_campaign(args.reference, n, out)
        (v, _), (m, _) = check_and_merge(args.reference, out, work / "reference-merged")
        shutil.rmtree(out, ignore_errors=True)
        ref = f"{args.reference} in this run"
        reference = {("run", n): f"{rss / 1024:.0f} MiB ({ref})", ("verify", n): f"{v / 1024:.0f} MiB ({ref})",
                     ("merge", n): f"{m / 1024:.0f} MiB ({ref})"}
    for n in counts:
        out = work / f"campaign-{n}"
        rss, secs = run_campaign(args.otarig, n, out)
        run_json = (out / "run.json").stat().st_size
        journal = (out / "journal.jsonl").stat().st_size
        (v, v_secs), (m, m_secs) = check_and_merge(args.otarig, out, work / f"merged-{n}")
        shutil.rmtree(out, ignore_errors=True)

        def before(what):
            if (what, n) in reference:
                return reference[(what, n)]
            if n in RECORDED.get(what, {}):
                return f"{RECORDED[what][n]} ({RECORDED_FROM})"
            return "not recorded"

        report({"what": f"run: campaign of {n} trials (virtual-ab)", "rss_kib": rss, "seconds": secs,
                     "reference": f"limit 512 MiB; before: {before('run')}; run.json {run_json / 2**20:.0f} MiB"})
        report({"what": f"report verify: that bundle", "rss_kib": v, "seconds": v_secs,
                     "reference": f"limit 512 MiB; before: {before('verify')}; journal {journal / 2**20:.0f} MiB"})
        report({"what": f"report merge: that bundle as its one shard", "rss_kib": m, "seconds": m_secs,
                "reference": f"limit 512 MiB; before: {before('merge')}"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--otarig", default=newest("build/*/harness/otarig"))
    ap.add_argument("--tool-path", default=os.path.dirname(newest("build/*/tools/vboard/otarig-vboard") or ""))
    ap.add_argument("--trials", default="10000,100000", help="campaign sizes, comma separated")
    ap.add_argument("--reference", help="an older otarig that runs the smallest campaign as the reference")
    ap.add_argument("--flood-mib", type=int, default=50)
    ap.add_argument("--only", choices=["flood", "campaign"])
    args = ap.parse_args()
    if not args.otarig:
        sys.exit("run.py: build the target otarig first (or give --otarig)")
    work = Path(tempfile.mkdtemp(prefix="otarig-memory-bench-"))

    # Each figure is printed as soon as it is measured (a 100,000-trial
    # bundle takes minutes to remove).
    def report(r):
        print(f"{r['what']:58} {r['rss_kib'] / 1024:>8.1f} MiB {r['seconds']:>8.1f}s  {r['reference']}", flush=True)

    print(f"{'benchmark':58} {'peak RSS':>12} {'time':>9}  reference", flush=True)
    try:
        if args.only in (None, "flood"):
            report(flood(args, work))
        if args.only in (None, "campaign"):
            campaign(args, work, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
