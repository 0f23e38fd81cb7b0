"""Packaging: vidlang works from a normal (non-editable) wheel install, and imports point one way only."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_vidlang_never_imports_preprocessing():
    """preprocessing/ may use vidlang's io, errors, readers and store layout; vidlang reads stores through its own
    FeatureStore and never imports preprocessing (`vidlang preprocess` is dispatched by name in vidlang/cli.py)."""
    offenders = []
    for path in sorted((REPO / "vidlang").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                          if n == "preprocessing" or n.startswith("preprocessing.")]
    assert not offenders, offenders


def test_wheel_installs_and_reads_its_packaged_configs(tmp_path):
    """Build the wheel, install it (no dependencies) into a fresh venv that sees the already-installed
    dependencies, and run commands that read configs from inside the installed package, away from the sources."""
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, env=env, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("vidlang-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, env=env,
                   capture_output=True, timeout=300)
    # the dependencies of the project venv, as a plain path entry: its .pth files (among them the editable
    # install's finder) are not processed, so `import vidlang` finds the wheel
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    where = subprocess.run([str(py), "-c", "import vidlang; print(vidlang.__file__)"], check=True, **run)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    vidlang_bin = str(venv / "bin" / "vidlang")
    shown = subprocess.run([vidlang_bin, "show-config", "--config", "norton/demo_cpu"], **run)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "arch: dual_encoder" in shown.stdout and "objective: norton" in shown.stdout
    helped = subprocess.run([vidlang_bin, "demo", "--help"], **run)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "eval/synthetic.yaml  (vidlang eval all --config configs/eval/synthetic.yaml" in helped.stdout
    assert "MISSING" not in helped.stdout
