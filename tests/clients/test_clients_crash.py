"""The real clients under the crash model (docs/ota-clients.md, "Under the
crash model"; docs/crash-model.md): the rig records every storage operation
SWUpdate and RAUC make through its FUSE layer and cuts before each one.

- boards/swupdate-ab.yaml (SWUpdate's `rawfile` handler: the slot is fsync'd
  before libubootenv writes the environment) and boards/rauc-ab.yaml (RAUC
  fsyncs the slot, then the backend switches the primary slot) pass a seeded
  part of the sweep, and their recordings show the barriers that make them
  pass.
- boards/flawed/swupdate-ab-raw-nosync.yaml (SWUpdate's `raw` handler, made
  for block devices, on a file-backed slot: no fsync before the environment
  switch) is caught (atomic) under the crash model and passes under the old
  kill-only model.

The RAUC releases are 64 KiB (payload_size), the SWUpdate ones 512 KiB:
SWUpdate 2022.12's downloader (-d) can fail an image that fits in its IPC
socket's buffer before the installer starts (docs/ota-clients.md, "Under the
crash model"), a race of the client that makes tiny SWUpdate releases flaky.
The tests run seeded samples of each sweep; the whole 1 MiB sweeps are
bench/clients/crash_sweep.py's and the nightly pipeline's. Needs root,
swupdate, rauc and the FUSE layer; skips with the reason otherwise.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

OTARIG = os.environ.get("OTARIG_BIN", "otarig")
SOURCE = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def need(*tools):
    if os.geteuid() != 0:
        pytest.skip("the FUSE layer and private mount namespaces need root")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse: the crash model's FUSE layer cannot mount")
    gone = [t for t in tools if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if gone:
        pytest.skip("not installed: %s (ci/setup with OTARIG_SETUP_EXTRA=clients)" % ", ".join(gone))


# An image's header is 176 bytes: payloads that make 64 KiB and 512 KiB images.
PAYLOAD_64K = 65536 - 176
PAYLOAD_512K = 524288 - 176


def small(tmp_path, board, name, power_loss=None, bricks=False, payload=PAYLOAD_64K):
    """The profile with smaller releases (`payload` bytes), optionally another
    power_loss; for a board that bricks (`bricks`), a shorter boot budget and
    link timeout, which a bricked trial waits out."""
    text = (SOURCE / board).read_text()
    lines = []
    for line in text.splitlines():
        for rel in ("factory", "update", "next"):
            if line.startswith(f"  {rel}:") and "payload_size" not in line:
                line = line.rstrip()[:-1] + f", payload_size: {payload}}}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    assert text.count(f"payload_size: {payload}") == 3, board
    text = text.replace("\nname: ", f"\nname: {name}\n# was: ", 1)
    if bricks:
        text = text.replace("  timeout: 30s\n", "  timeout: 10s\n")
        text = text.replace("  boot_timeout: 5s\n", "  boot_timeout: 3s\n")
    if power_loss:
        text = text.replace("device:\n  kind: process\n", f"device:\n  kind: process\n  power_loss: {power_loss}\n")
        assert "power_loss:" in text
    out = tmp_path / f"{name}.yaml"
    out.write_text(text)
    return out


def sweep(board, out, *extra):
    p = subprocess.run([OTARIG, "run", "--board", board, "--scenario", "power-cut-sweep", "--seed", "1",
                        "--out", out, "--no-progress", *map(str, extra)],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode in (0, 1), f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p, json.loads((Path(out) / "run.json").read_text())


def recorded_ops(out):
    """{op index: op} of the recorded update, from the journal's planned cuts."""
    ops = {}
    for line in (Path(out) / "journal.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "trial-start" and "op" in r["fault"]:
            ops[r["fault"]["storage_op"]] = r["fault"]["op"]
    return ops


def first(ops, kind, path, after=0):
    return min((k for k, o in ops.items() if k > after and o["kind"] == kind and o.get("path") == path), default=None)


SWUPDATE = ("swupdate", "fw_setenv", "fw_printenv")


def test_swupdate_reference_passes_a_seeded_part_of_the_sweep(tmp_path):
    need(*SWUPDATE)
    board = small(tmp_path, "boards/swupdate-ab.yaml", "swupdate-ab-small", payload=PAYLOAD_512K)
    # A seeded 40 cuts of the sweep, in the modes that give distinct states.
    p, run = sweep(board, tmp_path / "out", "--trials", 40, "--jobs", 2)
    assert p.returncode == 0, p.stdout[-3000:]
    assert run["board"]["power_loss"] == "crash" and len(run["trials"]) == 40
    (key, n), = run["storage_ops_per_update"].items()
    assert key == "factory->update" and n > 20
    ops = recorded_ops(tmp_path / "out")
    assert ops and all(1 <= k <= n for k in ops)
    assert {t["fault"]["kind"] for t in run["trials"]} == {"power-cut"}


def test_swupdate_recording_syncs_the_slot_before_the_environment(tmp_path):
    need(*SWUPDATE)
    board = small(tmp_path, "boards/swupdate-ab.yaml", "swupdate-ab-rec", payload=PAYLOAD_512K)
    # The whole recording: power-cut-sweep in mode lost alone, one cut
    # before every operation (each cut's planned fault names its operation).
    text = (SOURCE / "scenarios/power-cut-sweep.yaml").read_text()
    assert "  at: every-flash-op\n" in text
    scenario = tmp_path / "lost-sweep.yaml"
    scenario.write_text(text.replace("name: power-cut-sweep", "name: lost-sweep")
                        .replace("  at: every-flash-op\n", "  at: every-flash-op\n  modes: [lost]\n"))
    out = tmp_path / "out"
    p = subprocess.run([OTARIG, "run", "--board", board, "--scenario", scenario, "--seed", "1", "--out", out,
                        "--no-progress", "--jobs", "2"], capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    (key, n), = run["storage_ops_per_update"].items()
    ops = recorded_ops(out)
    slot_write = first(ops, "write", "/slot-b.img")
    slot_sync = first(ops, "fsync", "/slot-b.img", slot_write or 0)
    env_write = first(ops, "write", "/uboot.env", slot_write or 0)
    assert slot_write and slot_sync and env_write, ops
    # rawfile: the slot's fsync comes before the environment switch begins.
    assert slot_sync < env_write, (slot_sync, env_write)


def test_swupdate_raw_handler_on_a_file_slot_is_caught_under_the_crash_model(tmp_path):
    need(*SWUPDATE)
    board = small(tmp_path, "boards/flawed/swupdate-ab-raw-nosync.yaml", "swupdate-raw-crash", bricks=True,
                  payload=PAYLOAD_512K)
    # A seeded part of the sweep: only the cuts after the environment switch
    # began brick the device; bricked trials mostly wait, three run at once.
    p, run = sweep(board, tmp_path / "out", "--trials", 60, "--jobs", 3)
    assert p.returncode == 1, p.stdout[-3000:]
    broken = {o["oracle"] for f in run["findings"] for o in f["oracles"]}
    assert "atomic" in broken, broken
    assert all(f["replay"].startswith("otarig run ") and "--trial" in f["replay"] for f in run["findings"])
    ops = recorded_ops(tmp_path / "out")
    for f in run["findings"]:
        trial = next(t for t in run["trials"] if t["id"] == f["trial"])
        cut = trial["fault"]["storage_op"]
        # Every finding is a cut after the slot's writes began and with no
        # barrier on the slot before it: the flaw.
        assert not any(o["kind"] == "fsync" and o.get("path") == "/slot-b.img" for k, o in ops.items() if k < cut), \
            trial["fault"]


def test_swupdate_raw_handler_passes_under_the_kill_model(tmp_path):
    need(*SWUPDATE)
    board = small(tmp_path, "boards/flawed/swupdate-ab-raw-nosync.yaml", "swupdate-raw-kill",
                  '{model: kill, reason: "the old model: a killed process keeps its writes"}', payload=PAYLOAD_512K)
    p, run = sweep(board, tmp_path / "out", "--trials", 40, "--jobs", 2)
    assert p.returncode == 0, p.stdout[-3000:]
    assert run["board"]["power_loss"].startswith("kill: ")


def test_rauc_reference_passes_with_its_bundle_outside_the_recorded_storage(tmp_path):
    need("rauc", "dbus-run-session", "mksquashfs", "unsquashfs")
    board = small(tmp_path, "boards/rauc-ab.yaml", "rauc-ab-small")
    # A seeded 40 cuts; the whole sweep is the nightly pipeline's.
    p, run = sweep(board, tmp_path / "out", "--trials", 40)
    assert p.returncode == 0, p.stdout[-3000:]
    assert run["board"]["power_loss"] == "crash"
    assert len(run["trials"]) == 40
    assert run["storage_ops_per_update"]["factory->update"] > 20
    ops = recorded_ops(tmp_path / "out")
    paths = {o.get("path") for o in ops.values()} | {o.get("to") for o in ops.values()}
    # RAUC writes its slot and its status file; the bundle is on the client's
    # tmpfs, which the layer never sees.
    assert "/slot-b.img" in paths and any(p and p.startswith("/rauc-data/central.raucs") for p in paths), paths
    assert not any(p and "raucb" in p for p in paths), paths
