"""The training configuration (pdgan_train.config.TrainConfig): every numeric option finite and in range, in
the config and on the pdgan-train command line."""
from __future__ import annotations

import pytest

from pdgan_train.cli.train import main as train_main
from pdgan_train.config import TrainConfig


# regression: reliability review, section 2
@pytest.mark.parametrize("field, value", [
    ("lr_d", float("nan")), ("lr_g", float("inf")), ("lr_g", 0.0), ("lr_g", 1e10), ("r1_gamma", -1.0),
    ("r1_gamma", float("nan")), ("num_workers", 10**6), ("num_workers", -1), ("seed", 2**64), ("seed", -1),
    ("max_steps", "ten"), ("lazy_reg", 1.5), ("batch_size", True), ("ema_decay", float("nan")),
    ("w_pixel", float("inf")), ("latent_lr", float("nan")), ("p_max", 1.5), ("log_every", 0), ("cosine", "yes"),
])
def test_every_numeric_option_is_finite_and_in_range(field, value):
    """Defect 14: lr_d NaN, lr_g inf, r1_gamma negative or NaN (R1 silently off), num_workers 10**6 passed."""
    cfg = TrainConfig(preset="digits", data="digits", **{field: value})
    with pytest.raises(ValueError, match=rf"invalid training config: {field} must be"):
        cfg.validate()


def test_cli_rejects_nan_learning_rate(capsys):
    assert train_main(["--preset", "digits", "--data", "digits", "--dry-run", "--lr-d", "nan"]) in (1, 2)
    assert "lr_d" in capsys.readouterr().err


def test_resume_of_a_save_pretrained_folder_says_what_it_is(tmp_path):
    """It was called corrupt ('expected a mapping with a train mapping')."""
    import torch

    from pdgan_infer import PDGAN
    from pdgan_infer.hub import save_pretrained
    from pdgan_train.config import TrainingError, read_run_config

    torch.manual_seed(0)
    folder = save_pretrained(PDGAN("digits", with_latent=False), tmp_path / "m", card=False)
    with pytest.raises(TrainingError, match="is a model folder written by save_pretrained, not a pdgan-train run"):
        read_run_config(folder)
