#!/usr/bin/env python
"""GRPO (or RLOO) from the ``trl`` package with an online seqgan discriminator as the reward: a GAN inside TRL.

    python recipes/trl_gan.py --config recipes/configs/coco_trl_gan.yaml [key=value ...] [--resume | --overwrite]

Needs ``pip install -e ".[trl]"``. The policy is a Hugging Face causal LM: the transformer generator of an MLE
checkpoint (``trl.policy_checkpoint``; its CNN discriminator starts the discriminator) or a fresh one from the
``generator`` section, fine-tuned by ``trl.sft_steps`` of TRL's SFTTrainer. Captions (``data``) are generated
from the BOS token; with ``conditional.train`` the prompt is the context and the pair discriminator judges
(context, response). Every ``trl.d_every`` policy steps the discriminator trains on the completions just
generated against real text, so the reward moves with the policy. Writes ``out_dir/trl_eval.json`` (this
toolkit's evaluation before and after), ``trl_metrics.jsonl``, ``trl_curves.png``, TRL's checkpoints in
``out_dir/trl`` (``--resume`` continues the latest, discriminator included) and the final policy in
``out_dir/policy``. See ``seqgan.integrations.trl``.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse

from seqgan import runtime
from seqgan.config import load_config
from seqgan.stages import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config with a trl section")
    run = p.add_mutually_exclusive_group()
    run.add_argument(
        "--resume", action="store_true", help="continue from the latest out_dir/trl/checkpoint-N"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="start again in an out_dir that holds a TRL run"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trl.steps=20")
    return p.parse_intermixed_args(argv)


def main(argv=None) -> dict:
    from seqgan.integrations.trl import train_trl_gan

    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    runtime.configure(cfg)
    return train_trl_gan(cfg, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    run_cli(main)
