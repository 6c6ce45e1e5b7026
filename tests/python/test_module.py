"""The otarig Python module against the virtual boards: results, errors, GIL,
hooks, progress, plans, single trials and direct driver use."""
import ast
import base64
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

import otarig
from conftest import INPLACE, NOROLLBACK, REF, SRC, profile_variant

STANDARD_ORACLES = {"authentic", "atomic", "no-rollback", "recovered", "still-updatable", "compatible", "dependencies", "confidential"}
# The command line, for `otarig report verify` (ctest sets it).
OTARIG_BIN = os.environ.get("OTARIG_BIN", "otarig")


@pytest.fixture(scope="module")
def bench():
    with otarig.Bench(REF) as b:
        yield b


@pytest.fixture(scope="module")
def tampered(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("tampered") / "out"
    return bench.run("tampered-image", seed=1, out=out)


# ---------------------------------------------------------------- results


def test_campaign_result_objects(tampered):
    r = tampered
    assert isinstance(r, otarig.CampaignResult)
    assert r.passed is True and r.exit_code == 0 and r.aborted is None
    assert r.summary == {"trials": 8, "passed": 8, "failed": 0, "findings": 0}
    assert r.board == "virtual-ab" and r.scenario == "tampered-image" and r.seed == 1 and r.planned == 8
    assert r.findings == [] and r.defects == []
    assert str(r) == "PASS: 8 trials, 8 passed, 0 failed, 0 findings (board virtual-ab, scenario tampered-image, seed 1)"
    assert (r.out / "run.json").is_file() and r.out.is_absolute()
    assert json.loads((r.out / "run.json").read_text())["summary"] == r.run["summary"]
    assert "IEC 62443-4-2 CR 3.4" in r.requirements
    results = {x["id"]: x for x in r.requirement_results}
    assert list(results) == r.requirements
    # One scenario (S1) does not exercise the classes the catalog names for CR 3.4.
    cr34 = results["IEC 62443-4-2 CR 3.4"]
    assert cr34["status"] == "partly-exercised" and cr34["in_catalog"]
    assert "S1" in cr34["classes_exercised"] and {"S12", "S13"} <= set(cr34["classes_missing"])
    assert results["IEC 62443-4-2 CR 3.4"]["scenarios_run"] == {"tampered-image": 8}


def test_trial_objects(tampered):
    trials = tampered.trials
    assert [t.index for t in trials] == list(range(8))
    variants = [t.fault["variant"] for t in trials]
    assert variants[0] == "header-bit-flip" and {"truncated", "digest-resigned"} <= set(variants)
    for t in trials:
        assert isinstance(t, otarig.Trial)
        assert t.id == f"{t.index:05d}" and t.scenario == "tampered-image"
        assert t.verdict == "pass" and t.passed and t.broken == []
        assert set(t.oracles) == STANDARD_ORACLES and all(t.oracles.values())
        assert t.fault["kind"] == "tamper" and t.fault["detail"]
        assert t.delivery["status"] == "refused"
        assert t.cut is None
        assert [o.step for o in t.observed] == ["prepare", "after-fault", "retry"]
        assert all(isinstance(o, otarig.Observation) and o.booted for o in t.observed)
        assert t.observed[0].version == "1.0.0+1" and t.observed[-1].version == "1.1.0+2"
        assert t.evidence == tampered.out / "trials" / t.id and (t.evidence / "verdict.json").is_file()
        assert "STATUS slot=" in t.console_log
        assert t.transcript and isinstance(t.transcript[0][0], float)
        assert any(e.get("step") == "judge" for e in t.events)
        assert t.to_dict()["id"] == t.id
        assert "IEC 62443-4-2 CR 3.4" in t.requirements


def test_findings_on_a_flawed_board(tmp_path):
    r = otarig.Bench(NOROLLBACK).run("replay-old", out=tmp_path / "out")
    assert not r.passed and r.exit_code == 1
    assert len(r.findings) == r.summary["findings"] >= 1
    f = r.findings[0]
    assert isinstance(f, otarig.Finding)
    assert f.id == "F0001" and f.trial == r.trials[0].id and f.scenario == "replay-old"
    assert "no-rollback" in f.oracles
    assert any(o == "no-rollback" and detail for o, detail in f.broken)
    assert f.replay.startswith(f"otarig run --board {NOROLLBACK} --scenario replay-old --seed 1 --trial {f.trial}")
    assert f.transcript.is_file() and f.transcript.name == "console.log"
    assert not r.trials[0].passed and r.trials[0].oracles["no-rollback"] is False
    assert str(r).startswith("FINDINGS: ")
    # The findings grouped into defects, the first led by the first finding.
    assert r.defects and all(isinstance(d, otarig.Defect) for d in r.defects)
    assert sum(d.count for d in r.defects) == len(r.findings)
    assert sorted(i for d in r.defects for i in d.trials) == sorted(f.trial for f in r.findings)
    d = r.defects[0]
    assert d.id == "D0001" and d.scenario == "replay-old" and "no-rollback" in d.oracles
    assert d.title.startswith(", ".join(d.oracles) + " broken for ")
    assert d.representative == d.trials[0] and d.count == len(d.trials)
    by_trial = {f.trial: f for f in r.findings}
    assert d.finding == by_trial[d.representative].id and d.replay == by_trial[d.representative].replay
    assert d.window is None  # a replayed image is not placed at an index
    assert d.to_dict() == r.run["defects"][0]


def ed25519_key(tmp_path, name):
    """A fresh Ed25519 key pair made by openssl: (PKCS#8 private PEM, public PEM)."""
    key, pub = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    return key, pub


def report_verify(out, key):
    return subprocess.run([OTARIG_BIN, "report", "verify", str(out), "--key", str(key)], capture_output=True,
                          text=True, timeout=120)


def test_run_signs_the_bundle_with_the_given_key(bench, tmp_path):
    key, pub = ed25519_key(tmp_path, "release")
    _, other_pub = ed25519_key(tmp_path, "other")
    out = tmp_path / "signed"
    r = bench.run("replay-old", out=out, signing_key=key)
    assert r.passed and r.out == out

    envelope = json.loads((out / "attestation.dsse.json").read_text())
    payload = base64.b64decode(envelope["payload"])
    assert json.loads(payload)["predicate"]["test_key"] is False
    # The signature verifies with the key's public half, checked by openssl
    # over the DSSE pre-authentication encoding, and by `otarig report verify`.
    ptype = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    (tmp_path / "pae.bin").write_bytes(pae)
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    p = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-in",
                        str(tmp_path / "pae.bin"), "-sigfile", str(tmp_path / "sig.bin")], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    v = report_verify(out, pub)
    assert v.returncode == 0 and "checked against the trusted key" in v.stdout, v.stdout + v.stderr
    assert report_verify(out, other_pub).returncode == 1

    # Without signing_key the bundle is signed by a key of its own, a test key.
    unsigned = bench.run("replay-old", out=tmp_path / "test-key")
    assert json.loads(base64.b64decode(json.loads(
        (unsigned.out / "attestation.dsse.json").read_text())["payload"]))["predicate"]["test_key"] is True
    assert report_verify(unsigned.out, pub).returncode == 1

    # An unreadable key is bad input, before any trial runs.
    with pytest.raises(otarig.InputError, match="no-such-key.pem"):
        bench.run("replay-old", out=tmp_path / "no-key", signing_key=tmp_path / "no-such-key.pem")
    assert not (tmp_path / "no-key" / "journal.jsonl").exists()


def test_bench_by_name_resolves_like_the_cli():
    bench = otarig.Bench("virtual-ab")
    assert bench.board == "virtual-ab"
    assert bench.profile.name == "virtual-ab" and bench.profile.path.name == "virtual-ab.yaml"
    assert [r.name for r in bench.profile.releases] == ["factory", "update", "next", "patch"]
    assert otarig.resolve_board("virtual-ab").name == "virtual-ab.yaml"
    assert any(p.name == "virtual-ab.yaml" for p in otarig.boards())
    assert {"nightly", "replay-old", "tampered-image"} <= set(otarig.scenarios())


def test_scenario_objects():
    nightly = otarig.Scenario.load("nightly")
    assert nightly.is_suite and nightly.name == "nightly"
    names = [p.name for p in nightly.parts]
    assert names[:2] == ["power-cut-sweep", "power-cut-random"] and "replay-old" in names
    assert [s.name for s in nightly.leaves()] == names
    replay = otarig.Scenario.load("replay-old")
    assert not replay.is_suite and replay.parts == []
    assert replay.start == "factory" and replay.before == ["update"] and replay.deliver == "factory"
    assert replay.retry == "next" and replay.fault["kind"] == "replay"
    assert replay.classes == ["S3"] and any("CRA" in r for r in replay.requirements)
    assert replay.title and replay.path.name == "replay-old.yaml"


# ---------------------------------------------------------------- errors


def test_malformed_profile_raises_value_error_with_file_and_line(tmp_path, capfd):
    bad = profile_variant(tmp_path, "bad", lambda t: t.replace("  boot_timeout: 5s", "  boot_timeout: 5s\n  bogus: 1"))
    line = bad.read_text().splitlines().index("  bogus: 1") + 1
    with pytest.raises(ValueError) as e:
        otarig.Bench(bad)
    assert isinstance(e.value, otarig.InputError)
    message = str(e.value)
    assert f"{bad}:{line}" in message and "bogus" in message
    # The command line prints the same message after "otarig: " and exits 2.
    rc = otarig.cli(["run", "--board", str(bad), "--scenario", "replay-old", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert f"otarig: {message}" in capfd.readouterr().err


def test_unknown_device_kind_raises_at_construction_with_file_and_line(tmp_path):
    bad = profile_variant(tmp_path, "typo", lambda t: t.replace("  kind: virtual", "  kind: virtaul", 1))
    line = bad.read_text().splitlines().index("  kind: virtaul") + 1
    with pytest.raises(ValueError) as e:
        otarig.Bench(bad)
    assert f"{bad}:{line}" in str(e.value) and "virtaul" in str(e.value)


def test_a_second_run_into_the_same_out_names_the_keywords(bench, tmp_path):
    out = tmp_path / "out"
    bench.run("replay-old", out=out)
    with pytest.raises(ValueError) as e:
        bench.run("replay-old", out=out)
    assert "resume=True" in str(e.value) and "force=True" in str(e.value) and "--resume" not in str(e.value)
    (out / "trials" / "stale").write_text("x")
    r = bench.run("replay-old", out=out, force=True)
    assert r.passed and not (out / "trials" / "stale").exists()
    with pytest.raises(ValueError, match="resume=True and force=True"):
        bench.run("replay-old", out=out, force=True, resume=True)


def test_missing_profile_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="no such board profile"):
        otarig.Bench(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="no-such-board"):
        otarig.Bench("no-such-board")


def test_bad_scenario_and_arguments_raise_value_error(bench, tmp_path):
    with pytest.raises(ValueError):
        otarig.Scenario.load("no-such-scenario")
    with pytest.raises(ValueError, match="no-such-scenario"):
        bench.run("no-such-scenario", out=tmp_path / "a")
    with pytest.raises(ValueError, match="shard"):
        bench.run("replay-old", shard="3/2", out=tmp_path / "b")
    with pytest.raises(ValueError, match="--trial 99"):
        bench.run("replay-old", trial=99, out=tmp_path / "c")


def test_bench_failure_raises_runtime_error(silent_board, tmp_path):
    bench = otarig.Bench(silent_board)
    with pytest.raises(RuntimeError) as e:
        bench.run("replay-old", out=tmp_path / "out")
    assert isinstance(e.value, otarig.BenchFailure) and isinstance(e.value, otarig.BenchError)
    assert "prepare" in str(e.value)
    result = e.value.result
    assert result.exit_code == 3 and result.aborted == str(e.value) and not result.passed
    assert (tmp_path / "out" / "run.json").is_file()
    # Direct use fails the same way.
    with pytest.raises(otarig.BenchError, match="prepare"):
        bench.trial("replay-old")


def test_console_timeout_and_bad_pattern(bench):
    bench.provision("factory")
    bench.power.on()
    with pytest.raises(TimeoutError) as e:
        bench.console.expect("this never appears", timeout=0.5)
    assert isinstance(e.value, otarig.BenchTimeout) and "no match within 500 ms" in str(e.value)
    with pytest.raises(ValueError, match="RE2"):
        bench.console.expect("(unclosed", timeout=0.1)


# ---------------------------------------------------------------- GIL, progress, hooks


def test_gil_is_released_while_a_campaign_runs(bench, tmp_path):
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = count
        started = time.monotonic()
        r = bench.run("power-cut-sweep", trials=150, out=tmp_path / "out")
        elapsed = time.monotonic() - started
        during = count - before
    finally:
        stop.set()
        t.join()
    assert r.passed and r.summary["trials"] == 150
    # A thread that never gets the GIL counts nothing; a released one counts
    # hundreds of thousands of iterations per second.
    assert during > 1000, f"{during} iterations in {elapsed:.2f} s"


def test_progress_callback(bench, tmp_path):
    seen: list[otarig.Progress] = []
    r = bench.run("tampered-image", out=tmp_path / "out", progress=seen.append, jobs=2)
    assert len(seen) == 8 and all(isinstance(p, otarig.Progress) for p in seen)
    assert [p.done for p in seen] == list(range(1, 9)) and all(p.total == 8 for p in seen)
    assert seen[-1].findings == 0 and {p.last_trial for p in seen} == {t.id for t in r.trials}


def test_custom_oracle_fails_a_trial(bench, tmp_path):
    def second_trial_fails(ctx):
        assert ctx.judging and {o.name for o in ctx.oracles} >= STANDARD_ORACLES
        return ("second-trial-fails", ctx.trial.index != 1, f"trial {ctx.trial.id} is the second")

    @otarig.oracle("booted-after-fault")
    def booted(ctx):
        return any(o.step == "after-fault" and o.booted for o in ctx.observations)

    def as_result(ctx):
        return otarig.OracleResult("delivery-refused", ctx.delivery_status == "refused")

    r = bench.run("tampered-image", out=tmp_path / "out", oracles=[second_trial_fails, booted, as_result])
    assert r.exit_code == 1 and not r.passed
    assert [f.trial for f in r.findings] == ["00001"]
    assert r.findings[0].oracles == ["second-trial-fails"]
    assert r.findings[0].broken == [("second-trial-fails", "trial 00001 is the second")]
    t = r.trials[1]
    assert t.verdict == "fail" and t.oracles["second-trial-fails"] is False
    assert t.oracles["booted-after-fault"] is True and t.oracles["delivery-refused"] is True
    assert all(r.trials[i].passed for i in (0, 2, 3, 4, 5, 6))


def test_custom_step_observes_and_notes(bench, tmp_path):
    powered = []

    def status_again(ctx):
        assert not ctx.judging
        powered.append(ctx.bench.power.is_on)
        o = ctx.observe("custom:status")
        ctx.note("custom-step", {"slot": o.slot}, erases=sum(ctx.erase_counts()))

    r = bench.run("replay-old", out=tmp_path / "out", steps=[status_again])
    assert r.passed
    t = r.trials[0]
    assert [o.step for o in t.observed] == ["prepare", "before:update", "after-fault", "custom:status", "retry"]
    notes = [e for e in t.events if e.get("type") == "custom-step"]
    assert len(notes) == 1 and notes[0]["slot"] == t.observed[3].slot and notes[0]["erases"] > 0
    assert powered == [True]


def test_hook_exception_is_raised_again_after_the_campaign(bench, tmp_path):
    def broken_step(ctx):
        raise KeyError("boom in a step")

    with pytest.raises(KeyError, match="boom in a step"):
        bench.run("tampered-image", out=tmp_path / "a", steps=[broken_step], jobs=2)
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert "custom step broken_step raised" in run["aborted"]

    def bad_return(ctx):
        return None

    with pytest.raises(TypeError, match="custom oracle bad_return returned None"):
        bench.run("replay-old", out=tmp_path / "b", oracles=[bad_return])

    def failing_progress(p):
        raise ZeroDivisionError("progress")

    with pytest.raises(ZeroDivisionError):
        bench.run("replay-old", out=tmp_path / "c", progress=failing_progress)


def test_trial_context_ends_with_its_hook(bench):
    kept: list[otarig.TrialContext] = []
    bench.trial("replay-old", steps=[kept.append])
    with pytest.raises(RuntimeError, match="trial context ended"):
        kept[0].observations
    with pytest.raises(RuntimeError, match="trial context ended"):
        kept[0].bench


# ---------------------------------------------------------------- plans and single trials


def test_plan_filter_and_run(bench):
    plan = bench.plan("power-cut-sweep")
    n = plan.ops_per_update["factory->update"]
    assert len(plan) == n > 100 and plan.seed == 1 and plan.scenario.name == "power-cut-sweep"
    assert [t.cut_op for t in plan.trials[:3]] == [1, 2, 3] and plan[0].ops_total == n and plan[-1].cut_op == n
    early = plan.filter(lambda t: t.cut_op <= 3)
    assert len(early) == 3 and len(plan) == n
    assert len(plan.limit(10)) == 10 and len(plan.shard(0, 4)) == (n + 3) // 4
    trials = bench.run_plan(early)
    assert [t.fault["before_op"] for t in trials] == [1, 2, 3] and all(t.passed for t in trials)
    assert all(t.evidence is None and t.console_log for t in trials)


def test_nightly_plan_lists_what_a_virtual_board_skips(bench):
    plan = bench.plan("nightly")
    skipped = dict(plan.skipped)
    assert {"corrupt-in-transit", "impostor-server", "mtls-required", "stale-manifest",
            "power-cut-trial-boot"} <= set(skipped)
    assert "fault proxy" in skipped["corrupt-in-transit"]
    assert "cannot cut power during a delivery" in skipped["power-cut-trial-boot"]
    assert all(t.scenario not in skipped for t in plan.trials)


def test_single_trial_with_a_chosen_fault(bench):
    t = bench.trial("power-cut-sweep", cut_op=17, torn=True)
    assert t.passed and t.fault["before_op"] == 17 and t.fault["torn"] is True
    assert t.cut["op"] == 17 and t.cut["torn"] is True and t.delivery["status"] == "power-lost"
    t = bench.trial("tampered-image", variant="truncated")
    assert t.passed and t.fault["variant"] == "truncated" and "truncated to" in t.fault["detail"]
    t = bench.trial("power-cut-sweep", index=4)
    assert t.index == 4 and t.fault["before_op"] == 5
    with pytest.raises(ValueError, match="suite"):
        bench.trial("nightly")
    # A field the kind does not take, or a choice it does not know, names
    # the scenario and what it takes.
    with pytest.raises(otarig.InputError, match=r"tampered-image: variant 'no-such-damage': unknown tamper variant "
                                               r"\(known: .*truncated"):
        bench.trial("tampered-image", variant="no-such-damage")
    with pytest.raises(otarig.InputError, match="tampered-image: a tamper trial takes variant, not lie"):
        bench.trial("tampered-image", fault={"lie": "mix-and-match"})
    with pytest.raises(otarig.InputError, match="tampered-image: variant is a name"):
        bench.trial("tampered-image", fault={"variant": 3})
    with pytest.raises(otarig.InputError, match="unsigned: a unsigned trial takes no fields"):
        bench.trial("unsigned", variant="truncated")
    with pytest.raises(otarig.InputError, match="variant is given twice"):
        bench.trial("tampered-image", variant="truncated", fault={"variant": "truncated"})
    # Any field a kind takes: a device clock set 90 s back.
    t = bench.trial("clock-skew", fault={"seconds": -90})
    assert t.fault["seconds"] == -90, t.fault


def _evidence_files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _without_wall_clock(verdict):
    verdict = dict(verdict)
    verdict.pop("duration_ms")  # the host's time, the one thing two runs do not share
    return verdict


@pytest.mark.parametrize("scenario,index", [("tampered-image", 3), ("power-cut-sweep", 9)])
def test_a_single_trial_writes_the_evidence_folder_of_a_command_line_trial(tmp_path, scenario, index):
    cli_out = tmp_path / "cli"
    p = subprocess.run([OTARIG_BIN, "run", "--board", str(REF), "--scenario", scenario, "--seed", "5", "--trial",
                        str(index), "--out", str(cli_out), "--no-progress", "-q"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    py_out = tmp_path / "py"
    with otarig.Bench(REF) as fresh:
        t = fresh.trial(scenario, index=index, seed=5, out=py_out)
    trial_id = f"{index:05d}"
    cli_trial = cli_out / "trials" / trial_id
    assert t.evidence == (py_out / "trials" / trial_id).resolve()
    # The same folder with the same files, and nothing else beside it.
    assert [d.name for d in (py_out / "trials").iterdir()] == [trial_id]
    assert _evidence_files(t.evidence) == _evidence_files(cli_trial)
    assert {"console.log", "events.jsonl", "verdict.json"} <= set(_evidence_files(cli_trial))
    cli_verdict = json.loads((cli_trial / "verdict.json").read_text())
    py_verdict = json.loads((t.evidence / "verdict.json").read_text())
    assert py_verdict["evidence"] == f"trials/{trial_id}" and py_verdict == t.to_dict()
    assert _without_wall_clock(py_verdict) == _without_wall_clock(cli_verdict)
    for name in ("console.log", "events.jsonl"):
        assert (t.evidence / name).read_text() == (cli_trial / name).read_text(), name
    # The trial reads its evidence back as a campaign's trial does.
    assert t.console_log == (cli_trial / "console.log").read_text()


def test_a_single_trial_without_out_writes_nothing(bench, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = bench.trial("tampered-image", variant="truncated")
    assert t.evidence is None and list(tmp_path.iterdir()) == []


def test_a_sweep_on_the_inplace_board_is_one_defect(tmp_path):
    r = otarig.Bench(INPLACE).run("power-cut-sweep", seed=1, out=tmp_path / "out")
    failed = [t for t in r.trials if not t.passed]
    assert len(r.defects) == 1, [d.title for d in r.defects]
    d = r.defects[0]
    assert d.count == len(failed) == len(r.findings) > 1
    window = d.window
    assert window is not None
    assert window["axis"] == "flash operation" and window["first"] < window["last"]
    assert d.title.endswith(f"at flash operations {window['first']}-{window['last']} of {window['of']} ({d.phase})")
    assert d.replay == r.findings[0].replay and d.representative == r.findings[0].trial


def test_a_torn_cut_on_the_inplace_board_is_a_finding():
    bench = otarig.Bench(INPLACE)
    plan = bench.plan("power-cut-sweep")
    middle = plan[len(plan) // 2]
    t = bench.trial("power-cut-sweep", cut_op=middle.cut_op)
    assert not t.passed and "atomic" in [o for o, _ in t.broken]


# ---------------------------------------------------------------- direct driver use


def test_drivers_directly(bench):
    bench.provision("factory")
    assert not bench.power.is_on
    bench.power.on()
    m = bench.console.expect(r"otarig-vboard (\w+)", timeout=5)
    assert m.text.startswith("otarig-vboard") and m.group(1) == m.groups[0]
    o = bench.observe()
    assert o.booted and o.version == "1.0.0+1" and o.slot and o.counter == 1
    d = bench.deliver("update")
    assert isinstance(d, otarig.Delivery) and d.accepted and d.status == "accepted"
    assert bench.observe().version == "1.1.0+2"
    bad = bench.image("next", fault="tamper", variant="payload-bit-flip", seed=3)
    assert not bad.authentic and bad.name == "next/payload-bit-flip" and "flipped bit" in bad.detail
    assert bench.deliver(bad).status == "refused"
    assert bench.deliver(bytes(bench.image("update"))[:1000]).status == "refused"
    bench.power.cycle(0.1)
    assert bench.observe("after-cycle").version == "1.1.0+2"
    bench.console.write("status\n")
    m = bench.console.expect(r"STATUS slot=(?P<slot>\w+) version=(?P<version>\S+)", timeout=2)
    assert m["version"] == "1.1.0+2" and m.groupdict() == {"slot": "B", "version": "1.1.0+2"}
    assert sum(bench.erase_counts()) > 0
    assert [i.name for i in bench.releases] == ["factory", "update", "next", "patch"]
    assert bench.take_transcript()


# ---------------------------------------------------------------- network


@pytest.mark.skipif(not otarig.HAVE_NETWORK, reason="built without drivers/net")
def test_update_server_and_fault_proxy(bench):
    import http.client
    import urllib.request

    image = bench.image("update")
    with otarig.UpdateServer(port=0) as server:
        manifest = server.add_release("v2", image.version, image.security_counter, image)
        server.set_latest("v2")
        assert manifest["size"] == len(image) and server.latest == "v2"
        with urllib.request.urlopen(server.url + "/manifest.json", timeout=10) as resp:
            assert json.loads(resp.read())["name"] == "v2"
        with otarig.FaultProxy(upstream=server, spec="down:truncate@b=4096", seed=7) as proxy:
            url = f"http://127.0.0.1:{proxy.port}/images/v2.bin"
            with pytest.raises((http.client.IncompleteRead, OSError)):
                with urllib.request.urlopen(url, timeout=10) as resp:
                    resp.read()
            assert any(e["kind"] == "truncate" for e in proxy.events())
        # The server logs the image request once its (cut) response ends on
        # its side, which may come a moment after the client saw the cut.
        deadline = time.monotonic() + 5
        while not any(r["target"] == "/images/v2.bin" for r in server.request_log()):
            assert time.monotonic() < deadline, server.request_log()
            time.sleep(0.01)
        assert [r["target"] for r in server.request_log()][:2] == ["/manifest.json", "/images/v2.bin"]
    with pytest.raises(ValueError):
        otarig.FaultProxy(upstream="127.0.0.1:1", spec="down:nonsense")


# ---------------------------------------------------------------- stubs


def test_type_stub_covers_the_module():
    stub_path = Path(otarig.__file__).with_name("_otarig.pyi")
    tree = ast.parse(stub_path.read_text())
    assert (stub_path.parent / "py.typed").exists()
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    from otarig import _otarig

    for name in dir(_otarig):
        if name.startswith("_"):
            continue
        obj = getattr(_otarig, name)
        if isinstance(obj, type):
            assert name in classes, f"class {name} missing from the stub"
            stubbed = {n.name for n in classes[name].body if isinstance(n, ast.FunctionDef)}
            stubbed |= {n.target.id for n in classes[name].body
                        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
            for base in classes[name].bases:
                if isinstance(base, ast.Name) and base.id in classes:
                    stubbed |= {n.name for n in classes[base.id].body if isinstance(n, ast.FunctionDef)}
            own = {k for k in vars(obj) if not k.startswith("_")}
            assert own <= stubbed, f"{name}: {sorted(own - stubbed)} missing from the stub"
        elif callable(obj):
            assert name in functions, f"function {name} missing from the stub"


def mypy_available():
    import importlib.util

    return importlib.util.find_spec("mypy") is not None


@pytest.mark.skipif(not mypy_available(), reason="mypy is not installed (Debian: python3-mypy)")
def test_stub_agrees_with_the_module_and_the_examples_type_check(tmp_path):
    import os
    import subprocess
    import sys

    package_dir = str(Path(otarig.__file__).parent.parent)
    env = dict(os.environ, MYPYPATH=package_dir, PYTHONPATH=package_dir)
    common = ["--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
    p = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--concise", "otarig._otarig"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode in (0, 1) and not p.stderr.strip(), p.stdout + p.stderr
    # pybind11 classes have their own metaclass and a generic __init__; anything else is a real mismatch.
    real = [line for line in p.stdout.splitlines() if line.strip() and "metaclass differs" not in line
            and "stub does not have *args" not in line and not line.startswith("Success")]
    assert not real, "\n".join(real)
    p = subprocess.run([sys.executable, "-m", "mypy", "--check-untyped-defs", *common, str(SRC / "examples"),
                        str(Path(__file__).parent), str(Path(otarig.__file__).parent)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


def test_docstrings_everywhere():
    from otarig import _otarig

    missing = []
    for name in dir(_otarig):
        obj = getattr(_otarig, name)
        if name.startswith("_") or not (isinstance(obj, type) or callable(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if not isinstance(obj, type):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            if not (getattr(member, "__doc__", None) or "").strip():
                missing.append(f"{name}.{attr}")
    assert not missing, f"no docstring: {missing}"


def test_a_waived_finding_is_not_a_pass(tmp_path):
    text = INPLACE.read_text() if hasattr(INPLACE, "read_text") else Path(INPLACE).read_text()
    board = tmp_path / "waived.yaml"
    board.write_text(text + "waivers:\n  - {scenario: replay-old, oracles: [no-rollback], reason: r, expires: 2099-01-01}\n"
                     "  - {oracles: [atomic, recovered, still-updatable, no-rollback, authentic], reason: all, "
                     "expires: 2099-01-01}\n")
    r = otarig.Bench(board).run("power-cut-sweep", out=tmp_path / "o")
    assert r.exit_code == 0 and r.passed is False and r.findings
    assert r.waivers["declared"][1]["status"] == "active" and r.waivers["declared"][1]["trials"] == len(r.findings)
