"""The pytest plugin, run on small test files with pytester (ctest passes -p pytester)."""
import xml.etree.ElementTree as ET

import pytest

from conftest import NOROLLBACK, REF

pytest_plugins = ["pytester"]

MARKED = """
import pytest

@pytest.mark.otarig_scenario("replay-old")
def test_replay(otarig_result):
    assert otarig_result.scenario == "replay-old"

@pytest.mark.otarig_scenario("tampered-image", trials=2)
def test_tampered():
    pass
"""


def run_plugin(pytester, board, tmp_path, *extra):
    out = tmp_path / "evidence"
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "-p", "otarig.pytest_plugin", "-p", "no:cacheprovider", f"--otarig-board={board}", "--otarig-seed=1",
        f"--otarig-out={out}", f"--junitxml={junit}", *extra)
    return result, out, ET.parse(junit).getroot()


def properties(element):
    return [(p.get("name"), p.get("value")) for p in element.iter("property")]


def test_marker_passes_on_the_reference_board(pytester, tmp_path):
    pytester.makepyfile(test_marked=MARKED)
    result, out, junit = run_plugin(pytester, REF, tmp_path)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["otarig *: board *virtual-ab.yaml, seed 1, evidence *evidence"])
    # One evidence folder per test, one campaign folder per scenario run.
    assert (out / "test_marked.py__test_replay" / "replay-old" / "run.json").is_file()
    assert (out / "test_marked.py__test_tampered" / "tampered-image" / "journal.jsonl").is_file()
    suite = junit.find("testsuite")
    suite_props = dict(properties(suite.find("properties")))
    assert suite_props == {"board": "virtual-ab", "seed": "1"}
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    replay = properties(cases["test_replay"])
    assert ("scenario", "replay-old") in replay and ("findings", "0") in replay and ("board", "virtual-ab") in replay
    assert ("seed", "1") in replay
    requirements = [v for k, v in replay if k == "requirement"]
    assert "CRA Annex I Part I (2)(k)" in requirements
    assert ("trials", "2") in properties(cases["test_tampered"])
    evidence = dict(replay)["evidence"]
    assert evidence.endswith("test_marked.py__test_replay/replay-old")


def test_findings_fail_the_test_with_oracles_and_replay(pytester, tmp_path):
    pytester.makepyfile(test_marked=MARKED)
    result, out, junit = run_plugin(pytester, NOROLLBACK, tmp_path)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*otarig: 1 finding in 1 trials (board virtual-norollback, scenario replay-old, seed 1)",
        "*1 defect:",
        "*D0001 (replay-old): no-rollback broken for replay faults (delivery *)",
        "*1 trial; replay: otarig run --board * --trial 00000 --out *",
        "*F0001 trial 00000 (replay-old) broke no-rollback*",
        f"*replay: otarig run --board {NOROLLBACK} --scenario replay-old --seed 1 --trial 00000 --out *",
        "*transcript: *console.log",
        "*evidence: *test_marked.py__test_replay/replay-old",
    ])
    case = [c for c in junit.iter("testcase") if c.get("name") == "test_replay"][0]
    assert case.find("failure") is not None
    assert ("findings", "1") in properties(case)


def test_campaign_fixture_and_options(pytester, tmp_path):
    pytester.makepyfile(test_fixture="""
        import otarig

        def test_two_runs(otarig_campaign, otarig_evidence, otarig_bench):
            first = otarig_campaign("replay-old")
            second = otarig_campaign("replay-old", seed=5)
            assert first.passed and second.passed and second.seed == 5
            assert first.out == otarig_evidence / "replay-old"
            assert second.out == otarig_evidence / "replay-old-2"
            assert isinstance(otarig_bench, otarig.Bench)

        def test_limited(otarig_campaign):
            r = otarig_campaign("power-cut-sweep")
            assert r.summary["trials"] == 3
    """)
    result, out, junit = run_plugin(pytester, "virtual-ab", tmp_path, "--otarig-trials=3")
    result.assert_outcomes(passed=2)


def test_bench_failure_is_an_error_and_bad_board_a_usage_error(pytester, tmp_path, silent_board):
    pytester.makepyfile(test_marked=MARKED)
    result, out, junit = run_plugin(pytester, silent_board, tmp_path)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*BenchFailure*prepare*"])
    result = pytester.runpytest_subprocess("-p", "otarig.pytest_plugin", "--otarig-board=no-such-board")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*--otarig-board no-such-board: no-such-board: no such board profile*"])
