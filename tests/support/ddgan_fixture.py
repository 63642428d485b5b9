"""The DDGAN reference fixture (tests/fixtures/ddgan_small.pt, written by tools/ddgan_reference.py from DDGAN's own
code) and the pdgan config of its model, registered as preset "ddgan-small"."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pdgan_infer import PRESETS
from pdgan_infer.convert import config_from_ddgan_args
from pdgan_infer.schedule import ScheduleConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ddgan_small.pt"
PRESET = "ddgan-small"


def load_fixture(path: Path = FIXTURE) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def small_config(data: dict, T: int | None = None):
    """The fixture model's config (its DDGAN options), with another number of steps T if given."""
    cfg = config_from_ddgan_args(data["ddgan_args"], PRESET)
    return cfg if T is None else dataclasses.replace(cfg, schedule=ScheduleConfig(kind="ddgan", T=T))


def register(monkeypatch, data: dict, T: int | None = None):
    cfg = small_config(data, T)
    monkeypatch.setitem(PRESETS, PRESET, cfg)
    return cfg
