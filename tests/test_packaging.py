"""The distribution maps hw/ sim/ dataflow/ models/ under the trainforge namespace, and only there."""

from __future__ import annotations

import importlib
import itertools
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]


def test_every_source_package_is_listed_for_installation():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed


def test_subpackages_import_under_trainforge_only(tmp_path):
    for name in ("trainforge.hw", "trainforge.sim", "trainforge.dataflow", "trainforge.models"):
        module = importlib.import_module(name)
        assert Path(module.__file__).parent == ROOT / PACKAGE_DIR[name]
    # In a fresh interpreter outside the repository, the bare names must not resolve to ours.
    probe = (
        "import importlib.util, json; "
        "print(json.dumps({n: getattr(importlib.util.find_spec(n), 'origin', None) "
        "for n in ('hw', 'sim', 'dataflow', 'models', 'trainforge.models')}))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    origins = json.loads(proc.stdout)
    for bare in ("hw", "sim", "dataflow", "models"):
        assert origins[bare] is None or not origins[bare].startswith(str(ROOT)), origins
    assert origins["trainforge.models"] == str(ROOT / "models" / "__init__.py")


def test_every_dependency_says_why():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    for previous, line in itertools.pairwise(lines):
        if line.startswith('"'):
            assert previous.startswith("#"), f"dependency {line} has no comment saying why"


def test_test_module_basenames_are_unique():
    # tests/ folders have no __init__.py, so pytest imports test modules by basename
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
