"""Hostile and malformed input to the otarig command line: every case ends with
exit 2 (bad input) or 3 (bench failure) and a message, never an abort, an
unbounded read, or a write outside --out."""
import os
import re
import subprocess
from pathlib import Path

import pytest

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
REF = SRC / "boards/virtual-ab.yaml"


def otarig(*args, check=None, cwd=None, timeout=300):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def profile_named(tmp_path, name, releases=None):
    text = REF.read_text().replace("name: virtual-ab", f"name: {name}", 1)
    if releases:
        text = text.replace("  next:    {version: 1.2.0+3, security_counter: 3}",
                            f"  {releases}: {{version: 1.2.0+3, security_counter: 3}}")
    prof = tmp_path / "boards" / "hostile.yaml"
    prof.parent.mkdir(exist_ok=True)
    prof.write_text(text)
    return prof


# --- names that become paths ------------------------------------------------

@pytest.fixture
def victim(tmp_path):
    """A folder beside --out that a name like '../victim' would reach."""
    v = tmp_path / "victim"
    v.mkdir()
    (v / "precious.txt").write_text("keep me")
    return v


@pytest.mark.parametrize("name", ["../victim", '"../victim"', "VICTIM_ABS", "a/b", "..", ".hidden", '"x y"'])
def test_detect_refuses_a_board_name_that_is_not_a_plain_file_name(tmp_path, victim, name):
    name = name.replace("VICTIM_ABS", str(victim))
    prof = profile_named(tmp_path, name)
    out = tmp_path / "out"
    p = otarig("detect", "--scenario", "tampered-image", "--out", out, prof, check=2)
    assert re.search(rf"{re.escape(str(prof))}:3:", p.stderr), p.stderr
    assert "plain file name" in p.stderr or "becomes a file name" in p.stderr
    assert (victim / "precious.txt").read_text() == "keep me"
    assert sorted(x.name for x in victim.iterdir()) == ["precious.txt"]
    assert not out.exists() or not any(out.iterdir())


def test_run_refuses_a_board_name_that_is_a_path(tmp_path, victim):
    prof = profile_named(tmp_path, "../victim")
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--out", tmp_path / "out", check=2)
    assert f"{prof}:3:" in p.stderr
    assert sorted(x.name for x in victim.iterdir()) == ["precious.txt"]


@pytest.mark.parametrize("release", ['"../evil"', '"/tmp/evil"', '".."'])
def test_a_release_name_that_is_a_path_is_bad_input(tmp_path, release):
    prof = profile_named(tmp_path, "named-ok", releases=release)
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--out", tmp_path / "out", check=2)
    assert re.search(rf"{re.escape(str(prof))}:\d+:.*release name", p.stderr), p.stderr


def test_a_scenario_name_must_be_its_file_stem(tmp_path):
    sc = tmp_path / "mine.yaml"
    sc.write_text((SRC / "scenarios/unsigned.yaml").read_text().replace("name: unsigned", "name: ../mine"))
    p = otarig("run", "--board", REF, "--scenario", sc, "--out", tmp_path / "out", check=2)
    assert f"{sc}:" in p.stderr and "must match the file name" in p.stderr


# --- a bundle resumed after a kill while it was being written -----------------

STRACE = "/usr/bin/strace"
# LeakSanitizer cannot run under ptrace: a sanitized otarig under strace
# leaves leak checking off (AddressSanitizer itself stays on).
TRACED_ENV = {**os.environ, "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                                  "detect_leaks=0"]))}


def rename_count(cmd, tmp_path):
    log = tmp_path / "renames.log"
    subprocess.run([STRACE, "-f", "-qq", "-o", log, "-e", "trace=rename", *cmd], check=True, capture_output=True,
                   timeout=300, env=TRACED_ENV)
    return sum(1 for line in log.read_text().splitlines() if "rename(" in line)


def test_a_resume_after_a_kill_at_any_rename_of_the_bundle_writing_verifies(tmp_path):
    assert Path(STRACE).exists(), "strace is needed (ci/setup installs it)"
    run = [BIN, "run", "--board", REF, "--scenario", "unsigned", "--seed", "3", "--jobs", "1", "--no-progress"]
    renames = rename_count([*run, "--out", tmp_path / "clean"], tmp_path)
    assert renames >= 7, "run.json, junit.xml, summary.md, report.html, the manifest and the attestation"
    for n in range(1, renames + 1):
        out = tmp_path / f"killed-at-{n}"
        p = subprocess.run([STRACE, "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename", "-e",
                            f"inject=rename:signal=KILL:when={n}", *run, "--out", out],
                           capture_output=True, timeout=300, env=TRACED_ENV)
        assert p.returncode in (-9, 137), f"rename {n}: the rig was not killed (exit {p.returncode})"
        otarig("run", "--board", REF, "--scenario", "unsigned", "--seed", "3", "--jobs", "1", "--no-progress",
               "--out", out, "--resume", check=0)
        v = otarig("report", "verify", out)
        assert v.returncode == 0, f"killed at rename {n}, resumed:\n{v.stdout}{v.stderr}"
        assert not list(out.glob("*.tmp")), f"rename {n}: temporary files left"


# --- a resume continues only the campaign its journal began ------------------

@pytest.mark.parametrize("change,says", [
    ("--shard 1/2", "the shard (--shard) differs: the journaled campaign has 0/2, this run has 1/2"),
    ("--trials 4", "the trial selection (--trials, --trial) differs: the journaled campaign has --trials 3, "
                   "this run has --trials 4"),
    ("--trial 00001", "the journaled campaign has --trials 3, this run has --trial 00001"),
    ("profile", "the board profile's SHA-256 differs"),
    ("scenario", "the scenario's SHA-256 differs"),
])
def test_a_resume_of_another_campaign_is_refused_naming_what_differs(tmp_path, change, says):
    board, scenario = tmp_path / "virtual-ab.yaml", tmp_path / "tampered-image.yaml"
    board.write_text(REF.read_text())
    scenario.write_text((SRC / "scenarios/tampered-image.yaml").read_text())
    out = tmp_path / "out"
    run = ["run", "--board", board, "--scenario", scenario, "--seed", 4, "--no-progress", "--out", out]
    otarig(*run, "--trials", 3, "--shard", "0/2", check=0)
    journal = (out / "journal.jsonl").read_text()
    again = {"--shard 1/2": ["--trials", 3, "--shard", "1/2"], "--trials 4": ["--trials", 4, "--shard", "0/2"],
             "--trial 00001": ["--trial", "00001", "--shard", "0/2"]}.get(change, ["--trials", 3, "--shard", "0/2"])
    if change in ("profile", "scenario"):
        edited = board if change == "profile" else scenario
        edited.write_text(edited.read_text() + "# edited after the campaign began\n")
    p = otarig(*run, *again, "--resume")
    assert_refused(p, 2, re.escape(f"{out}/journal.jsonl: --resume: ") + ".*" + re.escape(says))
    assert (out / "journal.jsonl").read_text() == journal, "a refused resume changes nothing"
    if change not in ("profile", "scenario"):
        # The campaign it began still resumes.
        otarig(*run, "--trials", 3, "--shard", "0/2", "--resume", check=0)


# --- bad paths, special files and sizes: exit 2 or 3, never an abort ----------

@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    img = d / "a.img"
    otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload-size", 4096, "--key", "test:k",
           "--out", img, check=0)
    return img


def assert_refused(p, status=2, says=None):
    assert p.returncode == status, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert p.stderr.startswith("otarig: "), p.stderr
    if says:
        assert re.search(says, p.stderr), p.stderr


@pytest.mark.parametrize("out,says", [("/dev/null", "exists and is not a folder"),
                                      ("FILE", "exists and is not a folder"),
                                      ("FILE/sub", "cannot create the evidence folder"),
                                      ("READONLY", "cannot (write|create)")])
def test_run_out_that_cannot_hold_evidence_is_bad_input(tmp_path, out, says):
    f = tmp_path / "file"
    f.write_text("not a folder")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    # root writes into a mode-0555 folder; sysfs refuses root too
    readonly = "/sys" if os.geteuid() == 0 else str(ro)
    out = out.replace("READONLY", readonly).replace("FILE", str(f))
    p = otarig("run", "--board", REF, "--scenario", "unsigned", "--out", out)
    assert_refused(p, 2, rf"--out {re.escape(out)}: {says}")
    assert f.read_text() == "not a folder"


def test_merge_into_a_folder_named_with_a_trailing_slash(tmp_path):
    shards = []
    for i in range(2):
        out = tmp_path / f"s{i}"
        otarig("run", "--board", REF, "--scenario", "unsigned", "--shard", f"{i}/2", "--out", out, "-q",
               check=0)
        shards.append(out)
    merged = tmp_path / "m"
    otarig("report", "merge", *shards, "--out", f"{merged}/", check=0)
    otarig("report", "verify", merged, check=0)
    assert not (tmp_path / "m.merging").exists() and not (merged / ".merging").exists()
    # A merge that fails leaves no folder behind.
    bad = tmp_path / "bad"
    assert_refused(otarig("report", "merge", shards[0], shards[0], "--out", f"{bad}/"), 2)
    assert not bad.exists()


@pytest.mark.parametrize("args,says", [
    (["--flip-bit", "99999999999999999999999"], r"--flip-bit offset 9+: expected a whole number"),
    (["--flip-bit", "10:99999999999999999999"], r"--flip-bit bit 9+: expected a whole number from 0 to 7"),
    (["--flip-bit", "10:4294967299"], r"--flip-bit bit 4294967299: expected a whole number from 0 to 7"),
    (["--flip-bit", "-1"], r"--flip-bit offset -1"),
    (["--flip-bit", "10:-1"], r"--flip-bit bit -1"),
    (["--flip-bit", "1e3"], r"--flip-bit offset 1e3"),
    (["--append", "99999999999"], r"--append 99999999999: expected a whole number from 0 to \d+"),
    (["--append", "-5"], r"--append -5"),
    (["--truncate", "99999999999999999999"], r"--truncate 9+: expected a whole number"),
])
def test_image_tamper_numbers_out_of_range(tmp_path, image, args, says):
    p = otarig("image", "tamper", "--in", image, "--out", tmp_path / "t.img", *args)
    assert_refused(p, 2, says)
    assert not (tmp_path / "t.img").exists()


@pytest.mark.parametrize("size", ["4294967297", "4294967296", "18446744073709551616", "-1", "0", "1GiB"])
def test_image_build_payload_size_out_of_range(tmp_path, size):
    p = otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload-size", size, "--key", "test:k",
               "--out", tmp_path / "b.img")
    assert_refused(p, 2, rf"--payload-size {re.escape(size)}: expected a whole number from 1 to \d+")


@pytest.mark.parametrize("counter", ["4294967296", "-1", "x"])
def test_image_build_counter_out_of_range(tmp_path, counter):
    p = otarig("image", "build", "--version", "1.0.0", "--counter", counter, "--payload-size", 10, "--key",
               "test:k", "--out", tmp_path / "b.img")
    assert_refused(p, 2, rf"--counter {re.escape(counter)}: expected a whole number from 0 to 4294967295")


def special_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return {"/dev/zero": "a device", str(fifo): "a FIFO", str(tmp_path): "a folder"}


def test_image_inspect_reads_only_a_bounded_regular_file(tmp_path):
    for path, kind in special_files(tmp_path).items():
        p = otarig("image", "inspect", path, timeout=30)
        assert_refused(p, 2, rf"{re.escape(path)}: the image is not a regular file \({kind}\)")
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate((512 << 20) + 1)
    assert_refused(otarig("image", "inspect", big), 2, r"has 536870913 bytes, more than the 536870912 bytes")


def test_image_build_payload_from_a_device_is_refused(tmp_path):
    p = otarig("image", "build", "--version", "1.0.0", "--counter", 1, "--payload", "/dev/zero", "--key", "test:k",
               "--out", tmp_path / "b.img", timeout=30)
    assert_refused(p, 2, r"/dev/zero: the payload is not a regular file \(a device\)")


def test_board_and_scenario_that_are_special_files_are_refused(tmp_path):
    for path, kind in special_files(tmp_path).items():
        p = otarig("run", "--board", path, "--scenario", "unsigned", "--out", tmp_path / "o", timeout=30)
        assert_refused(p, 2, rf"{re.escape(path)}: the (YAML document|board profile) is not a regular file")
        p = otarig("run", "--board", REF, "--scenario", path, "--out", tmp_path / "o", timeout=30)
        assert p.returncode == 2, p.stderr
        assert re.search(rf"{re.escape(path)}: (the YAML document is not a regular file|no such scenario)",
                         p.stderr), p.stderr


def test_a_release_file_that_is_a_device_is_refused_with_its_line(tmp_path):
    text = REF.read_text().replace("  next:    {version: 1.2.0+3, security_counter: 3}",
                                   "  next:    {version: 1.2.0+3, security_counter: 3, file: /dev/zero}")
    prof = tmp_path / "dev.yaml"
    prof.write_text(text)
    p = otarig("run", "--board", prof, "--scenario", "unsigned", "--out", tmp_path / "o", timeout=30)
    assert_refused(p, 2, rf"{re.escape(str(prof))}:\d+: .*'/dev/zero' is not a regular file")


# --- numbers that would wrap --------------------------------------------------

@pytest.mark.parametrize("args,says", [
    (["--seed", "-1"], r"--seed -1: expected a whole number from 0 to 18446744073709551615"),
    (["--seed", "18446744073709551616"], r"--seed 18446744073709551616: expected a whole number"),
    (["--seed", "0x10"], r"--seed 0x10: expected a whole number"),
    (["--seed", " 5"], r"--seed  5: expected a whole number"),
    (["--shard", "0/-1"], r"--shard 0/-1: expected I/N"),
    (["--shard", "-1/2"], r"--shard -1/2: expected I/N"),
    (["--shard", "0/4294967296"], r"--shard 0/4294967296: expected I/N"),
    (["--shard", "2/2"], r"--shard 2/2: expected I/N"),
    (["--trials", "-1"], r"--trials -1: expected a whole number from 1"),
    (["--trials", "0"], r"--trials 0: expected a whole number from 1"),
    (["--trial", "-1"], r"--trial -1: expected a trial id"),
    (["--jobs", "-1"], r"--jobs -1: expected a whole number from 0 to 256"),
    (["--jobs", "4294967297"], r"--jobs 4294967297: expected a whole number"),
])
def test_run_numbers_out_of_range_are_bad_input(tmp_path, args, says):
    out = tmp_path / "o"
    p = otarig("run", "--board", REF, "--scenario", "unsigned", "--out", out, *args)
    assert_refused(p, 2, says)
    assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", "18446744073709551616"])
def test_detect_and_proxy_seeds_out_of_range_are_bad_input(tmp_path, seed):
    assert_refused(otarig("detect", "--seed", seed, REF), 2, rf"--seed {seed}: expected a whole number")
    assert_refused(otarig("proxy", "--upstream", "127.0.0.1:1", "--seed", seed), 2,
                   rf"--seed {seed}: expected a whole number")


def test_the_largest_seed_is_still_a_seed(tmp_path):
    out = tmp_path / "o"
    otarig("run", "--board", REF, "--scenario", "unsigned", "--seed", "18446744073709551615", "--out", out, "-q",
           check=0)
    assert '"seed": 18446744073709551615' in (out / "run.json").read_text()


# --- otarig serve -------------------------------------------------------------

@pytest.mark.parametrize("args,says", [
    (["--root", "MISSING"], r"--root .*MISSING: not a directory"),
    (["--root", "FILE"], r"--root .*FILE: not a directory"),
    (["--root", "ROOT", "--tls-cert", "FILE"], r"--tls-cert and --tls-key go together"),
    (["--root", "ROOT", "--client-ca", "FILE"], r"--client-ca needs --tls-cert and --tls-key"),
    (["--root", "ROOT", "--timeout", "0"], r"--timeout"),
    (["--root", "ROOT", "--timeout", "99999999999999999999"], r"--timeout"),
    (["--root", "ROOT", "--port", "70000"], r"--port"),
    (["--root", "ROOT", "--port", "-1"], r"--port"),
    (["--root", "ROOT", "--tls-cert", "FILE", "--tls-key", "FILE"], r"FILE: not a PEM certificate"),
])
def test_serve_refuses_bad_input_before_it_listens(tmp_path, args, says):
    root = tmp_path / "root"
    root.mkdir()
    bad = tmp_path / "not-a-folder"
    bad.write_text("not PEM, not a folder\n")
    names = {"MISSING": str(tmp_path / "missing"), "FILE": str(bad), "ROOT": str(root)}
    p = otarig("serve", *[names.get(a, a) for a in args], timeout=30)
    assert_refused(p, 2, says.replace("MISSING", "missing").replace("FILE", "not-a-folder"))
    assert "listening on" not in p.stdout


@pytest.mark.parametrize("target,status,says", [
    ("/dev/full", 2, r"/dev/full: exists and is not a regular file \(a device\)"),
    ("FOLDER", 2, r"exists and is not a regular file \(a folder\)"),
    ("MISSING/x.img", 2, r"MISSING/x.img: cannot write: No such file or directory"),
])
def test_image_outputs_that_cannot_be_written_are_bad_input(tmp_path, target, status, says):
    folder = tmp_path / "folder"
    folder.mkdir()
    out = target.replace("FOLDER", str(folder)).replace("MISSING", str(tmp_path / "missing"))
    says = says.replace("MISSING", re.escape(str(tmp_path / "missing")))
    built = tmp_path / "ok.img"
    otarig("image", "build", "--version", "1.0.0", "--counter", "1", "--payload-size", "100", "--key", "test:k",
           "--out", built, check=0)
    assert_refused(otarig("image", "build", "--version", "1.0.0", "--counter", "1", "--payload-size", "100",
                          "--key", "test:k", "--out", out), status, says)
    assert_refused(otarig("image", "tamper", "--in", built, "--flip-bit", "10:1", "--out", out), status, says)
    assert list(folder.iterdir()) == []
