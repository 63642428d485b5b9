"""Crafted .npz files for the header checks of pdgan_train.image_sets and pdgan_train.references."""
from __future__ import annotations

import io
import zipfile

import numpy as np


def fake_npz(path, name: str, shape: tuple, descr: str = "|u1", payload: bytes = b"\0" * 64) -> None:
    """An .npz whose member `name` has a header claiming `shape` but holds only `payload`."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.npy", buf.getvalue() + payload)
