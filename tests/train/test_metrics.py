"""pdgan_train.metrics, feature_nets and digits_classifier: FID / IS / precision-recall against
independent NumPy computations and hand-made sets, the statistics cache, TorchScript loading
(tiny networks scripted here; truncated files and wrong checksums), and the shipped classifier."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pdgan_train import feature_nets, metrics
from pdgan_train.feature_nets import FeatureNetError, load_inception, load_torchscript, load_vgg16_ts
from pdgan_train.metrics import (
    feature_stats,
    fid_from_features,
    frechet_distance,
    inception_score,
    knn_radii,
    load_or_compute_stats,
    precision_recall,
)

# torch 2.13 deprecates TorchScript, but the field's metric networks are TorchScript files.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


# --- FID -----------------------------------------------------------------------------------------
def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID written independently: tr sqrt(S1 S2) = sum sqrt(eig(S1 S2)) (S1 S2 is similar to a PSD matrix)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = (a - mu1).T @ (a - mu1) / (len(a) - 1)
    s2 = (b - mu2).T @ (b - mu2) / (len(b) - 1)
    eig = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum())


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(16, 16))
    a = rng.normal(size=(400, 16)) @ mix
    b = rng.normal(size=(300, 16)) @ (mix + 0.3 * rng.normal(size=(16, 16))) + 0.5
    return a, b


def test_fid_of_a_set_with_itself_is_zero(feats):
    a, _ = feats
    scale = 2 * np.trace(feature_stats(a)[1])
    assert abs(fid_from_features(a, a)) < 1e-6 * scale
    assert abs(fid_from_features(torch.from_numpy(a).float(), a.astype(np.float32))) < 1e-5 * scale


def test_fid_matches_eigenvalue_reference(feats):
    a, b = feats
    got, want = fid_from_features(a, b), reference_fid(a, b)
    assert want > 1.0
    assert got == pytest.approx(want, rel=1e-3, abs=1e-3)
    assert fid_from_features(b, a) == pytest.approx(got, rel=1e-6)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_fid_singular_covariances_stay_finite():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 1  # N < D: rank-deficient
    value = fid_from_features(a, b)
    assert np.isfinite(value) and value > 0


def test_fid_rejects_bad_inputs():
    with pytest.raises(ValueError, match="dimensions differ"):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fid_from_features(np.full((5, 3), np.nan), np.zeros((5, 3)))


# --- Inception score -----------------------------------------------------------------------------
def test_is_uniform_predictions_is_one():
    mean, std = inception_score(np.full((100, 10), 0.1))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 10, 1008])
def test_is_confident_distinct_classes_is_number_of_classes(classes):
    probs = np.eye(classes)[np.arange(10 * classes) % classes]  # every split holds every class equally
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    logits = 100.0 * probs  # logits are softmaxed first
    assert inception_score(logits, splits=10)[0] == pytest.approx(classes, rel=1e-6)


def test_is_matches_stylegan_formula():
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.full(20, 0.3), size=500)
    scores = []
    for i in range(5):
        part = p[i * 100:(i + 1) * 100]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    mean, std = inception_score(p, splits=5)
    assert mean == pytest.approx(np.mean(scores), rel=1e-9) and std == pytest.approx(np.std(scores), rel=1e-9)


def test_is_rejects_bad_splits():
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.full((5, 10), 0.1), splits=6)


# --- precision / recall --------------------------------------------------------------------------
def test_pr_identical_sets():
    x = np.random.default_rng(5).normal(size=(60, 8))
    assert precision_recall(x, x.copy(), k=3) == {"precision": 1.0, "recall": 1.0}


def test_pr_disjoint_far_clusters():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(50, 4)), rng.normal(size=(40, 4)) + 1000.0
    assert precision_recall(real, fake, k=3) == {"precision": 0.0, "recall": 0.0}


def test_pr_hand_made_one_dimensional_case():
    # real 0..4 with k=1: radius 1 each, manifold [-1, 5] -> fakes 0.5, 2.5 in, 10, 20 out: precision 1/2.
    # fake radii (k=1): 0.5->2, 2.5->2, 10->7.5, 20->10 cover every real point: recall 1.
    real = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    fake = np.array([[0.5], [2.5], [10.0], [20.0]])
    for rb, cb in ((1024, 8192), (1, 1), (2, 3)):
        assert precision_recall(real, fake, k=1, row_batch=rb, col_batch=cb) == {"precision": 0.5, "recall": 1.0}


@pytest.mark.parametrize(("row_batch", "col_batch"), [(1024, 8192), (7, 5), (1, 64)], ids=["one-block", "odd", "rows"])
def test_knn_radii_match_brute_force(row_batch, col_batch):
    x = torch.from_numpy(np.random.default_rng(7).normal(size=(37, 5)))
    d = torch.cdist(x, x)
    for k in (1, 3):
        want = d.sort(dim=1).values[:, k]
        torch.testing.assert_close(knn_radii(x, k, row_batch, col_batch), want)
    with pytest.raises(ValueError, match="k < N"):
        knn_radii(x, 37)


# --- statistics cache ----------------------------------------------------------------------------
def test_stats_cache_round_trip(tmp_path):
    data = np.random.default_rng(8).normal(size=(30, 4))
    calls = []

    def compute():
        calls.append(1)
        return data

    key = metrics.stats_key(data="digits", resolution=32, net="x", net_sha256="abc")
    first = load_or_compute_stats(key, compute, tmp_path, label="digits-32-x", keep_features=True)
    second = load_or_compute_stats(key, compute, tmp_path, label="digits-32-x", keep_features=True)
    assert len(calls) == 1
    for name in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(first[name], second[name])
    np.testing.assert_allclose(second["mu"], data.mean(0))
    other = metrics.stats_key(data="digits", resolution=32, net="x", net_sha256="abd")
    load_or_compute_stats(other, compute, tmp_path, label="digits-32-x")
    assert len(calls) == 2 and len(list((tmp_path / "stats").glob("*.npz"))) == 2
    path = metrics.stats_cache_path(tmp_path, key, "digits-32-x")
    path.write_bytes(path.read_bytes()[:50])  # truncated: warned about and recomputed
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_or_compute_stats(key, compute, tmp_path, label="digits-32-x")
    assert len(calls) == 3
    np.testing.assert_array_equal(again["sigma"], first["sigma"])
    load_or_compute_stats(key, compute, None)  # no cache: always computes
    assert len(calls) == 4


# --- TorchScript feature networks ------------------------------------------------------------------
class StubInception(torch.nn.Module):
    """Same call convention as inception-2015-12-05.pt, tiny weights."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2048)
        self.output = torch.nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        f = torch.relu(self.proj(img.to(torch.float32).mean(dim=(2, 3)) / 255.0))
        if return_features:
            return f
        logits = F.linear(f, self.output.weight) if no_output_bias else self.output(f)
        return torch.softmax(logits, dim=1)


@pytest.fixture(scope="module")
def stub_inception(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nets") / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(StubInception()), str(path))
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(feature_nets.INCEPTION.env, raising=False)
    monkeypatch.delenv(feature_nets.VGG16.env, raising=False)


def test_tiny_torchscript_loads_and_runs(stub_inception):
    net = load_torchscript(stub_inception, sha256=feature_nets._download.sha256_file(stub_inception))
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert net(x, return_features=True).shape == (2, 2048)
    assert net(x, no_output_bias=True).sum(1).allclose(torch.ones(2))


def test_truncated_torchscript_is_rejected(stub_inception, tmp_path):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(stub_inception.read_bytes()[: stub_inception.stat().st_size // 2])
    with pytest.raises(FeatureNetError, match="truncated") as err:
        load_torchscript(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(FeatureNetError, match="truncated"):
        load_inception(bad, verify=False)


def test_wrong_checksum_is_rejected(stub_inception):
    with pytest.raises(FeatureNetError, match="sha256") as err:
        load_torchscript(stub_inception, sha256="0" * 64)
    assert "\n" not in str(err.value)
    with pytest.raises(FeatureNetError, match="expected f58cb9b6"):  # the published Inception digest
        load_inception(stub_inception)


def test_inception_wrapper_calling_convention(stub_inception, monkeypatch):
    monkeypatch.setenv(feature_nets.INCEPTION.env, str(stub_inception))
    net = load_inception(verify=False)
    assert net.path == stub_inception and len(net.sha256) == 64
    rgb = np.random.default_rng(9).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    feats, probs = net.features(rgb, batch_size=2), net.probs(rgb, batch_size=2)
    assert feats.shape == (5, 2048) and feats.dtype == np.float32
    assert probs.shape == (5, 1008) and np.allclose(probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(net.features(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)), batch_size=2), feats,
                               rtol=1e-6)
    grey = rgb[..., :1]
    np.testing.assert_allclose(net.features(grey), net.features(np.repeat(grey, 3, -1)), rtol=1e-6)


def test_missing_network_message_names_files_and_env(tmp_path):
    with pytest.raises(FeatureNetError) as err:
        load_inception()
    msg = str(err.value)
    for part in ("inception-2015-12-05.pt", "PDGAN_INCEPTION", feature_nets.INCEPTION.url, str(tmp_path / "cache")):
        assert part in msg
    with pytest.raises(FeatureNetError, match="PDGAN_VGG16_TS"):
        load_vgg16_ts()


def test_network_with_wrong_output_is_rejected(stub_inception):
    with pytest.raises(FeatureNetError, match=r"expected \(1, 4096\)"):
        load_vgg16_ts(stub_inception, verify=False)


def test_cache_dir_copy_is_found(stub_inception, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(stub_inception, cache / "inception-2015-12-05.pt")
    assert load_inception(verify=False).path == cache / "inception-2015-12-05.pt"


# --- the shipped digits classifier ---------------------------------------------------------------
def test_shipped_digits_classifier_accuracy():
    from pdgan_train.digits_classifier import (
        accuracy,
        classifier_info,
        digits_arrays,
        load_digits_classifier,
        stratified_split,
    )

    model = load_digits_classifier()
    x, y = digits_arrays()
    train, test = stratified_split(y)
    assert len(test) == 360 and len(np.intersect1d(train, test)) == 0
    acc = accuracy(model, x[test], y[test])
    assert acc >= 0.97
    assert acc == pytest.approx(classifier_info()["test_accuracy"], abs=1e-9)
    f = model.features(x[:4].expand(-1, 3, -1, -1))  # grey RGB and 1 channel agree
    assert f.shape == (4, model.cfg.feature_dim)
    torch.testing.assert_close(f, model.features(x[:4]))


def test_digits_classifier_rejects_tampered_weights(tmp_path):
    from pdgan_train.digits_classifier import ASSETS, WEIGHTS_FILE, load_digits_classifier

    weights = tmp_path / WEIGHTS_FILE
    shutil.copy(ASSETS / WEIGHTS_FILE, weights)
    shutil.copy((ASSETS / WEIGHTS_FILE).with_suffix(".json"), weights.with_suffix(".json"))
    load_digits_classifier(weights)
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ValueError, match="sha256"):
        load_digits_classifier(weights)


@pytest.mark.slow
def test_digits_classifier_retrains(tmp_path):
    from pdgan_train.digits_classifier import TrainSettings, load_digits_classifier, save_classifier, train

    model, meta = train(TrainSettings(epochs=3), log=False)
    path = save_classifier(model, meta, tmp_path)
    assert json.loads(path.with_suffix(".json").read_text())["test_accuracy"] > 0.8
    load_digits_classifier(path)
