"""Shared helpers of the Python module's tests (run by /usr/bin/python3 from ctest,
with PYTHONPATH pointing at <build>/bindings)."""
import os
import re
from pathlib import Path

import pytest

SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
REF = SRC / "boards" / "virtual-ab.yaml"
INPLACE = SRC / "boards" / "flawed" / "virtual-inplace.yaml"
NOROLLBACK = SRC / "boards" / "flawed" / "virtual-norollback.yaml"

# Subprocesses (pytester, the examples) run in other directories.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        str(Path(p).resolve()) for p in os.environ["PYTHONPATH"].split(os.pathsep) if p)


def profile_variant(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the reference profile with `edit(text) -> text` applied."""
    text = edit(REF.read_text())
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def silent_board(tmp_path):
    """A virtual board whose status line never matches: the bench fails at prepare."""
    return profile_variant(tmp_path, "silent", lambda t: re.sub(r"status: 'STATUS ", "status: 'NEVER-SEEN ", t))
