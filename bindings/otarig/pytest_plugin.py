"""pytest plugin: run otarig scenarios as tests.

Load it with ``pytest -p otarig.pytest_plugin`` (an installed otarig registers
it as a ``pytest11`` entry point, so pytest loads it by itself).

Options (command line, or the ini keys ``otarig_board``, ``otarig_seed``,
``otarig_out``, ``otarig_trials``):

``--otarig-board``   board profile, a path or a name (default ``virtual-ab``)
``--otarig-seed``    campaign seed (default 1)
``--otarig-out``     evidence root; each test gets ``<out>/<test node id>/``
                     (default ``otarig-out``)
``--otarig-trials``  keep this many trials of each campaign, chosen by the seed

Fixtures:

``otarig_bench``     (session) the ``otarig.Bench`` of ``--otarig-board``
``otarig_campaign``  a callable ``run(scenario, **options) -> CampaignResult``
                     with the session's seed and the test's evidence folder
``otarig_evidence``  the test's evidence folder (a ``pathlib.Path``)
``otarig_result``    the result of the test's ``otarig_scenario`` marker

Marker: ``@pytest.mark.otarig_scenario("replay-old", **options)`` runs that
scenario as the test: its findings fail the test with the oracles they broke
and their replay commands; a bench failure is an error. Options are those of
``Bench.run`` (``seed``, ``trials``, ``oracles``, ``steps``, ...).

JUnit XML (``--junitxml``): the suite gets the properties ``board`` and
``seed``; each test that ran a campaign gets ``board``, ``seed``,
``scenario``, ``trials``, ``findings``, ``evidence`` and one ``requirement``
per requirement id.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Set, Tuple

import pytest

import otarig

_RESULT = pytest.StashKey[otarig.CampaignResult]()
_SHOWN_FINDINGS = 20


@dataclass(frozen=True)
class OtarigOptions:
    """The session's otarig options, after command line and ini."""

    board: str
    seed: int
    out: Path
    trials: Optional[int]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("otarig", "otarig: secure OTA update campaigns")
    group.addoption("--otarig-board", default=None, metavar="BOARD",
                    help="board profile: a path or a name from `otarig list boards` (default: virtual-ab)")
    group.addoption("--otarig-seed", type=int, default=None, metavar="N", help="campaign seed (default: 1)")
    group.addoption("--otarig-out", default=None, metavar="DIR",
                    help="evidence root; each test writes into DIR/<test node id>/ (default: otarig-out)")
    group.addoption("--otarig-trials", type=int, default=None, metavar="N",
                    help="keep N trials of each campaign, chosen by the seed (quick runs)")
    parser.addini("otarig_board", "default for --otarig-board", default="")
    parser.addini("otarig_seed", "default for --otarig-seed", default="")
    parser.addini("otarig_out", "default for --otarig-out", default="")
    parser.addini("otarig_trials", "default for --otarig-trials", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "otarig_scenario(name, **options): run this otarig scenario on --otarig-board as the test; "
        "findings fail it",
    )


def _options(config: pytest.Config) -> OtarigOptions:
    def pick(option: str, ini: str, default: str) -> str:
        value = config.getoption(option)
        if value is not None:
            return str(value)
        return str(config.getini(ini) or default)

    trials = pick("otarig_trials", "otarig_trials", "")
    try:
        seed = int(pick("otarig_seed", "otarig_seed", "1"))
        limit = int(trials) if trials else None
    except ValueError as e:
        raise pytest.UsageError(f"otarig: {e}") from None
    out = Path(pick("otarig_out", "otarig_out", "otarig-out"))
    if not out.is_absolute():
        out = Path(config.invocation_params.dir) / out
    return OtarigOptions(board=pick("otarig_board", "otarig_board", "virtual-ab"), seed=seed, out=out,
                         trials=limit)


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    o = _options(config)
    return f"otarig {otarig.__version__}: board {o.board}, seed {o.seed}, evidence {o.out}"


def evidence_name(nodeid: str) -> str:
    """A folder name for a test: its node id with path and parameter punctuation
    replaced, e.g. ``tests/test_x.py::test_y[a]`` -> ``tests_test_x.py__test_y_a``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.replace("::", "__")).strip("_.") or "test"
    if len(name) > 120:
        name = name[:100] + "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:12]
    return name


@pytest.fixture(scope="session")
def otarig_options(pytestconfig: pytest.Config) -> OtarigOptions:
    """The session's board, seed, evidence root and trial limit."""
    return _options(pytestconfig)


@pytest.fixture(scope="session")
def otarig_bench(request: pytest.FixtureRequest, otarig_options: OtarigOptions) -> Iterator[otarig.Bench]:
    """The ``otarig.Bench`` of ``--otarig-board`` for the whole session."""
    try:
        bench = otarig.Bench(otarig_options.board, seed=otarig_options.seed)
    except ValueError as e:
        # A wrong board is wrong for every test: stop the session once.
        pytest.exit(f"--otarig-board {otarig_options.board}: {e}", returncode=pytest.ExitCode.USAGE_ERROR)
    try:
        record_suite = request.getfixturevalue("record_testsuite_property")
    except pytest.FixtureLookupError:  # the junitxml plugin is disabled
        record_suite = None
    if record_suite is not None:
        record_suite("board", bench.profile.name)
        record_suite("seed", otarig_options.seed)
    with bench:
        yield bench


@pytest.fixture
def otarig_evidence(request: pytest.FixtureRequest, otarig_options: OtarigOptions) -> Path:
    """This test's evidence folder, ``<--otarig-out>/<node id made safe>``. The
    plugin owns it: the first campaign of the test clears it."""
    return otarig_options.out / evidence_name(request.node.nodeid)


@pytest.fixture
def otarig_campaign(request: pytest.FixtureRequest, otarig_bench: otarig.Bench, otarig_options: OtarigOptions,
                    otarig_evidence: Path) -> Callable[..., otarig.CampaignResult]:
    """``run(scenario, **options) -> otarig.CampaignResult``: runs a campaign on the
    session's bench with its seed and trial limit, writing the evidence into
    ``<evidence>/<scenario>`` (``-2``, ``-3``, ... when a test runs one twice).
    Options are those of ``Bench.run`` and override the session's."""
    node = request.node
    used: List[Path] = []
    recorded: Set[Tuple[str, object]] = set()

    def record(name: str, value: object) -> None:
        node.user_properties.append((name, value))

    def run(scenario: Any, **options: Any) -> otarig.CampaignResult:
        if not used and otarig_evidence.exists():
            shutil.rmtree(otarig_evidence)
        name = scenario.name if isinstance(scenario, otarig.Scenario) else Path(str(scenario)).stem
        out = options.pop("out", None)
        if out is None:
            out = otarig_evidence / name
            n = 2
            while out in used:
                out = otarig_evidence / f"{name}-{n}"
                n += 1
        out = Path(out)
        used.append(out)
        options.setdefault("seed", otarig_options.seed)
        if otarig_options.trials is not None:
            options.setdefault("trials", otarig_options.trials)
        try:
            result = otarig_bench.run(scenario, out=out, **options)
        except otarig.InputError as e:
            # A scenario this board cannot run (a transport fault on a board
            # without the fault proxy, ...) is a skipped test with the reason.
            if "' cannot run: " in str(e):
                pytest.skip(str(e))
            raise
        except otarig.BenchFailure as e:
            _record_result(record, recorded, e.result)
            raise
        _record_result(record, recorded, result)
        return result

    return run


def _record_result(record: Callable[[str, object], None], recorded: Set[Tuple[str, object]],
                   result: otarig.CampaignResult) -> None:
    for key, value in (("board", result.board), ("seed", result.seed)):
        if (key, value) not in recorded:
            recorded.add((key, value))
            record(key, value)
    record("scenario", result.scenario)
    record("trials", result.summary.get("trials", 0))
    record("findings", len(result.findings))
    record("evidence", str(result.out))
    for requirement in result.requirements:
        if ("requirement", requirement) not in recorded:
            recorded.add(("requirement", requirement))
            record("requirement", requirement)


@pytest.fixture(autouse=True)
def _otarig_scenario_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("otarig_scenario")
    if marker is None:
        return
    if len(marker.args) != 1:
        raise pytest.UsageError(
            f"{request.node.nodeid}: @pytest.mark.otarig_scenario takes one scenario name, got {marker.args!r}")
    campaign = request.getfixturevalue("otarig_campaign")
    request.node.stash[_RESULT] = campaign(marker.args[0], **marker.kwargs)


@pytest.fixture
def otarig_result(request: pytest.FixtureRequest) -> otarig.CampaignResult:
    """The CampaignResult of this test's ``otarig_scenario`` marker."""
    if request.node.get_closest_marker("otarig_scenario") is None:
        raise pytest.UsageError(f"{request.node.nodeid}: otarig_result needs @pytest.mark.otarig_scenario")
    request.getfixturevalue("_otarig_scenario_marker")
    return request.node.stash[_RESULT]


def describe_findings(result: otarig.CampaignResult) -> str:
    """The failure message of a campaign with findings: its defects (the
    findings grouped) with their trials and replay commands, then each
    finding's broken oracles, replay command and transcript, then the
    evidence folder."""
    n = len(result.findings)
    lines = [f"otarig: {n} finding{'s' if n != 1 else ''} in {result.summary.get('trials', 0)} trials "
             f"(board {result.board}, scenario {result.scenario}, seed {result.seed})"]
    defects = result.defects
    if defects:
        lines.append(f"  {len(defects)} defect{'s' if len(defects) != 1 else ''}:")
    for d in defects[:_SHOWN_FINDINGS]:
        lines.append(f"  {d.id} ({d.scenario}): {d.title}")
        lines.append(f"    {d.count} trial{'s' if d.count != 1 else ''}; replay: {d.replay}")
    if len(defects) > _SHOWN_FINDINGS:
        lines.append(f"  ... and {len(defects) - _SHOWN_FINDINGS} more defects in {result.out / 'run.json'}")
    for f in result.findings[:_SHOWN_FINDINGS]:
        broken = "; ".join(f"{oracle}: {detail}" if detail else oracle for oracle, detail in f.broken)
        lines.append(f"  {f.id} trial {f.trial} ({f.scenario}) broke {broken}")
        lines.append(f"    replay: {f.replay}")
        lines.append(f"    transcript: {f.transcript}")
    if n > _SHOWN_FINDINGS:
        lines.append(f"  ... and {n - _SHOWN_FINDINGS} more findings in {result.out / 'run.json'}")
    lines.append(f"evidence: {result.out}")
    return "\n".join(lines)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    result = item.stash.get(_RESULT, None)
    if result is not None and result.findings:
        pytest.fail(describe_findings(result), pytrace=False)
