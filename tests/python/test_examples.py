"""The examples run against the virtual boards (small campaigns)."""
import os
import subprocess
import sys

import otarig
from conftest import INPLACE, SRC

EXAMPLES = SRC / "examples"


def run(*args, cwd):
    p = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300,
                       env=os.environ)
    return p, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"


def test_power_cut_campaign(tmp_path):
    p, log = run(EXAMPLES / "power_cut_campaign.py", "--board", "virtual-ab", "--trials", "20", "--out",
                 tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 0, log
    assert "PASS: 20 trials, 20 passed" in p.stdout and "most erases of one sector in one trial:" in p.stdout
    run_json = (tmp_path / "out" / "run.json").read_text()
    assert '"bounded-wear": true' in run_json and '"no-double-trial-boot": true' in run_json


def test_power_cut_campaign_finds_the_inplace_defect(tmp_path):
    p, log = run(EXAMPLES / "power_cut_campaign.py", "--board", INPLACE, "--trials", "20", "--out", tmp_path / "out",
                 cwd=tmp_path)
    assert p.returncode == 1, log
    assert "finding F0001: trial" in p.stdout and "-- replay: otarig run --board" in p.stdout


def test_interactive_session(tmp_path):
    p, log = run(EXAMPLES / "interactive_session.py", "--board", "virtual-ab", cwd=tmp_path)
    assert p.returncode == 0, log
    assert "observe        slot A, version 1.0.0+1" in p.stdout
    assert "deliver        update: accepted" in p.stdout
    assert "after update   slot B, version 1.1.0+2" in p.stdout
    assert "update/signature-bit-flip: refused" in p.stdout
    assert "after cycle    slot B, version 1.1.0+2" in p.stdout


def test_nightly_pytest_example(tmp_path):
    p, log = run("-m", "pytest", "-q", "-p", "otarig.pytest_plugin", "-p", "no:cacheprovider",
                 "--rootdir", EXAMPLES, EXAMPLES / "test_nightly.py", "--otarig-board", "virtual-ab",
                 "--otarig-trials", "4",
                 "--otarig-out", tmp_path / "evidence", "--junitxml", tmp_path / "junit.xml", cwd=tmp_path)
    assert p.returncode == 0, log
    # The virtual board runs every scenario but the eighteen that need a process
    # board (placed cuts, the fault proxy, a manifest, mutual TLS, the server's
    # certificates, a client certificate or an outage) and the six that need a
    # second image or encrypted releases; delta-wrong-ranges too (its deltas fetch no
    # byte ranges): those are skipped with the reason.
    parts = len(otarig.Scenario.load("nightly").parts)
    assert f"{parts + 2 - 25} passed, 25 skipped" in p.stdout, log
    junit = (tmp_path / "junit.xml").read_text()
    assert "cannot run: the board does not download from the rig&apos;s update server" in junit or \
        "cannot run: the board does not download from the rig's update server" in junit
    assert (tmp_path / "evidence" / "test_nightly.py__test_nightly_power-cut-sweep" / "power-cut-sweep" /
            "run.json").is_file()
