"""Power loss as storage sees it (docs/crash-model.md): on process boards the
rig records every storage operation of a clean update through its FUSE layer
and cuts before each one, in each crash mode, from a snapshot and the log.
The reference otarig-vboard (every flash operation synced) passes; three
devices whose boot state is written without the barriers it needs are caught
under the crash model and pass under the old kill-only model, which keeps
every write a killed process made. A device that makes its writes durable
with sync(2) alone passes: the rig sees each sync through the device's
seccomp filter.

The boards run with 64 KiB slots so a sweep stays within the test's time;
the code path is the one the 1 MiB profiles take."""
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
# The oracles each flaw breaks, and how many seeded cuts of the sweep the test
# runs (a bricked trial waits out the boot budget and the link's timeout, so
# the boards that brick at half their cuts run fewer; the in-place record
# bricks at few cuts, in mode reorder or prefix). Bricked trials mostly wait,
# so three run side by side.
FLAWED = {
    "vboard-nobarrier-bootrec": ({"atomic", "recovered"}, 12),
    "vboard-rename-nosync": ({"atomic", "recovered"}, 12),
    "vboard-inplace-bootstate": ({"atomic", "recovered"}, 60),
}

# A seeded subset of the sync-only board's sweep (a passing trial takes about
# a second; the whole sweep is the nightly pipeline's).
SYNC_TRIALS = 40


def otarig(*args, check=None, timeout=900):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def small(tmp_path, profile, name, power_loss=None):
    """The profile with 64 KiB slots (and releases that fit), optionally with
    another `device.power_loss`."""
    text = profile.read_text()
    assert "slot_size: 1MiB" in text, profile
    text = text.replace("slot_size: 1MiB", "slot_size: 64KiB")
    for rel in ("factory", "update", "next"):
        lines = []
        for line in text.splitlines():
            if line.startswith(f"  {rel}:") and "payload_size" not in line:
                line = line.rstrip()[:-1] + ", payload_size: 65360}"
            lines.append(line)
        text = "\n".join(lines) + "\n"
    text = text.replace(f"name: {profile.stem}", f"name: {name}")
    # A bricked trial waits out the boot budget twice (after the fault, after the retry).
    text = text.replace("boot_timeout: 10s", "boot_timeout: 3s")
    # ... and a dead device's retry waits out the link's timeout: a 64 KiB update answers in well under 5 s.
    text = text.replace("  timeout: 30s\n", "  timeout: 5s\n")
    if power_loss:
        text = text.replace("device:\n  kind: process\n", f"device:\n  kind: process\n  power_loss: {power_loss}\n")
        assert "power_loss:" in text
    out = tmp_path / f"{name}.yaml"
    out.write_text(text)
    return out


def sweep(tmp_path, board, out_name, *extra):
    out = tmp_path / out_name
    p = otarig("run", "--board", board, "--scenario", "power-cut-sweep", "--seed", 1, "--out", out, "--no-progress",
               *extra)
    assert p.returncode in (0, 1), f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p, json.loads((out / "run.json").read_text()), out


def test_reference_board_passes_a_sweep_at_every_storage_operation(tmp_path):
    board = small(tmp_path, SRC / "boards/vboard-ab.yaml", "vboard-ab-small")
    p, run, out = sweep(tmp_path, board, "ref")
    assert p.returncode == 0, p.stdout[-3000:]
    assert run["board"]["power_loss"] == "crash"
    (key, n), = run["storage_ops_per_update"].items()
    assert key == "factory->update" and n > 20
    cuts = [t["fault"] for t in run["trials"]]
    # Every cut point, before each operation and after the last, in at least one mode.
    assert {c["storage_op"] for c in cuts} == set(range(1, n + 2))
    assert all(c["mode"] in ("lost", "prefix", "reorder", "torn") for c in cuts)
    assert all(c["label"].startswith("power-cut storage op ") for c in cuts)
    first = cuts[0]
    assert first["op"]["path"] and first["op"]["kind"]
    # The crash state is in the trial's evidence: which operations were kept or dropped.
    events = [json.loads(line) for line in (out / "trials" / "00000" / "events.jsonl").read_text().splitlines()]
    crash = [e for e in events if e["type"] == "crash-state"]
    assert crash and "pending" in crash[0]["state"] and crash[0]["recording"] == key
    assert "power cut before storage operation 1 of" in run["trials"][0]["fault"]["detail"]


@pytest.mark.parametrize("name", sorted(FLAWED))
def test_flawed_storage_is_caught_only_under_the_crash_model(tmp_path, name):
    crash = small(tmp_path, SRC / "boards/flawed" / f"{name}.yaml", name)
    # A seeded subset of the sweep's cuts (the whole sweep is the nightly
    # pipeline's): the same trials on every run.
    oracles, trials = FLAWED[name]
    p, run, _ = sweep(tmp_path, crash, "crash", "--trials", trials, "--jobs", 3)
    assert p.returncode == 1, p.stdout[-3000:]
    broken = {o["oracle"] for f in run["findings"] for o in f["oracles"]}
    assert broken & oracles, broken
    # Every finding prints the command that replays it.
    assert all(f["replay"].startswith("otarig run ") and "--trial" in f["replay"] for f in run["findings"])

    kill = small(tmp_path, SRC / "boards/flawed" / f"{name}.yaml", name + "-kill",
                 power_loss='{model: kill, reason: "the old model: a killed process keeps its writes"}')
    p, run, _ = sweep(tmp_path, kill, "kill")
    assert p.returncode == 0, p.stdout[-3000:]
    assert run["board"]["power_loss"].startswith("kill: ")


def test_a_device_that_syncs_only_with_sync_passes_the_sweep(tmp_path):
    """The swap-scratch vboard with its boot state in a file of its own (as
    vboard-nobarrier-bootrec), every barrier a sync(2) and no fsync at all,
    as an updater's `dd ... && sync`: correct on a real disk. The rig sees
    each sync through the device's seccomp filter, so every crash state keeps
    what the syncs made durable; without them this board is caught as
    vboard-nobarrier-bootrec is."""
    flawed = (SRC / "boards/flawed/vboard-nobarrier-bootrec.yaml").read_text()
    assert "--defect-storage no-barrier-boot-record" in flawed
    profile = tmp_path / "vboard-swap-syncs.yaml"
    profile.write_text(flawed.replace("--defect-storage no-barrier-boot-record", "--sync-call sync")
                       .replace("name: vboard-nobarrier-bootrec", "name: vboard-swap-syncs"))
    board = small(tmp_path, profile, "vboard-swap-syncs")
    p, run, out = sweep(tmp_path, board, "syncs", "--trials", SYNC_TRIALS)
    states = [json.loads(line) for t in run["trials"]
              for line in (out / "trials" / t["id"] / "events.jsonl").read_text().splitlines()]
    unseen = [e["state"]["sync_not_seen"] for e in states
              if e["type"] == "crash-state" and "sync_not_seen" in e["state"]]
    if unseen:
        pytest.skip(unseen[0])
    assert p.returncode == 0, p.stdout[-3000:]
    (key, n), = run["storage_ops_per_update"].items()
    cuts = [t["fault"] for t in run["trials"]]
    assert len(cuts) == SYNC_TRIALS
    # The recording's barriers are the syncs the seccomp filter saw: some cut
    # falls right before one, and nothing else syncs.
    at_sync = [c["op"] for c in cuts if c.get("op", {}).get("kind") == "sync"]
    assert at_sync and all(op == {"op": op["op"], "kind": "sync", "source": "seccomp", "syscall": "sync"}
                           for op in at_sync), at_sync
    assert not [c["op"] for c in cuts if c.get("op", {}).get("kind") in ("fsync", "fdatasync", "fsync_dir")]


def test_kill_model_without_a_reason_is_bad_input(tmp_path):
    board = small(tmp_path, SRC / "boards/vboard-ab.yaml", "vboard-ab-noreason", power_loss="{model: kill}")
    p = otarig("run", "--board", board, "--scenario", "unsigned", "--out", tmp_path / "o")
    assert p.returncode == 2, p.stderr
    assert f"{board}:" in p.stderr and "reason" in p.stderr


def fuse_mounts_naming(text):
    """FUSE mounts, in any process's mount namespace, whose line names `text`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            info = Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:
            continue
        found += [(pid, line) for line in info.splitlines() if "fuse" in line and text in line]
    return found


def test_a_sweep_killed_with_sigkill_leaves_no_mount_and_resumes(tmp_path):
    board = small(tmp_path, SRC / "boards/vboard-ab.yaml", "vboard-ab-killed")
    out = tmp_path / "out"
    journal = out / "journal.jsonl"
    rig = subprocess.Popen([BIN, "run", "--board", board, "--scenario", "power-cut-sweep", "--seed", "1", "--out", out,
                            "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # Kill it mid-sweep: once some trials are judged, with more to go.
        while time.monotonic() < deadline and rig.poll() is None:
            if journal.exists() and journal.read_text().count('"type":"verdict"') >= 5:
                break
            time.sleep(0.05)
        assert rig.poll() is None, "the sweep ended before it could be killed"
        assert fuse_mounts_naming("otarig-vboard-ab-killed-"), "the layer was not mounted while the sweep ran"
        os.killpg(rig.pid, signal.SIGKILL)
        rig.wait(timeout=30)
    finally:
        if rig.poll() is None:
            os.killpg(rig.pid, signal.SIGKILL)
            rig.wait()
    # The layer and its namespace go with the rig and the devices: no mount is
    # left half there, in any namespace.
    deadline = time.monotonic() + 30
    while fuse_mounts_naming("otarig-vboard-ab-killed-") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not fuse_mounts_naming("otarig-vboard-ab-killed-")
    judged = journal.read_text().count('"type":"verdict"')
    assert judged >= 5
    p = otarig("run", "--board", board, "--scenario", "power-cut-sweep", "--seed", 1, "--out", out, "--no-progress",
               "--resume")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert len(run["trials"]) == run["planned"] and len({t["id"] for t in run["trials"]}) == run["planned"]
    otarig("report", "verify", out, check=0)


def test_a_layer_that_cannot_mount_is_a_bench_failure_naming_the_folder(tmp_path):
    # /dev/fuse replaced by /dev/null in a private mount namespace: libfuse
    # cannot mount, as on a machine without FUSE.
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    board = small(tmp_path, SRC / "boards/vboard-ab.yaml", "vboard-ab-nofuse")
    out = tmp_path / "out"
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind /dev/null /dev/fuse && exec "$@"', "sh", BIN, "run", "--board", str(board),
                        "--scenario", "unsigned", "--seed", "1", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 3 and "mount --bind" in p.stderr:
        pytest.skip("cannot make a private mount namespace here: " + p.stderr.strip())
    assert p.returncode == 3, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    assert "cannot mount the recording layer over the storage folder" in p.stderr, p.stderr
    assert "vboard-ab-nofuse" in p.stderr and "power_loss: {model: kill" in p.stderr, p.stderr
    # Nothing is left mounted, in this namespace or any other.
    assert not fuse_mounts_naming("otarig-vboard-ab-nofuse-")


def test_a_cut_after_the_trial_boot_banner_falls_at_the_same_storage_operation_on_every_run(tmp_path):
    """power-cut-trial-boot under the crash model: the cut falls before a
    seeded one of the storage operations the device makes after it prints its
    banner again, planned from the console traced with the recording, not a
    few milliseconds after the line (which, on a fast host, fell after the
    whole trial boot). Two runs with the same seed cut at the same operations."""
    import re
    board = small(tmp_path, SRC / "boards/vboard-ab.yaml", "vboard-ab-small")
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        p = otarig("run", "--board", board, "--scenario", "power-cut-trial-boot", "--seed", 3, "--out", out,
                   "--no-progress")
        assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        runs.append(json.loads((out / "run.json").read_text()))
    first, second = ([t["fault"] for t in r["trials"]] for r in runs)
    assert len(first) == 8
    (key, n), = runs[0]["storage_ops_per_update"].items()
    banner = "otarig-vboard"
    for cut in first:
        assert cut["at"] == "console"
        assert re.search(cut["pattern"], cut["line"]) and banner in cut["line"], cut
        # The banner of the trial boot, not the factory boot's: the update's
        # operations (the slot write) come before it.
        assert 0 < cut["ops_before_line"] < n
        assert cut["ops_after_line"] == n - cut["ops_before_line"]
        assert 1 <= cut["after_line"] <= cut["ops_after_line"] + 1
        assert cut["storage_op"] == cut["ops_before_line"] + cut["after_line"]
        assert "after console line" in cut["detail"]
    # More than one operation of the trial boot is cut across the trials.
    assert len({c["storage_op"] for c in first}) > 1
    keys = ("storage_op", "mode", "crash_seed", "line", "after_line")
    assert [{k: c[k] for k in keys} for c in first] == [{k: c[k] for k in keys} for c in second]
    assert [t["verdict"] for t in runs[0]["trials"]] == [t["verdict"] for t in runs[1]["trials"]]


def brown_out_events(out, trial):
    events = [json.loads(line) for line in (out / trial["evidence"] / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e["type"] == "brown-out"]


def test_brown_out_cuts_each_recovery_boot_at_the_same_storage_operation_on_every_run(tmp_path):
    """brown-out under the crash model: the first cut is a crash state of the
    recorded update, and each recovery boot is recorded until the device
    answers its status, then cut before a seeded one of its storage
    operations, not a few milliseconds after power-on. A swap-scratch
    otarig-vboard, whose recovery boots resume the swap, passes and two runs
    cut the same operations; the same board writing its boot records without
    a barrier is caught."""
    flawed = small(tmp_path, SRC / "boards/flawed/vboard-nobarrier-bootrec.yaml", "nobarrier-small")
    text = flawed.read_text()
    assert " --defect-storage no-barrier-boot-record" in text
    reference = tmp_path / "swap-scratch-small.yaml"
    reference.write_text(text.replace(" --defect-storage no-barrier-boot-record", "")
                         .replace("name: nobarrier-small", "name: swap-scratch-small"))
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        otarig("run", "--board", reference, "--scenario", "brown-out", "--seed", 1, "--trials", 8, "--out", out,
               "--no-progress", check=0)
        run_json = json.loads((out / "run.json").read_text())
        runs.append([(t["id"], t["verdict"], brown_out_events(out, t)) for t in run_json["trials"]])
    assert runs[0] == runs[1]
    cuts = [e for _, _, events in runs[0] for e in events]
    assert cuts and all(e.get("at") == "storage-op" or e["storage_ops"] == 0 for e in cuts), cuts
    # Some recovery boots write (the swap goes on) and are cut inside.
    cut_inside = [e for e in cuts if e["storage_ops"] > 0]
    assert cut_inside, cuts
    for e in cut_inside:
        assert 1 <= e["before_op"] <= e["storage_ops"] and e["mode"] in ("lost", "prefix", "reorder", "torn"), e
        assert e["op"]["op"] == e["before_op"] and e["state"]["cut"] == e["before_op"], e
    out = tmp_path / "flawed"
    otarig("run", "--board", flawed, "--scenario", "brown-out", "--seed", 1, "--trials", 8, "--out", out,
           "--no-progress", check=1)
    broken = {b["oracle"] for t in json.loads((out / "run.json").read_text())["trials"] for b in t["broken"]}
    assert {"atomic", "recovered"} <= broken, broken
