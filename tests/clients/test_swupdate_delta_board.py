"""SWUpdate's delta handler in the rig's campaigns (boards/swupdate-ab-delta.yaml,
docs/ota-clients.md, "Delta releases in campaigns").

`otarig run` of the delta scenarios on the SWUpdate board that takes delta
releases: the rig makes a signed .swu carrying the zchunk header of the new
image and publishes the .zck beside it; SWUpdate fetches the chunks its
running slot lacks in byte ranges, assembles the new slot, and the package's
postinstall script checks it as a whole. delta-corrupt-chunk and
delta-wrong-ranges are refused, delta-wrong-base installs the new image (the
profile's `wrong_base: full-image`), a seeded sample of the delta power-cut
sweep (crash states before the recorded delta update's storage operations)
passes. A few seconds per scenario. Needs root (private mount namespaces,
the crash model's FUSE layer), swupdate, fw_setenv and zchunk; skips with
the reason otherwise.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

OTARIG = os.environ.get("OTARIG_BIN", "otarig")
SOURCE = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BOARD = SOURCE / "boards/swupdate-ab-delta.yaml"


@pytest.fixture(autouse=True)
def needs():
    if os.geteuid() != 0:
        pytest.skip("private mount namespaces and the FUSE layer need root")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse: the crash model's FUSE layer cannot mount")
    gone = [t for t in ("swupdate", "fw_setenv", "zck", "zck_read_header")
            if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if gone:
        pytest.skip("not installed: %s (ci/setup with OTARIG_SETUP_EXTRA=clients: swupdate, libubootenv-tool, "
                    "zchunk)" % ", ".join(gone))


def run(scenario, out, *extra, board=BOARD):
    r = subprocess.run([OTARIG, "run", "--board", str(board), "--scenario", scenario, "--seed", "1", "--out", str(out),
                        "--no-progress", *extra], capture_output=True, text=True, timeout=600)
    return r, (json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else None)


def events(out, trial):
    return [json.loads(l) for l in (out / "trials" / trial / "events.jsonl").read_text().splitlines()]


def console(out, trial):
    return (out / "trials" / trial / "console.log").read_text(errors="replace")


def test_a_corrupted_chunk_is_refused_and_the_full_image_taken(tmp_path):
    out = tmp_path / "cc"
    r, doc = run("delta-corrupt-chunk", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = doc["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert "in chunk" in t["fault"]["detail"] and "which the running image lacks" in t["fault"]["detail"], t["fault"]
    log = console(out, t["id"])
    # SWUpdate fetched the chunks in byte ranges from the .zck the rig published beside the .swu.
    served = [e for e in events(out, t["id"]) if e["type"] == "delivery"]
    assert served and served[0]["status"] == "refused", served
    assert "Total bytes to be downloaded" in log, log[-3000:]
    assert not t["broken"], t["broken"]


def test_a_wrong_base_installs_the_new_image_as_the_profile_declares(tmp_path):
    out = tmp_path / "wb"
    r, doc = run("delta-wrong-base", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = doc["trials"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    assert "names no base" in t["fault"]["detail"], t["fault"]
    verdict = json.loads((out / "trials" / t["id"] / "verdict.json").read_text())
    assert verdict["oracles"]["delta-base"] is True, verdict
    log = console(out, t["id"])
    # The chunks the running slot holds were reused and the rest fetched.
    reused = [l for l in log.splitlines() if "Total bytes to be reused" in l]
    assert reused and int(reused[0].split(":")[-1]) > 0, log[-3000:]


def test_a_server_that_answers_the_ranges_wrongly_is_refused(tmp_path):
    out = tmp_path / "wr"
    r, doc = run("delta-wrong-ranges", out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = doc["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert not t["broken"], t["broken"]
    # The update server answered the device's ranges wrongly, and said so.
    net = [e for e in events(out, t["id"]) if e["type"] == "network"]
    wrong = [x for e in net for x in e["events"] if x.get("kind") == "wrong-ranges"]
    assert wrong and all(x["status"] == 206 and x["range"] and x["target"].startswith("/deltas/") for x in wrong), net


def test_a_seeded_sample_of_the_delta_power_cut_sweep_passes(tmp_path):
    out = tmp_path / "sweep"
    r, doc = run("delta-power-cut-sweep", out, "--trials", "6", "--jobs", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert doc["summary"]["findings"] == 0 and doc["summary"]["trials"] == 6, doc["summary"]
    # Crash states of the recorded delta update, before its storage operations.
    ops = doc["storage_ops_per_update"]
    assert list(ops) == ["factory->patch/delta"] and ops["factory->patch/delta"] > 3, ops
    for t in doc["trials"]:
        assert t["cut"] and 1 <= t["cut"]["op"] <= t["cut"]["ops_total"] + 1, t


def test_a_board_without_zchunk_skips_the_delta_scenarios_saying_so(tmp_path):
    # zck and zck_read_header out of PATH: the swu format makes no delta packages.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("swupdate", "fw_setenv", "fw_printenv", "otarig-clientboard"):
        found = shutil.which(tool, path=os.environ.get("OTARIG_TOOL_PATH", "") + os.pathsep + os.environ["PATH"])
        if found:
            (bindir / tool).symlink_to(found)
    suite = tmp_path / "deltas.yaml"
    suite.write_text("name: deltas\ninclude: [delta-wrong-base, delta-wrong-ranges]\n")
    env = dict(os.environ, PATH=str(bindir) + os.pathsep + "/usr/local/sbin:/usr/sbin:/sbin")
    r = subprocess.run([OTARIG, "run", "--board", str(BOARD), "--scenario", str(suite), "--seed", "1", "--out",
                        str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True, timeout=300, env=env)
    doc = json.loads((tmp_path / "o" / "run.json").read_text())
    skipped = {s["scenario"]: s["reason"] for s in doc["skipped"]}
    assert set(skipped) == {"delta-wrong-base", "delta-wrong-ranges"}, (skipped, r.stderr[-2000:])
    assert all("need zchunk's zck and zck_read_header" in why for why in skipped.values()), skipped


def test_cuts_by_download_byte_fall_within_the_delta_delivered(tmp_path):
    # Under the kill model the sweep's cuts are placed in the delivery: by
    # download byte, drawn over the bytes of the delta package delivered
    # (the .swu), not over the 1 MiB image it assembles.
    text = BOARD.read_text().replace("name: swupdate-ab-delta", "name: swupdate-ab-delta-kill").replace(
        "device:\n  kind: process\n", 'device:\n  kind: process\n  power_loss: {model: kill, reason: "placed cuts"}\n', 1)
    board = tmp_path / "swupdate-ab-delta-kill.yaml"
    board.write_text(text)
    out = tmp_path / "kill"
    r, doc = run("delta-power-cut-sweep", out, "--trials", "6", board=board)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    at_bytes = [t for t in doc["trials"] if t["fault"]["at"] == "download-byte"]
    assert at_bytes, doc["trials"]
    for t in at_bytes:
        size = t["fault"]["image_size"]
        assert 256 * 1024 < size < 1024 * 1024 and t["fault"]["byte"] < size, t["fault"]
        assert t["delivery"]["status"] == "power-lost", t["delivery"]
