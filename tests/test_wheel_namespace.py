"""The built wheel installs one top-level package, `csvr`, and lives next to a package named `evaluate`.

Builds the wheel from this checkout (no network: setuptools is taken from the running venv), installs it with
no dependencies into a fresh venv that also holds a stand-in `evaluate` package (Hugging Face's name), and
imports both there. The fresh venv sees the running venv's dependencies through a path entry, never this
checkout or its editable install.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("data_manifests", "preprocess", "train", "evaluate", "benchmarks")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy of the sources: setuptools writes build/ and *.egg-info next to them
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "csvr", *STAGES):
        f = REPO / name
        if f.is_dir():
            shutil.copytree(f, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(f, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(src)], check=True, cwd=out)
    (path,) = out.glob("csvr-*.whl")
    return path


def test_wheel_has_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"csvr"}, tops
    for stage in STAGES:
        assert f"csvr/{stage}/__init__.py" in names, stage
    # every package folder of the checkout is in the wheel (the explicit list in pyproject.toml is complete)
    for init in REPO.glob("*/**/__init__.py"):
        rel = init.relative_to(REPO).as_posix()
        if rel.split("/")[0] in STAGES:
            assert f"csvr/{rel}" in names, f"{rel} is missing from [tool.setuptools] packages"


def test_wheel_imports_next_to_a_package_named_evaluate(wheel, tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "evaluate").mkdir()
    (site / "evaluate" / "__init__.py").write_text('NAME = "the other evaluate"\n')
    # the running venv's dependencies (torch, zarr, ...) as a plain path entry: its .pth files, among them the
    # editable install of this checkout, are not processed
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    probe = (
        "import json, evaluate, csvr.evaluate.metrics, csvr.train.data, csvr.preprocess.store, "
        "csvr.data_manifests, csvr.cli\n"
        "print(json.dumps({'other': evaluate.NAME, 'ours': csvr.evaluate.metrics.__file__, "
        "'top': [m for m in ('train', 'preprocess', 'data_manifests') if __import__('importlib.util').util.find_spec(m)]}))"
    )
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["other"] == "the other evaluate"
    assert got["ours"].startswith(str(site / "csvr" / "evaluate"))
    assert got["top"] == []  # no generic top-level names come with csvr
