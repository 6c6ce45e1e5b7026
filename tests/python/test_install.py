"""`cmake --install` of the python component into a temporary prefix: the
package imports from there, and pytest finds the plugin by its entry point."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BUILD = os.environ.get("OTARIG_BUILD_DIR")
CMAKE = os.environ.get("OTARIG_CMAKE", "cmake")
PYDIR = os.environ.get("OTARIG_PYTHON_INSTALL_DIR")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not BUILD or not PYDIR:
        pytest.skip("run from ctest (OTARIG_BUILD_DIR and OTARIG_PYTHON_INSTALL_DIR unset)")
    prefix = tmp_path_factory.mktemp("prefix")
    p = subprocess.run([CMAKE, "--install", BUILD, "--component", "python", "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    site = prefix / PYDIR
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = str(site)
    return site, env


def python(env, *args, cwd):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_layout(installed):
    site, _ = installed
    pkg = site / "otarig"
    for name in ("__init__.py", "__main__.py", "pytest_plugin.py", "_otarig.pyi", "py.typed"):
        assert (pkg / name).is_file(), name
    assert list(pkg.glob("_otarig*.so"))
    dist = list(site.glob("otarig-*.dist-info"))
    assert len(dist) == 1 and "pytest11" in (dist[0] / "entry_points.txt").read_text()


def test_import_and_run_from_the_prefix(installed, tmp_path):
    site, env = installed
    p = python(env, "-c", "import otarig, sys; "
               "r = otarig.Bench('virtual-ab').run('replay-old', out='out'); "
               "print(otarig.__file__); print(r)", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith(str(site))
    assert "PASS: 1 trials" in p.stdout
    p = python(env, "-m", "otarig", "list", "scenarios", cwd=tmp_path)
    assert p.returncode == 0 and "replay-old" in p.stdout, p.stderr


def test_pytest_loads_the_plugin_by_its_entry_point(installed, tmp_path):
    _, env = installed
    (tmp_path / "test_installed.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.otarig_scenario('replay-old')\n"
        "def test_replay(otarig_result):\n"
        "    assert otarig_result.passed\n")
    p = python(env, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--otarig-board", "virtual-ab",
               "--otarig-out", tmp_path / "evidence", "test_installed.py", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed" in p.stdout
    # Naming the plugin as well does not register it twice.
    p = python(env, "-m", "pytest", "-q", "-p", "otarig.pytest_plugin", "-p", "no:cacheprovider",
               "--otarig-out", tmp_path / "evidence2", "test_installed.py", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
