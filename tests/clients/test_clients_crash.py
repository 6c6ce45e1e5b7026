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

The releases are 64 KiB (payload_size) so a sweep stays within the test's
time; the whole 1 MiB sweeps are bench/clients/crash_sweep.py's and the
nightly pipeline's. Needs root, swupdate, rauc and the FUSE layer; skips with
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


def need(*tools):
    if os.geteuid() != 0:
        pytest.skip("the FUSE layer and private mount namespaces need root")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse: the crash model's FUSE layer cannot mount")
    gone = [t for t in tools if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if gone:
        pytest.skip("not installed: %s (ci/setup with OTARIG_SETUP_EXTRA=clients)" % ", ".join(gone))


def small(tmp_path, board, name, power_loss=None):
    """The profile with 64 KiB releases, a shorter boot budget and link timeout
    (a bricked trial waits them out), optionally another power_loss."""
    text = (SOURCE / board).read_text()
    lines = []
    for line in text.splitlines():
        for rel in ("factory", "update", "next"):
            if line.startswith(f"  {rel}:") and "payload_size" not in line:
                line = line.rstrip()[:-1] + ", payload_size: 65360}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    assert text.count("payload_size: 65360") == 3, board
    text = text.replace("\nname: ", f"\nname: {name}\n# was: ", 1)
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


def test_swupdate_reference_fsyncs_the_slot_before_the_environment_and_passes(tmp_path):
    need("swupdate", "fw_setenv", "fw_printenv")
    board = small(tmp_path, "boards/swupdate-ab.yaml", "swupdate-ab-small")
    p, run = sweep(board, tmp_path / "out")
    assert p.returncode == 0, p.stdout[-3000:]
    assert run["board"]["power_loss"] == "crash"
    (key, n), = run["storage_ops_per_update"].items()
    assert key == "factory->update" and n > 10
    ops = recorded_ops(tmp_path / "out")
    # Every cut point, before each operation and after the last.
    assert set(ops) | {n + 1} == set(range(1, n + 2))
    slot_write = first(ops, "write", "/slot-b.img")
    slot_sync = first(ops, "fsync", "/slot-b.img", slot_write)
    env_write = first(ops, "write", "/uboot.env", slot_write)
    assert slot_write and slot_sync and env_write, ops
    assert slot_sync < env_write, (slot_sync, env_write)


def test_swupdate_raw_handler_on_a_file_slot_is_caught_under_the_crash_model(tmp_path):
    need("swupdate", "fw_setenv", "fw_printenv")
    board = small(tmp_path, "boards/flawed/swupdate-ab-raw-nosync.yaml", "swupdate-raw-crash")
    # The whole sweep: only the cuts after the new slot was confirmed brick it.
    p, run = sweep(board, tmp_path / "out")
    assert p.returncode == 1, p.stdout[-3000:]
    broken = {o["oracle"] for f in run["findings"] for o in f["oracles"]}
    assert "atomic" in broken, broken
    assert all(f["replay"].startswith("otarig run ") and "--trial" in f["replay"] for f in run["findings"])
    ops = recorded_ops(tmp_path / "out")
    slot_write = first(ops, "write", "/slot-b.img")
    env_write = first(ops, "write", "/uboot.env", slot_write)
    # The flaw: no barrier on the slot between its writes and the environment switch.
    assert slot_write and env_write and first(ops, "fsync", "/slot-b.img", slot_write) is None, ops
    # Every finding is a cut after the environment switch began.
    for f in run["findings"]:
        trial = next(t for t in run["trials"] if t["id"] == f["trial"])
        assert trial["fault"]["storage_op"] > env_write, trial["fault"]


def test_swupdate_raw_handler_passes_under_the_kill_model(tmp_path):
    need("swupdate", "fw_setenv", "fw_printenv")
    board = small(tmp_path, "boards/flawed/swupdate-ab-raw-nosync.yaml", "swupdate-raw-kill",
                  '{model: kill, reason: "the old model: a killed process keeps its writes"}')
    p, run = sweep(board, tmp_path / "out")
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
