"""Triton Python-backend model `pdgan` of an exported repository: seeds in, uint8 images out.

Self-contained (numpy and Triton's `triton_python_backend_utils` only, no torch, no pdgan): `pdgan-export
--format triton` copies this file to REPO/pdgan/1/model.py, so it runs in a stock Triton container.

For each batch of requests (Triton's dynamic batcher groups them) it
  1. checks every request on its own (a bad one gets its own error response; the others are served),
  2. draws every image's noise from its seed with the project's one noise rule (`pdgan_infer.sampler.draw_noise`:
     Philox4x32-10 keyed by the seed, Box-Muller in float64, here in numpy: `philox_normal_rows`),
  3. sends one batch-first request to the sampler model (`pdgan_sampler`: ONNX Runtime, TensorRT or the Python
     backend) through Triton's business-logic scripting (BLS) and splits its IMAGE output per request.
Why a Python step: the noise is integer Philox arithmetic in uint64 plus float64 Box-Muller; TensorRT has
neither 64-bit integers nor float64, and ONNX Runtime's uint64 Mul/BitShift coverage varies by build.

Inputs SEED (INT64 [N, 1], each in [0, 2**32)) and optional Z_T (FP32 [N, nz]: given semantic codes; the latent
denoiser draws them otherwise). Output IMAGE (UINT8 [N, H, W, 3]).
"""
from __future__ import annotations

import json
import math

import numpy as np

try:  # inside Triton's Python backend; absent when pdgan imports this file (tests, the engine model)
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - depends on the process
    pb_utils = None

SEED_LIMIT = 1 << 32
TENSOR_STRIDE = 1 << 34  # stream offset of noise tensor k (pdgan_infer.sampler.TENSOR_STRIDE)
X_T, LATENT, Z, EPS = 0, 1, 2, 3  # tensor ids of the noise rule (pdgan_infer.sampler)
_M32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))


# --- the noise rule in numpy ----------------------------------------------------------------------------------
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 arrays holding 32-bit words (a 32 x 32-bit product is exact in uint64)."""
    for r in range(10):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & _M32, (k1 + _PHILOX_W[1]) & _M32
        p0, p1 = c0 * _PHILOX_M[0], c2 * _PHILOX_M[1]
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _M32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _M32
    return c0, c1, c2, c3


def philox_normal_rows(seeds, count: int, offset: int = 0) -> np.ndarray:
    """(N, count) float32: normals offset .. offset + count - 1 of the Philox stream of each seed (the key is the
    seed's 64 bits): normal p is lane p % 4 of block p // 4, counter (lo32(b), hi32(b), 0, 0),
    u = (r + 0.5) / 2**32, Box-Muller in float64, rounded once to float32."""
    keys = np.asarray(seeds, dtype=np.int64).astype(np.uint64).reshape(-1, 1)
    k0, k1 = keys & _M32, keys >> np.uint64(32)
    first, last = offset // 4, (offset + count + 3) // 4
    b = np.arange(first, max(last, first), dtype=np.uint64).reshape(1, -1)
    zero = np.zeros_like(b)
    r = philox4x32_10(b & _M32, b >> np.uint64(32), zero, zero, k0, k1)
    u = [(w.astype(np.float64) + 0.5) * 2.0 ** -32 for w in r]
    radius01, radius23 = np.sqrt(-2.0 * np.log(u[0])), np.sqrt(-2.0 * np.log(u[2]))
    angle01, angle23 = 2.0 * math.pi * u[1], 2.0 * math.pi * u[3]
    z = np.stack([radius01 * np.cos(angle01), radius01 * np.sin(angle01),
                  radius23 * np.cos(angle23), radius23 * np.sin(angle23)], axis=-1)  # (N, blocks, 4)
    z = z.reshape(keys.shape[0], -1)[:, offset - 4 * first:offset - 4 * first + count]
    return np.ascontiguousarray(z, dtype=np.float32)


def draw_noise(seeds, T: int, channels: int, resolution: int, nz: int) -> dict[str, np.ndarray]:
    """The sampler noise of one image per seed, batch first: x_T (N, C, R, R), latent (N, nz),
    z (N, T-1, nz), eps (N, T-1, C, R, R) (`pdgan_infer.sampler.draw_noise` has z and eps step-first)."""
    n, pixels = len(seeds), channels * resolution * resolution

    def rows(k: int, count: int) -> np.ndarray:
        return philox_normal_rows(seeds, count, k * TENSOR_STRIDE) if n and count else np.zeros((n, count), np.float32)

    return {"x_T": rows(X_T, pixels).reshape(n, channels, resolution, resolution),
            "latent": rows(LATENT, nz),
            "z": rows(Z, (T - 1) * nz).reshape(n, T - 1, nz),
            "eps": rows(EPS, (T - 1) * pixels).reshape(n, T - 1, channels, resolution, resolution)}


# --- requests ------------------------------------------------------------------------------------------------
class RequestError(ValueError):
    """A request that cannot be served; its message (one line) goes back to that client only."""


def check_request(seeds, z_T, nz: int) -> tuple[list[int], np.ndarray | None]:
    """SEED (N, 1) integers in [0, 2**32) and optional Z_T (N, nz) finite floats -> (seeds, z_T or None)."""
    if seeds is None:
        raise RequestError("input SEED is missing: send one INT64 seed per image, shape [N, 1]")
    seeds = np.asarray(seeds)
    if seeds.dtype.kind not in "iu":
        raise RequestError(f"SEED must be INT64, got {seeds.dtype}")
    if seeds.ndim != 2 or seeds.shape[1] != 1:
        raise RequestError(f"SEED must have shape [N, 1] (one seed per image), got {list(seeds.shape)}")
    flat = seeds.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((flat < 0) | (flat >= SEED_LIMIT))
    if bad.size:
        raise RequestError(f"SEED[{bad[0]}] = {flat[bad[0]]} is outside [0, 2**32): seeds are integers "
                           "0 .. 4294967295, one per image")
    if z_T is None:
        return flat.tolist(), None
    z_T = np.asarray(z_T)
    if z_T.ndim != 2 or z_T.shape != (flat.size, nz):
        raise RequestError(f"Z_T must have shape [{flat.size}, {nz}] (one code per seed), got {list(z_T.shape)}")
    if not np.isfinite(z_T).all():
        raise RequestError("Z_T contains NaN or infinite values")
    return flat.tolist(), z_T.astype(np.float32)


def read_request(request, nz: int) -> tuple[list[int], np.ndarray | None]:
    """`check_request` on a Triton request's SEED and optional Z_T."""
    seed = pb_utils.get_input_tensor_by_name(request, "SEED")
    z_T = pb_utils.get_input_tensor_by_name(request, "Z_T")
    return check_request(None if seed is None else seed.as_numpy(), None if z_T is None else z_T.as_numpy(), nz)


def error_response(message: str, invalid: bool = True):
    """An error for one request: INVALID_ARG (HTTP 400) for a bad request, INTERNAL (500) for a failed run."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG" if invalid else "INTERNAL", None)
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def image_response(images: np.ndarray):
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("IMAGE", np.ascontiguousarray(images))])


def model_parameters(args: dict) -> dict[str, str]:
    """The `parameters` of the model's config.pbtxt as {key: string_value}."""
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


# --- the pipeline model --------------------------------------------------------------------------------------
class TritonPythonModel:
    """Seeds -> noise (numpy Philox) -> `pdgan_sampler` (BLS) -> IMAGE, per request errors."""

    def initialize(self, args):
        p = model_parameters(args)
        self.T, self.channels = int(p["pdgan.T"]), int(p["pdgan.channels"])
        self.resolution, self.nz = int(p["pdgan.resolution"]), int(p["pdgan.nz"])
        self.sampler = p.get("pdgan.sampler_model", "pdgan_sampler")

    def execute(self, requests):
        responses, parts = [None] * len(requests), []
        for i, request in enumerate(requests):
            try:
                parts.append((i, *read_request(request, self.nz)))
            except RequestError as e:
                responses[i] = error_response(str(e))
        if not parts:
            return responses
        seeds = [s for _, ss, _ in parts for s in ss]
        noise = draw_noise(seeds, self.T, self.channels, self.resolution, self.nz)
        noise["z_T"] = np.zeros((len(seeds), self.nz), np.float32)
        noise["use_z_T"] = np.zeros((len(seeds), 1), np.float32)
        start = 0
        for _, ss, z_T in parts:
            if z_T is not None:
                noise["z_T"][start:start + len(ss)], noise["use_z_T"][start:start + len(ss)] = z_T, 1.0
            start += len(ss)
        try:
            images = self._sample(noise)
        except pb_utils.TritonModelException as e:
            for i, _, _ in parts:
                responses[i] = error_response(f"{self.sampler}: {e}", invalid=False)
            return responses
        start = 0
        for i, ss, _ in parts:
            responses[i] = image_response(images[start:start + len(ss)])
            start += len(ss)
        return responses

    def _sample(self, noise: dict[str, np.ndarray]) -> np.ndarray:
        request = pb_utils.InferenceRequest(
            model_name=self.sampler, requested_output_names=["IMAGE"],
            inputs=[pb_utils.Tensor(k, np.ascontiguousarray(v)) for k, v in noise.items()])
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return pb_utils.get_output_tensor_by_name(response, "IMAGE").as_numpy()
