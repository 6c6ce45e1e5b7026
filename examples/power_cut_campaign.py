#!/usr/bin/env python3
"""A power-cut campaign with two custom oracles beside the standard five.

    PYTHONPATH=build/dev/bindings /usr/bin/python3 examples/power_cut_campaign.py \
        --board virtual-ab --trials 50 --out out/power-cut

* ``bounded-wear``: no flash sector is erased more than --max-erases times in
  one trial (the update, the cut, the recovery and the clean retry together).
  A copy-in-place or swap updater that re-erases sectors after every cut shows
  up here even when it never bricks.
* ``no-double-trial-boot``: the device never reports a trial-boot state on
  two observations in a row: after recovering from a cut it has either
  confirmed the new image or reverted to the old one.

Exit status: 0 no finding, 1 findings (as the command line).
"""

import argparse
import sys

import otarig


def bounded_wear(max_erases):
    @otarig.oracle("bounded-wear")
    def check(ctx):
        counts = ctx.erase_counts()
        worst = max(counts, default=0)
        if worst <= max_erases:
            return True
        sector = counts.index(worst)
        return ("bounded-wear", False, f"sector {sector} erased {worst} times (limit {max_erases})")

    return check


@otarig.oracle("no-double-trial-boot")
def no_double_trial_boot(ctx):
    states = [o.state for o in ctx.observations if o.booted]
    for earlier, later in zip(states, states[1:]):
        if earlier == later == "trial":
            return otarig.OracleResult("no-double-trial-boot", False, "two observations in a row in trial boot")
    return otarig.OracleResult("no-double-trial-boot", True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--board", default="virtual-ab", help="board profile: a name or a path")
    p.add_argument("--scenario", default="power-cut-sweep", help="a power-cut scenario")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--trials", type=int, default=None, help="keep this many trials, chosen by the seed")
    p.add_argument("--max-erases", type=int, default=4, help="erases allowed per sector and trial")
    p.add_argument("--out", default="otarig-out/power-cut", help="evidence folder (must not hold a journal)")
    args = p.parse_args(argv)

    bench = otarig.Bench(args.board, seed=args.seed)

    def progress(p):
        print(f"\r{p.done}/{p.total} trials, {p.findings} findings, {p.eta_s:.0f} s left ", end="",
              file=sys.stderr, flush=True)

    result = bench.run(args.scenario, trials=args.trials, out=args.out,
                       progress=progress if sys.stderr.isatty() else None,
                       oracles=[bounded_wear(args.max_erases), no_double_trial_boot])
    if sys.stderr.isatty():
        print(file=sys.stderr)

    worst = max((t.erases or {}).get("max_per_sector", 0) for t in result.trials)
    print(f"most erases of one sector in one trial: {worst}")
    for f in result.findings[:10]:
        print(f"finding {f.id}: trial {f.trial} broke {', '.join(f.oracles)} -- replay: {f.replay}")
    print(result)
    print(f"evidence: {result.out}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
