"""Over a support period, the network side. The update server unreachable
for a while as a release is published (scenario kind `outage`):
otarig-vboard, which keeps checking the feed by itself, takes the release
within its declared interval; a vboard that stops checking after one failed
check is caught by `timely-update`; the declared interval is checked at its
line. The server's certificate expired, not yet valid or renewed: vboard-ab
refuses the first two and takes the third; a vboard that verifies no server
certificate is caught by `server-authenticated`. Short outages and a short declared
interval keep it to seconds; scenarios/outage.yaml's longer ones run in
the nightly suite."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import process_profiles  # noqa: E402

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
KILL_DIR = Path(tempfile.mkdtemp(prefix="otarig-e2e-outage-"))
REASON = "the outage scenario, tested without the crash model"

SCENARIO = """name: quick-outage
title: A short outage
classes: [S16]
requirements: ["ETSI EN 303 645 5.3-4, 5.3-5"]
start: factory
deliver: update
fault:
  kind: outage
  modes: [%s]
  shortest: 600ms
  longest: 1200ms
retry: next
"""


def quick(profile):
    """The profile under the kill model, claiming checks every 500 ms (the
    vboard checks every 500 ms and backs off to 500 ms) with a 700 ms margin."""
    out = process_profiles.kill_model(profile, KILL_DIR, REASON)
    text = out.read_text()
    assert "update_check_interval: 1s" in text and "update_check_margin: 1s" in text
    out.write_text(text.replace("update_check_interval: 1s", "update_check_interval: 500ms")
                   .replace("update_check_margin: 1s", "update_check_margin: 700ms"))
    return out


def otarig(*args, check=None, cwd=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def scenario(tmp_path, modes):
    f = tmp_path / "quick-outage.yaml"
    f.write_text(SCENARIO % modes)
    return f


def events(out, trial):
    return [json.loads(line) for line in (Path(out) / "trials" / trial / "events.jsonl").read_text().splitlines()]


def test_vboard_keeps_checking_through_an_outage_and_takes_the_release(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", quick(SRC / "boards/vboard-ab.yaml"), "--scenario", scenario(tmp_path, "refuse, drop"),
           "--seed", 3, "--out", out, "--no-progress", check=0)
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["trials"] == 2 and run["summary"]["passed"] == 2
    modes = set()
    for t in run["trials"]:
        assert t["oracles"]["timely-update"] is True, t
        ev = events(out, t["id"])
        checks = [e for e in ev if e["type"] == "update-checks"]
        assert len(checks) == 1 and checks[0]["held"], checks
        c = checks[0]
        modes.add(c["mode"])
        assert 600 <= c["outage_ms"] <= 1200
        # Its polling interval, measured from the server's log: every 500 ms.
        assert c["checks_before_outage"] >= 2, c
        assert all(i <= 500 + 700 for i in c["intervals_ms"]), c
        assert c["first_check_after_outage_ms"] <= 1200, c
        if c["mode"] == "refuse":
            # Its back-off while refused: 250 ms, then 500 ms.
            assert c["backoff_ms"], c
        requests = [e for e in ev if e["type"] == "requests"]
        assert requests and any(r["check"] for r in requests[0]["records"])
        assert any(r["target"].startswith("/deliveries/") and r["status"] == 200 for r in requests[0]["records"])
    assert modes == {"refuse", "drop"}


def test_a_board_that_stops_checking_after_a_failed_check_is_caught_by_timely_update(tmp_path):
    out = tmp_path / "out"
    p = otarig("run", "--board", quick(SRC / "boards/flawed/vboard-no-retry.yaml"), "--scenario",
               scenario(tmp_path, "refuse"), "--seed", 3, "--out", out, "--no-progress", check=1)
    run = json.loads((out / "run.json").read_text())
    (t,) = run["trials"]
    assert t["verdict"] == "fail"
    assert [b["oracle"] for b in t["broken"]] == ["timely-update"], t["broken"]
    assert "none of its checks reached the update server after the outage ended" in t["broken"][0]["detail"]
    assert t["delivery"]["status"] == "unreachable", t["delivery"]
    assert "timely-update" in p.stdout


def test_list_scenarios_shows_the_outage_with_its_requirements():
    p = otarig("list", "scenarios", check=0)
    line = next(l for l in p.stdout.splitlines() if l.split() and l.split()[0] == "outage")
    for rid in ("CRA Article 13(8)", "ETSI EN 303 645 5.3-4, 5.3-5", "ETSI EN 303 645 5.3-8"):
        assert rid in line, line
    listed = json.loads(otarig("list", "scenarios", "--json", check=0).stdout)
    (outage,) = [s for s in listed if s["scenario"] == "outage"]
    assert "ETSI EN 303 645 5.3-8" in outage["requirements"] and outage["classes"] == ["S16"]


@pytest.mark.parametrize("edit, line_of, message", [
    (("update_check_interval: 1s", "update_check_interval: 0s"), "update_check_interval:",
     "a duration from 1ms to one day"),
    (("update_check_interval: 1s", "update_check_interval: soon"), "update_check_interval:", "duration"),
    (("  update_check_interval: 1s\n", ""), "update_check_margin:", "goes with update_check_interval"),
    (('check_command: "watch-feed ${feed_url}\\n"', 'check_command: ""'), "check_command:",
     "the check command is empty"),
])
def test_bad_update_check_values_name_their_file_and_line(tmp_path, edit, line_of, message):
    text = (SRC / "boards/vboard-ab.yaml").read_text()
    assert edit[0] in text, edit[0]
    text = text.replace(edit[0], edit[1])
    prof = tmp_path / "bad.yaml"
    prof.write_text(text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if line_of in l)
    p = otarig("run", "--board", prof, "--scenario", "outage", "--out", tmp_path / "out", "--no-progress", check=2)
    assert f"bad.yaml:{line}" in p.stderr, p.stderr
    assert message in p.stderr, p.stderr


@pytest.mark.parametrize("name", ["server-certificate-expired", "server-certificate-not-yet-valid",
                                  "server-certificate-renewed"])
def test_server_certificates_of_a_support_period(tmp_path, name):
    good = process_profiles.kill_model(SRC / "boards/vboard-ab.yaml", KILL_DIR, REASON)
    otarig("run", "--board", good, "--scenario", name, "--seed", 1, "--out", tmp_path / "good", "--no-progress",
           check=0)
    lax = process_profiles.kill_model(SRC / "boards/flawed/vboard-tls-noverify.yaml", KILL_DIR, REASON)
    caught = name != "server-certificate-renewed"
    otarig("run", "--board", lax, "--scenario", name, "--seed", 1, "--out", tmp_path / "lax", "--no-progress",
           check=1 if caught else 0)
    (t,) = json.loads((tmp_path / "lax" / "run.json").read_text())["trials"]
    if caught:
        assert [b["oracle"] for b in t["broken"]] == ["server-authenticated"], t["broken"]
        assert "the device completed the TLS handshake with a" in t["broken"][0]["detail"]
        assert "from its own CA" in t["broken"][0]["detail"]
