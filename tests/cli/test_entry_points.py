"""Every pdgan-* command of the runtime lives in pdgan_infer.cli; [project.scripts] points there, and the old
entry points (pdgan_infer.generate.main, pdgan_infer.export.cli.main, pdgan_infer.serve.cli.main,
pdgan_infer.bench.main) still resolve for one release."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = {"pdgan-generate": "generate", "pdgan-export": "export", "pdgan-bench": "bench", "pdgan-serve": "serve",
           "pdgan-convert": "convert"}


def test_the_runtime_scripts_point_at_pdgan_infer_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for script, name in RUNTIME.items():
        assert scripts[script] == f"pdgan_infer.cli.{name}:main"
        module, _, attr = scripts[script].partition(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_old_entry_points_resolve_to_the_new_ones():
    from pdgan_infer import bench, generate
    from pdgan_infer.cli import bench as bench_cli
    from pdgan_infer.cli import export as export_cli
    from pdgan_infer.cli import generate as generate_cli
    from pdgan_infer.cli import serve as serve_cli

    assert generate.main is generate_cli.main and generate.build_parser is generate_cli.build_parser
    assert bench.main is bench_cli.main and bench.parser is bench_cli.parser
    with pytest.warns(DeprecationWarning, match="pdgan_infer.cli.export"):
        from pdgan_infer.export.cli import main, parser
    assert main is export_cli.main and parser is export_cli.parser
    with pytest.warns(DeprecationWarning, match="pdgan_infer.cli.serve"):
        from pdgan_infer.serve.cli import build_parser, main
    assert main is serve_cli.main and build_parser is serve_cli.build_parser


@pytest.mark.parametrize("module", ["pdgan_infer.cli.bench", "pdgan_infer.bench", "pdgan_infer.cli.generate",
                                    "pdgan_infer.generate", "pdgan_infer.cli.export", "pdgan_infer.export.cli",
                                    "pdgan_infer.cli.serve", "pdgan_infer.serve.cli", "pdgan_infer.cli.convert"])
def test_python_dash_m_runs_the_command(module):
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "(pdgan)" in proc.stdout, proc.stderr
