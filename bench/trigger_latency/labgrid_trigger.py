#!/usr/bin/python3
"""Trigger latency of labgrid 0.4.1 (Debian's python3-labgrid), measured the
way bench/trigger_latency/trigger_latency.cpp measures the rig:

  t0  immediately before os.write() of the line "... CUT-NOW <n>;\\r\\n" to the
      pty master (one write, the pattern ends at ';');
  t1  when SerialDriver.expect() has matched, immediately before
      ExternalPowerDriver.off() runs the power-off command.

The console is a RawSerialPort on the pty slave with a SerialDriver; the power
is an ExternalPowerDriver running the same command. A writer thread plays the
device; the main thread does what a labgrid test does: expect, then off().
Prints one line of key=value pairs.
"""
import argparse
import os
import pty
import random
import sys
import termios
import threading
import time
import tty

import logging

logging.disable(logging.CRITICAL)

from labgrid import Target  # noqa: E402
from labgrid.driver import ExternalPowerDriver, SerialDriver  # noqa: E402
from labgrid.resource import RawSerialPort  # noqa: E402


def percentile(values, p):
    v = sorted(values)
    rank = int(p / 100.0 * (len(v) - 1) + 0.5)
    return v[min(rank, len(v) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--command", default="/bin/true")
    ap.add_argument("--samples", help="append each latency (us) to this file")
    args = ap.parse_args()

    master, slave = pty.openpty()
    tty.setraw(slave, termios.TCSANOW)
    slave_path = os.ttyname(slave)

    target = Target("trigger-latency")
    RawSerialPort(target, None, port=slave_path, speed=115200)
    serial = SerialDriver(target, None)
    power = ExternalPowerDriver(target, None, cmd_on=args.command, cmd_off=args.command)
    target.activate(serial)
    target.activate(power)
    os.close(slave)

    total = args.warmup + args.events
    t0 = [0] * total
    t1 = [0] * total
    done = [threading.Event() for _ in range(total)]
    rng = random.Random(20240611)

    def device():
        for i in range(total):
            os.write(master, f"[{i}.000] mmc0: new high speed SDHC card at address aaaa\r\n".encode())
            line = f"ota: applying update, CUT-NOW {i};\r\n".encode()
            t0[i] = time.monotonic_ns()
            os.write(master, line)
            if not done[i].wait(10):
                print(f"event {i}: no power-off within 10 s", file=sys.stderr)
                os._exit(1)
            time.sleep((200 + rng.randrange(800)) / 1e6)

    writer = threading.Thread(target=device, daemon=True)
    writer.start()
    for i in range(total):
        _, _, match, _ = serial.expect(rb"CUT-NOW (\d+);", timeout=10)
        t1[i] = time.monotonic_ns()
        power.off()
        n = int(match.group(1))
        if n != i:
            print(f"expected event {i}, matched {n}", file=sys.stderr)
            return 1
        done[i].set()
    writer.join()

    lat = [(t1[i] - t0[i]) / 1000.0 for i in range(args.warmup, total)]
    if args.samples:
        with open(args.samples, "a") as f:
            f.writelines(f"{v:.1f}\n" for v in lat)
    print(f"labgrid metric=trigger events={len(lat)} p50_us={percentile(lat, 50):.1f} "
          f"p99_us={percentile(lat, 99):.1f} max_us={max(lat):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
