"""Device compatibility and a second updatable image, end to end: the
references find nothing, each flawed board is caught by the oracle its defect
breaks, `otarig image build` writes the new header fields, and a bad
device_type or bundle in a profile is bad input naming its line. Seconds."""
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BOARDS = SRC / "boards"
TOOLS = os.environ.get("OTARIG_TOOL_PATH", "")


def otarig(*args, env=None):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)


def campaign(tmp_path, board, scenario, env=None):
    out = tmp_path / f"{Path(board).stem}-{scenario}"
    p = otarig("run", "--board", board, "--scenario", scenario, "--seed", 1, "--out", out, "--no-progress", env=env)
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else None
    return p, run


def broken(run):
    return {o["oracle"] for f in run["findings"] for o in f["oracles"]}


REFERENCE = BOARDS / "virtual-ab-bootloader.yaml"
SECOND_IMAGE_SCENARIOS = ["bootloader-power-cut-sweep", "partial-bundle", "broken-dependency", "one-image-rollback"]


@pytest.mark.parametrize("scenario", SECOND_IMAGE_SCENARIOS + ["wrong-device"])
def test_the_reference_with_a_bootloader_finds_nothing(tmp_path, scenario):
    p, run = campaign(tmp_path, REFERENCE, scenario)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    assert run["summary"]["trials"] > 0 and run["summary"]["findings"] == 0
    for t in run["trials"]:
        assert set(t["oracles"]) >= {"compatible", "dependencies"}
        for o in t.get("observations", []):
            if o.get("booted"):
                assert "image1" in o, o


def test_a_bootloader_sweep_cuts_inside_the_second_images_slot(tmp_path):
    p, run = campaign(tmp_path, REFERENCE, "bootloader-power-cut-sweep")
    assert p.returncode == 0, p.stdout[-3000:]
    assert len(run["trials"]) >= 8
    refusals = [t for t in run["trials"] if "bootloader" in json.dumps(t)]
    assert refusals, "no trial names the bootloader"


@pytest.mark.parametrize("board,scenario,oracle", [
    ("flawed/virtual-ignores-dependency", "partial-bundle", "dependencies"),
    ("flawed/virtual-ignores-dependency", "broken-dependency", "dependencies"),
    ("flawed/virtual-bootloader-in-place", "bootloader-power-cut-sweep", "atomic"),
    ("flawed/virtual-any-device", "wrong-device", "compatible"),
])
def test_a_flawed_board_is_caught(tmp_path, board, scenario, oracle):
    p, run = campaign(tmp_path, BOARDS / f"{board}.yaml", scenario)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    assert oracle in broken(run), run["findings"]
    assert "replay: otarig run" in p.stdout


def test_wrong_device_is_refused_on_every_virtual_reference(tmp_path):
    for board in ["virtual-ab", "virtual-swap-scratch", "virtual-direct-xip"]:
        p, run = campaign(tmp_path, BOARDS / f"{board}.yaml", "wrong-device")
        assert p.returncode == 0, (board, p.stdout[-2000:])
        detail = run["trials"][0]["delivery"]["detail"]
        assert "incompatible: the image is for device type" in detail, detail


@pytest.mark.skipif(not TOOLS, reason="otarig-vboard is not built (OTARIG_TOOL_PATH unset)")
def test_wrong_device_is_refused_by_the_process_board(tmp_path):
    env = dict(os.environ, PATH=f"{TOOLS}:{os.environ['PATH']}")
    p, run = campaign(tmp_path, BOARDS / "vboard-ab.yaml", "wrong-device", env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    assert run["summary"]["findings"] == 0 and run["summary"]["trials"] == 1


def test_nightly_skips_the_second_image_scenarios_on_a_board_with_one_image(tmp_path):
    out = tmp_path / "nightly"
    p = otarig("run", "--board", BOARDS / "virtual-ab.yaml", "--scenario", "nightly", "--trials", 30, "--seed", 1,
               "--out", out, "--no-progress")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    skipped = {s["scenario"]: s["reason"] for s in json.loads((out / "run.json").read_text())["skipped"]}
    for s in SECOND_IMAGE_SCENARIOS:
        assert "no second updatable image" in skipped.get(s, ""), skipped


def test_image_build_writes_device_type_and_dependency(tmp_path):
    img = tmp_path / "app.img"
    p = otarig("image", "build", "--version", "1.1.0", "--counter", 2, "--payload-size", 1000, "--key", "test:k",
               "--device-type", "acme-gw-rev2", "--needs", "1>=2.0.0", "--out", img)
    assert p.returncode == 0, p.stderr
    data = img.read_bytes()
    import hashlib
    assert data[28:36] == hashlib.sha256(b"acme-gw-rev2").digest()[:8]
    assert data[37] == 2 and data[40] == 2
    j = json.loads(otarig("image", "inspect", img, "--json").stdout)
    assert j["needs"] == {"image": 1, "version": "2.0.0"} and j["image_index"] == 0
    bad = otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload-size", 10, "--key", "test:k",
                 "--device-type", "acme/../x", "--out", tmp_path / "x.img")
    assert bad.returncode == 2 and "--device-type" in bad.stderr
    itself = otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload-size", 10, "--key", "test:k",
                    "--image-index", 1, "--needs", "1>=1.0.0", "--out", tmp_path / "y.img")
    assert itself.returncode == 2 and "cannot need itself" in itself.stderr


def bad_profile(tmp_path, edit):
    text = edit(REFERENCE.read_text())
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return otarig("run", "--board", p, "--scenario", "wrong-device", "--out", tmp_path / "o")


def test_a_bad_device_type_or_bundle_names_its_line(tmp_path):
    r = bad_profile(tmp_path, lambda t: t.replace("device_type: otarig-virtual-mcu", "device_type: 'a b'"))
    assert r.returncode == 2 and re.search(r"bad\.yaml:\d+.*device_type 'a b'", r.stderr), r.stderr
    r = bad_profile(tmp_path, lambda t: t.replace("bundle: [app-2, boot-2]", "bundle: [app-2, boot-9]"))
    assert r.returncode == 2 and re.search(r"bad\.yaml:\d+.*no release named 'boot-9'", r.stderr), r.stderr
    r = bad_profile(tmp_path, lambda t: t.replace("bundle: [app-2, boot-2]", "bundle: [boot-2, app-2]"))
    assert r.returncode == 2 and "comes first" in r.stderr, r.stderr


ENCRYPTED = BOARDS / "virtual-ab-encrypted.yaml"


@pytest.mark.parametrize("scenario", ["tampered-ciphertext", "encrypted-for-another-device", "power-cut-sweep",
                                      "tampered-image", "wrong-device"])
def test_the_encrypted_reference_finds_nothing(tmp_path, scenario):
    p, run = campaign(tmp_path, ENCRYPTED, scenario)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    assert run["summary"]["findings"] == 0
    for t in run["trials"]:
        assert "confidential" in t["oracles"]
    if scenario in ("tampered-ciphertext", "encrypted-for-another-device"):
        detail = run["trials"][0]["delivery"]["detail"]
        assert run["trials"][0]["delivery"]["status"] == "refused", detail
        if scenario == "encrypted-for-another-device":
            assert "does not unwrap with this device's key" in detail, detail


@pytest.mark.parametrize("scenario", ["tampered-ciphertext", "unsigned", "wrong-key"])
def test_a_device_decrypting_before_it_verifies_is_caught(tmp_path, scenario):
    # unsigned and wrong-key damage the encrypted image of a plaintext whose
    # signature no longer holds: the device that decrypts first leaves it in
    # its slot when the plaintext check refuses it.
    p, run = campaign(tmp_path, BOARDS / "flawed/virtual-decrypt-before-verify.yaml", scenario)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr
    assert broken(run) == {"confidential"}, run["findings"]
    detail = run["findings"][0]["oracles"][0]["detail"]
    assert "decrypted before it was verified" in detail and "slot B" in detail, detail


def test_image_build_encrypts_for_a_device(tmp_path):
    img = tmp_path / "enc.img"
    pub = "9" * 64
    p = otarig("image", "build", "--version", "1.1.0", "--counter", 2, "--payload-size", 4096, "--key", "test:k",
               "--encrypt-for", pub, "--out", img)
    assert p.returncode == 0, p.stderr
    j = json.loads(otarig("image", "inspect", img, "--json", "--key", "test:k").stdout)
    assert j["encrypted"] is True and j["signature"] == "ok", j
    bad = otarig("image", "build", "--version", "1.1.0", "--counter", 2, "--payload-size", 10, "--key", "test:k",
                 "--encrypt-for", "nokey", "--out", tmp_path / "x.img")
    assert bad.returncode == 2 and "--encrypt-for" in bad.stderr, bad.stderr


@pytest.mark.skipif(not TOOLS, reason="otarig-vboard is not built (OTARIG_TOOL_PATH unset)")
@pytest.mark.parametrize("scenario", ["tampered-ciphertext", "encrypted-for-another-device", "replay-old",
                                      "key-rotation", "revoked-key"])
def test_the_encrypted_process_board_finds_nothing(tmp_path, scenario):
    env = dict(os.environ, PATH=f"{TOOLS}:{os.environ['PATH']}")
    p, run = campaign(tmp_path, BOARDS / "vboard-ab-encrypted.yaml", scenario, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    assert run["summary"]["findings"] == 0 and run["summary"]["trials"] >= 1
    assert all(t["oracles"]["confidential"] for t in run["trials"])


@pytest.mark.parametrize("board", ["virtual-ab-bootloader", "virtual-ab-encrypted"])
def test_the_whole_nightly_passes_on_the_new_references(tmp_path, board):
    out = tmp_path / board
    p = otarig("run", "--board", BOARDS / f"{board}.yaml", "--scenario", "nightly", "--seed", 1, "--jobs", 2,
               "--out", out, "--no-progress")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    run = json.loads((out / "run.json").read_text())
    ran = {t["scenario"] for t in run["trials"]}
    own = set(SECOND_IMAGE_SCENARIOS) if board.endswith("bootloader") else {"tampered-ciphertext",
                                                                             "encrypted-for-another-device"}
    assert own | {"wrong-device", "power-cut-sweep-torn"} <= ran, ran
    # The key lifecycle runs on bundles and on encrypted releases too.
    assert {"key-rotation", "revoked-key", "untrusted-rotation", "signer-expired", "clock-1970"} <= ran, ran


def test_a_revocation_on_a_bundle_board_re_signs_the_bootloader_first(tmp_path):
    # The revoking message carries the bootloader re-signed by the new key:
    # the device keeps booting, and the bundle signed by the revoked key is
    # refused at its first image.
    p, run = campaign(tmp_path, BOARDS / "virtual-ab-bootloader.yaml", "revoked-key")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    (t,) = run["trials"]
    assert t["delivery"]["status"] == "refused" and "revoked key" in t["delivery"]["detail"], t["delivery"]
    assert not t["broken"], t


def test_an_encrypted_rotation_message_is_verified_before_its_keys_count(tmp_path):
    p, run = campaign(tmp_path, ENCRYPTED, "untrusted-rotation")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    (t,) = run["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert all(t["oracles"].values()), t["oracles"]
