#!/usr/bin/env python
"""Convert the SeqGAN paper's oracle weights into the NumPy archive the synthetic-data configs read.

    python recipes/prepare_oracle.py --pickle target_params_py3.pkl --out data/seqgan_oracle.npz
    python recipes/prepare_oracle.py --npz other/seqgan_oracle.npz --out data/seqgan_oracle.npz   (check a copy)

The weights are ``save/target_params_py3.pkl`` of the SeqGAN repository (github.com/LantaoYu/SeqGAN; fetch it
yourself, nothing is downloaded here): a pickled list of the oracle LSTM's 15 arrays in the order of
``seqgan.metrics.oracle.PARAM_NAMES``. The pickle is read with an unpickler that accepts NumPy arrays and lists
only, so a tampered file cannot run code. The output is checked (shapes, finite values), written as ``.npz``
and reported with its sha256; then ``data.oracle_path=data/seqgan_oracle.npz`` selects it (the synthetic
configs default to a seeded random oracle of the same size).
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np

from seqgan.data.datasets import DataError
from seqgan.metrics.oracle import PARAM_NAMES, OracleLSTM
from seqgan.stages import run_cli

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "list"),
    ("_codecs", "encode"),  # how protocol-2 pickles store the arrays' raw bytes
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays and lists; any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise DataError(f"the pickle asks for {module}.{name}: not an array list, refused")
        if module == "numpy.core.multiarray":  # NumPy 1 name of the same function
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict[str, np.ndarray]:
    """The oracle's arrays from SeqGAN's parameter pickle (a list in :data:`PARAM_NAMES` order)."""
    try:
        values = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"{path}: not a readable parameter pickle ({e})") from None
    if not isinstance(values, list) or len(values) != len(PARAM_NAMES):
        raise DataError(f"{path}: expected a list of {len(PARAM_NAMES)} arrays ({', '.join(PARAM_NAMES)})")
    return {name: np.asarray(v, dtype=np.float32) for name, v in zip(PARAM_NAMES, values, strict=True)}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pickle", type=Path, help="SeqGAN's save/target_params_py3.pkl")
    src.add_argument("--npz", type=Path, help="an .npz of the oracle's arrays (checked and copied)")
    p.add_argument("--out", type=Path, default=Path("data/seqgan_oracle.npz"))
    args = p.parse_args(argv)
    source = args.pickle or args.npz
    if not source.is_file():
        raise FileNotFoundError(f"not found: {source}")
    if args.pickle:
        arrays = read_pickle(source)
    else:
        with np.load(source, allow_pickle=False) as data:
            missing = [n for n in PARAM_NAMES if n not in data]
            if missing:
                raise DataError(f"{source}: missing arrays {missing}")
            arrays = {n: np.asarray(data[n], dtype=np.float32) for n in PARAM_NAMES}
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise DataError(f"{source}: the weights hold NaN or inf values")
    try:
        oracle = OracleLSTM(
            arrays["embedding"].shape[0], arrays["embedding"].shape[1], arrays["Ui"].shape[0], params=arrays
        )
    except (KeyError, ValueError) as e:
        raise DataError(f"{source}: not the oracle's shapes ({e})") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    oracle.save_npz(args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(
        f"wrote {args.out}: vocabulary {oracle.vocab_size}, embedding {oracle.embed_dim}, hidden "
        f"{oracle.hidden_dim}; sha256 {digest}\nuse it with data.oracle_path={args.out}"
    )
    return args.out


if __name__ == "__main__":
    run_cli(main)
