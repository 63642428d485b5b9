"""pdgan_train.eval: end to end on a tiny random-weights digits checkpoint with stub TorchScript
Inception/VGG16 networks (same call conventions, tiny weights), the error paths, and the pieces
(step ratios, digits scores, batch-size independence of the samples)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pdgan_infer import PDGAN, save_checkpoint
from pdgan_train import eval as ev
from pdgan_train import feature_nets
from pdgan_train.cli import eval as eval_cli
from pdgan_train.feature_nets import FeatureNetError

# torch 2.13 deprecates TorchScript, but the field's metric networks are TorchScript files.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


class StubInception(torch.nn.Module):
    """inception-2015-12-05.pt's call convention with `dim` features (2048 for the real one)."""

    def __init__(self, dim: int = 2048):
        super().__init__()
        self.proj = torch.nn.Linear(3, dim)
        self.output = torch.nn.Linear(dim, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        f = torch.relu(self.proj(F.adaptive_avg_pool2d(img.to(torch.float32) / 255.0, 1).flatten(1)))
        if return_features:
            return f
        logits = F.linear(f, self.output.weight) if no_output_bias else self.output(f)
        return torch.softmax(logits, dim=1)


class StubVGG16(torch.nn.Module):
    """StyleGAN2-ADA vgg16.pt's call convention with `dim` features (4096 for the real one)."""

    def __init__(self, dim: int = 4096):
        super().__init__()
        self.fc = torch.nn.Linear(48, dim)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        f = torch.relu(self.fc(F.adaptive_avg_pool2d(img.to(torch.float32) / 255.0, 4).flatten(1)))
        return f if return_features else f[:, :2]


SMALL_DIMS = {"inception": 16, "vgg16": 24}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(StubInception(SMALL_DIMS["inception"])), str(folder / "inception.pt"))
    torch.jit.save(torch.jit.script(StubVGG16(SMALL_DIMS["vgg16"])), str(folder / "vgg16.pt"))
    torch.jit.save(torch.jit.script(StubInception()), str(folder / "inception-full.pt"))
    torch.jit.save(torch.jit.script(StubVGG16()), str(folder / "vgg16-full.pt"))
    model = PDGAN("digits")
    with torch.no_grad():  # the zero-initialised output layers make every sample identical: perturb them
        for p in model.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(model, folder / "ckpt")
    save_checkpoint(PDGAN("digits", with_latent=False), folder / "nolatent")
    return folder


@pytest.fixture
def small_nets(monkeypatch):
    """Shrink the expected feature widths so the small stubs pass the load check: FID's sqrtm of a
    2048 x 2048 matrix alone takes seconds on a CPU (the full widths run in the slow test)."""
    monkeypatch.setattr(feature_nets, "INCEPTION", replace(feature_nets.INCEPTION, feature_dim=SMALL_DIMS["inception"]))
    monkeypatch.setattr(feature_nets, "VGG16", replace(feature_nets.VGG16, feature_dim=SMALL_DIMS["vgg16"]))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(feature_nets.INCEPTION.env, raising=False)
    monkeypatch.delenv(feature_nets.VGG16.env, raising=False)
    torch.set_num_threads(2)


# One batch shape (4) everywhere keeps the CPU cost down: n = batch_size = interp_steps = 4.
SMALL = dict(batch_size=4, n_real=60, probe_max=50, interp_pairs=2, interp_steps=4, progress=False)


def test_evaluate_end_to_end_returns_every_key(files, tmp_path, small_nets):
    kwargs = dict(SMALL, inception=files / "inception.pt", vgg16=files / "vgg16.pt", verify_nets=False)
    out = ev.evaluate(files / "ckpt.safetensors", "digits", n=4, save_samples=tmp_path / "samples", **kwargs)
    assert out["skipped"] == {}
    for group in ev.METRIC_GROUPS:
        for key in ev.GROUP_KEYS[group]:
            assert out[key] is not None, key
    assert out["fid"] >= 0 and out["digits_fid"] >= 0
    assert 1.0 <= out["is_mean"] <= 1008
    assert 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    assert sum(out["class_histogram"]) <= 4 and 0 <= out["class_coverage"] <= 1
    assert 0.1 <= out["mean_confidence"] <= 1
    assert 0 <= out["probe_accuracy"] <= 1 and out["probe"]["n_test"] == 360  # digits: the held-out split
    assert 0 <= out["realism_ratio"] and 0 <= out["recon_accuracy"] <= 1 and len(out["class_shares"]) == 10
    assert out["interp_feature_space"] == "digits_classifier" and out["interp_pairs"] == 2
    assert out["interp_mean"] >= 1 - 1e-9 and out["interp_var"] >= 0
    assert out["meta"]["feature_nets"]["inception"]["path"] == str(files / "inception.pt")
    pngs = sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert pngs == [f"{i:06d}.png" for i in range(4)] + ["interpolations.png"]  # pdgan-generate's names
    json.dumps(out)  # JSON-ready
    # Second run: the dataset statistics come from the cache and the numbers are identical.
    assert len(list((tmp_path / "cache" / "stats").glob("*.npz"))) == 2
    again = ev.evaluate(files / "ckpt.safetensors", "digits", n=4, metrics="fid,pr", **kwargs)
    assert again["fid"] == out["fid"] and again["precision"] == out["precision"]


def test_missing_latent_denoiser_is_a_clear_error(files):
    with pytest.raises(ev.EvalError, match="no latent denoiser"):
        ev.evaluate(files / "nolatent", "digits", n=4, metrics="digits", **SMALL)


def test_missing_networks(files):
    with pytest.raises(FeatureNetError, match="PDGAN_INCEPTION"):
        ev.evaluate(files / "ckpt", "digits", n=4, metrics="fid", **SMALL)
    with pytest.raises(FeatureNetError, match="PDGAN_VGG16_TS"):
        ev.evaluate(files / "ckpt", "digits", n=4, metrics="pr", **SMALL)


@pytest.mark.slow
def test_evaluate_with_full_width_networks(files):
    out = ev.evaluate(files / "ckpt", "digits", n=4, metrics="fid,is,pr", inception=files / "inception-full.pt",
                      vgg16=files / "vgg16-full.pt", verify_nets=False, **SMALL)
    assert out["skipped"] == {} and np.isfinite(out["fid"]) and out["is_mean"] >= 1 and out["recall"] is not None


@pytest.mark.slow
def test_auto_mode_skips_missing_networks_and_latent(files):
    out = ev.evaluate(files / "nolatent", "digits", n=4, **SMALL)
    # Unperturbed random weights: every sample is the same image, so the interpolations are degenerate.
    assert set(out["skipped"]) == {"fid", "is", "pr", "digits", "interp"} and "identical" in out["skipped"]["interp"]
    assert out["fid"] is None and out["interp_mean"] is None and out["interp_degenerate"] == 2
    assert out["probe_accuracy"] is not None
    out = ev.evaluate(files / "ckpt", "digits", n=4, metrics="auto", **SMALL)
    assert set(out["skipped"]) == {"fid", "is", "pr"} and "PDGAN_INCEPTION" in out["skipped"]["fid"]
    assert out["digits_fid"] is not None


def test_bad_requests(files):
    with pytest.raises(ev.EvalError, match="unknown metrics"):
        ev.evaluate(files / "ckpt", "digits", n=4, metrics="fid,bogus", **SMALL)
    with pytest.raises(ev.EvalError, match="interp_steps"):
        ev.evaluate(files / "ckpt", "digits", n=4, metrics="interp", **{**SMALL, "interp_steps": 2})


def test_cli_writes_json(files, tmp_path, monkeypatch, capsys, small_nets):
    monkeypatch.setenv(feature_nets.INCEPTION.env, str(files / "inception.pt"))
    out = tmp_path / "res.json"
    argv = [str(files / "ckpt"), "--data", "digits", "--n", "4", "--metrics", "fid,is,digits", "--batch-size", "4",
            "--n-real", "100", "--no-verify-nets", "--json", str(out), "--quiet"]
    assert eval_cli.main(argv) == 0
    res = json.loads(out.read_text())
    assert set(ev.GROUP_KEYS["fid"] + ev.GROUP_KEYS["is"] + ev.GROUP_KEYS["digits"]) <= set(res)
    assert "fid" in capsys.readouterr().out
    assert eval_cli.main([str(files / "ckpt"), "--data", "digits", "--metrics", "pr", "--quiet"]) == 1  # a failed run
    assert "PDGAN_VGG16_TS" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a wrong command line
        eval_cli.main([str(files / "ckpt"), "--seed", "65536"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        eval_cli.main(["--version"])
    assert e.value.code == 0 and "pdgan-eval (pdgan)" in capsys.readouterr().out
    defaults = eval_cli.build_parser().parse_args(["digits"])
    assert defaults.n is None and defaults.device == "auto" and defaults.data is None and defaults.images is None


def test_samples_are_engine_generate_images(files, tmp_path):
    """--save-samples with seed s writes Engine.generate(n, seed=s)'s images under pdgan-generate's names
    (sampled by the Engine, with the backend asked for)."""
    from PIL import Image

    from pdgan_infer.engine import Engine

    out = ev.evaluate(files / "ckpt", "digits", n=3, metrics="probe", seed=2, save_samples=tmp_path / "s",
                      backend="torch", **{**SMALL, "batch_size": 2})
    assert out["meta"]["backend"] == "torch"
    want = Engine.from_pretrained(files / "ckpt", backend="torch", device="cpu").generate(3, seed=2, batch_size=2)
    for i in range(3):
        with Image.open(tmp_path / "s" / f"{2 * 65536 + i:06d}.png") as im:
            np.testing.assert_array_equal(np.asarray(im), want[i])


def test_fid_reference_statistics(files, tmp_path, small_nets, caplog):
    """--save-ref writes the data set's mu / sigma (checked against numpy on the same features);
    --fid-ref takes such a file, without the data set, and gives the FID the data set gives."""
    import logging

    from pdgan_infer.engine import Engine

    kwargs = dict(SMALL, inception=files / "inception.pt", verify_nets=False)
    ref = tmp_path / "ref.npz"
    with caplog.at_level(logging.WARNING, logger="pdgan"):
        out = ev.evaluate(files / "ckpt", "digits", n=4, metrics="fid", save_ref=ref, **kwargs)
    assert "biased" in caplog.text and "50,000" in caplog.text  # fewer than 50k samples: a warning
    with np.load(ref, allow_pickle=False) as f:  # mu, sigma and what they depend on (extra keys readers ignore)
        assert sorted(f.files) == ["data", "detector_sha256", "mu", "n", "sigma"]
        assert (f["n"].item(), f["data"].item()) == (60, "digits")
        assert f["detector_sha256"].item() == hashlib.sha256((files / "inception.pt").read_bytes()).hexdigest()
        mu, sigma = f["mu"], f["sigma"]
    inc = feature_nets.load_inception(files / "inception.pt", None, False, False, torch.device("cpu"), False)
    from pdgan_train.data import build_dataset
    ds = build_dataset("digits", 32, 3)
    idx = np.sort(np.random.default_rng(0).permutation(len(ds))[:60])  # n_real=60: the fixed subset
    real = ((torch.stack([ds[int(i)][0] for i in idx]) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    feats = np.concatenate([inc.features(real[i:i + 30].permute(0, 2, 3, 1).numpy()) for i in (0, 30)])
    np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-4, atol=1e-7)
    ref2 = tmp_path / "cli-ref.npz"  # the CLI, statistics only: no MODEL, no samples
    assert eval_cli.main(["--data", "digits", "--save-ref", str(ref2), "--n-real", "60", "--inception",
                          str(files / "inception.pt"), "--no-verify-nets", "-q"]) == 0
    with np.load(ref2, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["mu"], mu)
    again = ev.evaluate(files / "ckpt", None, n=4, metrics="fid", fid_ref=ref, **kwargs)
    assert again["fid"] == pytest.approx(out["fid"], rel=1e-9) and again["meta"]["fid_ref"] == str(ref)
    # a reference equal to the samples' own statistics gives FID 0 (float32 files, as pytorch-fid writes)
    samples = Engine.from_pretrained(files / "ckpt", backend="torch", device="cpu").generate(4, seed=0)
    own = inc.features(samples).astype(np.float64)
    np.savez(tmp_path / "own.npz", mu=own.mean(0).astype(np.float32), sigma=np.cov(own, rowvar=False))
    assert ev.evaluate(files / "ckpt", None, n=4, metrics="fid", fid_ref=tmp_path / "own.npz",
                       **kwargs)["fid"] == pytest.approx(0, abs=1e-2)
    np.savez(tmp_path / "bad.npz", mean=mu)
    for path, msg in ((tmp_path / "bad.npz", "not 'mu' and 'sigma'"), (tmp_path / "none.npz", "not found")):
        with pytest.raises(ev.EvalError, match=msg):
            ev.evaluate(files / "ckpt", None, n=4, metrics="fid", fid_ref=path, **kwargs)
    np.savez(tmp_path / "other-net.npz", mu=mu, sigma=sigma, detector_sha256="0" * 64)
    with pytest.raises(ev.EvalError, match="made with the Inception file of sha256 000000000000"):
        ev.evaluate(files / "ckpt", None, n=4, metrics="fid", fid_ref=tmp_path / "other-net.npz", **kwargs)
    np.savez(tmp_path / "wide.npz", mu=np.zeros(8), sigma=np.eye(8))
    with pytest.raises(ev.EvalError, match="another network"):
        ev.evaluate(files / "ckpt", None, n=4, metrics="fid", fid_ref=tmp_path / "wide.npz", **kwargs)
    with pytest.raises(ev.EvalError, match="need --data"):
        ev.evaluate(files / "ckpt", None, n=4, metrics="fid,digits", fid_ref=ref, **kwargs)
    with pytest.raises(ev.EvalError, match="fid need --data SPEC"):
        ev.evaluate(files / "ckpt", None, n=4, metrics="fid", **kwargs)


def test_auto_device_is_the_gpu_when_there_is_one(files, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises((RuntimeError, AssertionError), match="(?i)cuda"):  # it tried to put the model on the GPU
        ev.evaluate(files / "ckpt", "digits", n=4, metrics="digits", **SMALL)


def test_step_ratios_definition():
    line = np.linspace(0, 1, 6)[:, None] * np.array([[3.0, 4.0]])
    np.testing.assert_allclose(ev.step_ratios(line), np.ones(5))
    jump = np.array([[0.0], [0.0], [0.0], [1.0], [1.0]])  # all change in one step
    r = ev.step_ratios(jump)
    np.testing.assert_allclose(r, [0, 0, 4, 0])
    assert r.var() > 1
    assert ev.step_ratios(np.ones((4, 3))) is None


def test_digits_scores():
    probs = np.zeros((6, 10))
    probs[[0, 1, 2], [3, 3, 7]] = 0.9
    probs[[0, 1, 2], 0] = 0.1
    probs[3:] = 0.1  # unconfident: not counted
    feats = np.random.default_rng(0).normal(size=(6, 4))
    s = ev.digits_scores(feats, probs, feats)
    assert s["class_histogram"] == [0, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    assert s["class_coverage"] == pytest.approx(0.2) and s["confident_fraction"] == pytest.approx(0.5)
    assert s["mean_confidence"] == pytest.approx((3 * 0.9 + 3 * 0.1) / 6)
    assert abs(s["digits_fid"]) < 1e-6


def _cli_json(argv: list[str], path) -> dict:
    assert eval_cli.main([*argv, "--json", str(path), "-q"]) == 0
    return json.loads(path.read_text())


def test_images_folder_scores_as_sampling_inside(files, tmp_path, monkeypatch, small_nets):
    """pdgan-eval --images on pdgan-generate's folder (and its images.npz, and an ADM-style arr_0 file)
    gives the FID and IS that pdgan-eval gets sampling the same seeds itself."""
    from pdgan_infer.cli.generate import main as generate_main

    monkeypatch.setenv(feature_nets.INCEPTION.env, str(files / "inception.pt"))
    ckpt, gen = str(files / "ckpt"), tmp_path / "gen"
    common = ["--data", "digits", "--n-real", "60", "--metrics", "fid,is", "--no-verify-nets", "--batch-size", "2"]
    sampled = _cli_json([ckpt, "--n", "4", "--backend", "torch", *common], tmp_path / "a.json")
    assert sampled["meta"]["backend"] == "torch" and sampled["meta"]["images"] is None
    for fmt in ("png", "npz"):
        assert generate_main([ckpt, "--seeds", "0-3", "--outdir", str(gen), "--backend", "torch", "--batch-size",
                              "2", "--format", fmt, "-q"]) == 0
    folder = _cli_json(["--images", str(gen), *common], tmp_path / "b.json")
    npz = _cli_json(["--images", str(gen / "images.npz"), *common], tmp_path / "c.json")
    with np.load(gen / "images.npz") as f:
        np.savez(tmp_path / "adm.npz", arr_0=f["arr_0"])  # the ADM evaluator's sample batch: arr_0 only
    adm = _cli_json(["--images", str(tmp_path / "adm.npz"), *common], tmp_path / "d.json")
    for got in (folder, npz, adm):
        assert (got["fid"], got["is_mean"], got["is_std"]) == (sampled["fid"], sampled["is_mean"], sampled["is_std"])
        assert got["meta"]["n"] == 4 and got["meta"]["checkpoint"] is None
    assert folder["meta"]["images"] == str(gen)


def test_images_against_images2(files, tmp_path, small_nets):
    """--images2 is the reference set: the FID and precision/recall between the two sets' features."""
    from pdgan_train.metrics import fid_from_features, precision_recall

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    np.savez(tmp_path / "a.npz", images=a)
    (tmp_path / "b").mkdir()
    from PIL import Image
    for i, img in enumerate(b):
        Image.fromarray(img).save(tmp_path / "b" / f"{i:03d}.png")
    kwargs = dict(inception=files / "inception.pt", vgg16=files / "vgg16.pt", verify_nets=False, progress=False,
                  batch_size=5)
    out = ev.evaluate(images=tmp_path / "a.npz", images2=tmp_path / "b", metrics="fid,pr", **kwargs)
    inc = feature_nets.load_inception(files / "inception.pt", verify=False, progress=False)
    vgg = feature_nets.load_vgg16_ts(files / "vgg16.pt", verify=False, progress=False)
    assert out["fid"] == pytest.approx(fid_from_features(inc.features(b), inc.features(a)), rel=1e-6, abs=1e-9)
    half = [f.astype(np.float16).astype(np.float32) for f in (vgg.features(b), vgg.features(a))]
    assert (out["precision"], out["recall"]) == tuple(precision_recall(*half, k=3).values())
    assert out["meta"]["images2"] == str(tmp_path / "b") and out["meta"]["resolution"] == 16
    same = ev.evaluate(images=tmp_path / "a.npz", images2=tmp_path / "a.npz", metrics="fid", **kwargs)
    assert same["fid"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ev.EvalError, match="need a MODEL"):
        ev.evaluate(images=tmp_path / "a.npz", data="digits", metrics="fid,probe", **kwargs)
    with pytest.raises(ev.EvalError, match="not both"):
        ev.evaluate(files / "ckpt", images=tmp_path / "a.npz", **kwargs)
    with pytest.raises(ev.EvalError, match="holds 12 images"):
        ev.evaluate(images=tmp_path / "a.npz", images2=tmp_path / "b", n=13, metrics="fid", **kwargs)
    with pytest.raises(ev.EvalError, match="nothing to evaluate"):
        ev.evaluate(data="digits", **kwargs)


@pytest.mark.slow
def test_torchrun_two_ranks_give_the_numbers_of_one_process(files, tmp_path):
    """Under torchrun (2 gloo ranks) the samples are shared out as pdgan-generate does; rank 0 reports the
    FID and IS one process computes, and --save-samples gets every image."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root),
           feature_nets.INCEPTION.env: str(files / "inception-full.pt")}
    args = [str(files / "ckpt"), "--data", "digits", "--n", "6", "--n-real", "60", "--metrics", "fid,is",
            "--batch-size", "2", "--backend", "torch", "--no-verify-nets", "--device", "cpu", "-q"]
    runs = {}
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for name, launcher, sep in (("one", [], []), ("two", torchrun, ["--"])):  # "--": torchrun would take --n
        cmd = [sys.executable, *launcher, "-m", "pdgan_train.cli.eval", *sep, *args, "--json",
               str(tmp_path / f"{name}.json"), "--save-samples", str(tmp_path / name)]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert runs["two"]["meta"]["processes"] == 2 and runs["one"]["meta"]["processes"] == 1
    for key in ("fid", "is_mean", "is_std"):
        assert runs["two"][key] == runs["one"][key], key
@pytest.mark.parametrize("argv, match", [
    (["--metrics", ""], "no metrics in ''"),
    (["--metrics", " , "], "no metrics"),
    (["--interp-pairs", str(10**9)], r"--interp-pairs: must be in \[1, 4096\]"),
    (["--interp-steps", str(10**9)], r"--interp-steps: must be in \[3, 4096\]"),
    (["--n", str(10**9)], r"--n: must be in \[1, 1048576\]"),
])
def test_empty_metrics_and_huge_counts_are_usage_errors(argv, match, capsys, monkeypatch):
    monkeypatch.setattr(eval_cli, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    with pytest.raises(SystemExit) as e:
        eval_cli.main(["digits", "--data", "digits", *argv])
    assert e.value.code == 2 and len(err := capsys.readouterr().err.strip().splitlines()) == 1
    assert re.search(match, err[0]), err


def test_huge_counts_are_refused_by_the_library(files):
    for kwargs in ({"n": 10**9}, {"interp_steps": 10**9}, {"interp_pairs": 10**9}):
        with pytest.raises(ev.EvalError, match=r"must be an integer in \["):
            ev.evaluate(files / "ckpt", "digits", **{"n": 4, "metrics": "interp", **kwargs})
    with pytest.raises(ev.EvalError, match="no metrics"):
        ev.evaluate(files / "ckpt", "digits", n=4, metrics="")


@pytest.mark.parametrize("flag, target", [("--save-ref", "labels.csv"), ("--json", "labels.csv"),
                                          ("--save-samples", "."), ("--save-samples", "generated"),
                                          ("--json", "sub/r.json")])
def test_outputs_inside_the_data_set_are_refused_before_the_work(tmp_path, capsys, monkeypatch, flag, target):
    """--save-ref/--json DATA/labels.csv destroyed the labels; --save-samples DATA added samples to the data set."""
    data = tmp_path / "images"
    data.mkdir()
    (data / "labels.csv").write_text("filename,label\n")
    monkeypatch.setattr(eval_cli, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    argv = ["digits", "--data", str(data), "--metrics", "fid", flag, str((data / target).resolve())]
    assert eval_cli.main([*argv, "--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(rf"{flag} .* (is the input|is inside the input) .*images", err[0]), err
    assert (data / "labels.csv").read_text() == "filename,label\n" and sorted(os.listdir(data)) == ["labels.csv"]


def test_users_result_file_is_refused_without_overwrite(tmp_path, capsys, monkeypatch):
    (tmp_path / "r.json").write_text("the user's notes")
    monkeypatch.setattr(eval_cli, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))
    assert eval_cli.main(["digits", "--data", "digits", "--metrics", "digits", "--json", str(tmp_path / "r.json")]) == 1
    assert "r.json exists and was not written by pdgan; give --overwrite" in capsys.readouterr().err
    assert (tmp_path / "r.json").read_text() == "the user's notes"
