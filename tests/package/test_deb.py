"""The Debian package: ci/package builds otarig_VERSION_ARCH.deb from this
build, dpkg installs it into a fresh root this test makes (`dpkg --root`),
and a campaign runs from that root alone: its otarig, its data, its Python
module, its man page and completion."""
import json
import os
import subprocess
from pathlib import Path

import pytest

SRC = Path(os.environ["OTARIG_SOURCE_DIR"])
BUILD = Path(os.environ["OTARIG_BUILD_DIR"])


def run(*args, **kw):
    p = subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deb")
    env = {**os.environ, "OTARIG_PACKAGE_NO_BUILD": "1", "OTARIG_BUILD_DIR": str(BUILD)}
    p = subprocess.run([SRC / "ci/package", tmp / "out"], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    deb = Path(p.stdout.strip().splitlines()[-1])
    assert deb.is_file() and deb.name.startswith("otarig_") and deb.name.endswith(".deb")
    root = tmp / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"):
        (root / d).mkdir(parents=True)
    for f in ("var/lib/dpkg/status", "var/lib/dpkg/available"):
        (root / f).touch()
    # The fresh root has no libc6 or python3 recorded: their dependencies are
    # the host's, which the programs run with.
    run("dpkg", f"--root={root}", "--force-depends", "--log=/dev/null", "-i", deb)
    return deb, root


def test_the_package_names_its_debian_dependencies(installed):
    deb, _ = installed
    info = run("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").stdout
    assert "Package: otarig" in info and "Architecture: " in info
    depends = info.split("Depends:", 1)[1]
    for need in ("libc6", "libssl3", "libyaml-cpp", "libfuse3", "python3"):
        assert need in depends, depends


def test_dpkg_records_every_file_and_they_are_there(installed):
    _, root = installed
    status = run("dpkg", f"--root={root}", "-s", "otarig").stdout
    assert "Status: install ok installed" in status
    files = run("dpkg", f"--root={root}", "-L", "otarig").stdout.splitlines()
    for want in ("/usr/bin/otarig", "/usr/bin/otarig-vboard", "/usr/share/man/man1/otarig.1.gz",
                 "/usr/share/bash-completion/completions/otarig", "/usr/share/otarig/boards/virtual-ab.yaml",
                 "/usr/share/otarig/compliance/catalog.yaml", "/usr/lib/cmake/otarig/otarigConfig.cmake",
                 "/usr/share/doc/otarig/README.md"):
        assert want in files, want
        assert (root / want.lstrip("/")).exists(), want
    assert any(f.startswith("/usr/lib/python3/dist-packages/otarig/_otarig") for f in files)


def test_a_campaign_runs_from_the_installed_root_alone(installed, tmp_path):
    _, root = installed
    env = {k: v for k, v in os.environ.items() if k not in ("OTARIG_DATA_DIR", "PYTHONPATH")}
    otarig = root / "usr/bin/otarig"
    listed = json.loads(run(otarig, "list", "boards", "--json", cwd=tmp_path, env=env).stdout)
    assert all(b["profile"].startswith(str(root / "usr/share/otarig")) for b in listed), listed[0]
    out = tmp_path / "out"
    p = run(otarig, "run", "--board", "virtual-ab", "--scenario", "nightly", "--trials", 40, "--out", out, cwd=tmp_path,
            env=env)
    assert "PASS: 40 trials" in p.stdout
    r = json.loads((out / "run.json").read_text())
    assert r["board"]["profile"].startswith(str(root / "usr/share/otarig/boards"))
    assert r["compliance"]["catalog"] == "otarig-requirements"
    run(otarig, "report", "verify", out, cwd=tmp_path, env=env)
    # The Python module for Debian's python3, with its own data.
    code = ("import otarig, json; b = otarig.Bench('virtual-ab'); r = b.run('unsigned', out='py');"
            "print(json.dumps([otarig.__file__, r.run['board']['profile'], r.exit_code]))")
    p = run("/usr/bin/python3", "-c", code, cwd=tmp_path,
            env={**env, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")})
    module, profile, exit_code = json.loads(p.stdout.strip().splitlines()[-1])
    assert module.startswith(str(root)) and profile.startswith(str(root / "usr/share/otarig")) and exit_code == 0
    # The man page renders and names the commands.
    page = run("man", "-l", root / "usr/share/man/man1/otarig.1.gz", env={**env, "MANPAGER": "cat"}).stdout
    assert "otarig run" in page and "otarig bench" in page
