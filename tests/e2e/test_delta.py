"""Delta releases end to end: the reference boards of every mode pass the delta
scenarios, the board that patches in place is caught by `atomic`, a board
without `delta:` skips them with its reason, the profile's delta keys are
checked, and `otarig image build --delta-from` / `image apply` round-trip.

The boards run with 64 KiB slots (the releases fill them), so each campaign
takes a second or two."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
MODES = ["ab", "swap-scratch", "swap-move", "overwrite-only", "direct-xip"]
SCENARIOS = ["delta-power-cut-sweep", "delta-corrupt-chunk", "delta-wrong-base"]


def otarig(*args, check=None, cwd=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def small(profile: Path, out_dir: Path, edit=lambda t: t) -> Path:
    """The same board with 64 KiB slots and releases that fill them."""
    text = profile.read_text().replace("slot_size: 1MiB", "slot_size: 64KiB")
    text = re.sub(r"(security_counter: \d+)\}", r"\1, payload_size: 65360}", text)
    name = profile.stem + "-small"
    text = re.sub(r"^name: .*$", f"name: {name}", text, flags=re.M)
    p = out_dir / f"{name}.yaml"
    p.write_text(edit(text))
    return p


def run_json(out: Path):
    return json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("mode", MODES)
def test_the_reference_board_of_every_mode_passes_the_delta_scenarios(tmp_path, mode):
    board = small(SRC / "boards" / f"virtual-{mode}.yaml", tmp_path)
    for scenario in SCENARIOS:
        out = tmp_path / scenario
        otarig("run", "--board", board, "--scenario", scenario, "--seed", 1, "--out", out, "--no-progress", check=0)
        run = run_json(out)
        assert run["summary"]["trials"] >= 1 and run["summary"]["failed"] == 0
        for trial in run["trials"]:
            assert trial["verdict"] == "pass", trial
    # The sweep cut every operation of the delta update: the patching of the other slot among them.
    run = run_json(tmp_path / "delta-power-cut-sweep")
    phases = {t["cut"]["phase"] for t in run["trials"] if t.get("cut")}
    assert "patch" in phases, phases
    assert run["summary"]["trials"] == next(iter(run["ops_per_update"].values()))
    # The corrupt chunk was refused by the check of the whole assembled image.
    run = run_json(tmp_path / "delta-corrupt-chunk")
    trial = run["trials"][0]
    assert "INSERT op" in trial["fault"]["detail"]
    # A wrong base was refused, as the profile declares, and oracle delta-base judged it.
    verdict = json.loads(next((tmp_path / "delta-wrong-base" / "trials").glob("*/verdict.json")).read_text())
    assert verdict["oracles"]["delta-base"] is True
    assert "wrong base" in verdict["delivery"]["detail"]


def test_the_board_that_patches_in_place_is_caught_by_atomic(tmp_path):
    out = tmp_path / "inplace"
    p = otarig("run", "--board", SRC / "boards/flawed/virtual-delta-inplace.yaml", "--scenario",
               "delta-power-cut-sweep", "--seed", 1, "--out", out, "--no-progress", check=1)
    run = run_json(out)
    broken = {o for d in run["defects"] for o in d["oracles"]}
    assert "atomic" in broken, run["defects"]
    assert "delta-power-cut-sweep" in p.stdout
    # The same board takes full images into the other slot: the full sweep finds nothing.
    otarig("run", "--board", SRC / "boards/flawed/virtual-delta-inplace.yaml", "--scenario", "power-cut-sweep",
           "--seed", 1, "--out", tmp_path / "full", "--no-progress", check=0)


def test_a_declared_fallback_the_device_does_not_make_breaks_delta_base(tmp_path):
    # The virtual board refuses a wrong base; a profile that says it falls back
    # to the full image is caught saying so.
    board = small(SRC / "boards/virtual-ab.yaml", tmp_path,
                  lambda t: t.replace("wrong_base: refuse", "wrong_base: full-image"))
    out = tmp_path / "fallback"
    otarig("run", "--board", board, "--scenario", "delta-wrong-base", "--seed", 1, "--out", out, "--no-progress",
           check=1)
    verdict = json.loads(next((out / "trials").glob("*/verdict.json")).read_text())
    assert verdict["oracles"]["delta-base"] is False


def test_a_board_without_delta_skips_the_delta_scenarios_with_the_reason(tmp_path):
    suite = tmp_path / "delta-and-unsigned.yaml"
    suite.write_text("name: delta-and-unsigned\ninclude: [unsigned, delta-wrong-base]\n")
    board = SRC / "boards/flawed/virtual-inplace.yaml"
    p = otarig("run", "--board", board, "--scenario", suite, "--seed", 1, "--out", tmp_path / "s", "--no-progress")
    assert "skipped delta-wrong-base: the board declares no delta updates (no `delta:` in its profile)" in p.stdout
    assert run_json(tmp_path / "s")["skipped"] == [
        {"scenario": "delta-wrong-base", "reason": "the board declares no delta updates (no `delta:` in its profile)"}]
    # On its own the scenario is bad input naming the file and the reason.
    p = otarig("run", "--board", board, "--scenario", "delta-wrong-base", "--out", tmp_path / "one", check=2)
    assert re.search(r"delta-wrong-base\.yaml:\d+: scenario 'delta-wrong-base' cannot run: the board declares no "
                     r"delta updates", p.stderr), p.stderr


def test_a_board_whose_delta_fetches_no_ranges_skips_delta_wrong_ranges_saying_so(tmp_path):
    # otarig's own delta releases are delivered whole: no byte range for a
    # server to answer wrongly (the SWUpdate board runs it:
    # tests/clients/test_swupdate_delta_board.py).
    suite = tmp_path / "ranges.yaml"
    suite.write_text("name: ranges\ninclude: [delta-wrong-base, delta-wrong-ranges]\n")
    board = small(SRC / "boards/virtual-ab.yaml", tmp_path)
    p = otarig("run", "--board", board, "--scenario", suite, "--seed", 1, "--out", tmp_path / "s", "--no-progress",
               check=0)
    doc = run_json(tmp_path / "s")
    assert {t["scenario"] for t in doc["trials"]} == {"delta-wrong-base"}
    (skip,) = doc["skipped"]
    assert skip["scenario"] == "delta-wrong-ranges" and skip["reason"].startswith(
        "the device fetches no byte ranges: its delta releases are delivered whole"), skip
    p = otarig("run", "--board", board, "--scenario", "delta-wrong-ranges", "--out", tmp_path / "one", check=2)
    assert re.search(r"delta-wrong-ranges\.yaml:\d+: scenario 'delta-wrong-ranges' cannot run: the device fetches "
                     r"no byte ranges", p.stderr), p.stderr


def test_wrong_ranges_needs_a_delta_delivery(tmp_path):
    scenario = tmp_path / "ranges-full.yaml"
    scenario.write_text((SRC / "scenarios/delta-wrong-ranges.yaml").read_text().replace("delivery: delta\n", "")
                        .replace("name: delta-wrong-ranges", "name: ranges-full"))
    p = otarig("run", "--board", SRC / "boards/virtual-ab.yaml", "--scenario", scenario, "--out", tmp_path / "o",
               check=2)
    assert re.search(r"ranges-full\.yaml:\d+: .*server:wrong-ranges answers the byte ranges of a delta: the "
                     r"scenario needs `delivery: delta`", p.stderr), p.stderr


@pytest.mark.parametrize("edit,error", [
    (lambda t: t.replace("wrong_base: refuse", "wrong_base: sometimes"),
     r":\d+: delta\.wrong_base: 'sometimes' is neither refuse nor full-image"),
    (lambda t: t.replace("wrong_base: refuse", "wrong_base: refuse\n  base: factory"), r":\d+: .*base"),
    (lambda t: t.replace("derived_from: factory", "derived_from: nope"),
     r":\d+: releases\.patch\.derived_from: 'nope' is not a release defined above this one"),
])
def test_the_profile_delta_keys_are_checked(tmp_path, edit, error):
    board = small(SRC / "boards/virtual-ab.yaml", tmp_path, edit)
    p = otarig("run", "--board", board, "--scenario", "delta-wrong-base", "--out", tmp_path / "o", check=2)
    assert str(board) in p.stderr and re.search(error, p.stderr), p.stderr


def test_image_build_delta_from_and_apply_round_trip(tmp_path):
    base_payload = bytes((i * 7) % 251 for i in range(200000))
    edited = bytearray(base_payload)
    edited[50000:54096] = os.urandom(4096)
    (tmp_path / "base.bin").write_bytes(base_payload)
    (tmp_path / "new.bin").write_bytes(bytes(edited))
    common = ["--counter", 2, "--key", "test:otarig-release"]
    otarig("image", "build", "--version", "1.0.0", "--payload", tmp_path / "base.bin", *common, "--out",
           tmp_path / "base.img", check=0)
    otarig("image", "build", "--version", "1.1.0", "--payload", tmp_path / "new.bin", *common, "--out",
           tmp_path / "new.img", check=0)
    p = otarig("image", "build", "--version", "1.1.0", "--payload", tmp_path / "new.bin", *common, "--delta-from",
               tmp_path / "base.img", "--out", tmp_path / "d.img", check=0)
    assert "bytes copied" in p.stdout
    delta = (tmp_path / "d.img").read_bytes()
    assert len(delta) < 20000, len(delta)
    info = json.loads(otarig("image", "inspect", tmp_path / "d.img", "--json", check=0).stdout)
    assert info["flags"] & 4 and info["delta"]["copied"] >= 190000
    otarig("image", "apply", "--base", tmp_path / "base.img", "--delta", tmp_path / "d.img", "--out",
           tmp_path / "out.img", check=0)
    assert (tmp_path / "out.img").read_bytes() == (tmp_path / "new.img").read_bytes()
    otarig("image", "inspect", tmp_path / "out.img", "--key", "test:otarig-release", "--require-signature", check=0)
    p = otarig("image", "apply", "--base", tmp_path / "new.img", "--delta", tmp_path / "d.img", "--out",
               tmp_path / "x.img", check=2)
    assert "wrong base: the delta was made against" in p.stderr
    assert not (tmp_path / "x.img").exists()
