"""The command line as a new user and a script meet it: names usable as
listed from any folder, a second run into the same folder, replays of
replays, what `image inspect` did not check, and --json for scripts."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def otarig(*args, check=None, cwd=None):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.fixture
def elsewhere(tmp_path):
    """A working folder outside the source tree, with no boards/ of its own."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    assert not (d / "boards").exists()
    return d


def test_every_listed_board_is_usable_as_printed_from_another_folder(elsewhere):
    listed = json.loads(otarig("list", "boards", "--json", cwd=elsewhere, check=0).stdout)
    assert len(listed) > 10
    for b in listed:
        assert not Path(b["board"]).is_absolute() and not (elsewhere / b["board"]).exists()
    # Each name as printed resolves: `list boards NAME` checks it as --board binds it.
    p = otarig("list", "boards", "--json", *[b["board"] for b in listed], cwd=elsewhere, check=0)
    assert [b["name"] for b in json.loads(p.stdout)] == [b["name"] for b in listed]
    virtual = next(b["board"] for b in listed if b["board"] == "boards/virtual-ab.yaml")
    p = otarig("run", "--board", virtual, "--scenario", "replay-old", "--out", "o", cwd=elsewhere, check=0)
    assert "PASS" in p.stdout
    # A path that is in the working folder wins over the data folders' one.
    local = elsewhere / "boards"
    local.mkdir()
    text = (SRC / "boards/virtual-ab.yaml").read_text().replace("name: virtual-ab", "name: local-copy", 1)
    (local / "virtual-ab.yaml").write_text(text)
    otarig("run", "--board", virtual, "--scenario", "replay-old", "--out", "o2", cwd=elsewhere, check=0)
    assert json.loads((elsewhere / "o2/run.json").read_text())["board"]["name"] == "local-copy"
    # What is in neither is still bad input naming it.
    p = otarig("run", "--board", "boards/no-such.yaml", "--scenario", "replay-old", "--out", "o3", cwd=elsewhere,
               check=2)
    assert "boards/no-such.yaml: no such board profile" in p.stderr


def test_detect_on_the_boards_folder_works_outside_the_source_tree(elsewhere):
    p = otarig("detect", "--kind", "virtual", "--scenario", "unsigned", "--json", "boards", cwd=elsewhere)
    assert p.returncode in (0, 1), p.stderr
    table = json.loads(p.stdout)
    assert table["scenario"] == "unsigned"
    names = {r["board"] for r in table["boards"]}
    assert {"virtual-ab", "virtual-nosigcheck", "virtual-anykey"} <= names
    nosig = next(r for r in table["boards"] if r["board"] == "virtual-nosigcheck")
    assert nosig["flawed"] and nosig["findings"] > 0 and "authentic" in nosig["caught"]
    ref = next(r for r in table["boards"] if r["board"] == "virtual-ab")
    assert not ref["flawed"] and ref["findings"] == 0 and ref["as_expected"]


def test_list_columns_align_on_long_names(elsewhere):
    lines = otarig("list", "boards", cwd=elsewhere, check=0).stdout.splitlines()
    listed = json.loads(otarig("list", "boards", "--json", cwd=elsewhere, check=0).stdout)
    assert len(lines) == len(listed)
    # The kind column starts at the same place on every line, however long the name.
    starts = {line.index(b["kind"], len(b["board"])) for line, b in zip(lines, listed)}
    assert len(starts) == 1, lines
    assert max(len(b["board"]) for b in listed) > 44  # a name longer than the old fixed column
    scenarios = json.loads(otarig("list", "scenarios", "--json", check=0).stdout)
    nightly = next(s for s in scenarios if s["scenario"] == "nightly")
    assert nightly["kind"] == "suite" and "power-cut-sweep" in nightly["parts"]
    sweep = next(s for s in scenarios if s["scenario"] == "power-cut-sweep")
    assert sweep["requirements"] and sweep["classes"]
    faults = json.loads(otarig("list", "faults", "--json", check=0).stdout)
    assert {"power-cut", "network", "tamper"} <= {f["fault"] for f in faults}


def test_a_second_run_into_the_same_folder_names_resume_and_force(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out, check=0)
    first = json.loads((out / "run.json").read_text())["started"]
    p = otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out, check=2)
    assert "--resume" in p.stderr and "--force" in p.stderr
    assert json.loads((out / "run.json").read_text())["started"] == first  # nothing changed
    (out / "trials/stale-file").write_text("from the first run")
    otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out, "--force", check=0)
    starts = [line for line in (out / "journal.jsonl").read_text().splitlines() if '"campaign-start"' in line]
    assert len(starts) == 1  # a new campaign, not the old one continued
    assert not (out / "trials/stale-file").exists()
    otarig("report", "verify", out, check=0)
    # --force never empties a folder that is not evidence.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    p = otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", other, "--force", check=2)
    assert "replaces only an evidence folder" in p.stderr
    assert (other / "notes.txt").read_text() == "keep me"
    p = otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out, "--force", "--resume",
               check=2)
    assert "give one" in p.stderr
    # --help shows the default --out.
    assert re.search(r"--out TEXT=otarig-out", otarig("run", "--help", check=0).stdout)


def test_a_replay_of_a_replay_is_numbered_not_stacked(tmp_path):
    out = tmp_path / "n"
    p = otarig("run", "--board", "boards/flawed/virtual-norollback.yaml", "--scenario", "replay-old", "--out", out,
               check=1)
    replay = re.search(r"replay: (otarig run .*)", p.stdout).group(1)
    assert replay.endswith(f"--out {out}-replay-00000")
    p = subprocess.run(replay.replace("otarig", BIN, 1), shell=True, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1, p.stderr
    again = re.search(r"replay: (otarig run .*)", p.stdout).group(1)
    assert again.endswith(f"--out {out}-replay-00000-2"), again
    p = subprocess.run(again.replace("otarig", BIN, 1), shell=True, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1
    assert re.search(r"replay: (otarig run .*)", p.stdout).group(1).endswith(f"--out {out}-replay-00000-3")


def test_image_inspect_says_when_the_signature_went_unchecked(tmp_path):
    img = tmp_path / "a.img"
    otarig("image", "build", "--version", "1.2.3", "--counter", 2, "--payload-size", 4096, "--key",
           "test:otarig-release", "--out", img, check=0)
    p = otarig("image", "inspect", img, check=0)
    assert "signature NOT CHECKED" in p.stdout
    p = otarig("image", "inspect", img, "--require-signature", check=2)
    assert "--key" in p.stderr
    j = json.loads(otarig("image", "inspect", img, "--json", check=0).stdout)
    assert j["signature"] == "unchecked" and j["version"] == "1.2.3" and j["security_counter"] == 2
    j = json.loads(otarig("image", "inspect", img, "--json", "--key", "test:otarig-release", "--require-signature",
                          check=0).stdout)
    assert j["signature"] == "ok"
    p = otarig("image", "inspect", img, "--json", "--key", "test:someone-else", "--require-signature", check=1)
    j = json.loads(p.stdout)
    assert j["signature"] == "failed" and j["reason"]


def test_report_verify_json(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out, check=0)
    j = json.loads(otarig("report", "verify", out, "--json", check=0).stdout)
    assert j["status"] == "ok" and j["trials"] == 1 and j["problems"] == [] and j["test_key"]
    (out / "summary.md").write_text("edited")
    j = json.loads(otarig("report", "verify", out, "--json", check=1).stdout)
    assert j["status"] == "failed" and j["problems"][0]["file"] == "summary.md"
    j = json.loads(otarig("report", "verify", tmp_path, "--json", check=2).stdout)
    assert j["status"] == "not-a-bundle"


def test_an_unsharded_report_does_not_call_itself_shard_0_of_1(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out, check=0)
    html = (out / "report.html").read_text()
    assert "0 of 1" not in html and "none (the whole plan)" in html
    shard = tmp_path / "s"
    otarig("run", "--board", "virtual-ab", "--scenario", "tampered-image", "--shard", "1/2", "--out", shard, check=0)
    assert "1 of 2" in (shard / "report.html").read_text()


# ------------------------------------------------------------ otarig bench


def test_bench_status_power_and_console_on_in_process_boards():
    j = json.loads(otarig("bench", "--board", "virtual-ab", "status", "--json", check=0).stdout)
    assert j["booted"] and j["version"] == "1.0.0+1" and j["slot"] == "A"
    p = otarig("bench", "--board", "virtual-ab", "--provision", "update", "status", "--json", check=0)
    assert json.loads(p.stdout)["version"] == "1.1.0+2" and "provisioned with release update" in p.stderr
    p = otarig("bench", "--board", "virtual-ab", "power", "cycle", check=0)
    assert "virtual-ab: power on" in p.stdout and "ends with this command" in p.stderr
    # The console: what stdin gives reaches the device, what it prints comes out.
    p = subprocess.run([BIN, "bench", "--board", "vboard-ab", "console"], input="status\n", capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "otarig-vboard bootloader" in p.stdout and re.search(r"^STATUS slot=A version=1\.0\.0\+1 ", p.stdout, re.M)
    for bad, what in [(["power", "sideways"], "expected on, off or cycle"), (["reboot"], "expected power"),
                      (["status", "--provision", "nope"], "defines no such release"),
                      (["power", "cycle", "--off-time", "-1"], "--off-time")]:
        p = otarig("bench", "--board", "virtual-ab", *bad, check=2)
        assert what in p.stderr


def test_bench_drives_a_lab_board_through_its_own_drivers(tmp_path):
    """A lab board: power by command (scripts that log what they were asked),
    the console a pty this test answers on as the board's shell would."""
    log = tmp_path / "power.log"
    for word in ("on", "off"):
        script = tmp_path / f"{word}.sh"
        script.write_text(f"#!/bin/sh\necho {word} >> '{log}'\n")
        script.chmod(0o755)
    master, slave = os.openpty()
    import tty
    tty.setraw(slave)
    path = os.ttyname(slave)
    line = "STATUS slot=B version=2.0.0 digest=" + "ab" * 32 + " counter=7 state=confirmed health=ok"
    heard = []
    stop = False

    def shell():
        buf = b""
        while not stop:
            import select
            r, _, _ = select.select([master], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(master, 4096)
            except OSError:
                return
            while b"\n" in buf:
                cmd, buf = buf.split(b"\n", 1)
                heard.append(cmd.decode())
                if cmd.strip() == b"status":
                    os.write(master, (line + "\r\n").encode())
                elif cmd.strip():
                    os.write(master, b"echo: " + cmd + b"\r\n")

    import threading
    t = threading.Thread(target=shell, daemon=True)
    t.start()
    prof = tmp_path / "lab.yaml"
    prof.write_text(f"""name: bench-lab
description: a lab board behind power scripts and a pty console
device:
  kind: lab
power:
  driver: command
  on: ['{tmp_path}/on.sh']
  off: ['{tmp_path}/off.sh']
  timeout: 5s
  off_time: 0ms
console:
  driver: tty
  path: {path}
link:
  driver: console-command
  command: "update ${{url}}\\n"
  accepted: 'staged'
  refused: 'refused: (?P<reason>.*)'
  timeout: 30s
observe:
  status_command: "status\\n"
  status: 'STATUS slot=(?P<slot>\\w+) version=(?P<version>\\S+) digest=(?P<digest>[0-9a-f]{{64}}) counter=(?P<counter>\\d+) state=(?P<state>\\w+) health=(?P<health>\\w+)'
  boot_timeout: 5s
  status_interval: 200ms
signing:
  key: test:bench-lab
releases:
  factory: {{version: 1.0.0, security_counter: 1}}
""")
    try:
        otarig("bench", "--board", prof, "power", "off", check=0)
        otarig("bench", "--board", prof, "power", "on", check=0)
        otarig("bench", "--board", prof, "power", "cycle", check=0)
        assert log.read_text().split() == ["off", "on", "off", "on"]
        j = json.loads(otarig("bench", "--board", prof, "status", "--json", check=0).stdout)
        assert j["slot"] == "B" and j["version"] == "2.0.0" and j["counter"] == 7
        # A lab board's console does not switch its power unless asked.
        before = log.read_text()
        p = subprocess.run([BIN, "bench", "--board", prof, "console"], input="uname -a\n", capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "echo: uname -a" in p.stdout and log.read_text() == before
        assert "uname -a" in heard
    finally:
        stop = True
        t.join(timeout=5)
        os.close(master)
        os.close(slave)


# ------------------------------------------------- the mechanism under test


def test_the_report_describes_the_update_mechanism_from_the_profile_and_bench(tmp_path):
    out = tmp_path / "out"
    otarig("run", "--board", "vboard-ab", "--scenario", "unsigned", "--out", out, check=0)
    run = json.loads((out / "run.json").read_text())
    m = run["mechanism"]
    # The key the device trusts is the one the releases are signed with.
    img = tmp_path / "r.img"
    otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload-size", 1024, "--key",
           "test:otarig-release", "--out", img, check=0)
    key_id = json.loads(otarig("image", "inspect", img, "--json", check=0).stdout)["key_id"]
    assert m["signing"]["signing_key"] == "test:otarig-release" and m["signing"]["test_key"] is True
    assert key_id in m["signing"]["trusted_key_ids"]
    assert m["transport"]["network"]["tls"] == "mutual"
    assert m["storage"]["kind"] == "process" and m["storage"]["power_loss"] == "crash"
    assert {"slot", "version", "digest", "counter"} <= set(m["storage"]["status_fields"])
    assert [r["release"] for r in m["policies"]["releases"]] == [r["name"] for r in run["releases"]]
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="mechanism">'):]
    section = section[:section.index("</section>")]
    assert "test:otarig-release" in section and key_id in section and "mutual" in section
    # What this run did not test: the requirements whose classes one scenario leaves open.
    assert 'id="not-tested"' in section and "not exercised" in section
    assert 'href="#mechanism"' in html
    summary = (out / "summary.md").read_text()
    assert "Update mechanism under test" in summary and "TLS mutual" in summary
    otarig("report", "verify", out, check=0)


# ------------------------------------------- man page, completion, colour


def subcommands_from_help(*path):
    """The subcommands --help lists under its Subcommands: heading."""
    text = otarig(*path, "--help", check=0).stdout
    if "Subcommands:" not in text:
        return []
    names = []
    for line in text.split("Subcommands:", 1)[1].splitlines()[1:]:
        m = re.match(r"^  (\S+)", line)
        if not m:
            break
        names.append(m.group(1))
    return names


def options_from_help(*path):
    return set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", otarig(*path, "--help", check=0).stdout, re.M)) - {"--help"}


def test_the_man_page_and_completion_list_every_command_and_option_help_lists(tmp_path):
    man = otarig("man", check=0).stdout
    bash = otarig("completion", "bash", check=0).stdout
    commands = [[c] for c in subcommands_from_help()]
    for c in list(commands):
        commands += [[*c, s] for s in subcommands_from_help(*c)]
    assert ["run"] in commands and ["image", "inspect"] in commands and ["bench"] in commands
    for c in commands:
        path = " ".join(c)
        assert f'.SS "otarig {path}"' in man, path
        assert f'"{path}")' in bash, path
        for opt in options_from_help(*c):
            assert opt.replace("-", "\\-") in man, (path, opt)
            assert opt in bash, (path, opt)
    # The page renders, and bash takes the script and completes from it.
    if subprocess.run(["sh", "-c", "command -v man"], capture_output=True).returncode == 0:
        page = tmp_path / "otarig.1"
        page.write_text(man)
        r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, env={**os.environ, "MANPAGER": "cat"})
        assert r.returncode == 0 and "otarig run" in r.stdout
    script = tmp_path / "otarig.bash"
    script.write_text(bash)
    probe = (f'source {script}; COMP_WORDS=(otarig image in); COMP_CWORD=2; _otarig; echo "${{COMPREPLY[*]}}"; '
             f'COMP_WORDS=(otarig run --for); COMP_CWORD=2; _otarig; echo "${{COMPREPLY[*]}}"')
    r = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == "inspect" and second == "--force"
    assert otarig("completion", "zsh", check=2).stderr.startswith("otarig: ")


def test_the_verdict_is_coloured_on_a_terminal_unless_no_color(tmp_path):
    import pty

    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}

    def run_on_tty(env_extra, out):
        master, slave = pty.openpty()
        p = subprocess.Popen([BIN, "run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", out,
                              "--no-progress"], stdout=slave, stderr=subprocess.PIPE, env={**base, **env_extra})
        os.close(slave)
        data = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        p.wait(timeout=60)
        os.close(master)
        return data.decode()

    assert "\x1b[32mPASS\x1b[0m: 1 trials" in run_on_tty({}, tmp_path / "a")
    plain = run_on_tty({"NO_COLOR": "1"}, tmp_path / "b")
    assert "\x1b[" not in plain and "PASS: 1 trials" in plain
    piped = otarig("run", "--board", "virtual-ab", "--scenario", "replay-old", "--out", tmp_path / "c", check=0).stdout
    assert "\x1b[" not in piped


# ------------------------------------------------------- the README sample


def readme_sample():
    text = (SRC / "README.md").read_text()
    start = text.index("`ci/demo` prints something like:\n\n```\n") + len("`ci/demo` prints something like:\n\n```\n")
    return text[start:text.index("```", start)].splitlines()


def matches(expected, actual):
    """Every expected line in order; `...` stands for any lines (or none).
    Signing key ids differ per run (a fresh test key): they are compared as KEYID."""
    norm = lambda s: re.sub(r"key [0-9a-f]{16}", "key KEYID", s)
    expected, actual = [norm(x) for x in expected], [norm(x) for x in actual]

    def at(i, j):
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "...":
            return any(at(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and expected[i] == actual[j] and at(i + 1, j + 1)

    return at(0, 0)


def test_the_readme_sample_is_what_ci_demo_prints(tmp_path):
    """README's sample shows two of ci/demo's campaigns; they are run here as
    ci/demo runs them (same commands, its out/demo folder) and must print it,
    counts, defects and replay commands included."""
    demo = (SRC / "ci/demo").read_text()
    sample = readme_sample()
    sections, current = {}, None
    for line in sample:
        if line.startswith("== "):
            current = line
            sections[current] = []
            assert f'echo "{line}"' in demo, f"ci/demo does not print {line!r}"
        elif current and line:
            sections[current].append(line)
    assert len(sections) == 2
    ref, flawed = list(sections)
    cwd = tmp_path
    (cwd / "out/demo").mkdir(parents=True)
    # The reference board: run, then verify, all printed.
    assert '"$bin" run --board boards/virtual-ab.yaml --scenario nightly --seed 1 --out "$out/virtual-ab"' in demo
    run = otarig("run", "--board", "boards/virtual-ab.yaml", "--scenario", "nightly", "--seed", 1, "--out",
                 "out/demo/virtual-ab", cwd=cwd, check=0).stdout
    verify = otarig("report", "verify", "out/demo/virtual-ab", cwd=cwd, check=0).stdout
    got = (run + verify).splitlines()
    assert matches(sections[ref], got), "\n".join(got)
    # The flawed board: quiet, its first five lines shown.
    assert ('"$bin" run --board boards/flawed/virtual-inplace.yaml --scenario nightly --seed 1 --out '
            '"$out/virtual-inplace" -q') in demo and "head -n 5" in demo
    p = otarig("run", "--board", "boards/flawed/virtual-inplace.yaml", "--scenario", "nightly", "--seed", 1, "--out",
               "out/demo/virtual-inplace", "-q", cwd=cwd, check=1)
    got = p.stdout.splitlines()[:5]
    assert sections[flawed][-1] == "..." and matches(sections[flawed][:-1], got), "\n".join(got)


# ------------------------------------------------------------- waivers


def waived_board(tmp_path, expires, extra=""):
    text = (SRC / "boards/flawed/virtual-inplace.yaml").read_text()
    text = re.sub(r"^name: .*$", "name: inplace-waived", text, count=1, flags=re.M)
    text += f"""waivers:
  - id: COPY-IN-PLACE
    scenario: power-cut-sweep
    oracles: [atomic, recovered, still-updatable]
    reason: "known: replaced in 2.0 (TICKET-12)"
    expires: {expires}
{extra}"""
    path = tmp_path / f"waived-{expires}.yaml"
    path.write_text(text)
    return path


def test_a_waived_defect_is_shown_as_waived_never_as_a_pass(tmp_path):
    board = waived_board(tmp_path, "2099-12-31")
    out = tmp_path / "w"
    p = otarig("run", "--board", board, "--scenario", "power-cut-sweep", "--out", out, check=0)
    assert "WAIVED by COPY-IN-PLACE until 2099-12-31" in p.stdout
    assert re.search(r"^WAIVED: 513 trials, 2 passed, 511 failed, 511 findings, 511 waived", p.stdout, re.M)
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["waived"] == 511 and run["summary"]["findings"] == 511
    w = run["waivers"]["declared"][0]
    assert w["status"] == "active" and w["defects"] == ["D0001"] and w["trials"] == 511
    assert run["waivers"]["date"] == run["started"][:10]
    html = (out / "report.html").read_text()
    assert '<header class="verdict waived">' in html and "PASS" not in re.search(
        r'id="verdict">([^<]*)', html).group(1)
    assert "WAIVED by COPY-IN-PLACE" in html
    assert "| COPY-IN-PLACE | active | 2099-12-31 |" in (out / "summary.md").read_text()
    otarig("report", "verify", out, check=0)
    # A waiver that covers nothing the run found leaves the other defects failing the run.
    otarig("run", "--board", board, "--scenario", "tampered-image", "--out", tmp_path / "t", check=1)


def test_an_expired_waiver_fails_the_campaign(tmp_path):
    board = waived_board(tmp_path, "2020-01-01")
    p = otarig("run", "--board", board, "--scenario", "power-cut-sweep", "--out", tmp_path / "x", check=1)
    assert "waiver COPY-IN-PLACE expired on 2020-01-01" in p.stdout
    assert re.search(r"^FINDINGS: .* 1 waiver expired", p.stdout, re.M)
    run = json.loads((tmp_path / "x/run.json").read_text())
    assert run["waivers"]["declared"][0]["status"] == "expired" and run["summary"]["waived"] == 0
    otarig("report", "verify", tmp_path / "x", check=0)


def test_verify_recomputes_the_waivers(tmp_path):
    """A bundle whose waivers were edited (and re-signed) does not verify."""
    import shutil
    board = waived_board(tmp_path, "2020-01-01")
    out = tmp_path / "e"
    otarig("run", "--board", board, "--scenario", "power-cut-sweep", "--out", out, check=1)
    for name, edit in [("revived", lambda r: r["waivers"]["declared"][0].update(status="active")),
                       ("dated", lambda r: r["waivers"].update(date="2019-01-01")),
                       ("counted", lambda r: r["summary"].update(waived=511, expired_waivers=0)),
                       ("dropped", lambda r: r.pop("waivers"))]:
        copy = tmp_path / name
        shutil.copytree(out, copy)
        run = json.loads((copy / "run.json").read_text())
        edit(run)
        if name == "dropped":
            run["summary"]["waived"] = 5
        (copy / "run.json").write_text(json.dumps(run, indent=2))
        # The manifest no longer matches run.json either; verify lists every problem, the waivers' among them.
        p = otarig("report", "verify", copy, check=1)
        assert "waiver" in p.stdout, (name, p.stdout)
