"""Power cuts placed by time on a process board come from the seed and the
calibration the evidence records (docs/scenarios.md, "Cuts placed by time"):
the clean update the rig times before planning is journaled with the
campaign, a resume places its cuts by the journaled timing instead of timing
an update afresh, and `--calibration` makes another run (a finding's replay)
cut where the first one did. Two runs with the same seed that each time an
update of their own cut at different points: the host's speed differs from
one run to the next."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))

SCENARIO = """name: time-cuts
title: Power cut at a seeded time of the update
classes: [S4]
requirements: ["CRA Annex I Part I (2)(h)"]
start: factory
deliver: update
fault:
  kind: power-cut
  at: random-time
trials: 3
retry: update
"""


def otarig(*args, check=None, timeout=600):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """vboard-ab with 64 KiB slots, a scenario of three time cuts, and one
    campaign of it (the runs below reuse its calibration)."""
    d = tmp_path_factory.mktemp("calibration")
    text = (SRC / "boards/vboard-ab.yaml").read_text().replace("slot_size: 1MiB", "slot_size: 64KiB")
    for rel in ("factory", "update", "next"):
        text = "\n".join(line.rstrip()[:-1] + ", payload_size: 65360}" if line.startswith(f"  {rel}:") else line
                         for line in text.splitlines()) + "\n"
    text = text.replace("name: vboard-ab", "name: vboard-ab-small")
    board = d / "vboard-ab-small.yaml"
    board.write_text(text)
    scenario = d / "time-cuts.yaml"
    scenario.write_text(SCENARIO)
    args = ["--board", board, "--scenario", scenario, "--seed", 5, "--jobs", 1, "--no-progress"]
    first = d / "first"
    p = otarig("run", *args, "--out", first)
    assert p.returncode in (0, 1), f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return d, args, first


def run_json(out):
    return json.loads((out / "run.json").read_text())


def cuts(out):
    """Every trial's fault parameters (its detail says the same in words)."""
    return {t["id"]: {k: v for k, v in t["fault"].items() if k != "detail"} for t in run_json(out)["trials"]}


def test_the_calibration_each_time_cut_used_is_in_run_json_and_the_journal(bench):
    _, _, first = bench
    run = run_json(first)
    (key, ms), = run["calibration"]["update_ms"].items()
    assert key == "factory->update" and ms > 0
    assert run["calibration"]["from"] == {key: "measured"}
    faults = cuts(first)
    assert len(faults) == 3 and all(f["at"] == "time" for f in faults.values())
    assert all(f["update_ms"] == ms and 0 <= f["delay_ms"] < ms + ms // 4 for f in faults.values())
    start = json.loads((first / "journal.jsonl").read_text().splitlines()[0])
    assert start["type"] == "campaign-start" and start["calibration"] == {"update_ms": {key: ms}}


def test_a_resume_places_its_cuts_by_the_journaled_calibration(bench):
    d, args, first = bench
    # The campaign killed after its first trial: the journal up to its verdict.
    killed = d / "killed"
    killed.mkdir()
    kept = []
    for line in (first / "journal.jsonl").read_text().splitlines():
        kept.append(line)
        if json.loads(line)["type"] == "verdict":
            break
    (killed / "journal.jsonl").write_text("\n".join(kept) + "\n")
    shutil.copytree(first / "trials" / "00000", killed / "trials" / "00000")
    p = otarig("run", *args, "--out", killed, "--resume")
    assert p.returncode in (0, 1), p.stderr
    assert cuts(killed) == cuts(first)
    run = run_json(killed)
    assert run["calibration"]["update_ms"] == run_json(first)["calibration"]["update_ms"]
    assert set(run["calibration"]["from"].values()) == {"journal"}
    resume = [json.loads(line) for line in (killed / "journal.jsonl").read_text().splitlines()
              if '"campaign-resume"' in line]
    assert len(resume) == 1 and "calibration" not in resume[0], "nothing was timed again"
    otarig("report", "verify", killed, check=0)


def test_another_run_with_the_first_runs_calibration_cuts_at_the_same_points(bench):
    d, args, first = bench
    again = d / "again"
    p = otarig("run", *args, "--out", again, "--calibration", first)
    assert p.returncode in (0, 1), p.stderr
    assert cuts(again) == cuts(first)
    assert set(run_json(again)["calibration"]["from"].values()) == {str(first)}
    # A replay of one trial, from the journal or from run.json alike.
    for source in (first, first / "run.json"):
        replay = d / f"replay-{source.name}"
        p = otarig("run", *args, "--trial", "00002", "--out", replay, "--calibration", source)
        assert p.returncode in (0, 1), p.stderr
        assert cuts(replay) == {"00002": cuts(first)["00002"]}


def test_a_calibration_from_another_board_is_bad_input(bench, tmp_path):
    d, args, first = bench
    other = tmp_path / "other.yaml"
    other.write_text((d / "vboard-ab-small.yaml").read_text() + "# another profile\n")
    board_at = args.index("--board") + 1
    changed = [*args[:board_at], other, *args[board_at + 1:]]
    p = otarig("run", *changed, "--out", tmp_path / "o", "--calibration", first, check=2)
    assert "--calibration" in p.stderr and "measured on board vboard-ab-small" in p.stderr, p.stderr
