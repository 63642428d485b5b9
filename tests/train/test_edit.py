"""pdgan_train.edit: reconstruction, interpolation (Fig. 3), vary (Fig. 5), attribute directions, pdgan-edit.

Every generated image is checked against a direct `sample(...)` call built here from `draw_noise`.
The checkpoint is a digits model shrunk further (nf 16, two levels, nz 16) so the whole file runs in
seconds on two CPU cores; its weights are perturbed so that every input changes the output."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_models import tiny_config  # tests/support: the shrunken digits model

from pdgan_infer import PDGAN, load_checkpoint, save_checkpoint
from pdgan_infer.images import save_png
from pdgan_infer.sampler import SamplerNoise, draw_noise, sample, to_uint8
from pdgan_train import edit
from pdgan_train.cli import edit as edit_cli
from pdgan_train.data import build_dataset

SEED = 7


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edit")
    torch.manual_seed(0)
    model = PDGAN(tiny_config())
    with torch.no_grad():  # zero-initialised output layers would make every input irrelevant: perturb
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(model, folder / "ckpt")
    save_checkpoint(PDGAN(tiny_config(), with_latent=False), folder / "nolatent")
    return folder


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(ckpt):
    return load_checkpoint(ckpt / "ckpt.safetensors")


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits", 32, 3)


def direct(model, z_T, noise) -> np.ndarray:
    return to_uint8(sample(model.generator, model.schedule, z_T, noise)).numpy()


def noise_of(model, seeds) -> SamplerNoise:
    """The noises of per-image seeds (a seed s of pdgan-edit means the per-image seeds s * 65536 + i)."""
    cfg = model.config
    return draw_noise(list(seeds), model.schedule.T, cfg.channels, cfg.resolution, cfg.generator.nz)


def stack(*noises: SamplerNoise) -> SamplerNoise:
    return SamplerNoise(torch.cat([n.x_T for n in noises]), torch.cat([n.z_T_noise for n in noises]),
                        torch.cat([n.z for n in noises], 1), torch.cat([n.eps for n in noises], 1))


def assert_same_images(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float noise: a batch of another size may round a pixel to the neighbouring value."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())


# --- interpolation -------------------------------------------------------------------------------
def test_slerp_matches_closed_form():
    e1, e2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    for t in (0.0, 0.25, 0.5, 1.0):
        expected = torch.tensor([math.cos(t * math.pi / 2), math.sin(t * math.pi / 2), 0.0])
        assert torch.allclose(edit.slerp(e1, e2, t), expected, atol=1e-6)
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    w = math.acos(float((a.flatten() @ b.flatten()) / (a.norm() * b.norm())))
    for t in (0.3, 0.5):
        expected = (math.sin((1 - t) * w) * a + math.sin(t * w) * b) / math.sin(w)
        assert torch.allclose(edit.slerp(a, b, t), expected, atol=1e-5)
    assert torch.equal(edit.slerp(a, b, 0.0), a) and torch.equal(edit.slerp(a, b, 1.0), b)
    # Gaussian noises: slerp stays at their norm, lerp shrinks towards 1/sqrt(2) of it midway
    x, y = torch.randn(3 * 32 * 32), torch.randn(3 * 32 * 32)
    ref = (x.norm() + y.norm()) / 2
    assert abs(edit.slerp(x, y, 0.5).norm() / ref - 1) < 0.05
    assert abs(edit.lerp(x, y, 0.5).norm() / ref - 2 ** -0.5) < 0.05
    assert torch.equal(edit.slerp(x, 2 * x, 0.5), edit.lerp(x, 2 * x, 0.5))  # parallel: lerp fallback


def test_interpolate_latent_endpoints(model, digits):
    a, b = digits[0][0], digits[1][0]
    frames = edit.interpolate_latent(model, a, b, steps=3, seed=SEED)
    assert frames.shape == (3, 32, 32, 3)
    with torch.no_grad():
        z_T = model.encoder(torch.stack([a, b]))
    base = noise_of(model, [SEED * 65536])
    expected = direct(model, z_T, stack(base, base))
    assert_same_images(frames[0], expected[0])
    assert_same_images(frames[-1], expected[1])
    assert_same_images(frames[:1], edit.reconstruct(model, a, seed=SEED))
    assert not np.array_equal(frames[1], frames[0]) and not np.array_equal(frames[1], frames[2])
    # uint8 NHWC input is the same as the float NCHW input it was made from (up to quantisation)
    assert torch.allclose(edit.encode(model, to_uint8(a[None]).numpy()), z_T[:1], atol=0.05)


def test_interpolate_pixel_endpoints(model):
    frames = edit.interpolate_pixel(model, 3, 4, steps=3)
    a, b = noise_of(model, [3 * 65536]), noise_of(model, [4 * 65536])
    with torch.no_grad():
        z_T = model.latent.sample(a.z_T_noise)
    only_x_T = SamplerNoise(b.x_T, a.z_T_noise, a.z, a.eps)  # the end frame keeps seed 3's z and eps
    expected = direct(model, z_T.expand(2, -1), stack(a, only_x_T))
    assert_same_images(frames[0], expected[0])
    assert_same_images(frames[-1], expected[1])
    with pytest.raises(edit.EditError, match="steps"):
        edit.interpolate_pixel(model, 3, 4, steps=1)


# --- vary (Fig. 5) --------------------------------------------------------------------------------
def test_vary_changes_only_the_chosen_input(model):
    n, base_seed = 3, 11
    varied = noise_of(model, [base_seed * 65536 + i for i in range(n)])
    base = noise_of(model, [base_seed * 65536])
    with torch.no_grad():
        codes = model.latent.sample(varied.latent)
    rows = {}
    for which in edit.VARY:
        rows[which] = edit.vary(model, which, n=n, base_seed=base_seed)
        noise = stack(*[base] * n)
        if which == "z":
            noise.z = varied.z
        elif which == "x_T":
            noise.x_T = varied.x_T
        z_T = codes if which == "z_T" else codes[:1].expand(n, -1)
        assert_same_images(rows[which], direct(model, z_T, noise))
        assert not np.array_equal(rows[which][0], rows[which][1]), f"varying {which} changed nothing"
    # Fig. 5: the first image of every group is the same (the same three inputs)
    assert_same_images(rows["z"][:1], rows["z_T"][:1])
    assert_same_images(rows["x_T"][:1], rows["z_T"][:1])
    with pytest.raises(edit.EditError, match="which"):
        edit.vary(model, "eps")


def test_vary_without_latent_denoiser(ckpt, digits):
    bare = load_checkpoint(ckpt / "nolatent.safetensors")
    with pytest.raises(edit.EditError, match="no latent denoiser"):
        edit.vary(bare, "z", n=2)
    with pytest.raises(edit.EditError, match="no latent denoiser"):
        edit.interpolate_pixel(bare, 0, 1, steps=2)
    out = edit.vary(bare, "z_T", n=2, dataset=digits)
    assert out.shape == (2, 32, 32, 3)
    with pytest.raises(edit.EditError, match="needs 2 codes"):
        edit.vary(bare, "z_T", n=2, z_T=torch.zeros(16))


# --- attributes ------------------------------------------------------------------------------------
def test_fit_direction_finds_the_label_coordinate():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(400, 16)) * rng.uniform(0.1, 10.0, size=16) + rng.normal(size=16)
    labels = np.where(codes[:, 5] > np.median(codes[:, 5]), 4, 1)  # label 4 iff coordinate 5 is large
    labels[:10] = -1  # unknown labels are ignored
    d = edit.fit_direction(codes, labels, target=4)
    assert np.isclose(np.linalg.norm(d.direction), 1.0)
    assert d.direction[5] > 0.9  # cosine with the coordinate axis
    assert d.accuracy > 0.9 and d.n_train + d.n_test == 390
    assert np.allclose(d.shift(0.0), 0.0)
    with pytest.raises(edit.EditError, match="label 3 does not occur"):
        edit.fit_direction(codes, labels, target=3)


def test_manipulate_strength_zero_is_the_reconstruction(model, digits):
    images = torch.stack([digits[i][0] for i in range(120)])
    direction = edit.fit_attribute(model, images, digits.labels[:120], target=0)
    assert 0.0 <= direction.accuracy <= 1.0 and direction.direction.shape == (16,)
    out = edit.manipulate(model, images[3], direction, strengths=(-1, 0, 1), scale=2.0, seed=SEED)
    assert out.shape == (3, 32, 32, 3)
    assert_same_images(out[1:2], edit.reconstruct(model, images[3], seed=SEED))
    assert not np.array_equal(out[0], out[2])


# --- CLI ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["reconstruct", "--data", "digits", "--n", "3"],
    ["interpolate", "--data", "digits", "--pair", "0", "1", "--steps", "3"],
    ["interpolate", "--space", "pixel", "--pair", "0", "1", "--steps", "3"],
    ["vary", "--which", "z", "--n", "2", "--rows", "2"],
    ["attribute", "--data", "digits", "--target", "3", "--index", "0", "--strengths", "-1,0,1", "--fit-max", "120"],
], ids=["reconstruct", "interpolate-latent", "interpolate-pixel", "vary", "attribute"])
def test_cli_writes_a_png(ckpt, tmp_path, capsys, args):
    out = tmp_path / "sub" / "grid.png"
    assert edit_cli.main([str(ckpt / "ckpt.safetensors"), *args, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def unlabelled_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("folder")
    for i in range(2):
        save_png(np.full((32, 32, 3), 40 * i, np.uint8), folder / f"img{i}.png")
    return folder


@pytest.mark.parametrize("args, message", [
    (["attribute", "--data", "digits", "--target", "12"], "unknown label 12"),
    (["attribute", "--data", "digits", "--target", "1", "--index", "5000"], "out of range"),
    (["interpolate", "--data", "digits", "--pair", "0", "1797"], "out of range"),
    (["attribute", "--data", "FOLDER", "--target", "1"], "has no labels"),
    (["attribute", "--data", "digits", "--target", "1", "--labels", "missing.csv"], "not found"),
    (["vary", "--which", "z_T", "--n", "2", "--rows", "1", "--checkpoint-nolatent"], "no latent denoiser"),
    (["interpolate", "--space", "pixel", "--checkpoint-nolatent"], "no latent denoiser"),
    (["interpolate", "--steps", "1"], "--steps"),
    (["vary", "--which", "eps"], "invalid choice"),
    (["reconstruct", "--data", "/no/such/dataset"], "not found"),
    (["reconstruct", "--data", "digits", "--checkpoint-missing"], "checkpoint not found"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_cli_bad_input_is_one_line_exit_1_or_2(ckpt, unlabelled_folder, tmp_path, capsys, args, message):
    name = {"--checkpoint-nolatent": "nolatent", "--checkpoint-missing": "missing"}.get(args[-1], "ckpt")
    args = [str(unlabelled_folder) if a == "FOLDER" else a for a in args if not a.startswith("--checkpoint-")]
    out = tmp_path / "grid.png"
    with pytest.raises(SystemExit) as exc:  # a wrong command line exits with 2 (argparse), a failed run returns 1
        raise SystemExit(edit_cli.main([str(ckpt / f"{name}.safetensors"), *args, "--out", str(out)]))
    assert exc.value.code == (2 if message in ("--steps", "invalid choice") else 1)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_labels_csv(digits, unlabelled_folder, tmp_path):
    by_index = tmp_path / "index.csv"
    by_index.write_text("index,label\n0,5\n3,2\n")
    labels = edit.read_labels_csv(by_index, digits)
    assert labels[0] == 5 and labels[3] == 2 and (labels[[1, 2, 4]] == -1).all()
    folder = build_dataset(str(unlabelled_folder), 32, 3)
    by_name = tmp_path / "names.csv"
    by_name.write_text("filename,label\n./img1.png,1\nother.png,0\n")
    assert edit.read_labels_csv(by_name, folder).tolist() == [-1, 1]
    by_index.write_text("index,label\n0,x\n")
    with pytest.raises(edit.EditError, match="line 2: label 'x' is not an integer"):
        edit.read_labels_csv(by_index, digits)
    by_name.write_text("filename,label\nimg1.png,1\n")
    with pytest.raises(edit.EditError, match="header 'index,label'"):
        edit.read_labels_csv(by_name, digits)  # digits has no file names


@pytest.mark.parametrize("content, match", [
    ("index,label\n0,1\n1," + "7" * 200_000 + "\n", r"line 3: not a readable CSV file \(field larger than"),
    ("index,label\n0,1\n1," + str(10**29) + "\n", r"line 3: label 10{29} is outside \(-2\*\*31, 2\*\*31\)"),
    ("index,label\n0,1\n1,-" + str(2**63) + "\n", r"line 3: label -9223372036854775808 is outside"),
    ("index,label,label\n0,1,2\n", "the header names column 'label' more than once"),
    (b"index,label\n0,1\n\xff\xfe,2\n", r"line 3: not UTF-8 text"),
    ("index,label\n0,1_0\n", r"line 2: label '1_0' is not an integer"),
    ("index,label\n+1,2\n", r"line 2: index '\+1' is not an integer"),
    ("index,label\n0,\u0664\n", r"line 2: label '\u0664' is not an integer"),
])
def test_labels_csv_errors_are_one_line_naming_file_and_line(digits, tmp_path, content, match):
    path = tmp_path / "labels.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(edit.EditError, match=match) as e:
        edit.read_labels_csv(path, digits)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_seed_s_is_engine_generate_seed_s(ckpt):
    """A frame made from seed s's noises and latent sample is Engine.generate(1, seed=s)'s image, and row
    r of `vary` is seed SEED + r."""
    from pdgan_infer.engine import Engine

    model = load_checkpoint(ckpt / "ckpt.safetensors")
    want = Engine(load_checkpoint(ckpt / "ckpt.safetensors"), backend="torch", device="cpu").generate(1, seed=5)
    assert_same_images(edit.interpolate_pixel(model, 5, 6, steps=2)[:1], want)
    assert_same_images(edit.vary(model, "z", n=2, base_seed=5)[:1], want)
    with pytest.raises(edit.EditError, match="seed must be"):
        edit.reconstruct(model, torch.zeros(1, 3, 32, 32), seed=65536)


def test_cli_version_and_default_device(capsys):
    with pytest.raises(SystemExit) as e:
        edit_cli.main(["--version"])
    assert e.value.code == 0 and "pdgan-edit (pdgan)" in capsys.readouterr().out
    args = edit_cli.build_parser().parse_args(["digits", "vary", "--which", "z", "--out", "x.png", "-q"])
    assert args.device == "auto" and args.quiet
