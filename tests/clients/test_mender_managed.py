"""Mender's managed mode end to end (docs/ota-clients.md, "Managed mode").

`otarig run` on boards/mender-ab-managed.yaml: `mender daemon` against the
rig's update server playing Mender's device API. The clean update and a
refused (tampered) one exit 0; the server recorded the device's accepted
authentication with the provisioned key and its status reports, and
`reports-truthfully` held. The flawed twin whose altbootcmd leaves
upgrade_available=1 reports `success` for a deployment it rolled back:
exit 1, broken by reports-truthfully (and, since Mender then takes the
retry of that release for already installed, still-updatable). A device whose key the server
does not know is refused and never updates. Over mutual TLS the daemon
refuses the fault proxy's impostor (after completing its handshake, having
sent nothing: a refusal) and presents its client certificate to a server
that requires one.

Needs root (private mount namespaces), mender, mender-artifact, fw_setenv;
skips with the reason otherwise.
"""
import json
import sys

import pytest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_clients_e2e import SOURCE, run, trials  # noqa: E402
from test_mender_e2e import need_mender  # noqa: E402

BOARD = "boards/mender-ab-managed.yaml"
LIAR = "boards/flawed/mender-ab-managed-lies-after-fallback.yaml"


CLEAN_UPDATE = """name: clean-update
title: A clean update
description: The update, delivered as it is.
classes: [S1]
requirements: ["a clean update installs"]
start: factory
deliver: update
fault:
  kind: none
retry: next
"""


def clean_update(tmp_path):
    path = tmp_path / "clean-update.yaml"
    path.write_text(CLEAN_UPDATE)
    return str(path)


def device_api(out, trial):
    """The trial's device-api events (what the device did on the server)."""
    events = [json.loads(line) for line in (Path(out) / "trials" / trial / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e.get("type") == "device-api"]


def records(out, trial):
    return [r for e in device_api(out, trial) for r in e["records"]]


def test_managed_mender_reports_truthfully_on_a_clean_and_a_tampered_update(tmp_path):
    need_mender()
    for scenario, status in ((clean_update(tmp_path), "success"), ("tampered-image", "failure")):
        out = tmp_path / Path(scenario).stem
        r = run(BOARD, scenario, out, "--no-progress", "--trials", "1")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        doc = trials(out)
        (t,) = doc["trials"]
        after = [e for e in device_api(out, t["id"]) if e["step"] == "after-fault"][0]
        assert after["reported_status"] == status, after
        assert after["deployment"], after
        recs = records(out, t["id"])
        auths = [x for x in recs if x["kind"] == "auth"]
        assert auths and all(a["result"] == "accepted" for a in auths), auths
        statuses = [x["status"] for x in recs if x["kind"] == "status" and x["deployment"] == after["deployment"]]
        assert statuses and statuses[-1] == status, statuses
        # Every request after authentication carried the issued token.
        assert not [x for x in recs if x["kind"] == "unauthorized"], recs
        assert t["oracles"]["reports-truthfully"] is True, t


def test_a_device_that_reports_success_after_a_rollback_is_caught(tmp_path):
    need_mender()
    out = tmp_path / "liar"
    r = run(LIAR, "self-test-fail", out, "--no-progress", "--trials", "1")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(out)
    (t,) = doc["trials"]
    broken = {b["oracle"]: b["detail"] for b in t["broken"]}
    assert "reported 'success'" in broken.get("reports-truthfully", ""), t["broken"]
    # Having committed the old slot as the update, Mender takes the retry of
    # the same release for already installed: the device never updates.
    assert set(broken) <= {"reports-truthfully", "still-updatable"}, t["broken"]
    assert t["oracles"]["atomic"] and t["oracles"]["recovered"] and t["oracles"]["authentic"], t["oracles"]
    # The reference board, same trial: failure reported, nothing broken.
    ref = tmp_path / "reference"
    r = run(BOARD, "self-test-fail", ref, "--no-progress", "--trials", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(ref)["trials"]
    after = [e for e in device_api(ref, t["id"]) if e["step"] == "after-fault"][0]
    assert after["reported_status"] == "failure", after


def test_a_device_the_server_does_not_know_is_refused(tmp_path):
    need_mender()
    profile = (SOURCE / BOARD).read_text().replace("--mender-managed", "--mender-managed --mender-own-key")
    board = tmp_path / "stranger.yaml"
    board.write_text(profile.replace("name: mender-ab-managed", "name: mender-ab-managed-stranger"))
    out = tmp_path / "out"
    r = run(board, clean_update(tmp_path), out, "--no-progress", "--trials", "1")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert "authentication with the server failed" in t["delivery"]["detail"], t["delivery"]
    auths = [x for x in records(out, t["id"]) if x["kind"] == "auth"]
    assert auths and all(a["result"] == "refused" and "unknown device key" in a["reason"] for a in auths), auths


def test_the_device_refuses_an_impostor_server_after_its_handshake(tmp_path):
    need_mender()
    # The fault proxy presents a certificate from an unrelated CA. Mender 3.4
    # checks the certificate only after the TLS handshake (client/client.go,
    # dialOpenSSL), then closes having sent nothing: server-authenticated
    # counts a connection the device ends before a byte of data as refused.
    out = tmp_path / "impostor"
    r = run(BOARD, "impostor-server", out, "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert "certificate signed by unknown authority" in t["delivery"]["detail"], t["delivery"]
    assert t["broken"] == [] and t["oracles"]["server-authenticated"] is True, t
    # The device never got the deployment: it reported nothing about it (its
    # daemon, started again at the recovery boot without the impostor, finds
    # the deployment over: the rig offers it only during its delivery).
    after = [e for e in device_api(out, t["id"]) if e["step"] == "after-fault"][0]
    assert after["reported_statuses"] == [], after
    assert not [x for x in after["records"] if x["kind"] == "next" and x.get("deployment") == after["deployment"]], after


@pytest.mark.parametrize("scenario", ["mtls-required", "client-certificate"])
def test_the_daemon_presents_its_client_certificate(tmp_path, scenario):
    need_mender()
    # The server requires a client certificate (mutual TLS): the daemon's
    # own update goes through with the one mender.conf's HttpsClient names,
    # and the rig's probe without one is refused.
    out = tmp_path / scenario
    r = run(BOARD, scenario, out, "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    assert t["oracles"]["mutual-tls"] is True, t["oracles"]
