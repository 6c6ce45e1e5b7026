"""otarig: a hardware-in-the-loop test rig for secure over-the-air updates.

Run a campaign on a board and read its results::

    import otarig

    bench = otarig.Bench("virtual-ab")            # boards/virtual-ab.yaml, or a path
    result = bench.run("nightly", seed=1, out="OUT")
    print(result)                                 # PASS: 606 trials, ... (the CLI's summary line)
    for finding in result.findings:
        print(finding.oracles, finding.replay)

Drive a board directly (``bench.power``, ``bench.console``, ``bench.observe()``,
``bench.provision()``, ``bench.deliver()``), run single trials with a fault you
choose (``bench.trial("power-cut-sweep", cut_op=17, torn=True)``), or inspect and
filter a ``bench.plan(...)`` before ``bench.run_plan(plan)``. Custom steps and
oracles written in Python plug into any of them. See docs/python.md.

Errors: ``InputError`` (a ValueError) for bad input, naming file and line;
``BenchError`` (a RuntimeError) when the bench fails; ``BenchTimeout`` (a
TimeoutError) when a device does not answer in time.
"""

from typing import Any, Callable, TypeVar

from ._otarig import (  # noqa: F401
    HAVE_NETWORK,
    Bench,
    BenchDrivers,
    BenchError,
    BenchFailure,
    BenchTimeout,
    CampaignResult,
    Console,
    ConsoleMatch,
    Defect,
    Delivery,
    Finding,
    Image,
    InputError,
    Observation,
    OracleResult,
    Plan,
    Power,
    Profile,
    Progress,
    ReleaseSpec,
    Scenario,
    Trial,
    TrialContext,
    TrialSpec,
    __version__,
    boards,
    cli,
    data_dirs,
    git_revision,
    load_profile,
    resolve_board,
    scenarios,
    trial_seed,
)

if HAVE_NETWORK:
    from ._otarig import FaultProxy, UpdateServer  # noqa: F401

__all__ = [
    "__version__",
    "Bench",
    "BenchDrivers",
    "BenchError",
    "BenchFailure",
    "BenchTimeout",
    "CampaignResult",
    "Console",
    "ConsoleMatch",
    "Defect",
    "Delivery",
    "Finding",
    "HAVE_NETWORK",
    "Image",
    "InputError",
    "Observation",
    "OracleResult",
    "Plan",
    "Power",
    "Profile",
    "Progress",
    "ReleaseSpec",
    "Scenario",
    "Trial",
    "TrialContext",
    "TrialSpec",
    "boards",
    "cli",
    "data_dirs",
    "git_revision",
    "load_profile",
    "oracle",
    "resolve_board",
    "scenarios",
    "trial_seed",
]
if HAVE_NETWORK:
    __all__ += ["FaultProxy", "UpdateServer"]


_F = TypeVar("_F", bound=Callable[..., Any])


def oracle(name: str) -> Callable[[_F], _F]:
    """Names a custom oracle (the name a bool result is recorded under, and the
    name in messages about it)::

        @otarig.oracle("single-boot-slot")
        def my_oracle(ctx):
            return all(o.slot == "A" for o in ctx.observations if o.booted)
    """

    def mark(fn: _F) -> _F:
        setattr(fn, "oracle_name", name)
        return fn

    return mark
