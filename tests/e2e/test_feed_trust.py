"""What a device may trust of its update server: a lying mirror (the manifest
disagrees with the image it names; the signed header is the truth) and a
server that asks for the client certificate without requiring it. The
reference process board refuses every lie and presents its certificate; each
flawed board is caught by the oracle that must catch it; boards that read no
manifest, or speak no mutual TLS, skip with the reason."""
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
KILL_DIR = Path(tempfile.mkdtemp(prefix="otarig-e2e-trust-"))


def kill_model(profile):
    """The profile under the kill-only power model: no power cut falls in these
    scenarios, and the crash model's recording layer is test_crash_storage.py's."""
    return process_profiles.kill_model(profile, KILL_DIR, "no power cut in these scenarios")


VBOARD = kill_model(SRC / "boards/vboard-ab.yaml")
FROM_MANIFEST = kill_model(SRC / "boards/flawed/vboard-version-from-manifest.yaml")
TRUSTS_DIGEST = kill_model(SRC / "boards/flawed/vboard-trusts-manifest-digest.yaml")
CERT_ON_REFUSAL = kill_model(SRC / "boards/flawed/vboard-client-cert-on-refusal.yaml")


def otarig(*args, check=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def trials(out):
    return {t["fault"]["lie"] if "lie" in t["fault"] else t["id"]: t
            for t in json.loads((out / "run.json").read_text())["trials"]}


def events(out, trial):
    return [json.loads(line) for line in (Path(out) / "trials" / trial / "events.jsonl").read_text().splitlines()]


def test_the_reference_board_refuses_every_lie_of_the_mirror(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", VBOARD, "--scenario", "lying-mirror", "--seed", 1, "--out", out, check=0)
    by_lie = trials(out)
    assert set(by_lie) == {"older-image-newer-manifest", "mix-and-match", "manifest-digest"}, by_lie.keys()
    for lie, t in by_lie.items():
        assert t["delivery"]["status"] == "refused", (lie, t["delivery"])
        assert not t["broken"], (lie, t["broken"])
    # The manifest the device read stated the new release; the image was the old one.
    console = (out / "trials" / by_lie["older-image-newer-manifest"]["id"] / "console.log").read_text()
    assert "ota: feed offers delivery-" in console and "1.2.0+3 (counter 3" in console, console[-3000:]
    assert "downgrade" in by_lie["older-image-newer-manifest"]["delivery"]["detail"] or \
        "rollback" in by_lie["older-image-newer-manifest"]["delivery"]["detail"], by_lie
    assert "does not match the feed's manifest" in by_lie["mix-and-match"]["delivery"]["detail"], by_lie


def test_a_downgrade_check_against_the_manifest_only_is_caught_by_no_rollback(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", FROM_MANIFEST, "--scenario", "lying-mirror", "--seed", 1, "--out", out, check=1)
    by_lie = trials(out)
    t = by_lie["older-image-newer-manifest"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    assert [b["oracle"] for b in t["broken"]] == ["no-rollback"], t["broken"]
    assert "signed header says 1.0.0+1 (counter 1)" in t["broken"][0]["detail"], t["broken"]
    # The whole manifest of another release does not match the image it names.
    assert not by_lie["mix-and-match"]["broken"] and not by_lie["manifest-digest"]["broken"], by_lie


def test_a_device_taking_the_manifest_digest_for_a_signature_is_caught_by_authentic(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", TRUSTS_DIGEST, "--scenario", "lying-mirror", "--seed", 1, "--out", out, check=1)
    by_lie = trials(out)
    t = by_lie["manifest-digest"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    assert [b["oracle"] for b in t["broken"]] == ["authentic"], t["broken"]
    assert not by_lie["older-image-newer-manifest"]["broken"], by_lie


def test_boards_that_read_no_manifest_skip_the_lying_mirror_with_the_reason(tmp_path):
    # The in-process virtual board downloads from no update server; a process
    # board whose update command names the image's URL reads no manifest.
    p = otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", "nightly", "--seed", 1,
               "--trials", 2, "--out", tmp_path / "v", "--no-progress", check=0)
    skipped = {s["scenario"]: s["reason"]
               for s in json.loads((tmp_path / "v" / "run.json").read_text())["skipped"]}
    assert "lying-mirror" in skipped and "client-certificate" in skipped, skipped
    text = VBOARD.read_text().replace('command: "update-feed ${feed_url}\\n"', 'command: "update ${url}\\n"')
    assert "update ${url}" in text
    prof = tmp_path / "vboard-url.yaml"
    prof.write_text(text.replace("name: vboard-ab", "name: vboard-url"))
    p = otarig("run", "--board", prof, "--scenario", "lying-mirror", "--out", tmp_path / "u", check=2)
    assert "lying-mirror.yaml" in p.stderr and "reads no manifest" in p.stderr, p.stderr


def test_the_reference_board_presents_its_client_certificate(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", VBOARD, "--scenario", "client-certificate", "--seed", 1, "--out", out, check=0)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert t["oracles"]["mutual-tls"] is True and not t["broken"], t["oracles"]
    judged = [e for e in events(out, t["id"]) if e["type"] == "client-certificate"]
    assert len(judged) == 1 and judged[0]["presented"] == judged[0]["connections"] >= 2, judged


def test_a_device_that_proceeds_without_its_client_certificate_is_caught_by_mutual_tls(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", CERT_ON_REFUSAL, "--scenario", "client-certificate", "--seed", 1, "--out", out,
           check=1)
    t = json.loads((out / "run.json").read_text())["trials"][0]
    assert [b["oracle"] for b in t["broken"]] == ["mutual-tls"], t["broken"]
    assert "without presenting its client certificate" in t["broken"][0]["detail"], t["broken"]
    # Against the real server, which requires the certificate, it updates.
    otarig("run", "--board", CERT_ON_REFUSAL, "--scenario", "unsigned", "--seed", 1, "--out", tmp_path / "u",
           check=0)


def test_a_board_without_mutual_tls_skips_the_client_certificate_scenario(tmp_path):
    text = VBOARD.read_text()
    assert "tls: mutual" in text
    prof = tmp_path / "vboard-tls.yaml"
    prof.write_text(text.replace("tls: mutual", "tls: tls").replace("name: vboard-ab", "name: vboard-tls"))
    p = otarig("run", "--board", prof, "--scenario", "client-certificate", "--out", tmp_path / "o", check=2)
    assert "client-certificate.yaml" in p.stderr and "device.network.tls: mutual" in p.stderr, p.stderr
