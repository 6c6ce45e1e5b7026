"""The nightly catalog on a process board (otarig-vboard over mutual TLS through
the fault proxy): every transport scenario runs, power cuts placed in the
delivery fall, and flawed variants are caught by the oracle that must catch
them."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import process_profiles  # noqa: E402

# The delta scenarios of nightly: skipped on a board whose profile declares no delta updates.
DELTA = {"delta-power-cut-sweep", "delta-corrupt-chunk", "delta-wrong-base", "delta-wrong-ranges"}
# Scenarios that need a second image or encrypted releases: skipped on this board.
NEEDS_SKIPPED = {"bootloader-power-cut-sweep", "partial-bundle", "broken-dependency", "one-image-rollback",
                 "tampered-ciphertext", "encrypted-for-another-device"}

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
KILL_DIR = Path(tempfile.mkdtemp(prefix="otarig-e2e-kill-"))


def kill_model(profile):
    """The profile under the kill-only power model: these tests check the cuts
    placed in a delivery (a download byte, a time, a console line) and the
    transport scenarios; the sweep at every storage operation under the crash
    model is test_crash_storage.py's."""
    return process_profiles.kill_model(profile, KILL_DIR, "cuts placed in the delivery, tested without the crash model")


VBOARD = kill_model(SRC / "boards/vboard-ab.yaml")
NOVERIFY = kill_model(SRC / "boards/flawed/vboard-noverify.yaml")
NOROLLBACK = kill_model(SRC / "boards/flawed/vboard-norollback.yaml")
TLS_NOVERIFY = kill_model(SRC / "boards/flawed/vboard-tls-noverify.yaml")
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


def test_profile_dir_is_absolute_for_a_profile_named_without_its_folder(tmp_path):
    # `--board my.yaml` from the profile's own folder: the power command,
    # run from the device's storage folder, still finds the script beside it.
    tool = Path(os.environ.get("OTARIG_TOOL_PATH", "")) / "otarig-vboard"
    assert tool.is_file(), tool
    script = tmp_path / "my-device.sh"
    script.write_text(f"#!/bin/sh\nexec {tool} \"$@\"\n")
    script.chmod(0o755)
    text = VBOARD.read_text()
    assert "  command: otarig-vboard " in text
    text = text.replace("  command: otarig-vboard ", "  command: ${profile_dir}/my-device.sh ", 1)
    (tmp_path / "my.yaml").write_text(text.replace("name: vboard-ab", "name: my-board"))
    p = subprocess.run([BIN, "run", "--board", "my.yaml", "--scenario", "unsigned", "--out", "out", "--no-progress"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["summary"]["passed"] == 1
    # The evidence names the program the command resolved to.
    assert run["components"]["device-program"] == str(script), run["components"]


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
    assert NEEDS_SKIPPED <= set(skipped), skipped
    assert set(skipped) - NEEDS_SKIPPED == {"bit-rot", "flash-error", *DELTA}, skipped
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
            # The update server held the response at that byte of the image, inside TLS.
            b = t["fault"]["byte"]
            assert f"power cut at byte {b} of the image: the update server had sent every byte before it" \
                in cuts[0]["detail"] and "over TLS" in cuts[0]["detail"], cuts[0]
            assert cuts[0]["bytes"] == b
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

    def expectations(t):
        return [e for e in events(out, t["id"]) if e["type"] == "expectation" and e.get("expect") == "stays-up"]

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
        # Judged before the recovery power cycle: it answered, then showed its status.
        assert [e["held"] for e in expectations(t)] == [True], expectations(t)
        assert any(e["type"] == "observation" and e["step"] == "before-recovery" and e["booted"]
                   for e in events(out, t["id"]))
    slow = by["slow-retrieval"][0]
    # 1 MiB at 32 KiB/s takes half a minute; the device's deadlines (2 s a step, 5 s in all) end it first.
    assert slow["delivery"]["status"] == "refused", slow["delivery"]
    assert "took too long" in slow["delivery"]["detail"] or "timed out" in slow["delivery"]["detail"]
    assert [e["held"] for e in expectations(slow)] == [True]
    endless = by["endless-data"][0]
    assert endless["delivery"]["status"] == "accepted"
    # The server answered without Content-Length and kept sending inside TLS; the
    # device stopped at the declared size and let go long before the 64 MiB limit.
    bodies = [e for e in proxy_events(endless) if e.get("source") == "server" and e["kind"] == "endless-body"]
    assert len(bodies) == 1 and not bodies[0]["in_progress"], bodies
    image_size = bodies[0]["bytes"] - bodies[0]["endless"]
    assert image_size > 100000 and 0 <= bodies[0]["endless"] < 16 << 20, bodies
    assert bodies[0]["note"].startswith("endless body: the client went away"), bodies
    judged = [e for e in events(out, endless["id"]) if e["type"] == "endless-body"]
    assert len(judged) == 1 and judged[0]["held"] and judged[0]["image_bytes"] == image_size, judged
    assert "certificate verify failed" in by["impostor-server"][0]["delivery"]["detail"]
    assert by["impostor-server"][0]["oracles"]["server-authenticated"] is True, by["impostor-server"][0]["oracles"]
    stale = by["stale-manifest"][0]
    assert stale["delivered"] == "factory" and stale["delivery"]["status"] == "refused"
    # The device read the feed; the frozen feed named the factory release, and
    # the device refused it on the manifest, before fetching any image byte.
    assert stale["delivery"]["detail"] == "the feed offers 1.0.0+1, older than the running 1.1.0+2", stale
    console = (out / "trials" / stale["id"] / "console.log").read_text()
    assert "ota: feed offers factory 1.0.0+1" in console, console[-3000:]
    fault = [e for e in events(out, stale["id"]) if e["type"] == "fault"][0]
    assert "feed is frozen at an older release" in fault["detail"], fault
    mtls = by["mtls-required"][0]
    assert mtls["oracles"]["mutual-tls"] is True, mtls["oracles"]


def test_each_trial_holds_only_its_own_network_events(nightly):
    # A connection still open when a trial ends must not log into the next trial.
    out, run, _ = nightly
    seen = 0
    for t in run["trials"]:
        net = [e for ev in events(out, t["id"]) if ev["type"] == "network" for e in ev["events"]
               if e.get("source") != "server"]
        if not net:
            continue
        seen += 1
        assert len({e["generation"] for e in net}) == 1, (t["id"], net)
        # Every connection that closed in this trial was opened in it (one
        # refused during its setup, the impostor's, logs neither).
        opened = {e["connection"] for e in net if e["kind"] == "open"}
        for e in net:
            if e["kind"] == "close":
                assert e["connection"] in opened, (t["id"], e)
    assert seen > 20


def test_noverify_board_is_caught_by_authentic(tmp_path):
    out = tmp_path / "noverify"
    otarig("run", "--board", NOVERIFY, "--scenario", "nightly", "--seed", 1, "--out", out, "--no-progress",
           check=1)
    run = json.loads((out / "run.json").read_text())
    caught = {t["scenario"] for t in run["trials"] if "authentic" in [b["oracle"] for b in t["broken"]]}
    assert {"tampered-image", "unsigned", "wrong-key"} <= caught, caught


@pytest.mark.parametrize("scenario", ["stale-manifest", "replay-old"])
def test_board_trusting_its_feed_without_anti_rollback_is_caught_by_no_rollback_only(tmp_path, scenario):
    out = tmp_path / scenario
    otarig("run", "--board", NOROLLBACK, "--scenario", scenario, "--seed", 1, "--out", out, check=1)
    run = json.loads((out / "run.json").read_text())
    assert run["trials"] and all([b["oracle"] for b in t["broken"]] == ["no-rollback"] for t in run["trials"]), \
        [(t["id"], t["broken"]) for t in run["trials"]]
    t = run["trials"][0]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    if scenario == "stale-manifest":
        console = (out / "trials" / t["id"] / "console.log").read_text()
        assert "ota: feed offers factory 1.0.0+1" in console and "/images/factory.bin" in console, console[-3000:]


def test_the_feed_version_check_alone_refuses_a_stale_feed(tmp_path):
    # Without an anti-rollback check in the agent, the device's own comparison
    # with the manifest still refuses the older release.
    prof = variant(tmp_path, "vboard-ab-feed-check-only",
                   ("--download-timeout 5000", "--download-timeout 5000 --defect no-rollback-check"))
    out = tmp_path / "o"
    otarig("run", "--board", prof, "--scenario", "stale-manifest", "--seed", 1, "--out", out, check=0)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert t["delivery"]["status"] == "refused" and "older than the running" in t["delivery"]["detail"], t


def test_device_taking_an_impostor_server_is_caught_by_server_authenticated_only(tmp_path):
    # The impostor relays the real server's answers, so the device installs a
    # genuine image: only the proxy's TLS log shows that it took the impostor.
    out = tmp_path / "o"
    p = otarig("run", "--board", TLS_NOVERIFY, "--scenario", "impostor-server", "--seed", 1, "--out", out, check=1)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert [b["oracle"] for b in t["broken"]] == ["server-authenticated"], t["broken"]
    detail = t["broken"][0]["detail"]
    assert "completed the TLS handshake with the impostor" in detail, detail
    net = [e for ev in events(out, t["id"]) if ev["type"] == "network" for e in ev["events"]]
    assert any(e["kind"] == "impostor" and e["detail"].startswith("client accepted") for e in net), net
    judged = [e for e in events(out, t["id"]) if e["type"] == "server-authentication"]
    assert len(judged) == 1 and judged[0]["held"] is False, judged
    assert "replay: otarig run" in p.stdout and "--trial 00000" in p.stdout, p.stdout[-2000:]


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


def test_noverify_board_over_plain_http_is_caught_by_corrupt_in_transit(tmp_path):
    # Over TLS a flipped byte is a TLS record that fails its check, whatever the
    # device verifies. Without TLS the flipped byte reaches the image, and a
    # device that skips verification installs it.
    prof = tmp_path / "vboard-noverify-plain.yaml"
    text = NOVERIFY.read_text()
    assert "tls: mutual" in text
    prof.write_text(text.replace("tls: mutual", "tls: off").replace("name: vboard-noverify",
                                                                     "name: vboard-noverify-plain"))
    out = tmp_path / "o"
    otarig("run", "--board", prof, "--scenario", "corrupt-in-transit", "--seed", 1, "--out", out, check=1)
    run = json.loads((out / "run.json").read_text())
    caught = [t for t in run["trials"] if "authentic" in [b["oracle"] for b in t["broken"]]]
    assert caught, [t["oracles"] for t in run["trials"]]
    for t in caught:
        assert t["delivery"]["status"] == "accepted", t["delivery"]
    # The verifying board over the same plain HTTP refuses every corrupted download.
    plain = variant(tmp_path, "vboard-ab-plain-http", ("tls: mutual", "tls: off"))
    otarig("run", "--board", plain, "--scenario", "corrupt-in-transit", "--seed", 1, "--out", tmp_path / "ref",
           check=0)


def test_device_without_a_download_deadline_is_caught_by_recovered(tmp_path):
    # A stalled server holds a device that has no deadline of its own; the rig
    # judges it before its recovery power cycle would hide that.
    prof = variant(tmp_path, "vboard-ab-no-deadline",
                   ("--download-timeout 5000", "--download-timeout 5000 --no-download-deadline"),
                   ("timeout: 30s", "timeout: 8s"))
    out = tmp_path / "o"
    otarig("run", "--board", prof, "--scenario", "stalled-server", "--seed", 1, "--trials", 1, "--out", out,
           check=1)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert t["delivery"]["status"] == "unreachable", t["delivery"]
    assert [b["oracle"] for b in t["broken"]] == ["recovered"], t["oracles"]
    detail = t["broken"][0]["detail"]
    assert "did not stay up" in detail and "within the link's timeout" in detail \
        and "did not answer its status" in detail, detail


def test_device_that_reads_an_endless_body_to_its_end_is_caught(tmp_path):
    # Without Content-Length a flawed updater reads until the server closes: it
    # takes all 64 MiB the server sends after the image.
    prof = variant(tmp_path, "vboard-ab-read-to-eof",
                   ("--download-timeout 5000", "--download-timeout 20000 --read-to-eof"))
    out = tmp_path / "o"
    otarig("run", "--board", prof, "--scenario", "endless-data", "--seed", 1, "--out", out, check=1)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    broken = {b["oracle"]: b["detail"] for b in t["broken"]}
    assert "recovered" in broken, t["oracles"]
    assert "did not stop at the size the image header declares" in broken["recovered"], broken
    bodies = [e for ev in events(out, t["id"]) if ev["type"] == "network" for e in ev["events"]
              if e.get("source") == "server"]
    assert bodies and bodies[0]["endless"] > 16 << 20, bodies


def test_a_board_without_the_fault_proxy_runs_what_needs_no_proxy(tmp_path):
    # network: {proxy: false}: the device reaches the update server directly.
    # Scenarios that need the proxy cannot run (exit 2, naming why); the others
    # run, where every trial used to fail on the missing proxy (exit 3).
    prof = variant(tmp_path, "vboard-ab-no-proxy", ("proxy: true", "proxy: false"))
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--seed", 1, "--out", tmp_path / "unsigned",
               "--no-progress", check=0)
    assert "PASS: 1 trials" in p.stdout, p.stdout
    p = otarig("run", "--board", prof, "--scenario", "stale-manifest", "--seed", 1, "--out", tmp_path / "stale",
               "--no-progress", check=0)
    p = otarig("run", "--board", prof, "--scenario", "corrupt-in-transit", "--seed", 1, "--out", tmp_path / "c",
               check=2)
    assert "fault proxy" in p.stderr, p.stderr
