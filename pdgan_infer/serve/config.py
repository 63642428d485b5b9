"""Triton model configurations (config.pbtxt) for the `pdgan` model and its parts, as protobuf text.

Field names are those of Triton's `inference.ModelConfig` (model_config.proto; the tests parse every file
written here with the `model_config_pb2` that tritonclient ships):

    pdgan            SEED (TYPE_INT64, dims [1]) [+ optional Z_T (TYPE_FP32, dims [nz])] -> IMAGE (TYPE_UINT8,
                     dims [H, W, 3]); max_batch_size > 0, so every tensor has a leading batch axis
                     that is not listed in dims ("batch first").

`render` writes nested dicts and lists as protobuf text: a str value is quoted, an `Enum` is not,
a list of dicts is a repeated message, a list of scalars a repeated scalar, and a map field (parameters,
warm-up inputs) is a list of {"key": ..., "value": {...}} entries.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

MODEL_NAME = "pdgan"
SEED, Z_T, IMAGE = "SEED", "Z_T", "IMAGE"

# The serving defaults of pdgan-serve and of the repositories pdgan-export --format triton writes (one home).
# Queue delay: how long the dynamic batcher waits for more requests to fill a batch; 500 us is far below one
# execution on a CPU (~30 ms for a 32x32 image) or a GPU batch, and is what docs/deployment.md's load benchmark ran.
MAX_QUEUE_DELAY_US = 500
# max_batch_size of an exported repository (and the top of its TensorRT profile): fixed, because the export does
# not know where it will run (its ONNX sampler is KIND_AUTO: a GPU when the container has one). pdgan-serve knows
# its device when it starts and uses the Engine's batch for it instead (64 at 32x32 on a CPU; more on a GPU).
REPOSITORY_MAX_BATCH = 256


class Enum(str):
    """A protobuf enum value (TYPE_INT64, KIND_CPU): written without quotes."""


def render(message: dict, indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{render(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = [f"{pad}  {{\n{render(v, indent + 2)}{pad}  }}" for v in value]
            lines.append(f"{pad}{key} [\n" + ",\n".join(items) + f"\n{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return str(value)


def tensor(name: str, data_type: str, dims: Iterable[int], optional: bool = False) -> dict:
    spec = {"name": name, "data_type": Enum(data_type), "dims": [int(d) for d in dims]}
    if optional:
        spec["optional"] = True
    return spec


def parameters(values: dict[str, str]) -> list[dict]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def instance_group(count: int, kind: str, gpus: list[int] | None = None) -> list[dict]:
    """KIND_CPU or KIND_GPU (with `gpus`: the device ids; without: every visible GPU gets `count`)."""
    group = {"count": int(count), "kind": Enum(kind)}
    if gpus:
        group["gpus"] = [int(g) for g in gpus]
    return [group]


def dynamic_batching(max_queue_delay_us: int, preferred: list[int] | None = None) -> dict:
    spec: dict = {"max_queue_delay_microseconds": int(max_queue_delay_us)}
    if preferred:
        spec["preferred_batch_size"] = [int(b) for b in preferred]
    return spec


def warmup(batch_sizes: Iterable[int], inputs: dict[str, tuple[str, list[int]]]) -> list[dict]:
    """One warm-up entry per batch size, zero-filled inputs {name: (data_type, dims)}: seed 0 for SEED."""
    return [{"name": f"zeros_batch_{b}", "batch_size": int(b), "count": 1,
             "inputs": [{"key": name, "value": {"data_type": Enum(dt), "dims": list(dims), "zero_data": True}}
                        for name, (dt, dims) in inputs.items()]}
            for b in dict.fromkeys(int(b) for b in batch_sizes)]


def pdgan_io(resolution: int, nz: int) -> dict:
    """The contract of the `pdgan` model: SEED [1] INT64 (+ optional Z_T [nz] FP32) -> IMAGE [H, W, 3] UINT8."""
    return {"input": [tensor(SEED, "TYPE_INT64", [1]), tensor(Z_T, "TYPE_FP32", [nz], optional=True)],
            "output": [tensor(IMAGE, "TYPE_UINT8", [resolution, resolution, 3])]}


def write_config(folder: str | Path, config: dict) -> Path:
    """Write FOLDER/config.pbtxt and create FOLDER/1/ (the version folder Triton loads)."""
    folder = Path(folder)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    path = folder / "config.pbtxt"
    path.write_text(render(config))
    return path


def parse_config(path: str | Path):
    """The `inference.ModelConfig` of a config.pbtxt, parsed with tritonclient's model_config_pb2: an unknown
    field or a wrong value type raises (google.protobuf.text_format.ParseError). Needs tritonclient[grpc]."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())
