"""Every command line tool on bad input: exit status 1 and one line on stderr for bad input or a failed
run, 2 for a wrong command line, never a traceback (without -v), and no output that lands on its input.

The mains run in-process (a handful through a subprocess, to see what a shell sees). The checkpoints are
a tiny digits model and damaged copies of it, built in a temporary folder: wrong JSON types, a list
where a mapping belongs, a folder where the JSON belongs, truncated weights, deep nesting."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import tiny_config  # tests/support is on sys.path: a shrunken digits model

from pdgan_infer import PDGAN, bench, save_checkpoint
from pdgan_infer.cli import bench as bench_cli
from pdgan_infer.cli import export as export_cli
from pdgan_infer.cli import generate as gen
from pdgan_train import edit
from pdgan_train.cli import edit as edit_cli
from pdgan_train.cli import eval as eval_cli
from pdgan_train.cli import train as train_cli

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")]

MAINS = {"pdgan-export": export_cli.main, "pdgan-eval": eval_cli.main, "pdgan-edit": edit_cli.main,
         "pdgan-bench": bench_cli.main, "pdgan-generate": gen.main, "pdgan-train": train_cli.main}


def _set(path: list, value):
    """A function that sets header[path...] = value."""
    def edit_header(h: dict) -> None:
        d = h
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit_header


# name -> how the JSON sidecar is damaged (the weights stay intact, so their sha256 still matches)
BAD_JSON = {
    "config-list": _set(["config"], [1, 2]),
    "config-str": _set(["config"], "digits"),
    "generator-list": _set(["config", "generator"], [16]),
    "nf-str": _set(["config", "generator", "nf"], "16"),
    "nf-float": _set(["config", "generator", "nf"], 16.5),
    "resolution-str": _set(["config", "resolution"], "32"),
    "preset-list": _set(["config", "preset"], ["digits"]),
    "meta-str": _set(["meta"], "x"),
    "nz-negative": _set(["config", "generator", "nz"], -5),
    "T-zero": _set(["config", "schedule", "T"], 0),
    "schedule-kind": _set(["config", "schedule", "kind"], "evil"),
    "extra-config-key": _set(["config", "extra"], 1),
    "components-int": _set(["components"], 5),
}


def _sha(paths) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def write_damaged(folder: Path, name: str, header_json: str, tensors: dict) -> None:
    """NAME.safetensors + NAME.json whose embedded header and sidecar both hold `header_json` (no content
    digest: a checkpoint of an older pdgan, where the header is trusted as written)."""
    weights = folder / f"{name}.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt", "pdgan": header_json})
    try:
        sidecar = {**json.loads(header_json), "sha256": _sha([weights])[0]}
        (folder / f"{name}.json").write_text(json.dumps(sidecar))
    except (TypeError, RecursionError):  # not a mapping, or too deep to parse: the same text
        (folder / f"{name}.json").write_text(header_json)


@pytest.fixture(scope="module")
def ck(tmp_path_factory) -> Path:
    """A folder with good.safetensors/.json and the damaged checkpoints NAME.safetensors/.json."""
    folder = tmp_path_factory.mktemp("cli_errors")
    torch.manual_seed(0)
    save_checkpoint(PDGAN(tiny_config()), folder / "good")
    good_w, good_j = folder / "good.safetensors", folder / "good.json"
    tensors = load_file(str(good_w))
    good_header = {k: v for k, v in json.loads(good_j.read_text()).items() if k not in ("sha256", "content_sha256")}
    for name, damage in BAD_JSON.items():
        header = json.loads(json.dumps(good_header))
        damage(header)
        write_damaged(folder, name, json.dumps(header), tensors)
    write_damaged(folder, "json-deep", "[" * 100_000 + "]" * 100_000, tensors)  # past the recursion limit
    save_file(tensors, str(folder / "json-folder.safetensors"), metadata={"format": "pt"})  # no embedded header
    (folder / "json-folder.json").mkdir()  # and the sidecar path is a folder
    data = good_w.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[:len(data) // 2])  # no sidecar: header check
    shutil.copy(good_j, folder / "truncated-sha.json")
    (folder / "truncated-sha.safetensors").write_bytes(data[:len(data) // 2])  # sidecar: sha256 check
    return folder


BAD_CHECKPOINTS = [*BAD_JSON, "json-folder", "json-deep", "truncated", "truncated-sha"]


def run(prog: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the tool's main(argv), run in this process."""
    capsys.readouterr()
    try:
        code = MAINS[prog](list(map(str, argv)))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_fails(prog: str, argv: list, capsys, code: int = 1, match: str | None = None) -> str:
    """The tool exits with `code`, one line on stderr ('PROG...: error: ...'), no traceback."""
    got, _, err = run(prog, argv, capsys)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and "Traceback" not in err, (got, err)
    assert lines[0].startswith(prog) and ": error: " in lines[0], err
    if match is not None:
        assert match in lines[0], err
    return lines[0]


def loader_argv(prog: str, checkpoint: Path, tmp: Path) -> list:
    """The cheapest command of each tool that loads `checkpoint`."""
    return {
        "pdgan-export": [checkpoint, "--out", tmp / "x.onnx", "--no-verify", "-q"],
        "pdgan-eval": [checkpoint, "--data", "digits", "--n", "2", "--metrics", "interp", "--interp-pairs", "1",
                       "--interp-steps", "3", "--device", "cpu", "-q"],
        "pdgan-edit": [checkpoint, "reconstruct", "--data", "digits", "--n", "1", "--out", tmp / "e.png",
                       "--device", "cpu", "-q"],
        "pdgan-bench": ["--checkpoint", checkpoint, "--backends", "torch", "--n", "1", "--repeats", "1",
                        "--device", "cpu", "--no-isolate", "-q"],
        "pdgan-generate": [checkpoint, "--seeds", "0", "--outdir", tmp / "g", "--backend", "torch", "--device",
                           "cpu", "-q"],
    }[prog]


LOADERS = ["pdgan-export", "pdgan-eval", "pdgan-edit", "pdgan-bench", "pdgan-generate"]


# Every damage through one tool, a sample of them (a raw JSON type error, a folder, deep nesting, truncated
# weights) through every tool: the loader's own tests cover each damage, these that the tools report it.
DAMAGE_MATRIX = ([("pdgan-edit", name) for name in BAD_CHECKPOINTS]
                 + [(prog, name) for prog in LOADERS if prog != "pdgan-edit"
                    for name in ("config-list", "nf-str", "json-folder", "json-deep", "truncated-sha")])


@pytest.mark.parametrize("prog, name", DAMAGE_MATRIX)
def test_damaged_checkpoint_is_one_line_exit_1(ck, tmp_path, capsys, prog, name):
    assert_fails(prog, loader_argv(prog, ck / f"{name}.safetensors", tmp_path), capsys)
    assert not any(tmp_path.iterdir()), "nothing is written for a checkpoint that does not load"


# --- outputs never land on the input ---------------------------------------------------------------
@pytest.fixture
def victim(ck, tmp_path) -> Path:
    """A copy of the good checkpoint (tmp/model.safetensors + model.json) that a command must not touch."""
    shutil.copy(ck / "good.safetensors", tmp_path / "model.safetensors")
    shutil.copy(ck / "good.json", tmp_path / "model.json")
    return tmp_path / "model.safetensors"


def _out_on_input(prog: str, ckpt: str, target: Path, tmp: Path) -> list:
    """argv of `prog` reading checkpoint `ckpt` (file or folder) and writing its output to `target`."""
    return {
        "export": ["pdgan-export", ckpt, "--out", target, "--no-verify", "-q"],
        "edit": ["pdgan-edit", ckpt, "vary", "--which", "z", "--n", "1", "--rows", "1", "--out", target,
                 "--device", "cpu", "-q"],
        "eval-json": ["pdgan-eval", ckpt, "--data", "digits", "--n", "2", "--metrics", "interp",
                      "--interp-pairs", "1", "--interp-steps", "3", "--device", "cpu", "-q", "--json", target],
        "eval-save-ref": ["pdgan-eval", ckpt, "--data", "digits", "--metrics", "none", "--device", "cpu", "-q",
                          "--save-ref", target],
        "bench-json": ["pdgan-bench", "--checkpoint", ckpt, "--backends", "torch", "--n", "1", "--repeats", "1",
                       "--device", "cpu", "--no-isolate", "-q", "--json", target],
        "bench-png": ["pdgan-bench", "--checkpoint", ckpt, "--backends", "torch", "--n", "1", "--repeats", "1",
                      "--device", "cpu", "--no-isolate", "-q", "--png", target],
    }[prog]


OUTPUT_FLAGS = ["export", "edit", "eval-json", "eval-save-ref", "bench-json", "bench-png"]


@pytest.mark.parametrize("flag", OUTPUT_FLAGS)
@pytest.mark.parametrize("target", ["model.safetensors", "model.json", "link-to-model.json"])
@pytest.mark.parametrize("given_as", ["file", "folder"])
def test_output_on_the_input_checkpoint_is_refused(victim, tmp_path, capsys, flag, target, given_as):
    if flag == "bench-png":
        pytest.importorskip("matplotlib")
    (tmp_path / "link-to-model.json").symlink_to(tmp_path / "model.json")
    files = [tmp_path / "model.safetensors", tmp_path / "model.json"]
    before = _sha(files)
    ckpt = victim if given_as == "file" else tmp_path
    prog, *argv = _out_on_input(flag, ckpt, tmp_path / target, tmp_path)
    line = assert_fails(prog, argv, capsys)
    assert "input" in line, line
    assert _sha(files) == before


@pytest.mark.parametrize("flag", OUTPUT_FLAGS)
def test_output_that_is_a_folder_is_refused_before_the_work(victim, tmp_path, capsys, monkeypatch, flag):
    if flag == "bench-png":
        pytest.importorskip("matplotlib")

    def work_started(*a, **k):
        raise AssertionError("the work started before the output was checked")

    for module, name in ((bench, "run"), (eval_cli, "evaluate"), (edit_cli, "load_checkpoint"),
                         (export_cli, "load_model")):
        monkeypatch.setattr(module, name, work_started)
    (tmp_path / "folder").mkdir()
    prog, *argv = _out_on_input(flag, victim, tmp_path / "folder", tmp_path)
    assert_fails(prog, argv, capsys, match="folder")
    # and an output below a file (a path that can never be created)
    prog, *argv = _out_on_input(flag, victim, tmp_path / "model.json" / "x.out", tmp_path)
    assert_fails(prog, argv, capsys, match="not a folder")


@pytest.mark.parametrize("flag", OUTPUT_FLAGS)
def test_a_users_file_is_replaced_only_with_overwrite(victim, tmp_path, capsys, monkeypatch, flag):
    """An existing output that pdgan did not write (no record in its folder's .pdgan-files) is refused before
    the work; --overwrite lets the command start; a model folder is an input nothing is written into."""
    if flag == "bench-png":
        pytest.importorskip("matplotlib")

    class Started(Exception):
        pass

    def work_started(*a, **k):
        raise Started

    for module, name in ((bench, "run"), (eval_cli, "evaluate"), (edit_cli, "load_checkpoint"),
                         (export_cli, "load_model")):
        monkeypatch.setattr(module, name, work_started)
    user = tmp_path / "out" / "mine.out"
    user.parent.mkdir()
    user.write_text("the user's file")
    prog, *argv = _out_on_input(flag, victim, user, tmp_path)
    assert_fails(prog, argv, capsys, match="mine.out exists and was not written by pdgan; give --overwrite")
    assert user.read_text() == "the user's file"
    assert_fails(prog, [*argv, "--overwrite"], capsys, match="unexpected Started")  # the work started
    prog, *argv = _out_on_input(flag, tmp_path, tmp_path / "sub" / "x.out", tmp_path)  # inside the model folder
    assert_fails(prog, argv, capsys, match="is inside the input")


def test_eval_bad_paths_fail_before_the_work(victim, tmp_path, capsys, monkeypatch):
    def work_started(*a, **k):
        raise AssertionError("the work started before the arguments were checked")

    monkeypatch.setattr(eval_cli, "evaluate", work_started)
    (tmp_path / "afile").write_text("x")
    base = [victim, "--data", "digits", "--n", "2", "--metrics", "digits", "-q"]
    assert_fails("pdgan-eval", [*base, "--save-samples", tmp_path / "afile"], capsys, match="not a folder")
    assert_fails("pdgan-eval", [*base, "--device", "tpu"], capsys, match="tpu")
    if not torch.cuda.is_available():
        assert_fails("pdgan-eval", [*base, "--device", "cuda"], capsys, match="CUDA")
    assert_fails("pdgan-eval", [*base, "--json", tmp_path / "r.json", "--save-ref", tmp_path / "r.json"], capsys,
                 match="same file")


def test_eval_data_file_is_one_line(victim, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert_fails("pdgan-eval", [victim, "--data", tmp_path / "afile", "--n", "2", "--metrics", "interp",
                                "--interp-pairs", "1", "--interp-steps", "3", "--device", "cpu", "-q"], capsys,
                 match="is a file")


@pytest.mark.parametrize("prog, argv", [
    ("pdgan-bench", ["--preset", "digits", "--device", "tpu", "-q"]),
    ("pdgan-edit", ["CKPT", "vary", "--which", "z", "--out", "OUT", "--device", "tpu", "-q"]),
    ("pdgan-generate", ["CKPT", "--seeds", "0", "--outdir", "OUT", "--device", "tpu", "-q"]),
])
def test_unknown_device_is_one_line_exit_1(victim, tmp_path, capsys, prog, argv):
    argv = [victim if a == "CKPT" else tmp_path / "o" if a == "OUT" else a for a in argv]
    assert_fails(prog, argv, capsys, match="tpu")
    assert not (tmp_path / "o").exists()


# --- numeric options: range and finiteness are usage errors (exit 2) ----------------------------------
@pytest.mark.parametrize("prog, argv, match", [
    ("pdgan-bench", ["--threads", "1000000"], "--threads"),
    ("pdgan-bench", ["--threads", "0"], "--threads"),
    ("pdgan-bench", ["--seed", "-1"], "--seed"),
    ("pdgan-bench", ["--seed", "65536"], "--seed"),
    ("pdgan-bench", ["--n", "abc"], "--n"),
    ("pdgan-bench", ["--frobnicate"], "unrecognized"),
    ("pdgan-edit", ["CKPT", "attribute", "--data", "digits", "--target", "3", "--scale", "nan", "--out", "OUT"],
     "--scale"),
    ("pdgan-edit", ["CKPT", "attribute", "--data", "digits", "--target", "3", "--scale", "inf", "--out", "OUT"],
     "--scale"),
    ("pdgan-edit", ["CKPT", "attribute", "--data", "digits", "--target", "3", "--scale", "1e308", "--out", "OUT"],
     "--scale"),
    ("pdgan-edit", ["CKPT", "attribute", "--data", "digits", "--target", "3", "--strengths", "1e308",
                    "--out", "OUT"], "--strengths"),
    ("pdgan-edit", ["CKPT", "vary", "--which", "z", "--rows", "1000000000", "--out", "OUT"], "--rows"),
    ("pdgan-edit", ["CKPT", "vary", "--which", "z", "--n", "1000000000", "--out", "OUT"], "--n"),
    ("pdgan-edit", ["CKPT", "vary", "--which", "z", "--n", "1000", "--rows", "1000", "--out", "OUT"], "images"),
    ("pdgan-edit", ["CKPT", "interpolate", "--space", "pixel", "--steps", "1000000000", "--out", "OUT"],
     "--steps"),
    ("pdgan-edit", ["CKPT", "reconstruct", "--data", "digits", "--n", "1000000000", "--out", "OUT"], "--n"),
    ("pdgan-edit", ["CKPT", "vary", "--which", "z", "--seed", "65535", "--rows", "2", "--out", "OUT"], "seed"),
    ("pdgan-edit", ["CKPT", "vary", "--which", "z", "--out", "OUT", "--frobnicate"], "unrecognized"),
    ("pdgan-eval", ["CKPT", "--data", "digits", "--n", "0"], "--n"),
    ("pdgan-eval", ["CKPT", "--data", "digits", "--seed", "-1"], "--seed"),
    ("pdgan-eval", ["CKPT", "--data", "digits", "--interp-steps", "2"], "--interp-steps"),
    ("pdgan-eval", ["CKPT", "--data", "digits", "--probe-max", "1"], "--probe-max"),
    ("pdgan-eval", ["CKPT", "--data", "digits", "--n-real", "1"], "--n-real"),
    ("pdgan-export", ["CKPT", "--out", "OUT", "--seed", "-1"], "--seed"),
    ("pdgan-export", ["--preset", "digits", "--out", "OUT", "--seed", str(2 ** 70)], "--seed"),
    ("pdgan-export", ["CKPT", "--out", "OUT", "--opt-batch", "1000000000000"], "--opt-batch"),
    ("pdgan-export", ["CKPT", "--format", "tensorrt", "--out", "OUT", "--min-batch", "8", "--max-batch", "4"],
     "batch"),
    ("pdgan-export", ["CKPT"], "--out"),
    ("pdgan-export", ["--out", "OUT"], "checkpoint"),
    ("pdgan-generate", ["CKPT", "--outdir", "OUT", "--seeds", "9-1"], "--seeds"),
    ("pdgan-generate", ["CKPT", "--outdir", "OUT", "--batch-size", "0"], "--batch-size"),
    ("pdgan-generate", ["CKPT", "--outdir", "OUT", "--seeds", "0-4294967295"], "--seeds"),
    ("pdgan-generate", ["CKPT", "--outdir", "OUT", "--seeds", "1_0"], "--seeds"),
    ("pdgan-generate", ["CKPT", "--outdir", "OUT", "--seeds", "+5"], "--seeds"),
    ("pdgan-generate", ["CKPT", "--outdir", "OUT", "--seeds", "\u0661\u0662"], "--seeds"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v if v.startswith("pdgan") else None)
def test_bad_option_values_are_usage_errors(victim, tmp_path, capsys, prog, argv, match):
    argv = [victim if a == "CKPT" else tmp_path / "o" if a == "OUT" else a for a in argv]
    assert_fails(prog, argv, capsys, code=2, match=match)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["+5", "1_0", "\u0664", "\uff15", "5.0", "0x5", "", "1 2"])
def test_integer_options_take_ascii_digits_only(text):
    """int() takes '+5', '1_0' and digits of other scripts; the option types do not."""
    import argparse

    from pdgan_infer._cli import int_range
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected an integer \(ASCII digits\)"):
        int_range(0, 100)(text)
    assert int_range(-5, 100)(" -5 ") == -5 and int_range(0)("0042") == 42


def test_edit_scale_must_be_finite_even_through_the_api(victim):
    """`--scale nan` wrote black frames with exit 0: the API refuses it too."""
    import numpy as np

    from pdgan_infer import load_checkpoint

    model = load_checkpoint(victim)
    d = np.eye(16)[0]
    direction = edit.AttributeDirection(target=0, direction=d, mean=np.zeros(16), std=np.ones(16), proj_std=1.0,
                                        accuracy=1.0, baseline=0.5, n_train=8, n_test=2)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(edit.EditError, match="finite"):
            edit.manipulate(model, torch.zeros(3, 32, 32), direction, [1.0], bad)


# --- pdgan-bench: a requested backend that fails is a failed run -------------------------------------
@pytest.mark.parametrize("argv, match", [
    (["--backends", "torch", "--dtype", "float16"], "float16"),
])
def test_bench_failed_backend_exits_1(victim, tmp_path, capsys, argv, match):
    if "float16" in argv and torch.cuda.is_available():
        pytest.skip("float16 runs on a GPU")
    out = tmp_path / "b.json"
    code, _, err = run("pdgan-bench", ["--checkpoint", victim, "--n", "1", "--repeats", "1", "--device", "cpu",
                                       "--no-isolate", "-q", "--json", out, *argv], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err and lines and match in lines[-1], (code, err)
    assert lines[-1].startswith("pdgan-bench: error:"), err
    assert json.loads(out.read_text())["records"], "the results are still written"


def test_bench_unknown_backend_exits_1_before_any_timing(victim, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert_fails("pdgan-bench", ["--checkpoint", victim, "--n", "1", "--repeats", "1", "--device", "cpu",
                                 "--no-isolate", "-q", "--json", out, "--backends", "foo"], capsys,
                 match="unknown backend 'foo'; choose from torch")
    assert not out.exists()  # nothing was timed


# --- pdgan-train: its command line (the training loop is not run) --------------------------------------
@pytest.mark.parametrize("argv, match", [
    (["--preset", "digits", "--data", "digits", "--dry-run", "--frobnicate"], "unrecognized"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--max-steps", "abc"], "--max-steps"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--amp", "fp8"], "--amp"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--ablation", "nope"], "--ablation"),
])
def test_train_usage_errors(capsys, argv, match):
    code, _, err = run("pdgan-train", argv, capsys)
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("pdgan-train: error:") and match in err, err


@pytest.mark.parametrize("argv, match", [
    (["--preset", "digits", "--data", "digits", "--dry-run", "--lr-d", "nan"], "lr"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--lr-g", "inf"], "lr"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--r1-gamma", "-1"], "r1"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--seed", str(2 ** 64)], "seed"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--num-workers", "1000000"], "num"),
    (["--preset", "digits", "--data", "digits", "--dry-run", "--max-steps", "0"], "max_steps"),
    (["--preset", "nope", "--data", "digits", "--dry-run"], "preset"),
    ([], "--preset"),
])
def test_train_bad_values_fail_without_a_traceback(capsys, argv, match):
    """pdgan-train's values (its config owns the checks): non-zero exit, one line, no traceback."""
    code, _, err = run("pdgan-train", argv, capsys)
    lines = err.strip().splitlines()
    assert code in (1, 2) and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert lines[0].startswith("pdgan-train") and match in lines[0], err


# --- -v shows the traceback; a shell sees the same as the in-process calls -------------------------------
def test_verbose_shows_the_traceback(ck, tmp_path, capsys):
    argv = loader_argv("pdgan-export", ck / "config-list.safetensors", tmp_path)
    code, _, err = run("pdgan-export", [a for a in argv if a != "-q"] + ["-v"], capsys)
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("pdgan-export: error:")


def test_unexpected_exception_is_one_line_and_names_the_bug(capsys):
    from pdgan_infer._cli import run_cli

    class Args:
        quiet = verbose = False

    def bug():
        raise KeyError("x")

    assert run_cli("pdgan-x", Args(), bug) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "KeyError" in err and "-v" in err


@pytest.mark.parametrize("cmd, code", [
    (["pdgan_infer.cli.export", "CKPT", "--out", "OUT", "--no-verify"], 1),
    (["pdgan_train.edit", "CKPT", "vary", "--which", "z", "--out", "OUT", "--scale", "1"], 2),
])
def test_subprocess_exit_status_and_one_line(ck, tmp_path, cmd, code):
    """What a shell sees: the damaged checkpoint 'config-list' (a list where the config mapping belongs)."""
    argv = [str(ck / "config-list.safetensors") if a == "CKPT" else str(tmp_path / "o") if a == "OUT" else a
            for a in cmd]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=300, env=env,
                          check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("rank, quiet, shown", [(None, False, ["info", "warning"]), ("0", False, ["info", "warning"]),
                                                ("1", False, ["warning"]), ("3", False, ["warning"]),
                                                (None, True, ["warning"])])
def test_only_rank_0_logs_info_and_quiet_leaves_warnings(monkeypatch, capsys, rank, quiet, shown):
    """run_cli's stderr handler: INFO on rank 0 (or without torchrun), warnings and errors only on the other
    torchrun ranks and with -q."""
    import logging

    from pdgan_infer._cli import run_cli

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)

    class Args:
        verbose = False

    Args.quiet = quiet

    def body():
        logging.getLogger("pdgan.x").info("info")
        logging.getLogger("pdgan.x").warning("warning")

    assert run_cli("pdgan-x", Args(), body) == 0
    assert capsys.readouterr().err.splitlines() == [f"pdgan-x: {m}" for m in shown]
