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


def rename_count(cmd, tmp_path):
    log = tmp_path / "renames.log"
    subprocess.run([STRACE, "-f", "-qq", "-o", log, "-e", "trace=rename", *cmd], check=True, capture_output=True,
                   timeout=300)
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
                           capture_output=True, timeout=300)
        assert p.returncode in (-9, 137), f"rename {n}: the rig was not killed (exit {p.returncode})"
        otarig("run", "--board", REF, "--scenario", "unsigned", "--seed", "3", "--jobs", "1", "--no-progress",
               "--out", out, "--resume", check=0)
        v = otarig("report", "verify", out)
        assert v.returncode == 0, f"killed at rename {n}, resumed:\n{v.stdout}{v.stderr}"
        assert not list(out.glob("*.tmp")), f"rename {n}: temporary files left"

