"""The nightly catalog on a process board (otarig-vboard over mutual TLS through
the fault proxy): every transport scenario runs, power cuts placed in the
delivery fall, and flawed variants are caught by the oracle that must catch
them."""
import json
import os
import subprocess
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
VBOARD = SRC / "boards/vboard-ab.yaml"
NOVERIFY = SRC / "boards/flawed/vboard-noverify.yaml"
TRANSPORT = {"corrupt-in-transit", "truncated-download", "interrupted-download-resume", "stalled-server",
             "slow-retrieval", "endless-data", "stale-manifest", "impostor-server", "mtls-required"}


def otarig(*args, check=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=900)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def events(out, trial):
    return [json.loads(line) for line in (Path(out) / "trials" / trial / "events.jsonl").read_text().splitlines()]


def variant(tmp_path, name, *edits):
    text = VBOARD.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    prof = tmp_path / f"{name}.yaml"
    prof.write_text(text.replace("name: vboard-ab", f"name: {name}"))
    return prof


@pytest.fixture(scope="module")
def nightly(tmp_path_factory):
    out = tmp_path_factory.mktemp("vboard") / "out"
    p = otarig("run", "--board", VBOARD, "--scenario", "nightly", "--seed", 1, "--out", out, "--no-progress",
               check=0)
    return out, json.loads((out / "run.json").read_text()), p


def test_nightly_passes_with_every_transport_scenario(nightly):
    out, run, p = nightly
    assert run["summary"]["findings"] == 0 and run["summary"]["trials"] == run["planned"] > 150
    scenarios = {t["scenario"] for t in run["trials"]}
    assert TRANSPORT <= scenarios
    assert {"power-cut-sweep", "power-cut-random", "brown-out", "power-cut-trial-boot", "tampered-image"} <= scenarios
    skipped = {s["scenario"]: s["reason"] for s in run["skipped"]}
    assert set(skipped) == {"bit-rot", "flash-error"}, skipped
    assert "skipped flash-error: the board does not count flash operations" in p.stdout


def test_every_placed_power_cut_falls(nightly):
    out, run, _ = nightly
    kinds = set()
    for t in run["trials"]:
        if t["fault"]["kind"] != "power-cut":
            continue
        assert t["fault"]["at"] in {"download-byte", "time", "console"}, t["fault"]
        cuts = [e for e in events(out, t["id"]) if e["type"] == "power-cut"]
        assert len(cuts) == 1 and cuts[0].get("fell", True), (t["id"], cuts)
        assert t["delivery"]["status"] == "power-lost", t["id"]
        kinds.add(t["fault"]["at"])
        if t["fault"]["at"] == "download-byte":
            assert f"byte {t['fault']['byte']} of the TLS stream" in cuts[0]["detail"]
    assert kinds == {"download-byte", "time", "console"}
    sweep = [t for t in run["trials"] if t["scenario"] == "power-cut-sweep"]
    assert [t["fault"]["byte"] for t in sweep if t["fault"]["at"] == "download-byte"] == \
        [i * sweep[0]["fault"]["image_size"] // 16 for i in range(16)]


def test_transport_faults_did_what_they_say(nightly):
    out, run, _ = nightly
    by = {}
    for t in run["trials"]:
        by.setdefault(t["scenario"], []).append(t)

    def proxy_events(t):
        return [e for ev in events(out, t["id"]) if ev["type"] == "network" for e in ev["events"]]

    for t in by["corrupt-in-transit"]:
        assert any(e["kind"] == "corrupt" and e["before"] != e["after"] for e in proxy_events(t)), t["id"]
    for t in by["truncated-download"]:
        # Every connection ends early; a device that resumes may still get it all.
        assert any(e["kind"] == "truncate" for e in proxy_events(t))
        assert t["delivery"]["status"] in {"refused", "accepted"}
    for t in by["interrupted-download-resume"]:
        assert any(e["kind"] == "reset" for e in proxy_events(t))
        assert "resuming at byte" in (out / "trials" / t["id"] / "console.log").read_text()
        assert t["delivery"]["status"] == "accepted"
    for t in by["stalled-server"]:
        # The device times out by itself (2 s a step); it may resume past the stall or give up.
        assert any(e["kind"] == "stall" for e in proxy_events(t))
        console = (out / "trials" / t["id"] / "console.log").read_text()
        assert "timed out" in console, console[-2000:]
        assert t["delivery"]["status"] in {"refused", "accepted"}
    slow = by["slow-retrieval"][0]
    # 1 MiB at 32 KiB/s takes half a minute; the device's deadlines (2 s a step, 5 s in all) end it first.
    assert slow["delivery"]["status"] == "refused", slow["delivery"]
    assert "took too long" in slow["delivery"]["detail"] or "timed out" in slow["delivery"]["detail"]
    assert any(e["kind"] == "endless" for e in proxy_events(by["endless-data"][0]))
    assert by["endless-data"][0]["delivery"]["status"] == "accepted"
    assert "certificate verify failed" in by["impostor-server"][0]["delivery"]["detail"]
    stale = by["stale-manifest"][0]
    assert stale["delivered"] == "factory" and stale["delivery"]["status"] == "refused"
    mtls = by["mtls-required"][0]
    assert mtls["oracles"]["mutual-tls"] is True, mtls["oracles"]


def test_noverify_board_is_caught_by_authentic(tmp_path):
    out = tmp_path / "noverify"
    otarig("run", "--board", NOVERIFY, "--scenario", "nightly", "--seed", 1, "--out", out, "--no-progress",
           check=1)
    run = json.loads((out / "run.json").read_text())
    caught = {t["scenario"] for t in run["trials"] if "authentic" in [b["oracle"] for b in t["broken"]]}
    assert {"tampered-image", "unsigned", "wrong-key"} <= caught, caught


def test_server_without_client_certificates_is_caught(tmp_path):
    prof = variant(tmp_path, "vboard-ab-tls-only",
                   ("tls: mutual", "tls: tls"))
    out = tmp_path / "o"
    otarig("run", "--board", prof, "--scenario", "mtls-required", "--seed", 1, "--out", out, check=1)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert [b["oracle"] for b in t["broken"]] == ["mutual-tls"], t["oracles"]


def test_device_that_never_resumes_is_caught(tmp_path):
    prof = variant(tmp_path, "vboard-ab-no-resume",
                   ("--download-timeout 5000", "--download-timeout 5000 --resume-attempts 0"))
    out = tmp_path / "o"
    otarig("run", "--board", prof, "--scenario", "interrupted-download-resume", "--seed", 1, "--trials", 1,
           "--out", out, check=1)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert [b["oracle"] for b in t["broken"]] == ["still-updatable"], t["oracles"]


def test_a_plain_http_board_skips_the_tls_scenarios(tmp_path):
    prof = variant(tmp_path, "vboard-ab-plain", ("tls: mutual", "tls: off"))
    out = tmp_path / "o"
    p = otarig("run", "--board", prof, "--scenario", "nightly", "--seed", 1, "--trials", 12, "--out", out,
               "--no-progress", check=0)
    skipped = {s["scenario"] for s in json.loads((out / "run.json").read_text())["skipped"]}
    assert {"impostor-server", "mtls-required"} <= skipped
    assert "skipped impostor-server: the device reaches the update server without TLS" in p.stdout
    # Alone, such a scenario is bad input naming it.
    p = otarig("run", "--board", prof, "--scenario", "impostor-server", "--out", tmp_path / "o2", check=2)
    assert "impostor-server.yaml" in p.stderr and "cannot run" in p.stderr
