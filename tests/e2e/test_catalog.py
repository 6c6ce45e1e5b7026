"""The catalog of flawed devices (boards/README.md): `otarig run --scenario nightly`
must catch every flawed board with a finding of the oracle its defect breaks, in
the scenario that shows it, and find nothing on the reference board of any mode.

The references of the swap and overwrite modes take minutes for a full nightly
at 1 MiB, so each mode is run twice here: the shipped profile on a seeded
sample of the nightly plan, and the same profile with 64 KiB slots on the whole
plan. The campaigns run a few at a time, their evidence in memory (tmpfs)
where the machine has it: a campaign syncs its journal after every trial."""
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sizing import SANITIZED, sample

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BOARDS = SRC / "boards"

# profile -> (oracle that must break, scenario whose trials must break it)
CATALOG = {
    "virtual-inplace": ("atomic", "power-cut-sweep"),
    "virtual-norollback": ("no-rollback", "replay-old"),
    "virtual-nosigcheck": ("authentic", "unsigned"),
    "virtual-hashonly": ("authentic", "unsigned"),
    "virtual-verify-on-stage": ("authentic", "bit-rot"),
    "virtual-copy-unverified": ("authentic", "bit-rot"),
    "virtual-version-major": ("no-rollback", "replay-major"),
    "virtual-counter-volatile": ("no-rollback", "replay-old"),
    "virtual-counter-on-stage": ("recovered", "self-test-fail"),
    "virtual-confirm-early": ("recovered", "self-test-fail"),
    "virtual-norevert": ("recovered", "self-test-fail"),
    "virtual-write-order": ("atomic", "power-cut-sweep"),
    "virtual-stale-trailer": ("still-updatable", "replay-old"),
    "virtual-anykey": ("authentic", "wrong-key"),
    "virtual-any-device": ("compatible", "wrong-device"),
    "virtual-trusts-digest": ("authentic", "tampered-image"),
    "virtual-version-string": ("no-rollback", "version-edges"),
    "virtual-trusts-revoked-key": ("authentic", "revoked-key"),
    "virtual-bricks-at-1970": ("still-updatable", "clock-1970"),
    "virtual-delta-inplace": ("atomic", "delta-power-cut-sweep"),
}
MODES = ["ab", "swap-scratch", "swap-move", "overwrite-only", "direct-xip"]
SAMPLE = 60 if SANITIZED else 400  # trials of the nightly plan run on a 1 MiB reference


def run(*args):
    p = subprocess.run([BIN, "run", *map(str, args), "--no-progress"], capture_output=True, text=True, timeout=900)
    return p


def small(profile: Path, out_dir: Path) -> Path:
    """The same board with 64 KiB slots and releases that fill them."""
    text = profile.read_text().replace("slot_size: 1MiB", "slot_size: 64KiB")
    text = re.sub(r"(security_counter: \d+)\}", r"\1, payload_size: 65360}", text)
    name = profile.stem + "-small"
    text = re.sub(r"^name: .*$", f"name: {name}", text, flags=re.M)
    p = out_dir / f"{name}.yaml"
    p.write_text(text)
    return p


def scratch_dir(tmp_path_factory):
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="otarig-catalog-", dir=shm))
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    """Every campaign of this module, run up front three at a time."""
    base = scratch_dir(tmp_path_factory)
    jobs = {}
    for name in CATALOG:
        profile = BOARDS / "flawed" / f"{name}.yaml"
        # A flawed board with 1 MiB slots runs a sample of the plan under the sanitizers.
        size = sample(None, 150) if "slot_size: 1MiB" in profile.read_text() else []
        jobs[name] = ["--board", profile, "--scenario", "nightly", "--jobs", 1, *size]
    for mode in MODES:
        ref = BOARDS / f"virtual-{mode}.yaml"
        jobs[f"ref-{mode}"] = ["--board", ref, "--scenario", "nightly", "--trials", SAMPLE, "--jobs", 1]
        jobs[f"small-{mode}"] = ["--board", small(ref, base), "--scenario", "nightly", "--jobs", 1]
    for key, args in jobs.items():
        args += ["--seed", 1, "--out", base / key]

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(jobs, pool.map(lambda a: run(*a), jobs.values())))
    yield {k: (done[k], base / k) for k in jobs}
    shutil.rmtree(base, ignore_errors=True)


def load_run(out):
    return json.loads((Path(out) / "run.json").read_text())


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_flawed_board_is_caught(campaigns, name):
    p, out = campaigns[name]
    assert p.returncode == 1, f"{name}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    oracle, scenario = CATALOG[name]
    run_json = load_run(out)
    assert run_json["summary"]["findings"] > 0
    by_scenario = {}
    for f in run_json["findings"]:
        by_scenario.setdefault(f["scenario"], set()).update(o["oracle"] for o in f["oracles"])
    assert oracle in by_scenario.get(scenario, set()), f"{name}: findings by scenario {by_scenario}"
    assert "replay: otarig run" in p.stdout


def test_a_device_trusting_the_stated_digest_is_caught_on_every_damage_to_the_payload(campaigns):
    _, out = campaigns["virtual-trusts-digest"]
    trials = [t for t in load_run(out)["trials"] if t["scenario"] == "tampered-image"]
    aimed = {t["fault"]["variant"]: t for t in trials if t["fault"]["variant"] in ("payload-bit-flip", "digest-resigned")}
    assert set(aimed) == {"payload-bit-flip", "digest-resigned"}, [t["fault"] for t in trials]
    for variant, t in aimed.items():
        assert t["oracles"]["authentic"] is False, (variant, t["broken"])
    # Every damage but truncation leaves an image that parses: none is refused
    # for its structure, so the device's digest check is what each one tests.
    for t in trials:
        if t["fault"]["variant"] != "truncated":
            detail = t["delivery"]["detail"]
            assert not any(w in detail for w in ("payload_size", "magic", "reserved", "header_size")), t["delivery"]


def test_a_device_comparing_version_texts_is_caught_across_a_digit_boundary_only(campaigns):
    _, out = campaigns["virtual-version-string"]
    broken = {}
    for f in load_run(out)["findings"]:
        broken.setdefault((f["scenario"], f["fault"].get("variant")), set()).update(o["oracle"] for o in f["oracles"])
    assert broken == {("version-edges", "patch-digits-down"): {"no-rollback"},
                      ("version-edges", "patch-digits-up"): {"still-updatable"},
                      ("version-edges", "minor-digits-down"): {"no-rollback", "still-updatable"},
                      ("version-edges", "minor-digits-up"): {"still-updatable"},
                      ("version-edges", "major-digits-down"): {"no-rollback", "still-updatable"},
                      ("version-edges", "major-digits-up"): {"still-updatable"}}, broken


@pytest.mark.parametrize("mode", MODES)
def test_reference_board_finds_nothing(campaigns, mode):
    for key in (f"ref-{mode}", f"small-{mode}"):
        p, out = campaigns[key]
        assert p.returncode == 0, f"{key}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr}"
        s = load_run(out)["summary"]
        assert s["findings"] == 0 and s["trials"] > 0


def test_every_nightly_scenario_ran_on_a_small_reference(campaigns):
    _, out = campaigns["small-swap-scratch"]
    run_json = load_run(out)
    scenarios = {t["scenario"] for t in run_json["trials"]}
    assert {"power-cut-sweep-torn", "power-cut-sweep-revert", "brown-out", "bit-rot", "replay-major",
            "flash-error"} <= scenarios
    # The swap is counted: cuts fall inside it, and inside the swap back of a
    # reverted update; recovery boots are cut again.
    phases = {t["cut"]["phase"] for t in run_json["trials"] if "cut" in t}
    assert {"download", "stage", "swap", "confirm", "revert"} <= phases, phases
    torn = [t for t in run_json["trials"] if t["scenario"] == "power-cut-sweep-revert" and t["fault"]["torn"]]
    assert torn and all(t["verdict"] == "pass" for t in torn)
    brown = [t for t in run_json["trials"] if t["scenario"] == "brown-out"]
    assert any("recovery boot" in t["fault"]["detail"] for t in brown)
    # Bit rot hit the running slot in some trials and the other slot in others.
    assert {t["fault"]["slot"] for t in run_json["trials"] if t["scenario"] == "bit-rot"} == {"running", "other"}


def test_overwrite_only_reference_is_held_to_its_own_expectation(campaigns):
    _, out = campaigns["small-overwrite-only"]
    trial = [t for t in load_run(out)["trials"] if t["scenario"] == "self-test-fail"][0]
    events = (Path(out) / trial["evidence"] / "events.jsonl").read_text()
    assert '"type":"expectation"' in events and "no-trial-boot" in events
    after = [o for o in trial["observed"] if o["step"] == "after-fault"][0]
    assert after["health"] == "failed", "it runs the failing image and says so"


def test_verdicts_do_not_depend_on_the_job_count(tmp_path_factory):
    tmp_path = scratch_dir(tmp_path_factory)
    board = small(BOARDS / "virtual-swap-scratch.yaml", tmp_path)
    suite = tmp_path / "storage-and-brownout.yaml"
    suite.write_text("name: storage-and-brownout\ninclude: [brown-out, bit-rot, flash-error]\n")
    tables = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        p = run("--board", board, "--scenario", suite, "--seed", 7, "--jobs", jobs, "--out", out)
        assert p.returncode == 0, p.stdout + p.stderr
        tables.append([(t["id"], json.dumps(t["fault"], sort_keys=True), t["verdict"],
                        json.dumps(t["observed"], sort_keys=True)) for t in load_run(out)["trials"]])
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert tables[0] == tables[1]
