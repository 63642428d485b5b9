"""Where models come from and where they go: bundled names, local checkpoints and folders, the Hugging
Face Hub, `save_pretrained` folders with a model card, and pdgan's one cache directory.

    Engine.from_pretrained("digits")               # a model bundled with the package
    Engine.from_pretrained("runs/digits")          # a folder (save_pretrained, or a pdgan-train run)
    Engine.from_pretrained("runs/digits/model.safetensors")   # a checkpoint file (NAME.safetensors + NAME.json)
    Engine.from_pretrained("org/repo", revision="main")       # the Hub: pip install 'pdgan[hub]'
    engine.save_pretrained("my-model")             # config.json + model.safetensors + README.md (card)

The Hub path goes through `huggingface_hub.snapshot_download`, so its cache (`HF_HOME`, `HF_HUB_CACHE`),
offline mode (`HF_HUB_OFFLINE=1`) and authentication apply unchanged; only config.json,
model.safetensors and README.md are fetched. A name is tried in this order: bundled model, existing
local path, Hub repository id (`owner/name`).

`cache_dir()` is where pdgan keeps downloads (feature networks), dataset statistics and exported
graphs: `$PDGAN_CACHE`, else `$XDG_CACHE_HOME/pdgan`, else `~/.cache/pdgan`.
"""
from __future__ import annotations

import importlib.util
import json
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
def resolve_model(name: str | os.PathLike | None, revision: str | None = None,
                  hub_cache_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint path (file or folder) that `load_checkpoint` reads for a bundled name, a local
    file or folder, or a Hub repository id `owner/name` (downloaded, or taken from the Hugging Face
    cache; `revision`: branch, tag or commit)."""
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
        return hub_download(text, revision, hub_cache_dir)
    if "/" in text or os.sep in text or text.startswith((".", "~")) or text.endswith((".safetensors", ".json")):
        raise CheckpointError(f"checkpoint not found: {local} (expected a folder with model.safetensors, or "
                              "NAME.safetensors with NAME.json beside it)")
    raise HubError(f"no pretrained model, file or folder named {text!r}.\n" + describe(pretrained_models()))


def hub_download(repo_id: str, revision: str | None = None, hub_cache_dir: str | os.PathLike | None = None) -> Path:
    """The local snapshot folder of Hub repository `repo_id` (config.json, model.safetensors, README.md)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ImportError(f"there is no local folder {repo_id!r}, and loading it from the Hugging Face Hub needs "
                          "huggingface_hub: pip install 'pdgan[hub]'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=list(HUB_FILES),
                                   cache_dir=None if hub_cache_dir is None else str(hub_cache_dir))
    except LocalEntryNotFoundError as e:
        raise HubError(f"{repo_id!r} is not a local folder, and it is not in the Hugging Face cache and cannot be "
                       f"downloaded (offline, HF_HUB_OFFLINE=1, or no network): {str(e).splitlines()[0]}") from None
    except (RepositoryNotFoundError, HfHubHTTPError) as e:
        raise HubError(f"{repo_id!r} is not a local folder, and the Hugging Face Hub cannot give it: "
                       f"{str(e).splitlines()[0]}") from None
    folder = Path(folder)
    if not (folder / "model.safetensors").exists():
        raise HubError(f"Hub repository {repo_id!r} has no model.safetensors: it was not written by "
                       "pdgan's save_pretrained")
    return folder


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


def model_card(model, meta: dict[str, Any] | None = None, license: str = "mit",
               datasets: list[str] | None = None, repo_id: str | None = None) -> str:
    """README.md for a model folder: YAML front matter (license, library_name, pipeline_tag, tags,
    datasets, metrics) and what the model is, how to use it, what it was trained on, its numbers,
    intended use, limitations and the paper."""
    meta = dict(meta or {})
    info = meta.get("pretrained") or {}
    cfg = model.config
    data_id, data_text, data_licence = _dataset(model, meta)
    recorded = dict(info.get("metrics") or meta.get("metrics") or {})
    context = {k: recorded.pop(k) for k in NOT_METRICS if k in recorded}  # how they were measured
    metrics = {k: v for k, v in recorded.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metric_ids = sorted({"fid" if k.split("_")[-1] == "fid" else k for k in metrics})  # digits_fid -> fid
    source = meta.get("converted_from") if isinstance(meta.get("converted_from"), dict) else None
    front = {"license": license, "library_name": "pdgan", "pipeline_tag": "unconditional-image-generation",
             "tags": ["pdgan", "gan", "diffusion", "denoising-diffusion-gan", "unconditional-image-generation"],
             "datasets": list(datasets or [data_id])}
    if source and source.get("license"):
        front.update(license="other", license_name=source["license"], license_link=source.get("license_url", ""))
    if metric_ids:
        front["metrics"] = metric_ids
    yaml = "\n".join(f"{k}: {json.dumps(v)}" for k, v in front.items())  # JSON scalars and lists are YAML
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
        f"# (16, {cfg.resolution}, {cfg.resolution}, 3) uint8",
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
        lines += ["## Metrics", "", "| metric | value |", "|---|--:|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items())]
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

