#!/usr/bin/python3
"""The crash-state sweep of a real-client board, measured (docs/crash-model.md).

For the board (default: boards/swupdate-ab.yaml, SWUpdate writing a 1 MiB
image) it prints, in one run:

  - storage operations recorded per update (run.json storage_ops_per_update)
  - crash states judged by `power-cut-sweep` (every cut, every mode that gives
    a distinct state), the sweep's wall time and crash states per second
  - the cost of building one crash state (the trial's inject step: power off,
    the crash state written from the snapshot and the log) and of one whole
    crash-state trial (power on into it, observe, judge, retry the update),
    each as a fraction of one clean install measured in the same run
  - the FUSE layer's overhead: one clean install under the crash model against
    the same board on a plain folder (power_loss: kill), medians of N installs

A clean install is the `deliver` step of a `kind: none` trial: the update
command until the device settled on the new image.

  bench/clients/crash_sweep.py [--otarig BIN] [--board PROFILE] [--seed N]
                               [--installs N] [--jobs N] [--skip-sweep]

Targets (issue "crash-consistent storage"): the full sweep under 5 minutes on
2 cores; the layer adds at most 2x to a clean install.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CLEAN_INSTALL = """name: clean-install
title: One clean update, no fault (the benchmark's reference)
description: the update delivered once, without a fault
classes: [S4]
requirements: ["CRA Annex I Part I (2)(c)"]
start: factory
deliver: update
fault:
  kind: none
"""


def newest_otarig():
    found = sorted(glob.glob(os.path.join(ROOT, "build", "*", "harness", "otarig")), key=os.path.getmtime)
    return found[-1] if found else None


def step_times(journal):
    """{trial: [(step, t_ms), ...]} from a journal."""
    steps = {}
    with open(journal) as f:
        for line in f:
            r = json.loads(line)
            if r.get("type") == "step" and r.get("trial") is not None:
                steps.setdefault(r["trial"], []).append((r["step"], r["t_ms"]))
    return steps


def step_ms(steps, name):
    """Duration of step `name` in each trial: until the next step began."""
    out = []
    for seq in steps.values():
        for i, (step, t) in enumerate(seq[:-1]):
            if step == name:
                out.append(seq[i + 1][1] - t)
    return out


def trial_ms(steps):
    return [seq[-1][1] - seq[0][1] for seq in steps.values() if len(seq) > 1]


def run(otarig, args, out, env):
    start = time.monotonic()
    p = subprocess.run([otarig, "run", "--no-progress", "-q", "--out", out] + args, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    if p.returncode >= 2:
        sys.stderr.write(p.stdout[-2000:])
        raise SystemExit(f"crash_sweep.py: otarig run {' '.join(args)} exited {p.returncode}")
    return wall, p.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--otarig", default=newest_otarig())
    ap.add_argument("--board", default=os.path.join(ROOT, "boards", "swupdate-ab.yaml"))
    ap.add_argument("--seed", default="1")
    ap.add_argument("--installs", type=int, default=5)
    ap.add_argument("--jobs", default=None)
    ap.add_argument("--skip-sweep", action="store_true", help="measure the installs only")
    a = ap.parse_args()
    if not a.otarig or not os.access(a.otarig, os.X_OK):
        raise SystemExit("crash_sweep.py: build otarig first (cmake --build --preset ci)")
    for tool in ("swupdate", "fw_setenv", "rauc", "unshare"):
        if shutil.which(tool) is None:
            raise SystemExit(f"crash_sweep.py: {tool} is not installed (OTARIG_SETUP_EXTRA=clients ci/setup)")
    build = os.path.dirname(os.path.dirname(os.path.abspath(a.otarig)))
    env = dict(os.environ)
    tools = [os.path.join(build, "tools", t) for t in ("clientboard", "vboard")]
    env["OTARIG_TOOL_PATH"] = ":".join(tools + ([env["OTARIG_TOOL_PATH"]] if env.get("OTARIG_TOOL_PATH") else []))
    jobs = ["--jobs", a.jobs] if a.jobs else []

    work = tempfile.mkdtemp(prefix="otarig-crash-bench-")
    try:
        scenario = os.path.join(work, "clean-install.yaml")
        with open(scenario, "w") as f:
            f.write(CLEAN_INSTALL)
        with open(a.board) as f:
            profile = yaml.safe_load(f)
        board_name = profile["name"]
        if profile["device"].get("power_loss", "crash") != "crash":
            raise SystemExit(f"crash_sweep.py: {a.board} does not run the crash model (device.power_loss)")
        plain = dict(profile)
        plain["device"] = dict(profile["device"])
        plain["device"]["power_loss"] = {"model": "kill", "reason": "benchmark reference: the same board on a plain folder"}
        plain_file = os.path.join(work, "plain", os.path.basename(a.board))
        os.makedirs(os.path.dirname(plain_file))
        with open(plain_file, "w") as f:
            yaml.safe_dump(plain, f, sort_keys=False)

        # Clean installs, alternating the two variants so load affects both alike.
        installs = {"crash": [], "plain": []}
        for i in range(a.installs):
            for variant, board in (("crash", a.board), ("plain", plain_file)):
                out = os.path.join(work, f"install-{variant}-{i}")
                run(a.otarig, ["--board", board, "--scenario", scenario, "--seed", str(i + 1)], out, env)
                installs[variant] += step_ms(step_times(os.path.join(out, "journal.jsonl")), "deliver")
        install_crash = statistics.median(installs["crash"])
        install_plain = statistics.median(installs["plain"])

        rows = [
            ("board", board_name, ""),
            ("clean install, crash model (median ms)", f"{install_crash:.0f}", f"n={len(installs['crash'])}"),
            ("clean install, plain folder (median ms)", f"{install_plain:.0f}", f"n={len(installs['plain'])}"),
            ("FUSE layer overhead on an install", f"{install_crash / install_plain:.2f}x", "target <= 2x"),
        ]
        if not a.skip_sweep:
            out = os.path.join(work, "sweep")
            wall, status = run(a.otarig, ["--board", a.board, "--scenario", "power-cut-sweep", "--seed", a.seed] + jobs,
                               out, env)
            with open(os.path.join(out, "run.json")) as f:
                rj = json.load(f)
            steps = step_times(os.path.join(out, "journal.jsonl"))
            states = len(rj["trials"])
            build_ms = statistics.median(step_ms(steps, "inject"))
            whole_ms = statistics.median(trial_ms(steps))
            s = rj["summary"]
            rows += [
                ("storage operations per update", str(rj.get("storage_ops_per_update")), ""),
                ("crash states judged", str(states), f"exit {status}, {s.get('failed', 0)} failed"),
                ("sweep wall time (s)", f"{wall:.0f}", "target < 300"),
                ("crash states per second", f"{states / wall:.2f}", ""),
                ("one crash state built (median ms)", f"{build_ms:.1f}",
                 f"{build_ms / install_crash:.3f} of a clean install"),
                ("one crash-state trial (median ms)", f"{whole_ms:.0f}",
                 f"{whole_ms / install_crash:.2f} clean installs (it includes the retry, itself an install)"),
            ]
        width = max(len(r[0]) for r in rows)
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:>10}  {note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
