"""End-to-end tests of the otarig command line against the virtual boards."""
import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sizing import SANITIZED, sample

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
REF = str(SRC / "boards/virtual-ab.yaml")
INPLACE = str(SRC / "boards/flawed/virtual-inplace.yaml")
NOROLLBACK = str(SRC / "boards/flawed/virtual-norollback.yaml")


def otarig(*args, check=None, cwd=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def load_run(out):
    return json.loads((Path(out) / "run.json").read_text())


def journal_events(out):
    return [json.loads(line) for line in (Path(out) / "journal.jsonl").read_text().splitlines()]


def verdict_table(out):
    return [(t["id"], t["scenario"], json.dumps(t["fault"], sort_keys=True), t["verdict"]) for t in load_run(out)["trials"]]


@pytest.fixture(scope="module")
def nightly_ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    p = otarig("run", "--board", REF, "--scenario", "nightly", "--seed", 1, *sample(None, 150), "--out", out, check=0)
    return out, p


def test_nightly_on_reference_board_finds_nothing(nightly_ref):
    out, p = nightly_ref
    run = load_run(out)
    s = run["summary"]
    assert s["findings"] == 0 and s["failed"] == 0
    assert s["trials"] == s["passed"] == len(run["trials"]) == run["planned"]
    scenarios = {t["scenario"] for t in run["trials"]}
    assert scenarios >= {"power-cut-sweep", "power-cut-random", "tampered-image", "unsigned", "wrong-key",
                         "replay-old", "self-test-fail"}
    n = run["ops_per_update"]["factory->update"]
    sweep = [t for t in run["trials"] if t["scenario"] == "power-cut-sweep"]
    assert n > 500, "a 1 MiB update takes hundreds of flash operations"
    if SANITIZED:  # a seeded sample of the sweep's cut points
        cut = [t["fault"]["before_op"] for t in sweep]
        assert sweep and len(set(cut)) == len(cut) and set(cut) <= set(range(1, n + 1))
    else:
        assert len(sweep) == n, "one trial per flash operation"
        assert sorted(t["fault"]["before_op"] for t in sweep) == list(range(1, n + 1))
        assert {t["cut"]["phase"] for t in sweep} >= {"download", "confirm"}
    assert all(t["cut"]["op"] == t["fault"]["before_op"] for t in sweep)
    assert "PASS" in p.stdout and "evidence:" in p.stdout
    for key in ("otarig", "board", "seed", "started", "ended", "releases", "summary", "trials", "findings"):
        assert key in run
    assert run["otarig"]["git_revision"]
    assert all(len(r["sha256"]) == 64 for r in run["releases"])


def test_journal_is_chained_with_one_verdict_per_trial(nightly_ref):
    out, _ = nightly_ref
    events = journal_events(out)
    lines = (Path(out) / "journal.jsonl").read_text().splitlines()
    import hashlib
    prev = ""
    for i, (line, ev) in enumerate(zip(lines, events)):
        assert ev["seq"] == i
        assert ev["prev_sha256"] == prev
        prev = hashlib.sha256(line.encode()).hexdigest()
    verdicts = [e["trial"] for e in events if e["type"] == "verdict"]
    assert len(verdicts) == len(set(verdicts)) == load_run(out)["summary"]["trials"]
    otarig("report", "verify", out, check=0)


def test_evidence_folder_per_trial_and_junit(nightly_ref):
    out, _ = nightly_ref
    run = load_run(out)
    t = run["trials"][0]
    d = Path(out) / t["evidence"]
    assert (d / "console.log").read_text().count("otarig-vboard bootloader") >= 1
    assert json.loads((d / "verdict.json").read_text())["verdict"] == "pass"
    assert (d / "events.jsonl").read_text().count('"step"') >= 6
    root = ET.parse(Path(out) / "junit.xml").getroot()
    assert root.tag == "testsuites"
    cases = root.findall(".//testcase")
    ran = [c for c in cases if c.find("skipped") is None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(ran) == len(run["trials"])
    assert sorted(c.get("name") for c in skipped) == sorted(k["scenario"] for k in run.get("skipped", []))
    assert all(c.find("skipped").get("message") for c in skipped)
    suite = root.find("testsuite")
    props = {p.get("name") for p in suite.find("properties").iter("property")}
    assert {"seed", "requirement", "board"} <= props
    facts = ran[0].find("system-out").text
    first = run["trials"][0]["fault"]
    assert f"fault_point: power-cut op {first['before_op']}/" in facts and "trial_seed: " in facts
    assert (Path(out) / "summary.md").read_text().startswith("## otarig")


def test_inplace_board_is_caught_by_atomic_and_recovered(tmp_path):
    out = tmp_path / "out"
    p = otarig("run", "--board", INPLACE, "--scenario", "nightly", "--seed", 1, *sample(None, 150), "--out", out,
               check=1)
    run = load_run(out)
    assert run["summary"]["findings"] > 0
    broken = {o["oracle"] for f in run["findings"] for o in f["oracles"]}
    assert {"atomic", "recovered"} <= broken
    assert {f["scenario"] for f in run["findings"]} >= {"power-cut-sweep"}
    assert "replay: otarig run" in p.stdout
    bricked = [t for t in run["trials"] if t["scenario"] == "power-cut-sweep" and t["verdict"] == "fail"]
    sweep = [t for t in run["trials"] if t["scenario"] == "power-cut-sweep"]
    assert len(bricked) > len(sweep) // 2, "a copy-in-place updater bricks most cut points"


def test_norollback_board_is_caught_by_no_rollback(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", NOROLLBACK, "--scenario", "nightly", "--seed", 1, *sample(None, 150), "--out", out,
               check=1)
    run = load_run(out)
    by_scenario = {}
    for f in run["findings"]:
        by_scenario.setdefault(f["scenario"], set()).update(o["oracle"] for o in f["oracles"])
    assert "no-rollback" in by_scenario.get("replay-old", set())
    # It also takes the older images of version-edges (1.1.9 after 1.1.10, a lower version with a higher counter).
    assert set(by_scenario) <= {"replay-old", "replay-major", "version-edges"}, by_scenario
    assert all(oracles == {"no-rollback"} for oracles in by_scenario.values()), by_scenario


def test_finding_replays_to_the_same_verdict(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", NOROLLBACK, "--scenario", "replay-old", "--seed", 5, "--out", out, check=1)
    finding = load_run(out)["findings"][0]
    cmd = finding["replay"].split()
    assert cmd[0] == "otarig"
    replay_out = tmp_path / "replay"
    cmd[cmd.index("--out") + 1] = str(replay_out)
    p = subprocess.run([BIN, *cmd[1:]], capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    again = load_run(replay_out)
    assert [t["id"] for t in again["trials"]] == [finding["trial"]]
    assert again["findings"][0]["oracles"] == finding["oracles"]


def test_same_seed_gives_identical_verdicts_on_any_job_count(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    args = ["--board", INPLACE, "--scenario", "power-cut-random", "--seed", 11]
    otarig("run", *args, "--out", a, "--jobs", 1, check=1)
    otarig("run", *args, "--out", b, "--jobs", 2, check=1)
    otarig("run", *args[:-1], 12, "--out", c, check=1)
    assert verdict_table(a) == verdict_table(b)
    assert verdict_table(a) != verdict_table(c)


def test_sigkill_then_resume_records_every_trial_once(tmp_path):
    out = tmp_path / "out"
    ref = tmp_path / "ref"
    args = ["--board", INPLACE, "--scenario", "power-cut-sweep", "--seed", 3, "--jobs", 1, *sample(None, 120)]
    otarig("run", *args, "--out", ref, check=1)
    proc = subprocess.Popen([BIN, "run", *map(str, args), "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    journal = out / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count('"type":"verdict"') >= 40:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = journal.read_text().count('"type":"verdict"')
    total = load_run(ref)["summary"]["trials"]
    assert 0 < done_before < total, "killed mid-campaign"
    otarig("run", *args, "--out", out, "--resume", check=1)
    otarig("report", "verify", out, check=0)
    events = journal_events(out)
    verdicts = [e["trial"] for e in events if e["type"] == "verdict"]
    assert sorted(verdicts) == sorted(set(verdicts)) and len(verdicts) == total
    assert any(e["type"] == "campaign-resume" for e in events)
    assert verdict_table(out) == verdict_table(ref)


def test_shards_partition_the_campaign_and_merge_back(tmp_path):
    whole = tmp_path / "whole"
    args = ["--board", INPLACE, "--scenario", "nightly", "--seed", 2, "--trials", 60]
    otarig("run", *args, "--out", whole, check=1)
    ids, shards = [], []
    for i in range(3):
        o = tmp_path / f"s{i}"
        shards.append(o)
        otarig("run", *args, "--shard", f"{i}/3", "--out", o)
        ids += [t["id"] for t in load_run(o)["trials"]]
    assert sorted(ids) == [t["id"] for t in load_run(whole)["trials"]]
    merged = tmp_path / "merged"
    p = otarig("report", "merge", *shards, "--out", merged, check=1)
    assert "merged 3 shards" in p.stdout
    otarig("report", "verify", merged, check=0)
    assert verdict_table(merged) == verdict_table(whole)
    assert load_run(merged)["summary"] == load_run(whole)["summary"]
    # Defects are grouped over every shard's trials (a window of cuts spans
    # shards): the merged bundle's are the whole run's, but for where the
    # replays write.
    def defects(out):
        return [{k: v for k, v in d.items() if k != "replay"} for d in load_run(out)["defects"]]
    assert defects(merged) == defects(whole) and defects(whole)
    headline = p.stdout.splitlines()[1]
    assert headline.startswith(f"{len(defects(whole))} defect"), p.stdout


SWEEP_TITLE = re.compile(r"atomic, recovered, still-updatable broken for power cuts at flash operations "
                         r"(\d+)-(\d+) of (\d+) \((.+)\)")


def test_a_sweep_on_the_inplace_board_leads_with_one_defect(tmp_path):
    """A copy-in-place updater bricks the device for every cut along its slot
    write: hundreds of findings, one defect, and the command line, summary.md
    and run.json lead with it."""
    out = tmp_path / "out"
    p = otarig("run", "--board", INPLACE, "--scenario", "power-cut-sweep", "--seed", 1, *sample(None, 80),
               "--out", out, check=1)
    run = load_run(out)
    failed = [t for t in run["trials"] if t["verdict"] == "fail"]
    assert len(failed) == run["summary"]["findings"] > (400 if not SANITIZED else 10)
    assert len(run["defects"]) == 1, [d["title"] for d in run["defects"]]
    d = run["defects"][0]
    m = SWEEP_TITLE.fullmatch(d["title"])
    assert m, d["title"]
    first, last, total = map(int, m.groups()[:3])
    assert {t["cut"]["phase"] for t in failed} == {m.group(4)} == {d["phase"]}
    by_op = sorted(failed, key=lambda t: (t["fault"]["before_op"], t["id"]))
    assert d["trials"] == [t["id"] for t in by_op] and d["count"] == len(failed)
    assert (first, last) == (by_op[0]["fault"]["before_op"], by_op[-1]["fault"]["before_op"])
    assert total == run["ops_per_update"]["factory->update"]
    assert d["representative"] == by_op[0]["id"]
    finding = next(f for f in run["findings"] if f["trial"] == d["representative"])
    assert d["replay"] == finding["replay"] and d["finding"] == finding["id"]
    # The command line: the defect first, with its trials and its replay; no line per finding.
    lines = p.stdout.splitlines()
    assert lines[0] == "1 defect: " + d["title"], p.stdout
    assert lines[1].startswith(f"  D0001, {len(failed)} trials: {by_op[0]['id']}, "), p.stdout
    assert lines[2] == "  replay: " + d["replay"], p.stdout
    assert not any(line.startswith("finding: ") for line in lines), p.stdout
    # summary.md: the headline, then the defect's row before the findings.
    md = (out / "summary.md").read_text()
    assert md.splitlines()[2] == f"**1 defect: {d['title']}** ({len(failed)} findings)", md[:600]
    assert md.index(f"| D0001: {d['title']} | power-cut-sweep | {len(failed)} | {d['representative']} |") < \
        md.index("| F0001 |")
    otarig("report", "verify", out, check=0)


def test_verify_recomputes_the_defects(tmp_path):
    """A run.json whose defects do not follow from its trials is caught, even
    re-hashed in the manifest: verify recomputes them."""
    import hashlib
    out = tmp_path / "out"
    otarig("run", "--board", INPLACE, "--scenario", "power-cut-sweep", "--seed", 1, "--trials", 40, "--out", out,
           check=1)
    run = load_run(out)
    run["defects"][0]["trials"] = run["defects"][0]["trials"][1:]
    text = json.dumps(run, indent=2) + "\n"
    (out / "run.json").write_text(text)
    manifest = out / "manifest-sha256.txt"
    lines = [f"{hashlib.sha256(text.encode()).hexdigest()}  run.json" if line.endswith("  run.json") else line
             for line in manifest.read_text().splitlines()]
    manifest.write_text("\n".join(lines) + "\n")
    p = otarig("report", "verify", out, check=1)
    assert "defects do not follow from its trials: D0001" in p.stdout, p.stdout


def test_verify_names_a_changed_file(nightly_ref, tmp_path):
    import shutil
    out, _ = nightly_ref
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    evidence = load_run(out)["trials"][7]["evidence"]
    victim = copy / evidence / "console.log"
    data = bytearray(victim.read_bytes())
    data[10] ^= 0x01
    victim.write_bytes(bytes(data))
    p = otarig("report", "verify", copy, check=1)
    assert f"{evidence}/console.log" in p.stdout
    otarig("report", "verify", tmp_path / "nothing-here", check=2)


BAD_PROFILE = """name: broken
device:
  kind: virtual
  mode: ab
power: {driver: virtual}
console: {driver: virtual}
link: {driver: virtual}
observe:
  status: 'STATUS slot=(?P<slot>\\w+) version=(?P<version>\\S+) digest=(?P<digest>[0-9a-f]{64})'
signing: {key: "test:x"}
releases:
  factory: {version: 1.0.0, security_counter: one}
"""


@pytest.mark.parametrize("case", ["malformed-yaml", "wrong-type", "unknown-key", "unknown-board", "unknown-scenario",
                                  "missing-release", "bad-shard", "bad-device-key", "bad-image",
                                  "pty-console-on-a-lab-board", "parallel-jobs-on-a-lab-board"])
def test_bad_input_exits_2_naming_file_and_line(tmp_path, case):
    prof = tmp_path / "b.yaml"
    args = None
    expect = None
    if case == "malformed-yaml":
        prof.write_text("name: [x\n")
        expect = f"{prof}:"
    elif case == "wrong-type":
        prof.write_text(BAD_PROFILE)
        expect = f"{prof}:12"
    elif case == "unknown-key":
        prof.write_text(BAD_PROFILE.replace("security_counter: one", "security_counter: 1") + "flavour: mint\n")
        expect = f"{prof}:13"
    elif case == "bad-device-key":
        prof.write_text(BAD_PROFILE.replace("security_counter: one", "security_counter: 1")
                        .replace("  mode: ab\n", "  mode: ab\n  wings: 2\n"))
        expect = f"{prof}:5"
    elif case == "pty-console-on-a-lab-board":
        # `pty` is a process board's own pty; a tty by path is `tty`.
        prof.write_text(BAD_PROFILE.replace("security_counter: one", "security_counter: 1")
                        .replace("  kind: virtual\n  mode: ab\n", "  kind: lab\n")
                        .replace("power: {driver: virtual}", "power: {driver: command, on: 'true', off: 'true'}")
                        .replace("console: {driver: virtual}", "console: {driver: pty, path: /dev/null}"))
        expect = (f"{prof}:5: console.driver: the 'pty' console is the pty of a process board (device "
                  "`kind: process`); for a tty or pty device by path use `driver: tty`")
    elif case == "parallel-jobs-on-a-lab-board":
        # One physical board: its trials cannot run two at a time.
        prof.write_text(BAD_PROFILE.replace("security_counter: one", "security_counter: 1")
                        .replace("  kind: virtual\n  mode: ab\n", "  kind: lab\n"))
        args = ["run", "--board", prof, "--scenario", "nightly", "--jobs", 2, "--out", tmp_path / "o"]
        expect = "--jobs 2: board broken"
    elif case == "unknown-board":
        args = ["run", "--board", "no-such-board", "--scenario", "nightly", "--out", tmp_path / "o"]
        expect = "no-such-board"
    elif case == "unknown-scenario":
        args = ["run", "--board", REF, "--scenario", "no-such-scenario", "--out", tmp_path / "o"]
        expect = "no-such-scenario"
    elif case == "missing-release":
        scen = tmp_path / "needs-next.yaml"
        scen.write_text("name: needs-next\ntitle: t\nclasses: [S3]\nrequirements: [x]\nstart: factory\n"
                        "deliver: factory\nfault: {kind: replay}\nretry: future\n")
        args = ["run", "--board", REF, "--scenario", scen, "--out", tmp_path / "o"]
        expect = f"{scen}:8"
    elif case == "bad-shard":
        args = ["run", "--board", REF, "--scenario", "nightly", "--shard", "3/3", "--out", tmp_path / "o"]
        expect = "--shard"
    elif case == "bad-image":
        img = tmp_path / "junk.img"
        img.write_bytes(b"\x00" * 100)
        args = ["image", "inspect", img]
        expect = f"{img}: header.magic"
    if args is None:
        args = ["run", "--board", prof, "--scenario", "nightly", "--out", tmp_path / "o"]
    p = otarig(*args, check=2)
    assert expect in p.stderr, p.stderr


def test_image_build_tamper_inspect(tmp_path):
    img, bad, key = tmp_path / "a.img", tmp_path / "b.img", tmp_path / "k.pem"
    otarig("image", "build", "--version", "2.1.0+7", "--counter", 4, "--payload-size", 5000, "--key", "x",
           "--generate-key", key, "--out", img, check=0)
    p = otarig("image", "inspect", img, "--key", key, check=0)
    assert "version 2.1.0+7" in p.stdout and "check ok" in p.stdout
    otarig("image", "tamper", "--in", img, "--out", bad, "--flip-bit", "100:3", check=0)
    p = otarig("image", "inspect", bad, "--key", key, check=1)
    assert "check FAILED" in p.stdout
    otarig("image", "tamper", "--in", img, "--out", bad, "--strip-signature", check=0)
    assert "check FAILED" in otarig("image", "inspect", bad, "--key", key, check=1).stdout
    otarig("image", "tamper", "--in", img, "--out", bad, "--resign", "test:someone-else", check=0)
    assert "check FAILED" in otarig("image", "inspect", bad, "--key", key, check=1).stdout


def test_list_commands():
    boards = otarig("list", "boards", check=0).stdout
    assert "virtual-ab.yaml" in boards and "flawed/virtual-inplace.yaml" in boards and "INVALID" not in boards
    scenarios = otarig("list", "scenarios", check=0).stdout
    assert re.search(r"^nightly\s+suite of \d+", scenarios, re.M)
    faults = otarig("list", "faults", check=0).stdout
    assert "power-cut" in faults and "tamper" in faults
    otarig("list", "gadgets", check=2)


def line_of(text, marker):
    return text[: text.index(marker)].count("\n") + 1


def test_list_boards_checks_the_driver_sections(tmp_path):
    # A data folder beside the shipped boards: one good profile and two whose
    # driver sections are wrong, as `otarig run` would find when it binds them.
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "local-good.yaml").write_text((SRC / "boards/virtual-ab.yaml").read_text())
    lab = (SRC / "boards/examples/nucleo-mcuboot.yaml").read_text()
    assert "  driver: gpio\n" in lab and "  baud: 115200\n" in lab
    bad_power = lab.replace("  driver: gpio\n", "  driver: gpio\n  polarity: low\n", 1)
    bad_console = lab.replace("  baud: 115200\n", "  baud: fast\n", 1)
    (boards / "bad-power.yaml").write_text(bad_power)
    (boards / "bad-console.yaml").write_text(bad_console)
    env = {**os.environ, "OTARIG_DATA_DIR": str(tmp_path)}
    p = subprocess.run([BIN, "list", "boards"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    power_error = f"{boards / 'bad-power.yaml'}:{line_of(bad_power, 'polarity: low')}: power.polarity: unknown key 'polarity'"
    console_error = f"{boards / 'bad-console.yaml'}:{line_of(bad_console, 'baud: fast')}: console.baud: expected an integer, found 'fast'"
    assert power_error in p.stderr and console_error in p.stderr, p.stderr
    # The good ones are listed, the bad ones only named on stderr.
    assert re.search(r"^boards/local-good.yaml\s+virtual\s", p.stdout, re.M), p.stdout
    assert "virtual-ab.yaml" in p.stdout and "examples/nucleo-mcuboot.yaml" in p.stdout
    assert "bad-power" not in p.stdout and "bad-console" not in p.stdout

    # `otarig run` stops at the same line, before it opens anything.
    for board, error in ((boards / "bad-power.yaml", power_error), (boards / "bad-console.yaml", console_error)):
        r = otarig("run", "--board", board, "--scenario", "tampered-image", "--out", tmp_path / board.stem, check=2)
        assert error in r.stderr, r.stderr


def test_list_boards_checks_profiles_anywhere(tmp_path):
    # Profiles outside any data folder: a file and a folder given on the
    # command line, checked as `otarig run` would, each named as given.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "my-board.yaml").write_text((SRC / "boards/virtual-ab.yaml").read_text())
    lab = (SRC / "boards/examples/nucleo-mcuboot.yaml").read_text()
    bad = lab.replace("  baud: 115200\n", "  baud: fast\n", 1)
    (mine / "bad.yaml").write_text(bad)
    single = tmp_path / "single.yaml"
    single.write_text((SRC / "boards/virtual-ab.yaml").read_text())
    p = otarig("list", "boards", single, check=0)
    assert re.search(rf"^{re.escape(str(single))}\s+virtual\s", p.stdout, re.M), p.stdout
    assert "virtual-swap-move" not in p.stdout, "only what was given is listed"
    p = otarig("list", "boards", mine, single, check=2)
    assert f"{mine / 'bad.yaml'}:{line_of(bad, 'baud: fast')}: console.baud: expected an integer" in p.stderr, p.stderr
    assert str(mine / "my-board.yaml") in p.stdout and str(single) in p.stdout and "bad.yaml" not in p.stdout
    p = otarig("list", "boards", tmp_path / "absent.yaml", check=2)
    assert f"{tmp_path / 'absent.yaml'}: no such profile or folder" in p.stderr
    otarig("list", "faults", mine, check=2)


def test_every_shipped_board_lists_cleanly():
    p = otarig("list", "boards", check=0)
    assert p.stderr == ""
    listed = {line.split()[0] for line in p.stdout.splitlines() if line.strip()}
    shipped = {str(f.relative_to(SRC)) for f in (SRC / "boards").rglob("*.yaml")}
    assert shipped and {"boards/examples/nucleo-mcuboot.yaml", "boards/examples/rpi-rauc.yaml"} <= shipped
    assert shipped <= listed, sorted(shipped - listed)


def test_detect_prints_the_table_and_judges_the_catalog(tmp_path):
    # replay-old: the reference board refuses the older image, norollback takes it.
    out = tmp_path / "detect"
    p = otarig("detect", "--scenario", "replay-old", "--out", out, REF, NOROLLBACK, check=0)
    rows = {line.split("|")[1].strip(" `"): line for line in p.stdout.splitlines()
            if line.startswith("| `")}
    assert set(rows) == {"virtual-ab", "virtual-norollback"}
    assert rows["virtual-ab"].rstrip().endswith("| clean |")
    assert rows["virtual-norollback"].rstrip().endswith("| caught |")
    assert "`00000` replay-old" in rows["virtual-norollback"]
    assert (out / "virtual-norollback" / "run.json").is_file()
    assert load_run(out / "virtual-norollback")["summary"]["findings"] >= 1
    # unsigned: norollback verifies signatures, so that flaw goes unseen -> exit 1.
    p = otarig("detect", "--scenario", "unsigned", NOROLLBACK, check=1)
    assert "| **missed** |" in p.stdout, p.stdout
    otarig("detect", "--scenario", "no-such-scenario", NOROLLBACK, check=2)


def traceability_rows(report_html):
    """The traceability matrix of report.html: requirement id -> its cells (HTML)."""
    import html as htmllib
    section = report_html[report_html.index('id="traceability"'):]
    section = section[:section.index("</section>")]
    rows = {}
    for row in section.split("<tr")[2:]:  # the header row first
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows[htmllib.unescape(cells[0])] = cells
    return rows


def listed_scenarios(cell):
    """The scenario names a matrix cell lists, one per <br>-separated entry."""
    names = []
    for entry in cell.split("<br>"):
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", entry)
        if m and m.group(1) not in ("none", "this"):
            names.append(m.group(1))
    return names


def test_matrix_counts_only_scenarios_that_ran(tmp_path):
    """Issue 20: on nightly for virtual-ab some scenarios are skipped (0 trials);
    no requirement lists them among the scenarios that ran, and a requirement
    one of whose classes no trial exercised is never PASS."""
    out = tmp_path / "out"
    otarig("run", "--board", REF, "--scenario", "nightly", "--seed", 1, "--trials", 60, "--out", out, check=0)
    run = load_run(out)
    skipped = {k["scenario"]: k["reason"] for k in run["skipped"]}
    assert skipped, "virtual-ab cannot run every scenario of nightly"
    trials_of = {}
    for t in run["trials"]:
        trials_of[t["scenario"]] = trials_of.get(t["scenario"], 0) + 1
    assert not set(skipped) & set(trials_of)

    # What each requirement needs and got, worked out here from the parts and the trials.
    need, got = {}, {}
    for p in run["scenario"]["parts"]:
        for r in p["requirements"]:
            need.setdefault(r, set()).update(p["classes"])
            if trials_of.get(p["name"]):
                got.setdefault(r, set()).update(p["classes"])
    # The catalog run.json records adds the classes it names for each of its requirements.
    catalog = {r["id"]: set(r["classes"]) for r in run["compliance"]["requirements"]}
    assert run["compliance"]["catalog"] == "otarig-requirements" and run["compliance"]["version"]
    for rid in need:
        need[rid] |= catalog.get(rid, set())
    results = {r["id"]: r for r in run["requirements"]}
    assert set(results) == set(need)
    partly = []
    for rid, r in results.items():
        missing = need[rid] - got.get(rid, set())
        assert not set(skipped) & set(r["scenarios_run"]), (rid, r)
        assert all(trials_of[s] == n for s, n in r["scenarios_run"].items()), (rid, r)
        assert {k["scenario"] for k in r["skipped"]} <= set(skipped) | {
            p["name"] for p in run["scenario"]["parts"] if not trials_of.get(p["name"])}
        assert all(k["reason"] == skipped[k["scenario"]] for k in r["skipped"] if k["scenario"] in skipped)
        assert set(r["classes_missing"]) == missing, (rid, r)
        if missing:
            assert r["status"] != "pass", (rid, r)
            assert r["status"] == ("partly-exercised" if got.get(rid) else "not-exercised"), (rid, r)
            partly.append(rid)
        else:
            assert r["status"] == "pass", (rid, r)
    # The row: its transport scenarios were skipped.
    assert results["CRA Annex I Part I (2)(c)"]["status"] == "partly-exercised"
    assert partly

    page = (out / "report.html").read_text()
    rows = traceability_rows(page)
    for rid, r in results.items():
        cells = rows[rid]
        assert len(cells) == 9, cells
        ran, not_run, verdict = listed_scenarios(cells[3]), listed_scenarios(cells[4]), cells[8]
        assert not set(skipped) & set(ran), (rid, cells[3])
        assert sorted(ran) == sorted(r["scenarios_run"]), (rid, cells[3])
        assert sorted(not_run) == sorted(k["scenario"] for k in r["skipped"]), (rid, cells[4])
        if r["classes_missing"]:
            assert ">PASS<" not in verdict, (rid, verdict)
            if r["status"] == "partly-exercised":
                assert "PARTLY EXERCISED" in verdict and all(c in verdict for c in r["classes_missing"])
        else:
            assert ">PASS<" in verdict, (rid, verdict)
    summary = (out / "summary.md").read_text()
    assert "| CRA Annex I Part I (2)(c) | PARTLY EXERCISED |" in summary
    otarig("report", "verify", out, check=0)
