"""pdgan-serve: a pdgan model on NVIDIA Triton Inference Server (HTTP/gRPC, dynamic batching, metrics).

Triton model `pdgan`: input SEED (INT64, [1], batch first: a request holds [N, 1] seeds), optional Z_T (FP32,
[nz]); output IMAGE (UINT8, [H, W, 3]). The image for a seed is `Engine.generate(seeds=[seed])` with the same
backend. Runs in the foreground until SIGTERM or Ctrl-C, then stops the server (exit status 0); exits with status
1 when tritonserver or a model instance dies. Listens on --host only (127.0.0.1 by default); Triton's
shared-memory, logging, trace and model-repository APIs answer "forbidden". Needs the `serve` extra in a Python
with a shared libpython (docs/deployment.md, with the section "Serving security"; `make serve-env` builds
.venv-serve).
"""
from __future__ import annotations

import argparse
import ipaddress
import sys

from .._cli import ArgumentParser, add_common_arguments, examples, int_range, positive_int, run_cli
from ..serve.config import MAX_QUEUE_DELAY_US

EXAMPLES = examples(
    "pdgan-serve digits   # HTTP :8000, gRPC :8001, metrics :8002 on 127.0.0.1",
    "pdgan-serve digits --backend native --max-batch-size 32 --instances 2 --http-port 9000",
    "pdgan-serve --repository model_repository   # from pdgan-export digits --format triton --triton-backend python "
    "--out model_repository",
    "pdgan-serve digits --host 0.0.0.0   # every interface: only behind an authenticating proxy")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-serve", description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    p.add_argument("model", nargs="?", help="a bundled model name (digits), a checkpoint file, a model folder or a "
                   "Hugging Face Hub id org/repo")
    p.add_argument("--repository", metavar="REPO", help="serve this Triton model repository instead of MODEL "
                   "(pdgan-export --format triton --triton-backend python: this server has no ONNX Runtime backend)")
    p.add_argument("--backend", default="auto", help="Engine backend: auto, torch, optimized, native, ...")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "auto"),
                   help="compute dtype (default float32; auto: bfloat16 where the device runs it natively)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N")
    p.add_argument("--max-batch-size", type=positive_int, help="the largest batch one execution runs, and the "
                   "largest request (default: the Engine's batch for the device it starts on, 64 at 32x32 on a CPU; "
                   "pdgan-export --format triton writes --max-batch 256 instead, as it cannot know the device)")
    p.add_argument("--instances", type=positive_int, default=1, help="model instances (one process and Engine each)")
    p.add_argument("--max-queue-delay-us", type=int_range(0, 10 ** 9), default=MAX_QUEUE_DELAY_US,
                   help="how long the dynamic batcher waits for more requests to fill a batch (microseconds; "
                   "the same as pdgan-export --format triton's)")
    p.add_argument("--threads", type=positive_int, help="torch threads per instance on the CPU (default: the cores "
                   "divided by --instances)")
    p.add_argument("--latent-steps", type=positive_int, help="DDIM steps of the latent denoiser (default: the model's)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", default=argparse.SUPPRESS,
                   help="skip the warm-up batches at load")
    p.add_argument("--host", type=host_address, default="127.0.0.1", help="the address HTTP, gRPC and metrics listen "
                   "on; 0.0.0.0 (every interface) only behind a proxy that authenticates clients (docs/deployment.md, "
                   "'Serving security')")
    p.add_argument("--http-port", type=port, default=8000, help="HTTP/REST port")
    p.add_argument("--grpc-port", type=port, default=8001, help="gRPC port")
    p.add_argument("--metrics-port", type=port, default=8002, help="Prometheus metrics port (/metrics)")
    p.add_argument("--revision", help="Hub models: branch, tag or commit")
    add_common_arguments(p)
    return p


port = int_range(1, 65535)


def host_address(text: str) -> str:
    """argparse type: an IPv4 or IPv6 address (what Triton's --http-address binds; no host names)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP address such as 127.0.0.1 or 0.0.0.0, got {text!r}") \
            from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.model is None) == (args.repository is None):
        parser.error("give a MODEL or --repository REPO (one of them)")
    return run_cli("pdgan-serve", args, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from ..serve.server import serve
    return serve(args.model, repository=args.repository, backend=args.backend, dtype=args.dtype, device=args.device,
                 max_batch_size=args.max_batch_size, instances=args.instances, host=args.host,
                 http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                 max_queue_delay_us=args.max_queue_delay_us, threads=args.threads, latent_steps=args.latent_steps,
                 warmup=getattr(args, "warmup", True), revision=args.revision, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
