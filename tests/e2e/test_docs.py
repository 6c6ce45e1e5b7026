"""The examples in README.md and docs/*.md match the program: every YAML block
parses, and every `otarig` command line in a code block names a subcommand
and options that the command line accepts (as its --help lists them)."""
import os
import re
import shlex
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

BIN = os.environ.get("OTARIG_BIN", "otarig")
SRC = Path(os.environ.get("OTARIG_SOURCE_DIR", Path(__file__).resolve().parents[2]))
DOCS = [SRC / "README.md", *sorted((SRC / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w+-]*)[ \t]*\n(.*?)^```", re.S | re.M)


def blocks(lang_filter):
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if lang_filter(m.group(1)):
                line = text.count("\n", 0, m.start()) + 1
                yield pytest.param(m.group(2), id=f"{doc.relative_to(SRC)}:{line}")


def command_lines():
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) not in ("", "sh", "bash", "shell", "console"):
                continue
            first = text.count("\n", 0, m.start()) + 2
            lines = m.group(2).splitlines()
            i = 0
            while i < len(lines):
                start = i
                cmd = lines[i].strip()
                # A line that ends in a backslash, or a synopsis whose options
                # go on in an indented line, continues.
                while i + 1 < len(lines) and (cmd.endswith("\\") or re.match(r"\s+[\[-]", lines[i + 1])):
                    i += 1
                    cmd = cmd.rstrip("\\") + " " + lines[i].strip()
                i += 1
                cmd = re.sub(r"^\$ ", "", cmd)
                if cmd.startswith("otarig "):
                    yield pytest.param(cmd, id=f"{doc.relative_to(SRC)}:{first + start}")


YAML_BLOCKS = list(blocks(lambda lang: lang in ("yaml", "yml")))
COMMANDS = list(command_lines())


def test_the_docs_have_examples_to_check():
    assert len(YAML_BLOCKS) >= 10 and len(COMMANDS) >= 15, (len(YAML_BLOCKS), len(COMMANDS))


@pytest.mark.parametrize("text", YAML_BLOCKS)
def test_yaml_block_parses(text):
    list(yaml.safe_load_all(text))


@lru_cache(maxsize=None)
def help_of(path):
    p = subprocess.run([BIN, *path, "--help"], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def subcommands_in(text):
    """The subcommands a --help text lists (CLI11: a "Subcommands:" section)."""
    parts = re.split(r"^subcommands:\s*$", text, flags=re.M | re.I)
    return set(re.findall(r"^\s+(\w+)\s", parts[1], re.M)) if len(parts) > 1 else set()


def subcommands():
    code, text = help_of(())
    assert code == 0, text
    return subcommands_in(text)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_line_names_a_subcommand_and_options_otarig_has(cmd):
    words = shlex.split(cmd, comments=True)[1:]
    assert words and words[0] in subcommands(), f"otarig has no subcommand '{words[0] if words else ''}'"
    path = [words[0]]
    code, text = help_of(tuple(path))
    # A second word that is a subcommand of the first (image build, report verify).
    if len(words) > 1 and words[1] in subcommands_in(text):
        path.append(words[1])
        code, text = help_of(tuple(path))
    assert code == 0, text
    for word in words[len(path):]:
        for option in re.findall(r"(?:^|[\[|])(--?[A-Za-z][\w-]*)", word):
            assert re.search(rf"(^|[\s,]){re.escape(option)}\b", text, re.M), \
                f"`otarig {' '.join(path)}` has no option {option}:\n{text}"


def test_the_compliance_doc_lists_the_catalog_as_the_rig_reads_it():
    """docs/compliance.md's requirement table is compliance/catalog.yaml's."""
    catalog = yaml.safe_load((SRC / "compliance/catalog.yaml").read_text())
    text = (SRC / "docs/compliance.md").read_text()
    assert f"version {catalog['version']}" in text
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("id", "---"):
            rows[cells[0]] = cells
    assert list(rows) == [r["id"] for r in catalog["requirements"]]
    for r in catalog["requirements"]:
        need = "the whole bundle" if r.get("whole_bundle") else ", ".join(r["classes"])
        assert rows[r["id"]][1:] == [r["summary"], need, r["source"]], r["id"]
