"""Record what Denoising Diffusion GAN's own code computes, for pdgan's DDGAN importer tests.

    python tools/ddgan_reference.py /path/to/denoising-diffusion-gan --config small --out tests/fixtures/ddgan_small.pt
    python tools/ddgan_reference.py /path/to/denoising-diffusion-gan --config cifar10 --out /tmp/ddgan_cifar10.pt

DDGAN (NVlabs/denoising-diffusion-gan, NVIDIA Source Code License, non-commercial) is imported from the checkout
given, never copied: its `NCSNpp` is built with the options of its test script (`test_ddgan.py`'s argparse
defaults plus the README command of the config), its weights are drawn from a fixed seed (every parameter, so
no layer is the near-zero initialisation), and the script records, on fixed inputs:

  - the generator netG(x, t, z) at every DDGAN step index t = 0..T-1;
  - `test_ddgan.sample_from_model` from a given x_T, with each of its `torch.randn` / `torch.randn_like`
    calls answered by a tensor drawn here beforehand (recorded in call order: z of step T-1, its posterior
    noise, z of step T-2, ..., the masked noise of step 0).

The state dict is saved as DDGAN's training script saves `netG_EPOCH.pth`: `netG.state_dict()` of the
DistributedDataParallel-wrapped model, i.e. every key prefixed by `module.`.

On a CPU-only machine DDGAN's custom ops (`score_sde/op`: upfirdn2d, fused_act) would compile CUDA at import;
`torch.utils.cpp_extension.load` is answered by a placeholder while they import, and on CPU tensors they run
their own pure-torch paths (`upfirdn2d_native`, `F.leaky_relu`). `test_ddgan.py` imports torchvision and
pytorch_fid for its FID mode; when they are missing, empty placeholders satisfy those imports (the sampler
does not use them).

The output is one `torch.save` file of tensors, lists and plain values, loadable with weights_only=True.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import types
from pathlib import Path

import torch

# DDGAN's test-script options (test_ddgan.py argparse defaults) shared by every config
DDGAN_DEFAULTS = dict(
    num_channels=3, centered=True, use_geometric=False, beta_min=0.1, beta_max=20.0, num_res_blocks=2,
    attn_resolutions=(16,), dropout=0.0, resamp_with_conv=True, conditional=True, fir=True, fir_kernel=[1, 3, 3, 1],
    skip_rescale=True, resblock_type="biggan", progressive="none", progressive_input="residual",
    progressive_combine="sum", embedding_type="positional", fourier_scale=16.0, not_use_tanh=False, nz=100,
    z_emb_dim=256, t_emb_dim=256, n_mlp=3)
# the README's test commands per config; "small" is a shrunken model with every kind of layer (attention, the
# input pyramid, several blocks per level) for a fixture of a few hundred kB
CONFIGS = {
    "small": dict(image_size=16, num_channels_dae=16, ch_mult=[1, 2, 2], attn_resolutions=(8,), nz=8, z_emb_dim=16,
                  n_mlp=2, num_timesteps=4),
    "cifar10": dict(image_size=32, num_channels_dae=128, ch_mult=[1, 2, 2, 2], n_mlp=4, num_timesteps=4),
    "celebahq256": dict(image_size=256, num_channels_dae=64, ch_mult=[1, 1, 2, 2, 4, 4], num_timesteps=2),
    "lsun256": dict(image_size=256, num_channels_dae=64, ch_mult=[1, 1, 2, 2, 4, 4], num_timesteps=4),
}
BATCH = 2


@contextlib.contextmanager
def cpu_only_imports():
    """DDGAN's op modules import without compiling CUDA; absent torchvision / pytorch_fid get placeholders."""
    import torch.utils.cpp_extension as cpp

    real_load = cpp.load
    cpp.load = lambda name, *a, **k: types.SimpleNamespace(name=f"{name} (not compiled: CPU paths only)")
    added = []
    for name in ("torchvision", "pytorch_fid.fid_score"):
        if importlib.util.find_spec(name.split(".")[0]) is None or name == "pytorch_fid.fid_score":
            if name not in sys.modules:
                module = types.ModuleType(name)
                module.calculate_fid_given_paths = None  # test_ddgan's FID mode, not used here
                sys.modules[name] = module
                added.append(name)
    try:
        yield
    finally:
        cpp.load = real_load
        for name in added:
            sys.modules.pop(name, None)


def load_ddgan(checkout: Path):
    """(NCSNpp, test_ddgan module) from the checkout."""
    if not (checkout / "score_sde" / "models" / "ncsnpp_generator_adagn.py").exists():
        raise SystemExit(f"{checkout} is not a denoising-diffusion-gan checkout (no score_sde/models/"
                         "ncsnpp_generator_adagn.py)")
    sys.path.insert(0, str(checkout))
    with cpu_only_imports():
        import test_ddgan
        from score_sde.models.ncsnpp_generator_adagn import NCSNpp
    return NCSNpp, test_ddgan


def randomize_(net: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn from `seed`: weights N(0, 1 / fan_in) (NIN's W is (in, out)), 1-D parameters
    (biases, norm scales, the AdaGN gamma bias of 1) keep their initial value plus N(0, 0.1^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if p.ndim == 1:
                p.add_(0.1 * noise)
            else:
                fan_in = p.shape[0] if name.endswith(".W") else p[0].numel()
                p.copy_(noise / fan_in ** 0.5)


def record(checkout: Path, config: str, seed: int = 0) -> dict:
    NCSNpp, test_ddgan = load_ddgan(checkout)
    args = argparse.Namespace(**{**DDGAN_DEFAULTS, **CONFIGS[config]})
    net = NCSNpp(args)
    randomize_(net, seed)
    net.eval()
    T, nz, c, r = args.num_timesteps, args.nz, args.num_channels, args.image_size
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, c, r, r, generator=gen)
    z = torch.randn(BATCH, nz, generator=gen)
    with torch.no_grad():
        per_t = torch.stack([net(x, torch.full((BATCH,), t, dtype=torch.int64), z) for t in range(T)])

    # sample_from_model: x_T given; its randn calls answered in order from a list drawn here
    x_T = torch.randn(BATCH, c, r, r, generator=gen)
    draws = []
    for _ in range(T):
        draws += [torch.randn(BATCH, nz, generator=gen), torch.randn(BATCH, c, r, r, generator=gen)]
    queue, calls = list(draws), []
    real_randn, real_randn_like = torch.randn, torch.randn_like

    def answer(shape, what):
        nxt = queue.pop(0)
        if tuple(nxt.shape) != tuple(shape):
            raise RuntimeError(f"DDGAN's {what} call {len(calls)} asked for {tuple(shape)}, "
                               f"expected {tuple(nxt.shape)}")
        calls.append(what)
        return nxt.clone()

    torch.randn = lambda *size, **kw: answer(size[0] if len(size) == 1 and not isinstance(size[0], int) else size,
                                             "torch.randn")
    torch.randn_like = lambda t, **kw: answer(t.shape, "torch.randn_like")
    try:
        coeff = test_ddgan.Posterior_Coefficients(args, "cpu")
        times = test_ddgan.get_time_schedule(args, "cpu")
        chain = test_ddgan.sample_from_model(coeff, net, T, x_T.clone(), times, args)
    finally:
        torch.randn, torch.randn_like = real_randn, real_randn_like
    if queue:
        raise RuntimeError(f"sample_from_model made {len(calls)} random draws, {len(draws)} were prepared")
    return {
        "config": config, "ddgan_args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
        "seed": seed,
        "state_dict": {f"module.{k}": v.clone() for k, v in net.state_dict().items()},
        "x": x, "z": z, "generator_out": per_t,  # generator_out[t] = netG(x, t, z), t = DDGAN's index 0..T-1
        "x_T": x_T, "draws": draws, "draw_calls": calls, "sample": chain,
        "posterior_coefficients": {k: getattr(coeff, k) for k in (
            "betas", "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance")},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ddgan_reference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", type=Path, help="a NVlabs/denoising-diffusion-gan checkout")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--out", type=Path, required=True, help="the fixture file to write (torch.save)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = record(args.checkout.resolve(), args.config, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, args.out)
    n = sum(v.numel() for v in data["state_dict"].values())
    print(f"wrote {args.out}: DDGAN {args.config} ({n / 1e6:.2f} M parameters), generator at t = "
          f"0..{len(data['generator_out']) - 1}, sample_from_model with {len(data['draw_calls'])} random draws")
    return 0


if __name__ == "__main__":
    sys.exit(main())
