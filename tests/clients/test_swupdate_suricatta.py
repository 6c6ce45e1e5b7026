"""SWUpdate's suricatta against the rig's hawkBit DDI server, end to end
(docs/ota-clients.md, "SWUpdate's suricatta").

`otarig run` on boards/swupdate-ab-suricatta.yaml: SWUpdate 2022.12's
suricatta daemon in hawkBit mode over mutual TLS. A clean update reports
`success` after the trial boot and a tampered one `failure`, with
`reports-truthfully` held and every DDI request carrying the target token.
SWUpdate itself refuses the fault proxy's impostor certificate (libcurl
with the rig's CA as cafile: the handshake fails, nothing is sent), and
presents its client certificate to a server that requires one while the
server refuses the rig's probe without one. A device without the target
token is refused by the server (401) and never updates. The host's /etc,
/run and mounts stay as they were.

Needs root (private mount namespaces), swupdate, fw_setenv; skips with the
reason otherwise.
"""
import json
import sys

import pytest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_clients_e2e import SOURCE, host_state, need_swupdate, run, trials  # noqa: E402
from test_mender_managed import clean_update, device_api, records  # noqa: E402

BOARD = "boards/swupdate-ab-suricatta.yaml"


def events(out, trial):
    return [json.loads(line) for line in (Path(out) / "trials" / trial / "events.jsonl").read_text().splitlines()]


def after_fault(out, trial):
    return [e for e in device_api(out, trial) if e["step"] == "after-fault"][0]


def test_suricatta_reports_truthfully_on_a_clean_and_a_tampered_update(tmp_path):
    need_swupdate()
    before = host_state()
    for scenario, status in ((clean_update(tmp_path), "success"), ("tampered-image", "failure")):
        out = tmp_path / Path(scenario).stem
        r = run(BOARD, scenario, out, "--no-progress", "--trials", "1")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        (t,) = trials(out)["trials"]
        after = after_fault(out, t["id"])
        assert after["deployment"], after
        assert after["reported_status"] == status, after
        recs = records(out, t["id"])
        kinds = {x["kind"] for x in recs}
        # The DDI requests suricatta made: the controller base, the
        # deployment, its attributes and feedback on the delivery's action.
        assert {"poll", "deployment", "config-data", "feedback"} <= kinds, kinds
        feedback = [x for x in recs if x["kind"] == "feedback" and x["deployment"] == after["deployment"]]
        assert feedback and all(x["http_status"] == 200 for x in feedback), feedback
        assert feedback[-1]["execution"] == "closed" and feedback[-1]["finished"] == status, feedback
        assert any(x["execution"] == "proceeding" for x in feedback), feedback
        # Every request carried the provisioned target token.
        assert not [x for x in recs if x["kind"] == "unauthorized"], recs
        assert t["oracles"]["reports-truthfully"] is True, t
    assert host_state() == before, "a suricatta run changed the host's /etc, /run or mounts"


def test_suricatta_refuses_an_impostor_server(tmp_path):
    need_swupdate()
    out = tmp_path / "impostor"
    r = run(BOARD, "impostor-server", out, "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    # libcurl's verification against the rig's CA (cafile), in SWUpdate's
    # own words: CURLE_PEER_FAILED_VERIFICATION.
    assert "TLS with the server failed" in t["delivery"]["detail"], t["delivery"]
    assert "(60)" in t["delivery"]["detail"], t["delivery"]
    assert t["broken"] == [] and t["oracles"]["server-authenticated"] is True, t
    auth = [e for e in events(out, t["id"]) if e.get("type") == "server-authentication"]
    assert auth and auth[0]["held"] and auth[0]["refused"] >= 1 and auth[0]["refused_after_handshake"] == 0, auth
    # The impostor's connections: SWUpdate refused the certificate in the
    # handshake.
    net = [x for e in events(out, t["id"]) if e.get("type") == "network" for x in e["events"]]
    handshakes = [x for x in net if x.get("kind") == "impostor"]
    assert handshakes and all(x["detail"].startswith("client refused") for x in handshakes), handshakes
    # The server never saw the faulted delivery's action asked for.
    after = after_fault(out, t["id"])
    assert after["reported_statuses"] == [], after
    assert not [x for x in after["records"] if x["kind"] == "deployment" and x["deployment"] == after["deployment"]]


@pytest.mark.parametrize("scenario", ["mtls-required", "client-certificate"])
def test_suricatta_presents_its_client_certificate(tmp_path, scenario):
    need_swupdate()
    out = tmp_path / scenario
    r = run(BOARD, scenario, out, "--no-progress")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]
    assert t["oracles"]["mutual-tls"] is True, t["oracles"]
    evs = events(out, t["id"])
    if scenario == "mtls-required":
        # The server refused the rig's client without a certificate.
        (probe,) = [e for e in evs if e.get("type") == "probe"]
        assert probe["answered"] is False, probe
    else:
        (cert,) = [e for e in evs if e.get("type") == "client-certificate"]
        assert cert["held"] and cert["presented"] >= 1, cert
    # SWUpdate's own update went through over mutual TLS and was reported.
    assert after_fault(out, t["id"])["reported_status"] == "success"


def test_a_device_without_the_target_token_is_refused(tmp_path):
    need_swupdate()
    profile = (SOURCE / BOARD).read_text().replace("--swupdate-suricatta", "--swupdate-suricatta --suricatta-no-token")
    board = tmp_path / "stranger.yaml"
    board.write_text(profile.replace("name: swupdate-ab-suricatta", "name: swupdate-ab-suricatta-stranger"))
    out = tmp_path / "out"
    r = run(board, clean_update(tmp_path), out, "--no-progress", "--trials", "1")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    (t,) = trials(out)["trials"]
    assert t["delivery"]["status"] == "refused", t["delivery"]
    assert "401" in t["delivery"]["detail"], t["delivery"]
    recs = records(out, t["id"])
    assert recs and all(x["kind"] == "unauthorized" and x["http_status"] == 401 for x in recs), recs
    assert all(x["reason"] == "no Authorization header" for x in recs), recs


def test_a_crash_state_trial_judges_no_report_of_the_recording(tmp_path):
    need_swupdate()
    # power-cut-random's cuts at storage operations: the device finds the
    # crash state of a clean update the rig recorded once (and which
    # suricatta reported as success then). Such a trial delivers nothing, so
    # it has no deployment to judge reports of; the device's report at its
    # boot goes nowhere (no open action) and ustate is cleared.
    out = tmp_path / "cuts"
    r = run(BOARD, "power-cut-random", out, "--no-progress", "--trials", "4")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = trials(out)
    at_ops = [t for t in doc["trials"] if t.get("cut") and "op" in t["cut"]]
    assert at_ops, doc["trials"]
    for t in at_ops:
        after = after_fault(out, t["id"])
        assert after["deployment"] == "" and after["reported_status"] == "", after
        assert t["oracles"]["reports-truthfully"] is True, t
