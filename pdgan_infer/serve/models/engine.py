"""Triton Python-backend model `pdgan` that runs a pdgan `Engine`: what `pdgan-serve MODEL` serves.

Each model instance (instance_group count) is a Python-backend stub process with an Engine of its own (an
Engine is not safe for concurrent calls; processes need no lock). One `execute` call gets the requests that
Triton's dynamic batcher grouped (at most max_batch_size images in all); the images of the requests without
Z_T come from one `Engine.generate(seeds=...)` call and those with Z_T from one `generate(seeds=..., z_T=...)`,
so the image for a seed is `Engine.generate(seeds=[seed])` with the same backend (the engine's batch size is
max_batch_size, as a user's Engine with batch_size=max_batch_size). A request with a bad seed gets its own
error response; the others in its batch are served.

Parameters (config.pbtxt, written by `pdgan_infer.serve.server.engine_repository`): pdgan.backend, pdgan.dtype,
pdgan.device ("cpu", or "cuda" for KIND_GPU instances: the instance's GPU), pdgan.threads (torch intra-op threads
per instance; 0: torch's default), pdgan.latent_steps. The checkpoint's path is in the version folder's
pdgan-serve.json ({"checkpoint": PATH}), not in the configuration a client can read.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .pipeline import RequestError, error_response, image_response, model_parameters, read_request


def _log_to_stderr() -> None:
    """The Engine's messages (the backend `auto` chose and why it skipped others) on the stub's stderr, which
    pdgan-serve shows."""
    import logging

    logger = logging.getLogger("pdgan")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("pdgan-serve: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class TritonPythonModel:
    def initialize(self, args):
        import torch

        from pdgan_infer.engine import Engine

        p = model_parameters(args)
        _log_to_stderr()
        device = p.get("pdgan.device", "cpu")
        if device == "cuda":
            device = f"cuda:{int(args.get('model_instance_device_id', 0))}"
        threads = int(p.get("pdgan.threads", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        steps = p.get("pdgan.latent_steps", "")
        max_batch = int(p.get("pdgan.max_batch_size", "64"))
        settings = Path(args["model_repository"]) / str(args["model_version"]) / "pdgan-serve.json"
        checkpoint = json.loads(settings.read_text())["checkpoint"]
        self.engine = Engine.from_checkpoint(checkpoint, backend=p.get("pdgan.backend", "auto"),
                                             device=device, dtype=p.get("pdgan.dtype") or None,
                                             batch_size=max_batch, latent_steps=int(steps) if steps else None)
        self.nz = self.engine.config.generator.nz
        print(f"pdgan-serve: instance {args.get('model_instance_name', '?')}: backend {self.engine.backend} on "
              f"{self.engine.device} ({str(self.engine.dtype).removeprefix('torch.')}), "
              f"{torch.get_num_threads()} threads", file=sys.stderr, flush=True)

    def execute(self, requests):
        responses, plain, given = [None] * len(requests), [], []
        for i, request in enumerate(requests):
            try:
                seeds, z_T = read_request(request, self.nz)
            except RequestError as e:
                responses[i] = error_response(str(e))
                continue
            (plain if z_T is None else given).append((i, seeds, z_T))
        for group in (plain, given):
            if group:
                self._serve(group, responses)
        return responses

    def _serve(self, group, responses) -> None:
        seeds = [s for _, ss, _ in group for s in ss]
        z_T = None if group[0][2] is None else np.concatenate([z for _, _, z in group])
        try:
            images = self.engine.generate(seeds=seeds, z_T=z_T, progress=False)
        except (ValueError, TypeError, RuntimeError) as e:  # a failed run: every request of the group hears it
            message = (str(e).strip().splitlines() or [type(e).__name__])[0]
            for i, _, _ in group:
                responses[i] = error_response(f"pdgan: {message}", invalid=False)
            return
        start = 0
        for i, ss, _ in group:
            responses[i] = image_response(images[start:start + len(ss)])
            start += len(ss)

    def finalize(self):
        self.engine = None
