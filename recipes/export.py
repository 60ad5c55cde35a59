#!/usr/bin/env python
"""Export a trained causal-LM generator as a Hugging Face folder.

    python recipes/export.py --checkpoint runs/coco_smollm2/adversarial.pt --out exported/coco_smollm2

The folder holds the model (LoRA adapters merged into the weights), its config and generation config (the run's
pad / bos / eos ids) and the tokenizer, so that plain ``transformers`` loads it:

    AutoModelForCausalLM.from_pretrained("exported/coco_smollm2"), AutoTokenizer.from_pretrained(...)

The recipe then reloads the folder that way and prints the largest absolute difference between its logits and
the checkpoint's on a few sampled sequences. The checkpoint itself is unchanged (it keeps this toolkit's format).
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import sys

import torch

from seqgan.checkpoint import CheckpointError
from seqgan.config import AT_LEAST_ONE, arg_type
from seqgan.models.pretrained import export_generator, logit_difference
from seqgan.runs import load_run
from seqgan.sampling import sample


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint with a transformer generator")
    p.add_argument("--out", required=True, help="the Hugging Face folder to write (replaced if it exists)")
    p.add_argument("--num-check", type=arg_type(AT_LEAST_ONE, int), default=4, help="sequences for the check")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run = load_run(args.checkpoint)
    if run.conditional:
        raise CheckpointError(
            f"{args.checkpoint} holds a seq2seq chatbot; only causal LMs export to Hugging Face"
        )
    generator = run.generator.eval()
    out = export_generator(generator, run.tokenizer, args.out)
    rng = torch.Generator().manual_seed(args.seed)
    tokens = sample(generator, args.num_check, run.cfg.data.max_len, rng=rng).tokens
    diff = logit_difference(generator, out, generator.teacher_inputs(tokens))
    print(f"{out}: written; reloaded with AutoModelForCausalLM, max |logit difference| = {diff:.3g}")
    return diff


if __name__ == "__main__":
    try:
        main()
    except (CheckpointError, ValueError) as e:
        sys.exit(f"error: {e}")
