"""Pretrained models shipped inside the package (`pdgan_infer/pretrained/NAME.safetensors` + `NAME.json`).

    Engine.from_pretrained("digits")     # the bundled digits model
    pretrained_models()                  # {name: {"path", "preset", "description", "metrics", "command"}}

A user's own checkpoint (a `pdgan-train` run directory holds `model.safetensors` + `model.json`) loads
with `Engine.from_checkpoint("runs/NAME/model.safetensors")`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, read_header

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
OWN_CHECKPOINT = ("to load your own checkpoint use Engine.from_checkpoint('runs/NAME/model.safetensors') "
                  "(pdgan-train writes model.safetensors + model.json in its --out directory)")


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
    """The weights of bundled model `name`; ValueError listing what is available (and how to load
    one's own checkpoint) if `name` is None or unknown."""
    models = pretrained_models(directory)
    if name is None:
        raise ValueError("Engine.from_pretrained needs a model name.\n" + describe(models))
    if not isinstance(name, str) or name not in models:
        raise ValueError(f"no pretrained model named {name!r}.\n" + describe(models))
    if models[name]["preset"] is None:
        raise CheckpointError(f"the bundled model {name!r} is damaged ({models[name]['description']}); "
                              "reinstall pdgan (pip install --force-reinstall pdgan)")
    return models[name]["path"]
