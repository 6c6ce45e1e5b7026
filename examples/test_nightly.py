"""The nightly scenarios as pytest tests, with otarig's pytest plugin.

    PYTHONPATH=build/dev/bindings /usr/bin/python3 -m pytest -p otarig.pytest_plugin \
        examples/test_nightly.py --otarig-board virtual-ab --otarig-seed 1 \
        --otarig-out out/pytest --junitxml out/pytest/junit.xml

(An installed otarig loads the plugin by itself: drop ``-p otarig.pytest_plugin``.)
Each scenario of the nightly suite is one test; its findings fail it with the
oracles they broke and the command that replays them. Each test writes its
evidence into ``--otarig-out/<test>/<scenario>/``; the JUnit XML carries the
board, the seed and the requirement ids as properties. ``--otarig-trials N``
keeps N trials per scenario for a quick run.
"""

import pytest

import otarig

NIGHTLY = [part.name for part in otarig.Scenario.load("nightly").parts]


@pytest.mark.parametrize(
    "scenario", [pytest.param(name, marks=pytest.mark.otarig_scenario(name), id=name) for name in NIGHTLY])
def test_nightly(scenario, otarig_result):
    # The marker ran the scenario; findings have already failed the test.
    assert otarig_result.scenario == scenario
    assert otarig_result.summary["trials"] > 0


@pytest.mark.otarig_scenario("replay-old")
def test_replay_never_lowers_the_counter(otarig_result):
    # A check beyond the oracles, on the same evidence.
    for trial in otarig_result.trials:
        counters = [o.counter for o in trial.observed if o.booted and o.counter is not None]
        assert counters == sorted(counters), f"trial {trial.id}: counters {counters}"


def test_power_cuts_keep_a_bootable_slot(otarig_campaign):
    # A campaign run from the test body, with a custom oracle beside the standard five.
    @otarig.oracle("booted-after-every-cut")
    def booted_after_cut(ctx):
        after = [o for o in ctx.observations if o.step == "after-fault"]
        return ("booted-after-every-cut", all(o.booted for o in after), "no status after the cut")

    result = otarig_campaign("power-cut-random", oracles=[booted_after_cut])
    assert result.passed, "\n".join(f"{f.trial}: {f.oracles} -- {f.replay}" for f in result.findings)
