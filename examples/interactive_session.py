#!/usr/bin/env python3
"""Drive a board by hand: provision it, power it, read its console, ask for its
status, deliver an update (a good one and a tampered one), cycle power.

    PYTHONPATH=build/dev/bindings /usr/bin/python3 examples/interactive_session.py --board virtual-ab

On a lab board the same calls switch the relay, read the serial port and talk
to its updater. Console patterns are RE2 (linear time), with Python-style
(?P<name>...) groups.
"""

import argparse
import sys

import otarig


def show(label, o):
    if o.booted:
        print(f"{label:<14} slot {o.slot}, version {o.version}, counter {o.counter}, {o.state}, health {o.health}")
    else:
        print(f"{label:<14} no status within the boot timeout")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--board", default="virtual-ab", help="board profile: a name or a path")
    p.add_argument("--start", default="factory", help="release to provision")
    p.add_argument("--update", default="update", help="release to deliver")
    args = p.parse_args(argv)

    with otarig.Bench(args.board) as bench:
        print(f"board {bench.profile.name}: {bench.profile.description}")
        for image in bench.releases:
            print(f"  release {image.name:<8} {image.version:<10} counter {image.security_counter}  "
                  f"{image.digest[:12]}")

        bench.provision(args.start)  # known-good image, device left powered off
        bench.power.on()
        banner = bench.console.expect(r"otarig-vboard bootloader (?P<version>\S+) mode=(?P<mode>\S+)", timeout=5)
        print(f"banner         {banner.text!r} (bootloader {banner['version']}, mode {banner['mode']})")

        bench.console.write("status\n")
        status = bench.console.expect(r"STATUS slot=(?P<slot>\w+) version=(?P<version>\S+)", timeout=5)
        print(f"console        slot {status['slot']}, version {status['version']}")
        show("observe", bench.observe())

        delivery = bench.deliver(args.update)
        print(f"deliver        {args.update}: {delivery.status} ({delivery.detail or 'no detail'})")
        show("after update", bench.observe("after-update"))

        bad = bench.image(args.update, fault="tamper", variant="signature-bit-flip", seed=7)
        delivery = bench.deliver(bad)
        print(f"deliver        {bad.name}: {delivery.status} ({delivery.detail or 'no detail'})")

        bench.power.cycle(0.5)
        show("after cycle", bench.observe("after-cycle"))

        lines = bench.take_transcript()
        print(f"transcript     {len(lines)} console lines; last: {lines[-1][1] if lines else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
