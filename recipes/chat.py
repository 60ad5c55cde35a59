#!/usr/bin/env python
"""Chat with a conditional (seq2seq) checkpoint: reads one line from stdin, prints one reply, until EOF.

    python recipes/chat.py --checkpoint runs/chitchat_seqgan/adversarial.pt [--temperature 0.8] [--top-k 40] \
        [--top-p 0.9] [--greedy] [--seed 0]
    printf 'hi there\nwhat do you study?\n' | python recipes/chat.py --checkpoint runs/chat_tiny/pretrain.pt

Each line is one context (the last ``conditional.context_max_len`` tokens are read); the reply is sampled with
the given settings (defaults: the checkpoint's ``sample`` section), or decoded greedily with ``--greedy``. The
same seed gives the same replies for the same input. A prompt is shown only when stdin is a terminal, so the
output of a pipe is exactly one line per input line.
"""

from __future__ import annotations

import seqgan  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import sys

import torch

from seqgan.checkpoint import CheckpointError
from seqgan.conditional.stages import load_conditional_run, reply


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", required=True, help="a checkpoint of a conditional run (pretrain.pt / adversarial.pt)"
    )
    p.add_argument(
        "--temperature", type=float, default=None, help="softmax temperature (default: the config's)"
    )
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (1: off)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-len", type=int, default=None, help="most tokens per reply (default: data.max_len)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load_conditional_run(args.checkpoint, args.device)
    cfg, sc = run.cfg, run.cfg.sample
    temperature = sc.temperature if args.temperature is None else args.temperature
    top_k = 1 if args.greedy else (sc.top_k if args.top_k is None else args.top_k)
    top_p = sc.top_p if args.top_p is None else args.top_p
    if temperature <= 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError("need --temperature > 0, 0 < --top-p <= 1 and --top-k >= 0")
    max_len = args.max_len or cfg.data.max_len
    rng = torch.Generator(device=run.generator.device)
    rng.manual_seed(args.seed)
    run.generator.eval()
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {args.checkpoint} (Ctrl-D to quit)", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        (answer,) = reply(
            run.generator,
            run.tokenizer,
            [line.rstrip("\n")],
            max_len,
            cfg.conditional.context_max_len,
            temperature,
            top_k,
            top_p,
            rng,
        )
        print(answer, flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CheckpointError, ValueError) as e:
        sys.exit(f"error: {e}")
