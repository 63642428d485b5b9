"""Bundled pretrained models: `Engine.from_pretrained`, its listing, `pdgan_train.bundle`, and the model
the package ships (it must draw recognisable digits of every class, judged by the shipped classifier)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pdgan_infer import PDGAN, CheckpointError, hub, save_checkpoint
from pdgan_infer.engine import Engine, redraw_zero_init
from pdgan_train.bundle import bundle
from pdgan_train.bundle import main as bundle_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def run_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = PDGAN("digits")
    redraw_zero_init(model)  # images of real contrast: training's 1e-10 layers would give uint8 127/128 everywhere
    return save_checkpoint(model, tmp_path / "run" / "model", meta={"step": 7})


def test_bundle_then_from_pretrained(run_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "pretrained"
    path = bundle(run_checkpoint, "mine", "a test model", command="pdgan-train --preset digits",
                  metrics={"digits_fid": 1.5, "class_coverage": 1.0, "not_a_metric": 3}, dest=dest)
    assert path == dest / "mine.safetensors" and (dest / "mine.json").exists()
    monkeypatch.setattr(hub, "PRETRAINED_DIR", dest)
    listing = Engine.pretrained()
    assert list(listing) == ["mine"]
    info = listing["mine"]
    assert info["preset"] == "digits" and info["description"] == "a test model"
    assert info["metrics"] == {"digits_fid": 1.5, "class_coverage": 1.0}  # unknown keys are not recorded
    assert info["command"] == "pdgan-train --preset digits"
    bundled = Engine.from_pretrained("mine", backend="torch", verbose=False)
    original = Engine.from_checkpoint(run_checkpoint, backend="torch", verbose=False)
    a, b = bundled.generate(2, seed=3), original.generate(2, seed=3)
    assert a.std() > 20 and len(np.unique(a)) > 100  # not a sign test
    assert np.array_equal(a, b)  # the bundled copy holds the same weights
    sa, sb = bundled.model.state_dict(), original.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_from_pretrained_without_a_name_lists_and_explains(run_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "pretrained"
    bundle(run_checkpoint, "mine", "a test model", dest=dest)
    monkeypatch.setattr(hub, "PRETRAINED_DIR", dest)
    for call in (Engine.from_pretrained, lambda: Engine.from_pretrained("cifar10-imaginary")):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "'mine' (preset digits): a test model" in msg and "Engine.from_checkpoint(" in msg
    monkeypatch.setattr(hub, "PRETRAINED_DIR", tmp_path / "empty")
    with pytest.raises(ValueError, match="no pretrained model is bundled"):
        Engine.from_pretrained("digits")


@pytest.mark.parametrize("name", ["", " "])
def test_empty_model_name_is_not_the_working_directory(run_checkpoint, tmp_path, monkeypatch, name):
    """`from_pretrained("")` would load whatever model is in the working directory (Path("") is ".")."""
    import shutil
    for f in run_checkpoint.parent.iterdir():  # model.safetensors and model.json in the working directory
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.chdir(tmp_path)
    assert Engine.from_pretrained(".", device="cpu").config.preset == "digits"  # '.' asks for it
    with pytest.raises(hub.HubError, match="the model name is empty"):
        Engine.from_pretrained(name)


def test_damaged_bundle_is_named(run_checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "pretrained"
    bundle(run_checkpoint, "mine", "x", dest=dest)
    (dest / "mine.safetensors").write_bytes(b"{not a safetensors file")
    monkeypatch.setattr(hub, "PRETRAINED_DIR", dest)
    assert "unreadable" in Engine.pretrained()["mine"]["description"]
    with pytest.raises(CheckpointError, match="damaged"):
        Engine.from_pretrained("mine")


def test_bundle_cli_errors(run_checkpoint, tmp_path, capsys):
    assert bundle_main([str(tmp_path / "missing.safetensors"), "--name", "x", "--dest", str(tmp_path)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a wrong command line: 2
        bundle_main([str(run_checkpoint), "--name", "bad name", "--dest", str(tmp_path)])
    assert e.value.code == 2 and "plain identifier" in capsys.readouterr().err
    nolatent = save_checkpoint(PDGAN("digits", with_latent=False), tmp_path / "nolat")
    assert bundle_main([str(nolatent), "--name", "x", "--dest", str(tmp_path)]) == 1
    assert "no latent denoiser" in capsys.readouterr().err


def test_the_shipped_digits_model_draws_every_digit():
    """The package ships `digits`: 1000 samples, judged by the shipped digits classifier (100% held-out
    accuracy), must cover all ten classes with confident predictions."""
    from pdgan_train.digits_classifier import load_digits_classifier

    models = hub.pretrained_models()
    assert "digits" in models, "the package must ship pdgan_infer/pretrained/digits.safetensors"
    info = models["digits"]
    assert info["preset"] == "digits" and info["command"].startswith("pdgan-train")
    engine = Engine.from_pretrained("digits", verbose=False)  # backend "auto": the fastest here
    assert engine.model.latent is not None and engine.model.latent_slot == "first"
    images = engine.generate(1000, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    clf = load_digits_classifier()
    with torch.no_grad():
        probs = torch.softmax(clf(x), dim=1)
    conf, label = probs.max(1)
    counts = np.bincount(label[conf > 0.5].numpy(), minlength=10)
    assert (counts > 0).all(), f"classes drawn (confident): {counts.tolist()}"
    assert float((conf > 0.5).float().mean()) > 0.6


# --- model folders, save_pretrained, the Hub ------------------------------------------------------
@pytest.fixture(scope="module")
def digits_model():
    from pdgan_infer import load_checkpoint
    return load_checkpoint(hub.pretrained_path("digits"))


@pytest.fixture(scope="module")
def reference_images():
    return Engine.from_pretrained("digits", backend="torch", device="cpu").generate(seeds=range(4))


def test_save_pretrained_then_from_pretrained_dir(digits_model, reference_images, tmp_path):
    folder = hub.save_pretrained(digits_model, tmp_path / "my-model")
    assert sorted(p.name for p in folder.iterdir()) == [".pdgan-files", "README.md", "config.json",
                                                         "model.safetensors"]  # .pdgan-files: what pdgan wrote
    got = Engine.from_pretrained(folder, backend="torch", device="cpu").generate(seeds=range(4))
    np.testing.assert_array_equal(got, reference_images)
    got = Engine.from_pretrained(str(folder), backend="torch", device="cpu").generate(seeds=range(4))
    np.testing.assert_array_equal(got, reference_images)


def test_save_pretrained_writes_over_its_own_files_only(digits_model, tmp_path):
    """The user's README.md or another tool's model.safetensors in the folder are not replaced without
    overwrite=True; a folder written by save_pretrained is written again freely."""
    from pdgan_infer.files import OutputError
    folder = hub.save_pretrained(digits_model, tmp_path / "m")
    hub.save_pretrained(digits_model, folder)  # its own files
    (folder / "README.md").write_text("the user's card")
    with pytest.raises(OutputError, match=r"README.md exists and was not written by pdgan; give overwrite=True"):
        hub.save_pretrained(digits_model, folder)
    assert (folder / "README.md").read_text() == "the user's card"
    hub.save_pretrained(digits_model, folder, overwrite=True)
    assert (folder / "README.md").read_text() != "the user's card"
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"another tool's weights")
    with pytest.raises(OutputError, match="holds files that pdgan did not write; give overwrite=True"):
        hub.save_pretrained(digits_model, other)
    assert (other / "model.safetensors").read_bytes() == b"another tool's weights"


def test_model_card_front_matter(digits_model, tmp_path):
    yaml = pytest.importorskip("yaml")
    folder = hub.save_pretrained(digits_model, tmp_path / "m")
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])  # parsed by a YAML library, not by pdgan
    assert front["license"] == "mit" and front["library_name"] == "pdgan"
    assert front["pipeline_tag"] == "unconditional-image-generation"
    assert front["datasets"] == ["optdigits"] and "digits_fid" in front["metrics"]
    assert "fid" not in front["metrics"]  # the digits-CNN FID is not the Hub's (Inception) fid
    assert not {"n", "seed"} & set(front["metrics"])  # recorded beside the metrics, not metrics
    recorded = digits_model.checkpoint_meta["pretrained"]["metrics"]
    numbers = [k for k, v in recorded.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert set(front["metrics"]) == {k for k in numbers if k not in ("n", "seed")}
    (index,) = front["model-index"]
    (result,) = index["results"]
    assert result["task"]["type"] == "unconditional-image-generation"
    assert result["dataset"] == {"name": "optdigits", "type": "optdigits"}
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {k: recorded[k] for k in front["metrics"]}
    names = {m["type"]: m["name"] for m in result["metrics"]}
    assert names["digits_fid"] == "FID (digits-CNN features, not Inception)"
    body = text.split("---\n", 2)[2]
    for needle in ("## Usage", "Engine.from_pretrained(", "pdgan-generate", "## Training data", "scikit-learn digits",
                   "CC BY 4.0", "## Licence", "## Intended use and limitations", "## Citation",
                   "Semantics to Details with Denoising Diffusion GAN", "digits_fid", "pdgan-train --preset digits"):
        assert needle in body, needle
    other = hub.save_pretrained(digits_model, tmp_path / "m2", license="cc-by-4.0", datasets=["mine"], meta={})
    front = yaml.safe_load((other / "README.md").read_text().split("---\n")[1])
    assert front["license"] == "cc-by-4.0" and front["datasets"] == ["mine"]
    assert "metrics" not in front and "model-index" not in front


def test_safetensors_metadata_is_accepted_by_hugging_face(digits_model, tmp_path):
    """huggingface_hub refuses safetensors files without metadata format=pt (as transformers does)."""
    hf = pytest.importorskip("huggingface_hub")
    from safetensors import safe_open

    folder = hub.save_pretrained(digits_model, tmp_path / "m")
    state = hf.load_state_dict_from_file(folder / "model.safetensors")
    expected = {f"{c}.{k}": v for c in digits_model.components
                for k, v in getattr(digits_model, c).state_dict().items()}
    assert set(state) == set(expected) and all(torch.equal(state[k], expected[k]) for k in expected)
    with safe_open(str(save_checkpoint(digits_model, tmp_path / "ckpt")), "pt") as f:
        assert f.metadata()["format"] == "pt" and "pdgan" in f.metadata()


def test_old_checkpoints_keep_loading(digits_model, reference_images, tmp_path):
    """A checkpoint written before the "format" key (metadata {"pdgan": ...} only) loads as before."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from pdgan_infer.checkpoint import sha256_file

    path = save_checkpoint(digits_model, tmp_path / "old" / "model")
    with safe_open(str(path), "pt") as f:
        pdgan_meta = f.metadata()["pdgan"]
    save_file(load_file(str(path)), str(path), metadata={"pdgan": pdgan_meta})
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "sha256": sha256_file(path)}))
    (tmp_path / "old" / "config.json").write_text(json.dumps({"train": {}}))  # a run directory's own config.json
    for where in (path, tmp_path / "old", sidecar):
        got = Engine.from_pretrained(where, backend="torch", device="cpu").generate(seeds=range(4))
        np.testing.assert_array_equal(got, reference_images)
    sidecar.unlink()  # the weights alone: the embedded header (the run's config.json is not a checkpoint's)
    got = Engine.from_pretrained(tmp_path / "old", backend="torch", device="cpu").generate(seeds=range(4))
    np.testing.assert_array_equal(got, reference_images)
    with pytest.raises(ValueError, match="config.json is not a pdgan model config"):
        hub.save_pretrained(digits_model, tmp_path / "old")  # would overwrite the run's own config.json
    (tmp_path / "old" / "config.json").unlink()
    save_checkpoint(digits_model, tmp_path / "old" / "model")
    with pytest.raises(ValueError, match="holds a pdgan-train checkpoint"):
        hub.save_pretrained(digits_model, tmp_path / "old")  # would leave a stale model.json beside new weights


def test_from_pretrained_hub_id_offline(digits_model, reference_images, tmp_path):
    """An `org/repo` id through huggingface_hub, offline, from a Hugging Face cache the test builds."""
    pytest.importorskip("huggingface_hub")
    import shutil
    import subprocess
    import sys

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-cache" / "models--someorg--pdgan-digits"
    hub.save_pretrained(digits_model, repo / "snapshots" / commit, repo_id="someorg/pdgan-digits")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert "Engine.from_pretrained('someorg/pdgan-digits')" in (repo / "snapshots" / commit / "README.md").read_text()
    script = (
        "import sys, numpy as np\n"
        "from pdgan_infer.engine import Engine\n"
        "e = Engine.from_pretrained('someorg/pdgan-digits', backend='torch', device='cpu')\n"
        "np.save(sys.argv[1], e.generate(seeds=range(4)))\n"
        "try:\n"
        "    Engine.from_pretrained('someorg/not-cached')\n"
        "except ValueError as err:\n"
        "    print('ERR', err)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_HOME=str(tmp_path / "hf-home"),
               OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out.npy")], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), reference_images)
    assert "ERR 'someorg/not-cached' is not a local folder, and it is not in the Hugging Face cache" in run.stdout
    shutil.rmtree(tmp_path / "hf-home", ignore_errors=True)


def test_hub_id_without_huggingface_hub_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "huggingface_hub" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'pdgan\[hub\]'"):
        Engine.from_pretrained("someorg/some-model")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PDGAN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "pdgan"
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "mine"))
    assert hub.cache_dir() == tmp_path / "mine" and hub.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("PDGAN_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hub.cache_dir() == Path.home() / ".cache" / "pdgan"


def test_exported_graphs_share_the_one_cache(monkeypatch, tmp_path):
    from pdgan_infer.export import cache

    monkeypatch.delenv("PDGAN_CACHE_DIR", raising=False)
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "one"))
    assert cache.default_cache_dir() == hub.cache_dir() == tmp_path / "one"
    monkeypatch.setenv("PDGAN_CACHE_DIR", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="PDGAN_CACHE"):
        assert cache.default_cache_dir() == tmp_path / "old"


def test_engine_save_pretrained(digits_model, tmp_path):
    """Engine.save_pretrained writes the folder hub.save_pretrained writes; the model class has no packaging
    method (PDGAN.save_pretrained, deprecated in 0.1.0, is gone)."""
    from pdgan_infer import Engine, hub, load_checkpoint
    engine = Engine(digits_model, backend="torch", device="cpu", verbose=False)
    a = engine.save_pretrained(tmp_path / "a")
    b = hub.save_pretrained(digits_model, tmp_path / "b")
    assert not hasattr(digits_model, "save_pretrained")
    expected = digits_model.state_dict()
    for folder in (a, b):
        loaded = load_checkpoint(folder)
        assert loaded.config == digits_model.config
        assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())


def test_card_parses_with_model_card_and_both_writers_agree(digits_model, tmp_path, monkeypatch):
    """huggingface_hub's ModelCard.load reads the card's eval_results with pdgan's metric ids; the card written
    by hand (no huggingface_hub) carries the same metadata as the one written through ModelCardData."""
    pytest.importorskip("huggingface_hub")
    yaml = pytest.importorskip("yaml")
    import importlib.util

    from huggingface_hub import ModelCard

    folder = hub.save_pretrained(digits_model, tmp_path / "with-hub", repo_id="me/digits")
    results = ModelCard.load(folder / "README.md").data.eval_results
    recorded = digits_model.checkpoint_meta["pretrained"]["metrics"]
    assert {r.metric_type: r.metric_value for r in results} == {
        k: v for k, v in recorded.items() if isinstance(v, float) and k not in ("n", "seed")}
    fid = next(r for r in results if r.metric_type == "digits_fid")
    assert (fid.metric_name, fid.task_type, fid.dataset_type) == (
        "FID (digits-CNN features, not Inception)", "unconditional-image-generation", "optdigits")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "huggingface_hub" else real(name, *a))
    by_hand = hub.save_pretrained(digits_model, tmp_path / "by-hand", repo_id="me/digits")
    monkeypatch.undo()

    def front(path):
        return yaml.safe_load((path / "README.md").read_text().split("---\n")[1])

    assert front(by_hand) == front(folder) and "model-index" in front(folder)
    assert (by_hand / "README.md").read_text() != (folder / "README.md").read_text()  # two writers
    assert ModelCard.load(by_hand / "README.md").data.eval_results == results
    meta = digits_model.checkpoint_meta
    assert yaml.safe_load(hub.front_matter(hub.card_metadata(digits_model, meta), hub=False)) == \
        yaml.safe_load(hub.front_matter(hub.card_metadata(digits_model, meta), hub=True))


def test_hub_keywords_with_a_local_folder(digits_model, reference_images, tmp_path):
    """token=, local_files_only=, cache_dir=, force_download= and revision= are accepted for a bundled name and a
    folder, which are already here: the same images, and nothing written to the Hugging Face cache."""
    folder = hub.save_pretrained(digits_model, tmp_path / "m")
    keywords = dict(token="hf_not_used", local_files_only=True, cache_dir=tmp_path / "hf", force_download=True,
                    revision="main")
    for name in (folder, str(folder), "digits"):
        got = Engine.from_pretrained(name, backend="torch", device="cpu", **keywords).generate(seeds=range(4))
        np.testing.assert_array_equal(got, reference_images)
    assert not (tmp_path / "hf").exists()


def _hf_cache(digits_model, cache: Path, repo_id: str) -> Path:
    """A Hugging Face cache holding `repo_id` at refs/main, in huggingface_hub's layout."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    hub.save_pretrained(digits_model, repo / "snapshots" / commit, repo_id=repo_id)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_hub_id_from_the_cache_with_local_files_only(digits_model, reference_images, tmp_path, monkeypatch):
    """An org/repo id with local_files_only=True and cache_dir=: the snapshot in that cache, no network; the same
    id with an empty cache is a one-line HubError."""
    pytest.importorskip("huggingface_hub")
    for k in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_HOME", "HF_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token or cache of the machine's user
    _hf_cache(digits_model, tmp_path / "cache", "someorg/pdgan-digits")
    engine = Engine.from_pretrained("someorg/pdgan-digits", backend="torch", device="cpu", local_files_only=True,
                                    cache_dir=tmp_path / "cache", token="hf_not_used")
    np.testing.assert_array_equal(engine.generate(seeds=range(4)), reference_images)
    (tmp_path / "empty").mkdir()
    with pytest.raises(hub.HubError) as err:
        Engine.from_pretrained("someorg/pdgan-digits", local_files_only=True, cache_dir=tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"'someorg/pdgan-digits' is not a local folder, and it is not in the Hugging Face "
                              f"cache {tmp_path / 'empty'} and cannot be downloaded (local_files_only=True)")


@pytest.mark.usefixtures("torchscript_export")
def test_cache_dir_with_a_local_model_and_an_exported_backend_warns(tmp_path, monkeypatch):
    """cache_dir= used to be the export cache: with a local model (no Hub cache to use) and an exported backend,
    a warning names export_cache_dir=, and the graph goes to the export cache, not to cache_dir."""
    from tiny_models import tiny_config

    from pdgan_infer.backends import probe
    if probe("onnxruntime", torch.device("cpu")) is not None:
        pytest.skip("onnxruntime is not installed")
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "pdgan-cache"))
    folder = hub.save_pretrained(PDGAN(tiny_config()), tmp_path / "tiny")
    with pytest.warns(UserWarning, match="cache_dir= is the Hugging Face cache, .* is export_cache_dir="):
        Engine.from_pretrained(folder, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "hf")
    assert not (tmp_path / "hf").exists() and list((tmp_path / "pdgan-cache").rglob("*.onnx"))


def test_push_to_hub_uploads_the_save_pretrained_folder(digits_model, reference_images, tmp_path, monkeypatch):
    """Engine.push_to_hub against huggingface_hub's HfApi with its network calls replaced by recorders (the
    upload copies the folder): the repository is created, the three files go up, and the copy loads to the same
    images."""
    hf = pytest.importorskip("huggingface_hub")
    import shutil

    calls = []

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, kw, self.token))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kw):
        calls.append(("create_branch", repo_id, kw, self.token))

    def upload_folder(self, **kw):
        calls.append(("upload_folder", kw.pop("repo_id"), kw, self.token))
        folder = Path(kw["folder_path"])
        shutil.copytree(folder, tmp_path / "uploaded",
                        ignore=lambda d, names: [n for n in names if n not in kw["allow_patterns"]])
        return "https://huggingface.co/me/digits/commit/0123abc"

    for name, fn in (("create_repo", create_repo), ("create_branch", create_branch),
                     ("upload_folder", upload_folder)):
        monkeypatch.setattr(hf.HfApi, name, fn)
    engine = Engine(digits_model, backend="torch", device="cpu")
    url = engine.push_to_hub("me/digits", token="hf_x", private=True, commit_message="first")
    assert url == "https://huggingface.co/me/digits/commit/0123abc"
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1:] == ("me/digits", {"exist_ok": True, "private": True}, "hf_x")
    _, repo_id, upload, token = calls[1]
    assert (repo_id, token, upload["commit_message"], upload["revision"], upload["create_pr"]) == (
        "me/digits", "hf_x", "first", None, False)
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is gone
    assert sorted(p.name for p in (tmp_path / "uploaded").iterdir()) == ["README.md", "config.json",
                                                                         "model.safetensors"]
    assert "Engine.from_pretrained('me/digits')" in (tmp_path / "uploaded" / "README.md").read_text()
    got = Engine.from_pretrained(tmp_path / "uploaded", backend="torch", device="cpu").generate(seeds=range(4))
    np.testing.assert_array_equal(got, reference_images)

    calls.clear()
    shutil.rmtree(tmp_path / "uploaded")
    hub.push_to_hub(digits_model, "me/digits", revision="v2")
    assert [(c[0], c[2].get("branch")) for c in calls] == [("create_repo", None), ("create_branch", "v2"),
                                                            ("upload_folder", None)]
    assert calls[2][2]["revision"] == "v2"
    calls.clear()
    shutil.rmtree(tmp_path / "uploaded")
    hub.push_to_hub(digits_model, "me/digits", revision="main", create_pr=True)  # a PR: no branch to create
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"] and calls[1][2]["create_pr"] is True


def test_push_to_hub_without_huggingface_hub_names_the_extra(digits_model, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "huggingface_hub" else real(name, *a))
    with pytest.raises(ImportError, match=r"push_to_hub needs huggingface_hub: pip install 'pdgan\[hub\]'"):
        Engine(digits_model, backend="torch", device="cpu").push_to_hub("me/digits")
