"""pdgan_train: discriminator, losses, data, training loop and latent-diffusion trainer for PDGAN.
Imports pdgan_infer (never the reverse)."""
from .config import ABLATIONS, TrainConfig, resolve_train_config

__all__ = ["ABLATIONS", "TrainConfig", "resolve_train_config"]
