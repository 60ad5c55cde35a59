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

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import sys

import torch

from seqgan.checkpoint import CheckpointError
from seqgan.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, arg_type
from seqgan.runs import load_run, reply
from seqgan.runtime import resolve_device
from seqgan.stages import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", required=True, help="a checkpoint of a conditional run (pretrain.pt / adversarial.pt)"
    )
    p.add_argument(
        "--temperature", type=arg_type(POSITIVE), help="softmax temperature (default: the config's)"
    )
    p.add_argument("--top-k", type=arg_type(NON_NEGATIVE, int), help="keep the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=arg_type(PROBABILITY), help="nucleus sampling threshold (1: off)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-len", type=arg_type(AT_LEAST_ONE, int), help="most tokens per reply (default: data.max_len)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=arg_type(AT_LEAST_ONE, int), default=1, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load_run(args.checkpoint, resolve_device(args.device))
    if not run.conditional:
        raise CheckpointError(
            f"recipes/chat.py needs a conditional checkpoint (a model trained on (context, response) pairs); "
            f"{args.checkpoint} holds an unconditional {run.cfg.generator.kind} generator: sample from it with "
            f"recipes/sample.py --checkpoint {args.checkpoint}"
        )
    cfg, sc = run.cfg, run.cfg.sample
    temperature = sc.temperature if args.temperature is None else args.temperature
    top_k = 1 if args.greedy else (sc.top_k if args.top_k is None else args.top_k)
    top_p = sc.top_p if args.top_p is None else args.top_p
    max_len = args.max_len or cfg.data.max_len
    rng = torch.Generator(device=run.generator.device).manual_seed(args.seed)
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
            run.generator, run.tokenizer, [line.rstrip("\n")], max_len, cfg.conditional.context_max_len,
            temperature, top_k, top_p, rng,
        )  # fmt: skip
        print(answer, flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
