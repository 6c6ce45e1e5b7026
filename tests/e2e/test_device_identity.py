"""A device's own language: a status line whose identity is not the rig's
digest (a payload digest, or only a version), judged with what it has; and a
device that does not come up after provisioning leaves its console and its
exit status in the evidence."""
import json
import os
import subprocess
from pathlib import Path

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
STATUS = ("  status: 'STATUS slot=(?P<slot>\\w+) version=(?P<version>\\S+) digest=(?P<digest>[0-9a-f]{64}) "
          "counter=(?P<counter>\\d+) state=(?P<state>\\w+) health=(?P<health>\\w+)'\n")
PAYLOAD_STATUS = ("  status: 'STATUS slot=(?P<slot>\\w+) version=(?P<version>\\S+) digest=[0-9a-f]{64} "
                  "counter=(?P<counter>\\d+) state=(?P<state>\\w+) health=(?P<health>\\w+) key=\\S+ "
                  "payload=(?P<digest>[0-9a-f]{64})'\n  identity: payload-digest\n")
VERSION_STATUS = ("  status: 'STATUS slot=(?P<slot>\\w+) version=(?P<version>\\S+) digest=[0-9a-f]{64} "
                  "counter=(?P<counter>\\d+) state=(?P<state>\\w+) health=(?P<health>\\w+)'\n  identity: version\n")


def otarig(*args, check=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def speaking(tmp_path, board, status, suffix):
    """`board` with the status line read another way (for a payload digest,
    the virtual board prints it: status_payload)."""
    text = (SRC / "boards" / board).read_text()
    assert STATUS in text, board
    if "payload=" in status:
        assert "  kind: virtual\n" in text, board
        text = text.replace("  kind: virtual\n", "  kind: virtual\n  status_payload: true\n", 1)
    name = Path(board).stem
    prof = tmp_path / f"{name}-{suffix}.yaml"
    prof.write_text(text.replace(STATUS, status).replace(f"name: {name}\n", f"name: {name}-{suffix}\n"))
    return prof


def run(tmp_path, prof, scenario, check, *extra):
    out = tmp_path / f"{prof.stem}-{scenario}"
    otarig("run", "--board", prof, "--scenario", scenario, "--seed", 1, "--out", out, "--no-progress", *extra,
           check=check)
    return json.loads((out / "run.json").read_text())


def broken(run_doc):
    return {(t["scenario"], o["oracle"]) for t in run_doc["trials"] for o in t["broken"]}


def test_a_payload_digest_is_resolved_to_the_image_and_judged(tmp_path):
    ref = speaking(tmp_path, "virtual-ab.yaml", PAYLOAD_STATUS, "payload")
    for scenario in ("tampered-image", "self-test-fail"):
        doc = run(tmp_path, ref, scenario, 0)
        assert doc["board"]["image_identity"]["kind"] == "payload-digest", doc["board"]
        assert "payload" in doc["board"]["image_identity"]["how"]
        observed = [o for t in doc["trials"] for o in t["observed"] if o["booted"]]
        assert observed and all(len(o["identity"]) == 64 and o["identity"] != o["digest"] for o in observed)
    doc = run(tmp_path, ref, "power-cut-random", 0, "--trials", 6)
    assert doc["summary"]["passed"] == 6
    # A device that boots an unsigned image is still caught.
    flawed = speaking(tmp_path, "flawed/virtual-nosigcheck.yaml", PAYLOAD_STATUS, "payload")
    assert ("unsigned", "authentic") in broken(run(tmp_path, flawed, "unsigned", 1))


def test_a_version_only_status_is_judged_by_version(tmp_path):
    ref = speaking(tmp_path, "virtual-ab.yaml", VERSION_STATUS, "version")
    for scenario in ("tampered-image", "unsigned", "replay-old"):
        doc = run(tmp_path, ref, scenario, 0)
        assert doc["board"]["image_identity"]["kind"] == "version"
    doc = run(tmp_path, ref, "power-cut-random", 0, "--trials", 6)
    assert doc["summary"]["passed"] == 6
    # The unsigned image keeps its version: the step that delivered it tells it apart.
    flawed = speaking(tmp_path, "flawed/virtual-nosigcheck.yaml", VERSION_STATUS, "version")
    doc = run(tmp_path, flawed, "unsigned", 1)
    assert ("unsigned", "authentic") in broken(doc), broken(doc)
    # A device that goes back a version is caught by what it reports.
    flawed = speaking(tmp_path, "flawed/virtual-norollback.yaml", VERSION_STATUS, "version")
    assert ("replay-old", "no-rollback") in broken(run(tmp_path, flawed, "replay-old", 1))


def test_a_status_without_digest_needs_identity_version(tmp_path):
    text = (SRC / "boards/virtual-ab.yaml").read_text().replace(STATUS, VERSION_STATUS.split("\n")[0] + "\n")
    prof = tmp_path / "no-digest.yaml"
    prof.write_text(text.replace("name: virtual-ab", "name: no-digest"))
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--out", tmp_path / "o", check=2)
    assert "no-digest.yaml:" in p.stderr and "digest" in p.stderr, p.stderr
    bad = (SRC / "boards/virtual-ab.yaml").read_text().replace(STATUS, STATUS + "  identity: checksum\n")
    prof.write_text(bad.replace("name: virtual-ab", "name: bad-identity"))
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--out", tmp_path / "o2", check=2)
    assert "unknown identity 'checksum'" in p.stderr, p.stderr


def test_a_device_that_does_not_come_up_leaves_its_console_and_exit_status(tmp_path):
    script = tmp_path / "dead-device.sh"
    script.write_text("#!/bin/sh\necho 'bootloader: no valid slot'\necho 'panic: halting'\nexit 7\n")
    script.chmod(0o755)
    text = (SRC / "boards/vboard-ab.yaml").read_text()
    line = next(x for x in text.splitlines() if x.startswith("  command: otarig-vboard "))
    prof = tmp_path / "dead.yaml"
    prof.write_text(text.replace(line, f"  command: {script}").replace("name: vboard-ab", "name: dead"))
    out = tmp_path / "o"
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--out", out, "--no-progress", check=3)
    assert "did not come up on release factory" in p.stderr + p.stdout
    doc = json.loads((out / "run.json").read_text())
    folder = out / doc["aborted_evidence"]
    assert "panic: halting" in (folder / "console.log").read_text()
    failure = json.loads((folder / "bench-failure.json").read_text())
    assert failure["step"] == "prepare" and "7" in failure["device_exit"], failure
    assert not (folder / "verdict.json").exists()
    otarig("report", "verify", out, check=0)
