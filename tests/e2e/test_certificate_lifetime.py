"""Certificates over a support period, on otarig-vboard. The update server
moves to a certificate from a rotated CA: vboard-ab learns the CA from a
signed CA-rotation message (a trust block's add-server-ca entry), keeps it
through a power cycle and updates through it; without the message, or after
one signed by an untrusted key or not signed at all, it refuses the
certificate. A vboard that trusts the CA of a message before verifying it is
caught by `server-authenticated`. The device's client certificate expired:
the update server refuses it (`mutual-tls`), the device fails safely, and
updates once the certificate is renewed. Each run takes seconds."""
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
KILL_DIR = Path(tempfile.mkdtemp(prefix="otarig-e2e-certificates-"))
REASON = "the certificate scenarios, tested without the crash model"


def otarig(*args, check=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def run_json(out):
    return json.loads((Path(out) / "run.json").read_text())


def events(out, trial):
    return [json.loads(line) for line in (Path(out) / "trials" / trial / "events.jsonl").read_text().splitlines()]


def board(path):
    return process_profiles.kill_model(SRC / path, KILL_DIR, REASON)


def test_vboard_learns_a_rotated_server_ca_only_from_a_signed_update(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", board("boards/vboard-ab.yaml"), "--scenario", "server-certificate-rotated-ca",
           "--seed", 1, "--out", out, "--no-progress", check=0)
    run = run_json(out)
    assert run["summary"]["trials"] == 4 and run["summary"]["passed"] == 4, run["summary"]
    by_variant = {t["fault"]["variant"]: t for t in run["trials"]}
    assert set(by_variant) == {"told", "not-told", "untrusted-message", "unsigned-message"}
    told = by_variant["told"]
    assert "server-authenticated" not in told["oracles"], told["oracles"]
    assert told["oracles"]["still-updatable"] is True
    transcript = (out / "trials" / told["id"] / "console.log").read_text()
    assert "ota: trust: added server CA" in transcript and "CA 2" in transcript
    for name in ("not-told", "untrusted-message", "unsigned-message"):
        t = by_variant[name]
        assert t["oracles"]["server-authenticated"] is True, t
        assert t["oracles"]["authentic"] is True, t
        auth = [e for e in events(out, t["id"]) if e["type"] == "server-authentication"]
        assert auth and auth[0]["held"] and auth[0]["impostor_connections"] >= 1, auth
    for name in ("untrusted-message", "unsigned-message"):
        (msg,) = [e for e in events(out, by_variant[name]["id"]) if e["type"] == "ca-message"]
        assert msg["delivery"] == "refused" and msg["runs_message"] is False, msg


def test_a_vboard_trusting_the_ca_of_an_unverified_message_is_caught(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", board("boards/flawed/vboard-server-ca-before-verify.yaml"), "--scenario",
           "server-certificate-rotated-ca", "--seed", 1, "--out", out, "--no-progress", check=1)
    run = run_json(out)
    by_variant = {t["fault"]["variant"]: t for t in run["trials"]}
    assert by_variant["told"]["verdict"] == "pass" and by_variant["not-told"]["verdict"] == "pass"
    for name, words in (("untrusted-message", "a wrongly signed"), ("unsigned-message", "an unsigned")):
        t = by_variant[name]
        assert [b["oracle"] for b in t["broken"]] == ["server-authenticated"], t["broken"]
        detail = t["broken"][0]["detail"]
        assert "the device completed the TLS handshake with a certificate for the update server's names from a " \
               "rotated CA that only %s CA-rotation message named" % words in detail, detail
        # The message itself was refused: the image check holds, only the TLS trust store is wrong.
        assert t["oracles"]["authentic"] is True


def test_expired_client_certificate(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", board("boards/vboard-ab.yaml"), "--scenario", "client-certificate-expired",
           "--seed", 1, "--out", out, "--no-progress", check=0)
    (t,) = run_json(out)["trials"]
    assert t["verdict"] == "pass", t
    assert t["oracles"]["mutual-tls"] is True and t["oracles"]["still-updatable"] is True
    ev = events(out, t["id"])
    (probe,) = [e for e in ev if e["type"] == "probe"]
    assert probe["probe"] == "expired-client-certificate" and probe["answered"] is False, probe
    assert [e["device"] for e in ev if e["type"] == "client-certificate"] == ["expired", "renewed"]
    (delivery,) = [e for e in ev if e["type"] == "delivery" and e.get("step") == "deliver"]
    assert delivery["status"] != "accepted", delivery
    (stay,) = [e for e in ev if e["type"] == "expectation" and e.get("expect") == "up-with-expired-client-certificate"]
    assert stay["held"] is True, stay


def test_the_next_trial_gets_the_provisioned_client_certificate_back(tmp_path):
    # Two trials in one campaign: the second starts from provisioning, which
    # gives the device its own certificate back before it is made expired again.
    text = (SRC / "scenarios/client-certificate-expired.yaml").read_text()
    scenario = tmp_path / "client-certificate-expired-twice.yaml"
    scenario.write_text(text.replace("name: client-certificate-expired", "name: client-certificate-expired-twice")
                        + "trials: 2\n")
    out = tmp_path / "out"
    otarig("run", "--board", board("boards/vboard-ab.yaml"), "--scenario", scenario, "--seed", 2, "--out", out,
           "--no-progress", check=0)
    run = run_json(out)
    assert run["summary"]["trials"] == 2 and run["summary"]["passed"] == 2, run["summary"]
    for t in run["trials"]:
        assert t["oracles"]["mutual-tls"] is True and t["delivery"]["status"] != "accepted", t


@pytest.mark.parametrize("name, reason", [
    ("server-certificate-rotated-ca", "the profile declares no device.policy.server_ca_updates"),
    ("client-certificate-expired", "device.network.tls: mutual"),
])
def test_boards_that_cannot_run_them_say_why(tmp_path, name, reason):
    text = (SRC / "boards/vboard-ab.yaml").read_text()
    text = text.replace("    server_ca_updates: trust-block\n", "")
    text = text.replace("tls: mutual", "tls: tls, tls_reason: \"the test has no client certificate\"")
    prof = tmp_path / "vboard-tls.yaml"
    prof.write_text(text)
    p = otarig("run", "--board", process_profiles.kill_model(prof, tmp_path, REASON), "--scenario", name,
               "--out", tmp_path / "out", "--no-progress", check=2)
    assert reason in p.stderr, p.stderr
    assert f"{name}.yaml" in p.stderr, p.stderr


@pytest.mark.parametrize("fault, line, message", [
    ("  kind: network\n  client_certificate: stolen\n", "client_certificate:", "unknown client_certificate 'stolen'"),
    ("  kind: network\n  probe: forged-client-certificate\n", "probe:", "unknown probe 'forged-client-certificate'"),
    ("  kind: server-ca-rotation\n  variants: [told, guessed]\n", "variants:",
     "unknown server-ca-rotation variant 'guessed'"),
])
def test_bad_values_name_their_file_and_line(tmp_path, fault, line, message):
    text = ("name: bad\ntitle: bad\nclasses: [S7]\nrequirements: [\"CRA Annex I Part II (7)\"]\nstart: factory\n"
            "deliver: update\nfault:\n" + fault + "retry: next\n")
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(text)
    at = next(i for i, l in enumerate(text.splitlines(), 1) if line in l)
    p = otarig("run", "--board", board("boards/vboard-ab.yaml"), "--scenario", scenario, "--out", tmp_path / "out",
               "--no-progress", check=2)
    assert f"bad.yaml:{at}" in p.stderr, p.stderr
    assert message in p.stderr, p.stderr
