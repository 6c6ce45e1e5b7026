"""Over the support period: the device's clock set wrong, keys rotated,
revoked, expired and not yet valid. The reference boards pass every lifecycle
scenario against the policy they declare; the flawed boards are caught by the
oracle that must catch them; bad policy or clock values in a profile are bad
input naming file and line."""
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
LIFECYCLE = ["clock-1970", "clock-future", "clock-skew", "key-rotation", "revoked-key", "untrusted-rotation",
             "signer-expired", "signer-not-yet-valid"]
FAKETIME = Path(os.environ.get("OTARIG_LIBFAKETIME", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"))


def otarig(*args, check=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    return p


def run_json(out):
    return json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("scenario", LIFECYCLE)
def test_the_reference_virtual_board_passes_against_its_declared_policy(tmp_path, scenario):
    out = tmp_path / "o"
    otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", scenario, "--seed", 1, "--out", out,
           check=0)
    run = run_json(out)
    assert run["summary"]["trials"] >= 1 and run["summary"]["failed"] == 0, run["summary"]
    declared = run["mechanism"]["policies"]["declared"]
    assert declared["clock_1970"] == "recovers" and declared["signer_expiry"] == "signing-time", declared
    assert "declared policy (device.policy" in (out / "summary.md").read_text()
    for t in run["trials"]:
        assert not t["broken"], t


def test_the_clock_trial_records_the_clock_and_the_promise(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", "clock-1970", "--seed", 1, "--out", out,
           check=0)
    (t,) = run_json(out)["trials"]
    assert t["fault"]["variant"] == "1970" and t["fault"]["seconds"] == 0, t["fault"]
    assert "clock_1970: recovers" in t["fault"]["detail"], t["fault"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]


def test_a_skew_is_drawn_from_the_seed(tmp_path):
    seconds = []
    for i in (1, 1, 2):
        out = tmp_path / f"o{len(seconds)}"
        otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", "clock-skew", "--seed", i,
               "--out", out, check=0)
        seconds.append(run_json(out)["trials"][0]["fault"]["seconds"])
    assert seconds[0] == seconds[1] != seconds[2], seconds
    assert all(60 <= abs(s) <= 30 * 24 * 3600 for s in seconds), seconds


def test_the_revoked_key_refusal_names_the_revocation(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", "revoked-key", "--seed", 1, "--out", out,
           check=0)
    (t,) = run_json(out)["trials"]
    assert t["delivery"]["status"] == "refused" and "revoked key" in t["delivery"]["detail"], t["delivery"]


@pytest.mark.parametrize("board,scenario,oracle", [
    ("virtual-trusts-revoked-key", "revoked-key", "authentic"),
    ("virtual-bricks-at-1970", "clock-1970", "still-updatable"),
])
def test_each_flawed_board_is_caught_by_its_oracle(tmp_path, board, scenario, oracle):
    out = tmp_path / "o"
    p = otarig("run", "--board", SRC / f"boards/flawed/{board}.yaml", "--scenario", scenario, "--seed", 1,
               "--out", out, check=1)
    (t,) = run_json(out)["trials"]
    assert [b["oracle"] for b in t["broken"]] == [oracle], (t["broken"], p.stdout[-2000:])


def test_the_flawed_boards_pass_what_they_do_not_get_wrong(tmp_path):
    for board, scenario in [("virtual-trusts-revoked-key", "key-rotation"), ("virtual-bricks-at-1970", "revoked-key")]:
        otarig("run", "--board", SRC / f"boards/flawed/{board}.yaml", "--scenario", scenario, "--seed", 1,
               "--out", tmp_path / board, check=0)


def test_a_board_without_the_policy_cannot_run_the_scenario_that_needs_it(tmp_path):
    p = otarig("run", "--board", SRC / "boards/flawed/virtual-anykey.yaml", "--scenario", "clock-1970", "--seed", 1,
               "--out", tmp_path / "o", check=2)
    assert "declares no device.policy.clock_1970" in p.stderr, p.stderr


def bad_profile(tmp_path, old, new):
    text = (SRC / "boards/virtual-ab.yaml").read_text()
    assert old in text, old
    f = tmp_path / "bad.yaml"
    f.write_text(text.replace(old, new))
    line = text.replace(old, new)[:text.replace(old, new).index(new)].count("\n") + 1
    return f, line


@pytest.mark.parametrize("old,new,offset,says", [
    ("    clock_1970: recovers\n", "    clock_1970: sometimes\n", 0, "'sometimes' is not one of recovers"),
    ("    revoked_keys: refused\n", "    revoked_keys: refused\n    naps: daily\n", 1, "unknown policy key 'naps'"),
    ("  not_after: 2045-01-01\n", "  not_after: 2045-02-30\n", 0, "is not a time"),
    ("signing:\n", "clock: {console: \"date -s now\\n\"}\nsigning:\n", 0, "needs ${epoch}"),
])
def test_bad_policy_and_clock_values_name_file_and_line(tmp_path, old, new, offset, says):
    f, line = bad_profile(tmp_path, old, new)
    p = otarig("run", "--board", f, "--scenario", "clock-1970", "--out", tmp_path / "o", check=2)
    assert f"{f}:{line + offset}" in p.stderr and says in p.stderr, (line + offset, p.stderr)


def test_list_scenarios_shows_the_lifecycle_scenarios_with_their_requirements():
    listed = json.loads(otarig("list", "scenarios", "--json", check=0).stdout)
    by_name = {s["scenario"]: s for s in listed}
    text = otarig("list", "scenarios", check=0).stdout.splitlines()
    for name in LIFECYCLE:
        assert name in by_name, name
        assert "CRA Article 13(8)" in by_name[name]["requirements"], by_name[name]
        (line,) = [x for x in text if x.startswith(name + " ")]
        assert "S16" in line and "CRA Article 13(8)" in line, line
    nightly = (SRC / "scenarios/nightly.yaml").read_text()
    assert all(f"  - {name}\n" in nightly for name in LIFECYCLE)


VBOARD_TOOLS = os.environ.get("OTARIG_TOOL_PATH")


@pytest.mark.skipif(not VBOARD_TOOLS, reason="otarig-vboard is not built (OTARIG_TOOL_PATH unset)")
@pytest.mark.parametrize("scenario", ["clock-1970", "clock-skew", "key-rotation", "revoked-key"])
def test_the_process_board_passes_against_its_declared_policy(tmp_path, scenario):
    if scenario.startswith("clock") and not FAKETIME.is_file():
        pytest.skip(f"libfaketime is not installed ({FAKETIME}): the rig cannot set a process board's clock")
    board = process_profiles.kill_model(SRC / "boards/vboard-ab.yaml", tmp_path, "no power cut in these scenarios")
    out = tmp_path / "o"
    # clock-skew seed 3: 25.5 days behind, beyond a certificate valid only from an hour ago.
    otarig("run", "--board", board, "--scenario", scenario, "--seed", 3 if scenario == "clock-skew" else 1,
           "--out", out, check=0)
    (t,) = run_json(out)["trials"]
    assert not t["broken"], t
    if scenario == "clock-skew":
        # The rig's test certificates cover 30 days either way (clock_skew: recovers).
        assert t["fault"]["seconds"] < -7 * 86400 and t["delivery"]["status"] == "accepted", (t["fault"], t["delivery"])
    if scenario == "clock-1970":
        # Over TLS at 1970 the server's certificate is not yet valid: the
        # device refuses (refuses-updates), then takes the retry once its
        # clock is right.
        assert t["delivery"]["status"] == "refused", t["delivery"]
    if scenario == "revoked-key":
        assert "revoked key" in t["delivery"]["detail"], t["delivery"]


@pytest.mark.skipif(not VBOARD_TOOLS, reason="otarig-vboard is not built (OTARIG_TOOL_PATH unset)")
def test_the_flawed_process_board_trusting_a_revoked_key_is_caught_by_authentic(tmp_path):
    board = process_profiles.kill_model(SRC / "boards/flawed/vboard-trusts-revoked-key.yaml", tmp_path,
                                        "no power cut in these scenarios")
    out = tmp_path / "o"
    otarig("run", "--board", board, "--scenario", "revoked-key", "--seed", 1, "--out", out, check=1)
    (t,) = run_json(out)["trials"]
    assert [b["oracle"] for b in t["broken"]] == ["authentic"], t["broken"]
    assert t["delivery"]["status"] == "accepted", t["delivery"]


def test_image_build_makes_a_key_rotation_message_that_inspect_reads(tmp_path):
    key = "ab" * 32
    img = tmp_path / "rot.img"
    otarig("image", "build", "--version", "1.0.0+2", "--counter", 1, "--payload-size", 4096, "--key",
           "test:otarig-release", "--signing-time", "2026-06-01", "--trust-add", f"{key}@2025-01-01..2045-01-01",
           "--trust-revoke", "cd" * 32, "--out", img, check=0)
    info = json.loads(otarig("image", "inspect", img, "--json", check=0).stdout)
    assert info["flags"] & 2 and info["signing_time"] == "2026-06-01T00:00:00Z", info
    assert [(t["action"], t["key"]) for t in info["trust"]] == [("add", key), ("revoke", "cd" * 32)], info
    assert info["trust"][0]["not_after"] == "2045-01-01T00:00:00Z", info
    for bad in (["--trust-add", "xyz"], ["--trust-add", f"{key}@2045-01-01..2025-01-01"], ["--signing-time", "soon"]):
        p = otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload-size", 4096, "--key",
                   "test:k", *bad, "--out", tmp_path / "bad.img", check=2)
        assert "otarig image build" in p.stderr, p.stderr


@pytest.mark.parametrize("kind,variant,says", [
    ("device-clock", "1969", "unknown device-clock variant '1969' (known: 1970, future, skew)"),
    ("key-lifecycle", "stolen-key", "unknown key-lifecycle variant 'stolen-key'"),
])
def test_a_bad_lifecycle_variant_in_a_scenario_names_file_and_line(tmp_path, kind, variant, says):
    text = (SRC / "scenarios/clock-1970.yaml").read_text()
    text = text.replace("kind: device-clock", f"kind: {kind}").replace("variants: [1970]", f"variants: [{variant}]")
    f = tmp_path / "bad-scenario.yaml"
    f.write_text(text)
    line = text[:text.index("variants:")].count("\n") + 1
    p = otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", f, "--out", tmp_path / "o", check=2)
    assert f"{f}:{line}" in p.stderr and says in p.stderr, (line, p.stderr)
