"""The held-out digits split and the 8x8 digits metrics: each one separates real digits, blurred digits
and noise, checked against hand-computed references (numpy reshapes, brute-force nearest neighbours)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sklearn")

from pdgan_train import digits_metrics as M  # noqa: E402
from pdgan_train.data import DigitsDataset, build_dataset, random_translate  # noqa: E402


# --- the split -------------------------------------------------------------------------------------
def test_split_sizes_disjoint_stratified_and_fixed():
    from sklearn.datasets import load_digits

    ref = load_digits()
    train, test, every = (DigitsDataset(32, split=s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (1437, 360, 1797)
    assert not set(train.indices) & set(test.indices)
    assert sorted(set(train.indices) | set(test.indices)) == list(range(1797))
    share = np.bincount(ref.target[test.indices], minlength=10) / np.bincount(ref.target, minlength=10)
    assert np.all(np.abs(share - 0.2) < 0.02)  # stratified: every class ~20% held out
    assert np.array_equal(DigitsDataset(8, split="test").indices, test.indices)  # fixed seed
    x, y = DigitsDataset(8, channels=1, split="test")[5]
    i = test.indices[5]
    assert y == ref.target[i]
    assert torch.allclose(x[0], torch.from_numpy(ref.images[i]).float() / 8 - 1)
    assert len(build_dataset("digits", 32)) == 1437  # training uses the training split
    assert len(build_dataset("digits", 32, split="all")) == 1797
    with pytest.raises(ValueError, match="split"):
        DigitsDataset(32, split="validation")


# --- pooling and the classifier -------------------------------------------------------------------
def test_pool8_is_a_4x4_block_mean_in_digit_units():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    ref = ((x.mean(1).numpy().reshape(3, 8, 4, 8, 4).mean(axis=(2, 4)) + 1) * 8).reshape(3, 64)
    assert np.allclose(M.pool8(x), ref, atol=1e-6)
    u8 = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.allclose(M.pool8(u8), M.pool8(torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1))
    with pytest.raises(ValueError):
        M.pool8(np.zeros((2, 32, 32, 3), np.float32))


def test_shipped_classifier_held_out_accuracy():
    params = json.loads(M.CLASSIFIER_FILE.read_text())
    xte, yte = M.reference("test")
    z = (xte - np.asarray(params["mean"])) / np.asarray(params["scale"])
    pred = (z @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])).argmax(1)  # by hand
    acc = (pred == yte).mean()
    assert acc >= 0.95 and acc == pytest.approx(params["test_accuracy"])
    probs = M.load_classifier().probs(xte)
    assert np.allclose(probs.sum(1), 1) and (probs.argmax(1) == pred).all()


# --- separation of real, blurred, noise ------------------------------------------------------------
def _blur(x: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(-1, 1, 1, 2 * r + 1), groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(-1, 1, 2 * r + 1, 1), groups=x.shape[1])


@pytest.fixture(scope="module")
def sets():
    real, labels = M.heldout_images()
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {"real": real, "blurred": _blur(real), "noise": noise}, labels


def test_realism_ratio_separates_and_matches_brute_force(sets):
    images, _ = sets
    train = M.reference("train")[0]
    scores = {k: M.realism_ratio(M.pool8(v)) for k, v in images.items()}
    # held-out digits set the scale (up to their uint8 quantisation)
    assert scores["real"]["realism_ratio"] == pytest.approx(1.0, abs=0.005)
    assert 1.15 < scores["blurred"]["realism_ratio"] < 2.0 < 3.0 < scores["noise"]["realism_ratio"]
    p = M.pool8(images["blurred"])
    brute = np.median([np.sqrt(((train - row) ** 2).sum(1)).min() for row in p])
    assert scores["blurred"]["nn_distance_median"] == pytest.approx(brute, rel=1e-6)


def test_class_scores_and_precision_recall_separate(sets):
    images, _ = sets
    cls = {k: M.class_scores(M.pool8(v)) for k, v in images.items()}
    pr = {k: M.precision_recall_8x8(M.pool8(v)) for k, v in images.items()}
    assert cls["real"]["confidence_8x8"] > cls["blurred"]["confidence_8x8"] + 0.05
    assert 0.05 <= cls["real"]["min_class_share"] and cls["real"]["max_class_share"] <= 0.15
    assert cls["noise"]["max_class_share"] > 0.5  # noise is one "class": caught by the shares
    assert pr["real"] == {"precision_8x8": 1.0, "recall_8x8": 1.0}
    assert pr["blurred"]["recall_8x8"] < 0.85 and pr["noise"]["precision_8x8"] == 0.0


def test_recon_and_probe_separate():
    blur_acc = M.recon_accuracy(_blur)["recon_accuracy"]
    noise_acc = M.recon_accuracy(lambda x: torch.rand(x.shape) * 2 - 1)["recon_accuracy"]
    assert M.recon_accuracy(lambda x: x)["recon_accuracy"] >= 0.95 > blur_acc > 0.5 > 0.2 > noise_acc
    pixels = lambda x: x.mean(1).flatten(1)  # noqa: E731  (raw pixels are a good code for digits)
    assert M.probe_accuracy(pixels)["probe_accuracy"] > 0.93
    rand = lambda x: torch.randn(len(x), 8)  # noqa: E731  (codes that ignore the image)
    assert M.probe_accuracy(rand)["probe_accuracy"] < 0.25


def test_check_targets():
    ok = {"min_class_share": 0.08, "max_class_share": 0.12, "confidence_8x8": 0.9, "realism_ratio": 1.1,
          "recon_accuracy": 0.95, "probe_accuracy": 0.96, "digits_fid": 30.0}
    assert all(M.check_targets(ok).values()) and len(M.check_targets(ok)) == 7
    assert M.check_targets({**ok, "realism_ratio": 1.2})["realism_ratio"] is False
    assert M.check_targets({"max_class_share": 0.2}) == {"max_class_share": False}


# --- DiffAugment translation --------------------------------------------------------------------------
def test_random_translate_matches_slicing_and_keeps_pairs_aligned():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 2, 9, 9, generator=g), torch.randn(6, 2, 9, 9, generator=g)
    state = torch.Generator().manual_seed(7)
    shift = torch.randint(-2, 3, (2, 6), generator=torch.Generator().manual_seed(7))
    ta, tb = random_translate(a, b, max_shift=2, generator=state)
    for i in range(6):
        dy, dx = int(shift[0, i]), int(shift[1, i])
        for x, t in ((a, ta), (b, tb)):
            ref = torch.zeros_like(x[i])  # out[y, x] = in[y - dy, x - dx], zeros outside
            ref[:, max(dy, 0):9 + min(dy, 0), max(dx, 0):9 + min(dx, 0)] = \
                x[i][:, max(-dy, 0):9 - max(dy, 0), max(-dx, 0):9 - max(dx, 0)]
            assert torch.equal(t[i], ref)
    a.requires_grad_(True)
    random_translate(a, max_shift=2, generator=torch.Generator().manual_seed(7))[0].sum().backward()
    assert a.grad is not None and a.grad.sum() > 0


# --- the shipped model ------------------------------------------------------------------------------
def test_the_shipped_digits_model_draws_every_digit_at_8x8():
    """200 samples of `Engine.from_pretrained("digits")`, judged by the 8x8 classifier (independent of the
    32x32 CNN): all ten digits, none rare, confidently."""
    from pdgan_infer import Engine

    images = Engine.from_pretrained("digits", backend="torch", device="cpu").generate(200, seed=0)
    probs = M.load_classifier().probs(M.pool8(images))
    counts = np.bincount(probs.argmax(1), minlength=10)
    assert counts.min() >= 3, f"samples per digit 0-9: {counts.tolist()}"
    assert probs.max(1).mean() >= 0.75
    assert M.realism_ratio(M.pool8(images))["realism_ratio"] < 1.3
