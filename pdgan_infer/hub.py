"""Where models come from and where they go: bundled names, local checkpoints and folders, the Hugging
Face Hub, `save_pretrained` folders with a model card, and pdgan's one cache directory.

    Engine.from_pretrained("digits")               # a model bundled with the package
    Engine.from_pretrained("runs/digits")          # a folder (save_pretrained, or a pdgan-train run)
    Engine.from_pretrained("runs/digits/model.safetensors")   # a checkpoint file (NAME.safetensors + NAME.json)
    Engine.from_pretrained("org/repo", revision="main", token=None, cache_dir=None, local_files_only=False,
                           force_download=False)  # the Hub: pip install 'pdgan[hub]'
    engine.save_pretrained("my-model")             # config.json + model.safetensors + README.md (card)
    engine.push_to_hub("me/my-model", private=True)   # the same folder, uploaded (HfApi)

The Hub path goes through `huggingface_hub.snapshot_download`, with the keywords of
`ModelHubMixin.from_pretrained` passed on as they are, so its cache (`cache_dir=`, else `HF_HUB_CACHE`), offline
mode (`HF_HUB_OFFLINE=1`, `local_files_only=True`) and authentication (`token=`, `HF_TOKEN`) apply unchanged; only
config.json, model.safetensors and README.md are fetched. A name is tried in this order: bundled model, existing
local path, Hub repository id (`owner/name`); the Hub keywords change nothing for the first two.

The model folder is the layout of huggingface_hub's `PyTorchModelHubMixin` (config.json, model.safetensors,
README.md), and `from_pretrained` / `push_to_hub` take the mixin's keywords, but by hand rather than through the
mixin: `PDGAN` cannot subclass `ModelHubMixin` without making huggingface_hub a dependency of pdgan_infer (which
runs with torch alone; a base class chosen at import time would give two different `PDGAN` classes); the mixin
writes its `__init__` arguments as config.json, while pdgan's config.json is its checkpoint record (format,
configuration, weights sha256, training metadata: `pdgan_infer.checkpoint`); and the object users load is the
`Engine`, not the network. The card is written with huggingface_hub's `ModelCardData` / `EvalResult` when it is
installed, and from the same metadata (`card_metadata`) by hand otherwise.

`cache_dir()` is where pdgan keeps downloads (feature networks), dataset statistics and exported
graphs: `$PDGAN_CACHE`, else `$XDG_CACHE_HOME/pdgan`, else `~/.cache/pdgan`. It is not the Hugging Face cache.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from .checkpoint import FOLDER_CONFIG, FORMAT, CheckpointError, read_header, write_checkpoint
from .config import DDGAN_PRESETS
from .errors import PDGANError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
CACHE_ENV = "PDGAN_CACHE"
HUB_FILES = (FOLDER_CONFIG, "model.safetensors", "README.md")
OWN_CHECKPOINT = ("to load your own model pass its folder or file: Engine.from_pretrained('runs/NAME') or "
                  "Engine.from_checkpoint('runs/NAME/model.safetensors') (pdgan-train writes model.safetensors "
                  "+ model.json in its --out directory); a Hub repository loads as Engine.from_pretrained('org/repo')")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(PDGANError, ValueError):
    """A model could not be found or fetched; the message lists what is available."""


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """pdgan's cache: `override`, else `$PDGAN_CACHE`, else `$XDG_CACHE_HOME/pdgan`, else `~/.cache/pdgan`."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "pdgan"
    return Path.home() / ".cache" / "pdgan"


# --- bundled models ------------------------------------------------------------------------------
def pretrained_models(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The bundled models by name: their weights path, preset, one-line description, the quality
    numbers measured on them and the command that trained them (from each NAME.json)."""
    folder = PRETRAINED_DIR if directory is None else Path(directory)
    models = {}
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            header = read_header(weights)
        except CheckpointError as e:  # a damaged bundle is listed with its problem, not hidden
            models[weights.stem] = {"path": weights, "preset": None, "description": f"unreadable: {e}",
                                    "metrics": {}, "command": None}
            continue
        info = header.get("meta", {}).get("pretrained", {})
        models[weights.stem] = {"path": weights, "preset": header["config"]["preset"],
                                "description": info.get("description", ""), "metrics": info.get("metrics", {}),
                                "command": info.get("command")}
    return models


def describe(models: dict[str, dict[str, Any]]) -> str:
    """A human-readable listing of `pretrained_models()` and how to load a user's own checkpoint."""
    if not models:
        lines = ["no pretrained model is bundled with this installation"]
    else:
        lines = ["available pretrained models:"]
        for name, info in models.items():
            lines.append(f"  {name!r} (preset {info['preset']}): {info['description'] or 'no description'}")
    lines.append(OWN_CHECKPOINT)
    return "\n".join(lines)


def pretrained_path(name: str | None, directory: str | Path | None = None) -> Path:
    """The weights of bundled model `name`; HubError (a ValueError) listing what is available (and how
    to load one's own checkpoint) if `name` is None or unknown."""
    models = pretrained_models(directory)
    if name is None:
        raise HubError("Engine.from_pretrained needs a model name, folder or Hub id.\n" + describe(models))
    if not isinstance(name, str) or name not in models:
        raise HubError(f"no pretrained model named {name!r}.\n" + describe(models))
    if models[name]["preset"] is None:
        raise CheckpointError(f"the bundled model {name!r} is damaged ({models[name]['description']}); "
                              "reinstall pdgan (pip install --force-reinstall pdgan)")
    return models[name]["path"]


# --- any model -----------------------------------------------------------------------------------
def resolve_model(name: str | os.PathLike | None, revision: str | None = None, *, token: str | bool | None = None,
                  cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                  force_download: bool = False) -> Path:
    """The checkpoint path (file or folder) that `load_checkpoint` reads for a bundled name, a local
    file or folder, or a Hub repository id `owner/name` (downloaded, or taken from the Hugging Face
    cache). The Hub keywords are `huggingface_hub.snapshot_download`'s (`revision`: branch, tag or commit;
    `cache_dir`: the Hugging Face cache, default `HF_HUB_CACHE`); a bundled name or a local path is already
    here, so they change nothing for it."""
    if name is None:
        return pretrained_path(None)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"the model must be a name, a path or a Hub id, got {type(name).__name__}")
    text = os.fspath(name)
    if not text.strip():  # Path("") is the working directory: never load whatever happens to be there
        raise HubError(f"the model name is empty ({text!r}); give a bundled name, a checkpoint file or folder, or a "
                       "Hub id org/repo (the working directory: '.')")
    if isinstance(name, str) and name in pretrained_models():
        return pretrained_path(name)
    local = Path(text).expanduser()
    if local.exists() or os.path.lexists(local) or local.with_name(local.name + ".safetensors").exists():
        return local  # a dangling link or a symlink loop too: the loader names what is wrong with it
    if isinstance(name, str) and _REPO_ID.match(text) and not text.endswith((".safetensors", ".json")):
        return hub_download(text, revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only,
                            force_download=force_download)
    if "/" in text or os.sep in text or text.startswith((".", "~")) or text.endswith((".safetensors", ".json")):
        raise CheckpointError(f"checkpoint not found: {local} (expected a folder with model.safetensors, or "
                              "NAME.safetensors with NAME.json beside it)")
    raise HubError(f"no pretrained model, file or folder named {text!r}.\n" + describe(pretrained_models()))


def require_hub(what: str):
    """The huggingface_hub module; ImportError naming the extra when it is not installed (pdgan_infer runs
    with torch alone)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ImportError(f"{what} needs huggingface_hub: pip install 'pdgan[hub]'")
    import huggingface_hub
    return huggingface_hub


def hub_download(repo_id: str, revision: str | None = None, *, token: str | bool | None = None,
                 cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                 force_download: bool = False) -> Path:
    """The local snapshot folder of Hub repository `repo_id` (config.json, model.safetensors, README.md), through
    `huggingface_hub.snapshot_download` with these keywords."""
    hf = require_hub(f"there is no local folder {repo_id!r}, and loading it from the Hugging Face Hub")
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = hf.snapshot_download(repo_id, revision=revision, allow_patterns=list(HUB_FILES), token=token,
                                      cache_dir=None if cache_dir is None else str(cache_dir),
                                      local_files_only=local_files_only, force_download=force_download)
    except LocalEntryNotFoundError as e:
        why = ("local_files_only=True" if local_files_only
               else "offline, HF_HUB_OFFLINE=1, or no network")
        where = f" {cache_dir}" if cache_dir is not None else ""
        raise HubError(f"{repo_id!r} is not a local folder, and it is not in the Hugging Face cache{where} and cannot "
                       f"be downloaded ({why}): {str(e).splitlines()[0]}") from None
    except (RepositoryNotFoundError, HfHubHTTPError) as e:
        raise HubError(f"{repo_id!r} is not a local folder, and the Hugging Face Hub cannot give it: "
                       f"{str(e).splitlines()[0]}") from None
    folder = Path(folder)
    if not (folder / "model.safetensors").exists():
        raise HubError(f"Hub repository {repo_id!r} has no model.safetensors: it was not written by "
                       "pdgan's save_pretrained")
    return folder


def push_to_hub(model, repo_id: str, *, token: str | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str = "Upload pdgan model", create_pr: bool = False,
                **save_options: Any):
    """Upload `model` as Hub repository `repo_id`: `save_pretrained` into a temporary folder (keywords
    `save_options`: meta, license, datasets), then `HfApi(token=token).create_repo(repo_id, exist_ok=True,
    private=private)` and `upload_folder` of config.json, model.safetensors and README.md (`revision`: the branch,
    created if missing; `create_pr`: open a pull request instead of committing). Returns the `CommitInfo`
    (`.commit_url`; with create_pr, `.pr_url`)."""
    import tempfile

    hf = require_hub("push_to_hub")
    api = hf.HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pdgan-push-") as tmp:
        folder = save_pretrained(model, Path(tmp) / "model", repo_id=repo_id, **save_options)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                 revision=revision, create_pr=create_pr, allow_patterns=list(HUB_FILES))


# --- save_pretrained -----------------------------------------------------------------------------
PAPER = ("Progressive Image Synthesis from Semantics to Details with Denoising Diffusion GAN "
         "(anonymous authors, paper under double-blind review)")
NOT_METRICS = ("n", "seed", "step", "steps", "n_real")  # recorded beside the metrics, not metrics
DATASETS = {  # preset or data spec -> (Hub-style dataset id for the card's metadata, description, licence)
    "digits": ("optdigits", "the scikit-learn digits (8x8 greyscale handwritten digits, 1,797 images, a copy of "
               "the UCI 'Optical Recognition of Handwritten Digits' test set), upscaled to 32x32",
               "CC BY 4.0 (UCI Machine Learning Repository)"),
    "cifar10": ("cifar10", "CIFAR-10 training set (50,000 32x32 images)", "see https://www.cs.toronto.edu/~kriz/cifar.html"),
    "celebahq256": ("celebahq", "CelebA-HQ at 256x256 (30,000 images)",
                    "non-commercial research use (CelebA terms)"),
    "lsun256": ("lsun", "LSUN Church Outdoor at 256x256 (126,227 images)", "see https://www.yf.io/p/lsun"),
}
DATASETS.update({preset: DATASETS[name] for name, preset in DDGAN_PRESETS.items()})


def _dataset(model, meta: dict[str, Any]) -> tuple[str, str, str]:
    data = str((meta.get("train_config") or {}).get("data") or "")
    if data == "digits":
        return DATASETS["digits"]
    if "cifar" in data.lower():
        return DATASETS["cifar10"]
    preset = model.config.preset
    if preset in DATASETS and not data:
        return DATASETS[preset]
    name = Path(data).name or "unknown"
    return name, f"an image folder ({name})" if data else "not recorded", "not recorded"


TASK = ("unconditional-image-generation", "Unconditional Image Generation")  # the Hub's pipeline tag and task name
METRICS = {  # recorded key -> (metric id in the card's model-index, the name the Hub shows)
    "fid": ("fid", "FID (Inception-v3 features, pdgan-eval)"),
    "digits_fid": ("digits_fid", "FID (digits-CNN features, not Inception)"),
    "is_mean": ("inception_score", "Inception Score"),
    "is_std": ("inception_score_std", "Inception Score (standard deviation over splits)"),
    "precision": ("precision", "Precision (VGG16 features, k-NN manifolds)"),
    "recall": ("recall", "Recall (VGG16 features, k-NN manifolds)"),
}


def _metrics(meta: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """(the recorded metrics: finite numbers by key, how they were measured: n, seed, ...)."""
    info = meta.get("pretrained") or {}
    recorded = dict(info.get("metrics") or meta.get("metrics") or {})
    context = {k: recorded.pop(k) for k in NOT_METRICS if k in recorded}
    metrics = {k: float(v) for k, v in recorded.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return metrics, context


def card_metadata(model, meta: dict[str, Any] | None = None, license: str = "mit",
                  datasets: list[str] | None = None, repo_id: str | None = None) -> dict[str, Any]:
    """The model card's metadata (its YAML front matter) as the Hub reads it: license, library_name,
    pipeline_tag, tags, datasets, metrics (ids) and a `model-index` with every recorded metric (task
    unconditional-image-generation, the training data set). The one template of both serialisations."""
    meta = dict(meta or {})
    data_id = _dataset(model, meta)[0]
    metrics, _ = _metrics(meta)
    source = meta.get("converted_from") if isinstance(meta.get("converted_from"), dict) else None
    front: dict[str, Any] = {"license": license, "library_name": "pdgan", "pipeline_tag": TASK[0],
                             "tags": ["pdgan", "gan", "diffusion", "denoising-diffusion-gan", TASK[0]],
                             "datasets": list(datasets or [data_id])}
    if source and source.get("license"):
        front.update(license="other", license_name=source["license"])
        if source.get("license_url"):
            front["license_link"] = source["license_url"]
    if metrics:
        ids = {k: METRICS.get(k, (k, k.replace("_", " "))) for k in sorted(metrics)}
        front["metrics"] = [ids[k][0] for k in ids]
        front["model-index"] = [{"name": repo_id or f"pdgan-{model.config.preset}", "results": [{
            "task": {"type": TASK[0], "name": TASK[1]},
            "dataset": {"name": front["datasets"][0], "type": front["datasets"][0]},
            "metrics": [{"type": ids[k][0], "value": metrics[k], "name": ids[k][1]} for k in ids]}]}]
    return front


def front_matter(front: dict[str, Any], hub: bool | None = None) -> str:
    """`card_metadata` as YAML: through huggingface_hub's `ModelCardData` (its `EvalResult`s parsed from the
    model-index) when it is installed (`hub`: None) or `hub` is True; by hand otherwise (JSON values are YAML)."""
    if hub is None:
        hub = importlib.util.find_spec("huggingface_hub") is not None
    if not hub:
        return "\n".join(f"{k}: {json.dumps(v)}" for k, v in front.items())
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    fields = {k: v for k, v in front.items() if k != "model-index"}
    if "model-index" in front:
        fields["model_name"], fields["eval_results"] = model_index_to_eval_results(front["model-index"])
    return ModelCardData(**fields).to_yaml()


def model_card(model, meta: dict[str, Any] | None = None, license: str = "mit",
               datasets: list[str] | None = None, repo_id: str | None = None) -> str:
    """README.md for a model folder: YAML front matter (`card_metadata`: license, library_name, pipeline_tag,
    tags, datasets, metrics, model-index) and what the model is, how to use it, what it was trained on, its
    numbers, intended use, limitations and the paper."""
    meta = dict(meta or {})
    info = meta.get("pretrained") or {}
    cfg = model.config
    _, data_text, data_licence = _dataset(model, meta)
    metrics, context = _metrics(meta)
    source = meta.get("converted_from") if isinstance(meta.get("converted_from"), dict) else None
    yaml = front_matter(card_metadata(model, meta, license, datasets, repo_id)).strip()
    where = repo_id or "PATH/TO/THIS/FOLDER"
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "---", yaml, "---", "",
        f"# pdgan `{cfg.preset}` model", "",
        info.get("description") or (
            f"A PDGAN model (preset `{cfg.preset}`, {cfg.resolution}x{cfg.resolution})." if not source
            else f"The `{source.get('config')}` generator of {source.get('project')}, converted to pdgan "
                 f"({cfg.resolution}x{cfg.resolution})."),
        "",
        ("PDGAN is a 2-step Denoising Diffusion GAN with a semantic encoder: a latent denoiser draws a semantic "
         f"code z_T, then {cfg.schedule.T} generator calls refine the image from noise." if model.encoder is not None
         else f"A Denoising Diffusion GAN without a semantic code: {cfg.schedule.T} generator calls, each with a "
              "fresh z ~ N(0, I), refine the image from noise."), "",
        "## Usage", "", "```bash", "pip install 'pdgan[hub]'",
        f"pdgan-generate {where} --seeds 0-49999 --outdir samples     # {{seed:06d}}.png, image k from seed k",
        "```", "", "```python", "from pdgan_infer import Engine", "",
        f"engine = Engine.from_pretrained({where!r})", "images = engine.generate(seeds=range(16))   "
        f"# (16, {cfg.resolution}, {cfg.resolution}, 3) uint8; image i from seeds[i] alone",
        "pil = engine(4, seed=0, output_type='pil')    # a list of PIL images ('pt': float32 NCHW in [0, 1])",
        *(["codes = engine.encode(images)               # semantic codes z_T = SE(x0)"] if model.encoder is not None
          else []), "```", "",
        "## Model", "",
        f"- preset `{cfg.preset}`, {cfg.resolution}x{cfg.resolution}x{cfg.channels}, T = {cfg.schedule.T} "
        f"sampling steps, semantic code size {cfg.generator.nz}",
        f"- components: {', '.join(model.components)} ({n_params / 1e6:.2f} M parameters), latent slot "
        f"`{model.latent_slot}`",
        "- weights: `model.safetensors` (safetensors, metadata `format: pt`); configuration: `config.json`", "",
        "## Training data", "", f"{data_text}. Licence of the data: {data_licence}.", ""]
    if source:
        lines += ["## Source", "",
                  f"Converted by `pdgan-convert ddgan` from {source.get('file') or 'a state dict'} "
                  + (f"(sha256 `{source['sha256']}`) " if source.get("sha256") else "")
                  + f"of {source.get('project', 'another project')} (config `{source.get('config')}`); the weights "
                  "are that project's, mapped tensor by tensor onto pdgan's generator.", ""]
    if info.get("command") or meta.get("step") is not None:
        lines += ["## Training", ""]
        if info.get("command"):
            lines += ["```bash", info["command"], "```"]
        if meta.get("step") is not None:
            lines += [f"Steps: {meta['step']}."]
        lines += [""]
    if metrics:
        lines += ["## Metrics", "", "| metric | value | what |", "|---|--:|---|"]
        lines += [f"| {k} | {v:.4g} | {METRICS.get(k, (k, ''))[1]} |" for k, v in sorted(metrics.items())]
        how = ", ".join(f"{k} = {v}" for k, v in context.items() if not isinstance(v, (list, dict)))
        lines += ["", "Measured with `pdgan-eval`" + (f" ({how})" if how else "")
                  + "; see pdgan's docs/inference.md for the protocol.", ""]
    lines += [
        "## Intended use and limitations", "",
        "Research on fast diffusion-GAN sampling and semantic latent spaces: sampling, encoding, interpolation "
        "and attribute editing. The model reproduces its training data's distribution and biases; it is not "
        "meant for generating images of real people or for any decision about people. Small models trained "
        "on CPU (such as the digits model) are demonstrations, far from the paper's quality.", "",
        "## Licence", "",
        (f"The weights are released under the `{license}` licence (the pdgan code is MIT)." if not source
         else f"The weights keep their source's licence: {source.get('license', 'see the source')} "
              f"({source.get('license_url', source.get('project', ''))}). The pdgan code is MIT.")
        + " The training data keeps its own licence (above).", "",
        "## Citation", "", f"The method: {PAPER}. Implementation: pdgan.", ""]
    return "\n".join(lines)


def save_pretrained(model, folder: str | os.PathLike, *, meta: dict[str, Any] | None = None, license: str = "mit",
                    datasets: list[str] | None = None, repo_id: str | None = None, card: bool = True,
                    overwrite: bool = False) -> Path:
    """Write `folder/config.json`, `folder/model.safetensors` and `folder/README.md` (model card); all
    atomic. `meta` (default: what the model was loaded with) is kept in config.json. Returns the folder,
    which `Engine.from_pretrained(folder)` and `load_checkpoint(folder)` read, and which can be
    uploaded to the Hub as is (`huggingface_hub.upload_folder`). A folder of files pdgan did not write,
    or one of the three files written by someone else, is refused unless `overwrite` (`pdgan_infer.files`)."""
    from .files import atomic_write_bytes, check_outputs

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HubError(f"{folder} exists and is not a folder")
    if (folder / "model.json").exists():
        raise HubError(f"{folder} holds a pdgan-train checkpoint (model.json); save_pretrained into a new folder")
    if (folder / FOLDER_CONFIG).exists() and not overwrite:
        try:
            ours = json.loads((folder / FOLDER_CONFIG).read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise HubError(f"{folder / FOLDER_CONFIG} is not a pdgan model config (a training run's?); "
                           "save_pretrained into a new folder")
    check_outputs({"save_pretrained folder": folder}, folders={"save_pretrained folder"}, overwrite=overwrite,
                  contents={"save_pretrained folder": ["model.safetensors", FOLDER_CONFIG, "README.md"]},
                  how="overwrite=True")
    meta = dict(model.checkpoint_meta) if meta is None else dict(meta)
    write_checkpoint(model, folder / "model.safetensors", folder / FOLDER_CONFIG, meta)
    if card:
        atomic_write_bytes(folder / "README.md", model_card(model, meta, license, datasets, repo_id).encode())
    return folder


def load_model(checkpoint: str | os.PathLike | None = None, preset: str | None = None, seed: int = 0):
    """(PDGAN, checkpoint sha256 or None): the checkpoint (a file, a model folder or a run directory; a bundled
    name or Hub id: `resolve_model` first), or with `preset` that preset's random weights
    (`networks.random_model`: the weights of `Engine.from_preset(preset, seed)`). Exactly one of the two."""
    from .checkpoint import _paths, load_checkpoint, sha256_file
    from .networks import random_model
    if (checkpoint is None) == (preset is None):
        raise ValueError("give a checkpoint path or --preset NAME (not both)")
    if preset is not None:
        return random_model(preset, seed), None
    checkpoint = resolve_model(checkpoint)
    return load_checkpoint(checkpoint), read_header(checkpoint).get("sha256") or sha256_file(_paths(checkpoint)[0])

