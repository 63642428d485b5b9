"""pdgan_train.vgg and pdgan_train._download: VGG16 features against a hand-written forward pass,
state-dict validation, the weight search order and verified downloads (file:// URLs, no network)."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from pdgan_train import vgg
from pdgan_train._download import DownloadError, HashMismatchError, download_file, sha256_file
from pdgan_train.vgg import VGG16Features, load_vgg16

# The standard VGG16 "D" configuration and the features indices of the usual ReLU taps, written
# out independently of pdgan_train.vgg.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
TAPS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def standard_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state, index, cin = {}, 0, 3
    for v in CFG:
        if v == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * math.sqrt(2 / (9 * cin))
        state[f"features.{index}.bias"] = torch.randn(v, generator=g) * 0.1
        index, cin = index + 2, v
    state["classifier.0.weight"] = torch.randn(8, 4, generator=g)  # ignored, whatever its shape
    state["classifier.0.bias"] = torch.randn(8, generator=g)
    return state


def manual_features(state: dict[str, torch.Tensor], x: torch.Tensor, taps: list[int]) -> list[torch.Tensor]:
    h = ((x + 1) / 2 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)
    out, index = {}, 0
    for v in CFG:
        if v == "M":
            h = F.max_pool2d(h, 2, 2)
            out[index] = h
            index += 1
        else:
            h = F.conv2d(h, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1)
            out[index] = h
            h = F.relu(h)
            out[index + 1] = h
            index += 2
        if index > max(taps):
            break
    return [out[i] for i in taps]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("vgg")
    state = standard_state_dict()
    torch.save(state, folder / "vgg16.pth")
    save_file(state, str(folder / "vgg16.safetensors"))
    return state, folder


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """No real weights on this machine may leak into a test."""
    monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "pdgan-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.mark.parametrize(("suffix", "size"), [("pth", 32), ("safetensors", 40)], ids=["pth-32px", "safetensors-40px"])
def test_features_match_manual_forward(weights, suffix, size):
    state, folder = weights
    model = load_vgg16(folder / f"vgg16.{suffix}", download=False)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    got = model(x)
    expect = manual_features(state, x, list(TAPS.values()))
    assert [tuple(t.shape) for t in got] == [(2, 64, size, size), (2, 128, size // 2, size // 2),
                                            (2, 256, size // 4, size // 4), (2, 512, size // 8, size // 8)]
    for a, b in zip(got, expect, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_layer_order_truncation_greyscale(weights):
    state, folder = weights
    model = load_vgg16(folder / "vgg16.pth", layers=("relu3_3", "relu1_2", "conv2_1"), download=False)
    assert len(model.features) == 16  # features.0 .. features.15 (relu3_3): nothing after it
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    got = model(x)
    expect = manual_features(state, x.expand(-1, 3, -1, -1), [15, 3, 5])
    for a, b in zip(got, expect, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    with pytest.raises(ValueError, match="relu9_9"):
        VGG16Features(("relu9_9",))
    with pytest.raises(ValueError, match="at least 4x4"):  # two pools before relu3_3
        model(torch.zeros(1, 3, 2, 2))


def test_frozen_eval_and_gradient_to_input(weights):
    _, folder = weights
    model = load_vgg16(folder / "vgg16.pth", layers=("relu2_2",), download=False)
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    x = torch.zeros(1, 3, 32, 32, requires_grad=True)
    model(x)[0].abs().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_state_dicts(weights, tmp_path):
    state, _ = weights
    wrong = dict(state, **{"features.2.weight": torch.zeros(64, 32, 3, 3)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"wrong\.pth: features\.2\.weight has shape \(64, 32, 3, 3\), "
                                         r"expected \(64, 64, 3, 3\)"):
        load_vgg16(tmp_path / "wrong.pth")
    missing = {k: v for k, v in state.items() if k != "features.21.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing\.pth lacks \['features\.21\.bias'\]"):
        load_vgg16(tmp_path / "missing.pth")
    assert len(load_vgg16(tmp_path / "missing.pth", layers=("relu3_3",)).features) == 16  # not needed there
    torch.save(dict(state, **{"features.1.running_mean": torch.zeros(64)}), tmp_path / "bn.pth")
    with pytest.raises(ValueError, match=r"features\.1\.running_mean.*VGG16-BN"):
        load_vgg16(tmp_path / "bn.pth")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"no 'features\.\*' keys"):
        load_vgg16(tmp_path / "other.pth")


def first_bias(model: VGG16Features) -> torch.Tensor:
    return model.features[0].bias


class _NotATensor:
    pass


def test_unreadable_files(weights, tmp_path):
    _, folder = weights
    for suffix in ("pth", "safetensors"):
        data = (folder / f"vgg16.{suffix}").read_bytes()
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(data[: len(data) // 3])
        with pytest.raises(RuntimeError, match=rf"cut\.{suffix}.*truncated or corrupt") as info:
            load_vgg16(cut)
        assert "\n" not in str(info.value)
    torch.save({"features.0.weight": _NotATensor()}, tmp_path / "pickled.pth")  # weights_only refuses it
    with pytest.raises(RuntimeError, match=r"pickled\.pth"):
        load_vgg16(tmp_path / "pickled.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_vgg16(tmp_path / "absent.pth")


def test_weight_search_order(weights, tmp_path, monkeypatch):
    state, folder = weights
    other = standard_state_dict(seed=7)
    cache = tmp_path / "pdgan-cache"
    cache.mkdir()
    torch.save(other, cache / vgg.VGG16_FILENAME)
    torch.testing.assert_close(first_bias(load_vgg16(download=False)), other["features.0.bias"])  # cache
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(folder / "vgg16.safetensors"))
    torch.testing.assert_close(first_bias(load_vgg16(download=False)), state["features.0.bias"])  # env
    torch.testing.assert_close(first_bias(load_vgg16(cache / vgg.VGG16_FILENAME)), other["features.0.bias"])
    monkeypatch.setenv(vgg.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match=vgg.WEIGHTS_ENV):
        load_vgg16()
    monkeypatch.delenv(vgg.WEIGHTS_ENV)
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (cache / vgg.VGG16_FILENAME).rename(hub / vgg.VGG16_FILENAME)  # torch hub's cache is used too
    torch.testing.assert_close(first_bias(load_vgg16(download=False)), other["features.0.bias"])


def test_no_weights_clear_error(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError) as info:
        load_vgg16(download=False)
    msg = str(info.value)
    assert str(tmp_path / "pdgan-cache" / vgg.VGG16_FILENAME) in msg
    assert vgg.WEIGHTS_ENV in msg and "--no-feature-loss" in msg and vgg.VGG16_URL in msg
    monkeypatch.setattr(vgg, "VGG16_URL", (tmp_path / "offline" / "vgg16.pth").as_uri())
    with pytest.raises(RuntimeError, match=r"download failed.*--no-feature-loss"):
        load_vgg16(progress=False)
    assert list((tmp_path / "pdgan-cache").iterdir()) == []


def test_load_downloads_into_cache(weights, tmp_path, monkeypatch):
    state, folder = weights
    source = folder / "vgg16.pth"
    digest = sha256_file(source)
    monkeypatch.setattr(vgg, "VGG16_URL", source.as_uri())
    monkeypatch.setattr(vgg, "VGG16_SHA256", digest)
    monkeypatch.setattr(vgg, "VGG16_SHA256_PREFIX", digest[:8])
    model = load_vgg16(progress=False)
    torch.testing.assert_close(model.features[0].weight, state["features.0.weight"])
    assert sha256_file(tmp_path / "pdgan-cache" / vgg.VGG16_FILENAME) == digest


# --- download_file ------------------------------------------------------------------------------
def test_download_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    assert sha256_file(src) == digest
    out = tmp_path / "cache" / "sub" / "dst.bin"
    assert download_file(src.as_uri(), out, sha256=digest.upper(), sha256_prefix=digest[:8], progress=False) == out
    assert out.read_bytes() == src.read_bytes()

    bad = tmp_path / "cache" / "bad.bin"
    with pytest.raises(HashMismatchError, match=rf"expected {'0' * 64}, got {digest}"):
        download_file(src.as_uri(), bad, sha256="0" * 64, progress=False)
    with pytest.raises(HashMismatchError, match=rf"starting with deadbeef, got {digest}"):
        download_file(src.as_uri(), bad, sha256_prefix="deadbeef", progress=False)
    with pytest.raises(DownloadError, match="could not download"):
        download_file((tmp_path / "missing.bin").as_uri(), bad, progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["sub"]  # no file, no temp file left


def test_download_off_a_terminal_logs_a_start_and_an_end_line_and_no_bar(tmp_path, caplog, capfd, monkeypatch):
    import logging

    monkeypatch.delenv("RANK", raising=False)
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100_000)
    caplog.set_level(logging.INFO, logger="pdgan.progress")
    download_file(src.as_uri(), tmp_path / "dst.bin", progress=True)
    got = [r.getMessage() for r in caplog.records if r.name == "pdgan.progress"]
    assert [m.rsplit(" after ", 1)[0] for m in got] == [f"download {src.as_uri()}: started",
                                                         f"download {src.as_uri()}: done"]
    assert capfd.readouterr().err == ""  # torch.hub's bar is for terminals
    download_file(src.as_uri(), tmp_path / "dst2.bin", progress=False)
    assert len([r for r in caplog.records if r.name == "pdgan.progress"]) == 2
