"""Every pdgan-* command lives in pdgan_infer.cli (the runtime's) or pdgan_train.cli (train, eval, edit);
[project.scripts] points there, and the old entry points (pdgan_infer.generate.main, pdgan_infer.export.cli.main,
pdgan_infer.serve.cli.main, pdgan_infer.bench.main, pdgan_train.cli.main, pdgan_train.eval.main,
pdgan_train.edit.main) still resolve for one release, with a DeprecationWarning."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"pdgan-generate": "pdgan_infer.cli.generate", "pdgan-export": "pdgan_infer.cli.export",
            "pdgan-bench": "pdgan_infer.cli.bench", "pdgan-serve": "pdgan_infer.cli.serve",
            "pdgan-train": "pdgan_train.cli.train", "pdgan-eval": "pdgan_train.cli.eval",
            "pdgan-edit": "pdgan_train.cli.edit",
            "pdgan-convert": "pdgan_infer.cli.convert"}


def test_every_script_points_at_a_cli_module():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for script, module in COMMANDS.items():
        assert scripts[script] == f"{module}:main"
        assert callable(importlib.import_module(module).main)


def test_old_entry_points_resolve_to_the_new_ones():
    from pdgan_infer import bench, generate
    from pdgan_infer.cli import bench as bench_cli
    from pdgan_infer.cli import export as export_cli
    from pdgan_infer.cli import generate as generate_cli
    from pdgan_infer.cli import serve as serve_cli

    with pytest.warns(DeprecationWarning, match="pdgan_infer.cli.generate"):
        assert generate.main is generate_cli.main and generate.build_parser is generate_cli.build_parser
    with pytest.warns(DeprecationWarning, match="pdgan_infer.cli.bench"):
        assert bench.main is bench_cli.main and bench.parser is bench_cli.parser
    with pytest.warns(DeprecationWarning, match="pdgan_infer.cli.export"):
        from pdgan_infer.export.cli import main, parser
    assert main is export_cli.main and parser is export_cli.parser
    with pytest.warns(DeprecationWarning, match="pdgan_infer.cli.serve"):
        from pdgan_infer.serve.cli import build_parser, main
    assert main is serve_cli.main and build_parser is serve_cli.build_parser
    from pdgan_train.cli import edit as edit_cli
    from pdgan_train.cli import eval as eval_cli
    from pdgan_train.cli import train as train_cli
    for old, new in (("pdgan_train.cli", train_cli), ("pdgan_train.eval", eval_cli), ("pdgan_train.edit", edit_cli)):
        with pytest.warns(DeprecationWarning, match=new.__name__):
            assert importlib.import_module(old).main is new.main


@pytest.mark.parametrize("module", ["pdgan_infer.cli.bench", "pdgan_infer.bench", "pdgan_infer.cli.generate",
                                    "pdgan_infer.generate", "pdgan_infer.cli.export", "pdgan_infer.export.cli",
                                    "pdgan_infer.cli.serve", "pdgan_infer.serve.cli", "pdgan_infer.cli.convert",
                                    "pdgan_train", "pdgan_train.cli.train", "pdgan_train.cli.eval", "pdgan_train.eval",
                                    "pdgan_train.cli.edit", "pdgan_train.edit"])
def test_python_dash_m_runs_the_command(module):
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "(pdgan)" in proc.stdout, proc.stderr
