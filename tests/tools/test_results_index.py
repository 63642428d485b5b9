"""benchmarks/results_index.py: the results files follow DATE-MACHINE-EXPERIMENT.EXT and INDEX.md is current;
every relative link in README.md and docs/*.md points at a file of the repository."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import results_index  # noqa: E402


def test_check_passes_on_the_repository():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_index.py"), "--check"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("name", [
    "2026-11-30-xeon-amx-cpu-bench-cifar10.json",
    "2026-11-30-xeon-no-amx-emulated-cpu-bench-cifar10.json",
    "2026-12-01-h100-gpu-check.md",
    "2026-11-29-xeon-amx-train-step-profile.txt",
])
def test_names_that_follow_the_scheme(name):
    assert results_index.name_problem(name) is None


@pytest.mark.parametrize("name", [
    "engine_cpu_cifar10_1threads_2026-11-26.json",          # date last
    "memory_2026-11-26.json",
    "2026-11-30-cpu-bench-cifar10-amx.json",                 # no machine after the date
    "2026-11-30-serve-digits-Intel-R-Xeon-R-Processor.json",
    "2026-11-30-laptop-cpu-bench.json",                      # unknown machine
    "2026-11-30-xeon-amx-CPU-bench.json",                    # upper case
    "2026-11-30-xeon-amx-cpu_bench.json",                    # underscore
    "2026-11-30-xeon-amx-.json",                             # no experiment
    "2026-11-30-xeon-amx-cpu-bench.pt",                      # extension
    "2026-13-01-xeon-amx-cpu-bench.json",                    # not a date
    "gpu-check.json",
])
def test_names_that_break_the_scheme(name):
    assert results_index.name_problem(name)


def test_check_fails_on_a_stale_index_or_a_bad_name(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    name = "2026-11-30-xeon-amx-cpu-bench-cifar10.json"
    (results / name).write_text('{"header": {"git_commit": "1d6da57c5617"}}')
    (tmp_path / "README.md").write_text(f"see benchmarks/results/{name}\n")
    monkeypatch.setattr(results_index, "ROOT", tmp_path)
    monkeypatch.setattr(results_index, "RESULTS", results)
    monkeypatch.setattr(results_index, "WHAT", {name: "a run"})
    assert results_index.main(["--check"]) == 1  # no INDEX.md yet
    assert results_index.main([]) == 0
    text = (results / "INDEX.md").read_text()
    assert "| 2026-11-30 | xeon-amx | cpu-bench-cifar10 | 1d6da57 | a run | [README.md](../../README.md) |" in text
    assert results_index.main(["--check"]) == 0
    (results / "memory_2026-11-26.json").write_text("{}")
    assert results_index.main(["--check"]) == 1


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _relative_links(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_relative_links_in_readme_and_docs_resolve():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md",
            ROOT / "benchmarks" / "results" / "INDEX.md"]
    broken = [f"{doc.relative_to(ROOT)}: {target}" for doc in docs for target in _relative_links(doc)
              if not (doc.parent / target.split("#")[0]).exists()
              or not (doc.parent / target).resolve().is_relative_to(ROOT)]
    assert not broken, broken
