"""The Mender board end to end (docs/ota-clients.md, "Mender").

`otarig run` of a seeded sample of `nightly` on boards/mender-ab.yaml (exit 0,
the TLS scenarios run, those a file-backed board cannot run and endless-data
(Mender takes no body without a stated length) skipped with their reasons, the host's /etc, /run, /dev and mounts untouched),
impostor-server judged on Mender over TLS (mtls-required skipped with the
reason: standalone Mender presents no client certificate, checked against a
server that requires one), the flawed twins
caught (no downgrade check: no-rollback on replay-old; Mender creating its
database in place: still-updatable under power-cut-sweep), power cuts after
each state marker of the artifacts' state scripts, and a device run
by hand that refuses a validly signed artifact for another device type and
then installs, boots and commits one for its own.

Needs root (private mount namespaces), mender, mender-artifact, fw_setenv;
skips with the reason otherwise.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_clients_e2e import (CLIENTBOARD, NIGHTLY_SAMPLE, OTARIG, SlowServer, TRANSPORT_OVER_HTTP,  # noqa: E402
                              env_of, host_state, missing, need_namespaces, run, trials)
import test_clients_e2e  # noqa: E402
from test_clients_e2e import NEEDS_SKIPPED  # noqa: E402

# What a Mender run makes inside its namespace; none of it may reach the host.
test_clients_e2e.HOST_PATHS += ["/etc/mender", "/etc/otarig-release", "/var/lib/mender", "/dev/otarig",
                                "/sys/class/ubi"]

BOARD = "boards/mender-ab.yaml"
UNSYNCED_STORE_TRIAL = "00066"


# The delta scenarios of nightly: skipped on a board whose profile declares no delta updates.
DELTA = {"delta-power-cut-sweep", "delta-corrupt-chunk", "delta-wrong-base", "delta-wrong-ranges"}
# The key lifecycle: no key rotation inside an update, and an artifact's signer (a bare key) has no validity
# period; skipped saying so. The clock scenarios run (mender-ab declares its clock policy).
ROTATIONS = {"key-rotation", "revoked-key", "untrusted-rotation"}
SIGNER_VALIDITY = {"signer-expired", "signer-not-yet-valid"}


def need_mender():
    need_namespaces()
    gone = missing("mender", "mender-artifact", "fw_setenv", "fw_printenv", "openssl")
    if gone:
        pytest.skip("not installed: %s (ci/setup with OTARIG_SETUP_EXTRA=clients)" % ", ".join(gone))


def test_mender_board_passes_a_nightly_sample(tmp_path):
    need_mender()
    before = host_state()
    out = tmp_path / "nightly"
    r = run(BOARD, "nightly", out, "--jobs", "2", "--no-progress", "--trials", str(NIGHTLY_SAMPLE))
    assert host_state() == before, "a Mender run changed the host's /etc, /run, /dev or mounts"
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(out)
    assert doc["summary"]["findings"] == 0 and doc["summary"]["trials"] == doc["planned"] == NIGHTLY_SAMPLE
    scenarios = {t["scenario"] for t in doc["trials"]}
    assert TRANSPORT_OVER_HTTP - {"endless-data"} <= scenarios, scenarios
    assert {"power-cut-sweep", "tampered-image", "replay-old", "self-test-fail", "brown-out"} <= scenarios
    # Mender downloads over TLS and verifies the server: impostor-server runs on it.
    assert "impostor-server" in scenarios, scenarios
    skipped = {s["scenario"]: s["reason"] for s in doc["skipped"]}
    # Mender takes no body without a stated length (device.network.length_required);
    # standalone Mender presents no client certificate (device.network.tls_reason).
    assert NEEDS_SKIPPED <= set(skipped), skipped
    assert set(skipped) - NEEDS_SKIPPED == {"bit-rot", "flash-error", "lying-mirror", "endless-data", "mtls-required",
                                            "client-certificate", *DELTA, *ROTATIONS, *SIGNER_VALIDITY, "outage",
                                            "server-certificate-rotated-ca", "client-certificate-expired"}, skipped
    assert all("no signer certificate" in skipped[s] for s in SIGNER_VALIDITY), skipped
    assert {"clock-1970", "clock-future", "clock-skew"} <= scenarios, scenarios
    for tls in ("mtls-required", "client-certificate"):
        assert "HttpsClient" in skipped[tls] and "managed mode" in skipped[tls], skipped[tls]
    assert "length" in skipped["endless-data"], skipped
    assert all(reason for reason in skipped.values()), skipped
    # The artifacts' state scripts mark Mender's states on the console.
    consoles = "".join(p.read_text(errors="replace") for p in (out / "trials").glob("*/console.log"))
    for marker in ("mender-state: ArtifactInstall_Enter", "mender-state: ArtifactCommit_Leave",
                   "mender-state: ArtifactFailure_Enter"):
        assert marker in consoles, marker
    # Every refused replay was refused by the device's check in the artifact.
    replays = [t for t in doc["trials"] if t["scenario"] in ("replay-old", "replay-major")]
    assert replays and all(t["delivery"]["status"] == "refused" for t in replays), replays


# Mender downloads over TLS and verifies the update server's certificate
# against the rig's test CA (--trusted-certs): the impostor is judged on
# Mender itself.
def test_mender_refuses_an_impostor_server(tmp_path):
    need_mender()
    before = host_state()
    out = tmp_path / "impostor"
    r = run(BOARD, "impostor-server", out, "--no-progress")
    assert host_state() == before, "a Mender run changed the host's /etc, /run, /dev or mounts"
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(out)
    assert not doc.get("skipped") and doc["summary"]["findings"] == 0, doc.get("skipped")
    assert doc["summary"]["trials"] == len(doc["trials"]) >= 1
    for t in doc["trials"]:
        assert t["scenario"] == "impostor-server" and t["verdict"] == "pass", t
        assert t["oracles"]["server-authenticated"] is True, t["oracles"]
        # Mender itself refused the impostor's certificate (an unrelated CA)...
        assert t["delivery"]["status"] == "refused", t["delivery"]
        assert "certificate" in t["delivery"]["detail"], t["delivery"]
        console = (out / "trials" / t["id"] / "console.log").read_text(errors="replace")
        assert "--trusted-certs" in console and "install https://" in console, console[-3000:]
        # ...and took the clean retry from the real server.
        assert "ota: staged slot B" in console, console[-3000:]


def test_mender_says_why_it_cannot_run_mtls_required(tmp_path):
    need_mender()
    r = run(BOARD, "mtls-required", tmp_path / "out")
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    assert "cannot run: the device presents no client certificate" in r.stderr and "HttpsClient" in r.stderr, r.stderr


def test_standalone_mender_presents_no_client_certificate(tmp_path):
    # The reason above, checked: the same board against a server that
    # requires a client certificate (tls: mutual). Mender's own update is
    # refused at the handshake; the server refuses a client without one.
    need_mender()
    text = (test_clients_e2e.SOURCE / BOARD).read_text().replace("tls: tls\n", "tls: mutual\n")
    text = text[:text.index("    tls_reason:")] + text[text.index("  provision:"):]
    prof = tmp_path / "mender-ab-mutual.yaml"
    prof.write_text(text.replace("name: mender-ab\n", "name: mender-ab-mutual\n"))
    out = tmp_path / "out"
    r = run(prof, "mtls-required", out, "--no-progress")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    (t, *_) = trials(out)["trials"]
    assert t["oracles"]["mutual-tls"] is True, t["oracles"]
    assert t["delivery"]["status"] == "refused" and "certificate required" in t["delivery"]["detail"], t["delivery"]


@pytest.mark.parametrize("scenario,states", [
    ("power-cut-mender-states", {"ArtifactInstall_Enter", "ArtifactInstall_Leave", "ArtifactCommit_Enter",
                                 "ArtifactCommit_Leave"}),
    ("power-cut-mender-rollback", {"ArtifactInstall_Leave", "ArtifactRollback_Enter", "ArtifactRollback_Leave"}),
])
def test_power_cuts_in_every_mender_state(scenario, states, tmp_path):
    need_mender()
    r = run(BOARD, scenario, tmp_path / "out", "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(tmp_path / "out")
    cut_after = set()
    for t in doc["trials"]:
        # Every cut falls at a storage operation Mender (or its scripts) made
        # after its state's marker, in the recording of the clean update
        # (the console traced with the storage: the same operation on any host).
        fault = t["fault"]
        assert fault["at"] == "console" and fault["line"].startswith("mender-state: "), fault
        assert fault["storage_op"] == fault["ops_before_line"] + fault["after_line"], fault
        assert "after console line 'mender-state: " in fault["detail"], fault["detail"]
        cut_after.add(fault["line"].removeprefix("mender-state: "))
    assert cut_after == states


def test_mender_without_downgrade_check_is_caught(tmp_path):
    need_mender()
    r = run("boards/flawed/mender-ab-no-downgrade-check.yaml", "replay-old", tmp_path / "out")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(tmp_path / "out")
    broken = [o["oracle"] for f in doc["findings"] for o in f["oracles"]]
    assert broken == ["no-rollback"], doc["findings"]


def test_mender_creating_its_database_in_place_is_caught(tmp_path):
    need_mender()
    # Trial 00066 of the sweep (seed 1, 122 storage operations): the cut
    # keeps, in mode torn, part of LMDB's first write of mender-store (its
    # meta pages, before any barrier).
    out = tmp_path / "sweep"
    r = run("boards/flawed/mender-ab-unsynced-store.yaml", "power-cut-sweep", out, "--no-progress",
            "--trial", UNSYNCED_STORE_TRIAL)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(out)
    (t,) = doc["trials"]
    assert t["fault"]["mode"] == "torn", t["fault"]
    assert {b["oracle"] for b in t["broken"]} == {"still-updatable"}, t["broken"]
    assert any("MDB_INVALID" in b["detail"] for b in t["broken"]), t["broken"]


def artifact(image, device_type, key, out):
    subprocess.run(["mender-artifact", "write", "rootfs-image", "--file", str(image), "--artifact-name",
                    "otarig-1.1.0.2", "--device-type", device_type, "--software-version", "1.1.0.2",
                    "--compression", "none", "--key", str(key), "--output-path", str(out)],
                   check=True, capture_output=True)
    return out.read_bytes()


class MenderBoard(test_clients_e2e.Board):
    def __init__(self, storage, key):
        self.p = subprocess.Popen([CLIENTBOARD, "--client", "mender", "--storage", str(storage), "--ca", str(key)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True, text=True, bufsize=1)
        self.lines = []


def test_mender_refuses_an_artifact_for_another_device_type(tmp_path):
    need_mender()
    size = 262144
    for name, version, counter in (("factory", "1.0.0+1", "1"), ("update", "1.1.0+2", "2")):
        subprocess.run([OTARIG, "image", "build", "--version", version, "--counter", counter, "--payload-size",
                        str(size), "--key", "test:otarig-release", "--out", str(tmp_path / (name + ".img"))],
                       check=True, capture_output=True)
    key, verify = tmp_path / "signer.key", tmp_path / "verify.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(verify)], check=True)
    # A factory-fresh device as `provision: {format: client-slots, bootloader: mender-uboot}` makes it.
    storage = tmp_path / "device"
    storage.mkdir()
    factory = (tmp_path / "factory.img").read_bytes()
    (storage / "slot-a.img").write_bytes(factory + bytes(1024 * 1024 - len(factory)))
    (storage / "slot-b.img").write_bytes(bytes(1024 * 1024))
    (storage / "uboot.env").write_bytes(bytes(0x8000))
    env = storage / "uboot.env"
    (storage / "fw_env.config").write_text("%s 0x0000 0x4000\n%s 0x4000 0x4000\n" % (env, env))
    (tmp_path / "defaults").write_text("mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\n"
                                       "bootcount=0\nbootlimit=3\n")
    subprocess.run(["fw_setenv", "-c", str(storage / "fw_env.config"), "-f", str(tmp_path / "defaults"),
                    "bootcount", "0"], check=True, capture_output=True)
    other = SlowServer(artifact(tmp_path / "update.img", "another-board", key, tmp_path / "other.mender"))
    own = SlowServer(artifact(tmp_path / "update.img", "otarig-board", key, tmp_path / "own.mender"))
    before = host_state()
    try:
        board = MenderBoard(storage, verify)
        assert "slot=A version=1.0.0+1" in board.until("STATUS")
        board.send("update " + other.url)
        refused = board.until("ota: refused", timeout=60)
        assert "another-board" in refused and "otarig-board" in refused, "\n".join(board.lines[-30:])
        e = env_of(storage)
        assert e["mender_boot_part"] == "2" and e["upgrade_available"] == "0", e
        board.send("update " + own.url)
        board.until("ota: staged slot B, rebooting", timeout=60)
        status = board.until("STATUS", timeout=60)
        assert "slot=B version=1.1.0+2" in status and "state=confirmed" in status, "\n".join(board.lines[-30:])
        assert any("app: committed slot B" in line for line in board.lines), "\n".join(board.lines[-30:])
        board.power_cut()
        e = env_of(storage)
        assert e["mender_boot_part"] == "3" and e["upgrade_available"] == "0", e
    finally:
        other.close()
        own.close()
    assert host_state() == before, "a Mender run changed the host's /etc, /run, /dev or mounts"


def test_the_wrong_device_scenario_is_refused_by_mender(tmp_path):
    """The rig's own wrong-device variant: a validly signed artifact whose device_type is another board's."""
    need_mender()
    r = run(BOARD, "wrong-device", tmp_path / "out", "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    t = json.loads((tmp_path / "out" / "run.json").read_text())["trials"][0]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert "not compatible with device otarig-board" in t["delivery"]["detail"], t["delivery"]
