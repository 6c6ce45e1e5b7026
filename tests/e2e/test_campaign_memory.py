"""Memory does not grow with the number of trials (docs/evidence.md, "Limits"):
the peak RSS of `otarig run`, `otarig report verify` and `otarig report merge`
for a campaign of LARGE trials on the in-process virtual board stays within a
few MiB of the same commands for SMALL trials. Code that holds every trial's
JSON (run.json built in memory, the journal read whole) grows by tens of MiB
between the two."""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from sizing import SANITIZED

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BOARD = SRC / "boards/virtual-ab.yaml"
SCENARIO = SRC / "bench/memory/memory-campaign.yaml"

SMALL, LARGE = 60, 1000
# What the streaming writers may hold beyond the small campaign's peak for
# LARGE - SMALL more trials: a few dozen bytes each (where a verdict is, its
# name for the attestation), the manifest's lines, allocator slack.
GROWTH_LIMIT_KIB = 8 * 1024


TIME = shutil.which("time", path="/usr/bin")


def measured(*args):
    """Runs otarig; returns (exit status, output, peak RSS in KiB). GNU time
    measures it: a child this (large) Python process forks would count the
    Python process's own peak as its own until it runs otarig."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        p = subprocess.run([TIME, "-f", "%M", "-o", rss_file, BIN, *map(str, args)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        return p.returncode, p.stdout.decode(errors="replace"), int(rss_file.read_text().split()[-1])


def campaign(out, trials, *extra):
    status, log, rss = measured("run", "--board", BOARD, "--scenario", SCENARIO, "--trials", trials, "--seed", "1",
                                "--out", out, "--quiet", *extra)
    assert status in (0, 1), log[-3000:]
    return rss


def verify(out):
    status, log, rss = measured("report", "verify", out)
    assert status == 0, log
    return rss


@pytest.mark.skipif(not TIME, reason="GNU time (/usr/bin/time, package time, installed by ci/setup) measures the peak RSS")
@pytest.mark.skipif(SANITIZED, reason="under the sanitizers the peak RSS grows with AddressSanitizer's quarantine of "
                                      "freed memory (up to 256 MiB), not with what the rig holds")
def test_peak_rss_does_not_grow_with_the_number_of_trials(tmp_path):
    rss = {}
    for n in (SMALL, LARGE):
        out = tmp_path / f"run-{n}"
        rss[("run", n)] = campaign(out, n)
        run = json.loads((out / "run.json").read_text())
        assert run["summary"]["trials"] == n and len(run["trials"]) == n
        assert [t["index"] for t in run["trials"]] == sorted(t["index"] for t in run["trials"])
        rss[("verify", n)] = verify(out)
        # The two shards of the same campaign, merged.
        shards = []
        for i in range(2):
            shards.append(tmp_path / f"shard-{n}-{i}")
            campaign(shards[-1], n, "--shard", f"{i}/2")
        merged = tmp_path / f"merged-{n}"
        status, log, rss[("merge", n)] = measured("report", "merge", *shards, "--out", merged)
        assert status in (0, 1), log
        verify(merged)
        # The merged run lists the same trials (but for how long each took)
        # and findings as the unsharded one.
        merged_run = json.loads((merged / "run.json").read_text())
        untimed = lambda trials: [{k: v for k, v in t.items() if k != "duration_ms"} for t in trials]
        assert untimed(merged_run["trials"]) == untimed(run["trials"])
        assert [f["trial"] for f in merged_run["findings"]] == [f["trial"] for f in run["findings"]]
        assert merged_run["summary"] == run["summary"]
    table = "\n".join(f"{what:7} {SMALL:6} trials {rss[(what, SMALL)]:8} KiB, {LARGE:6} trials "
                      f"{rss[(what, LARGE)]:8} KiB" for what in ("run", "verify", "merge"))
    for what in ("run", "verify", "merge"):
        assert rss[(what, LARGE)] - rss[(what, SMALL)] < GROWTH_LIMIT_KIB, table
