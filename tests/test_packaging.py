"""Packaging: the wheel holds the one import package `sprig` (no top-level api/, eval/, kernels/ ... or tests/),
ships its non-Python files, declares the `sprig` command, and nothing in the repository root shadows a PyPI
package (a top-level kernels/ folder once hid Hugging Face's `kernels` from transformers)."""
from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Not copied into the build folder: environments, caches, build outputs, data (none of them is packaged).
NOT_SOURCE = {".git", ".venv", ".cache", ".benchmarks", ".pytest_cache", ".ruff_cache", ".whl", ".device",
              "build", "dist", "indexes", "runs"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel that `pip install .` would build, from a copy of the repository (so that setuptools' build/
    and egg-info folders land in a temporary folder, not in the working tree)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("build backend setuptools is not installed (pip install -e '.[dev]')")
    tmp = tmp_path_factory.mktemp("wheel")
    src, out = tmp / "src", tmp / "dist"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [
        n for n in names
        if n == "__pycache__" or n.endswith(".egg-info") or (Path(d) == ROOT and n in NOT_SOURCE)
    ])
    build = ("from setuptools import build_meta as b; import sys; "
             "print(b.build_wheel(sys.argv[1]))")  # what pip runs, without its resolver and isolation
    run = subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    with zipfile.ZipFile(out / run.stdout.strip().splitlines()[-1]) as whl:
        yield whl


def test_wheel_holds_only_the_sprig_package(wheel):
    top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1 and next(iter(dist_info)).startswith("sprig-"), top
    assert top - dist_info == {"sprig"}, f"unexpected top-level names in the wheel: {sorted(top - dist_info - {'sprig'})}"
    names = set(wheel.namelist())
    for module in ["sprig/api/cli.py", "sprig/kernels/sparse_decode.py", "sprig/eval/bench/peers/__init__.py"]:
        assert module in names
    assert not any(n.startswith("sprig/tests/") or "/__pycache__/" in n for n in names)


def test_wheel_ships_package_data(wheel):
    """Every non-Python file under sprig/ in the repository is in the wheel (e.g. eval/bench/peers_setup.sh)."""
    data = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sprig").rglob("*")
            if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts}
    assert "sprig/eval/bench/peers_setup.sh" in data
    assert data <= set(wheel.namelist()), sorted(data - set(wheel.namelist()))


def test_wheel_declares_the_sprig_command(wheel):
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    assert parser["console_scripts"]["sprig"].strip() == "sprig.api.cli:main"


def test_repository_root_shadows_no_installed_package():
    """`python -c` puts the current folder first on sys.path: from the repository root, transformers' hub-kernels
    integration must still import (it does `from kernels import ...` when a `kernels` module is found)."""
    probe = ("import importlib.util, transformers.integrations.hub_kernels; "
             "s = importlib.util.find_spec('kernels'); "
             "print(s and (s.origin or list(s.submodule_search_locations)))")
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(ROOT / "kernels") not in run.stdout, f"`kernels` resolves into the repository: {run.stdout}"
