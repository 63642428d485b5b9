"""Triton Python-backend model `pdgan_sampler` that runs the serving graph (model.onnx beside this file) with the
onnxruntime Python package: for Triton builds without the ONNX Runtime backend (the nvidia-pytriton wheel's).
`pdgan-export --format triton --triton-backend python` copies this file to REPO/pdgan_sampler/1/model.py.

Self-contained (numpy, onnxruntime and Triton's triton_python_backend_utils). The requests of one execution (the
dynamic batcher may group several) run as one batch and are split again.
"""
from __future__ import annotations

import os

import numpy as np
import triton_python_backend_utils as pb_utils

INPUTS = ("x_T", "latent", "z", "eps", "z_T", "use_z_T")


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        feeds = [{k: pb_utils.get_input_tensor_by_name(r, k).as_numpy() for k in INPUTS} for r in requests]
        batch = {k: np.concatenate([f[k] for f in feeds]) for k in INPUTS}
        images = self.session.run(["IMAGE"], batch)[0]
        responses, start = [], 0
        for f in feeds:
            n = len(f["x_T"])
            image = pb_utils.Tensor("IMAGE", images[start:start + n])
            responses.append(pb_utils.InferenceResponse(output_tensors=[image]))
            start += n
        return responses
