#!/usr/bin/env python
"""Chat with a conditional (seq2seq) checkpoint or an instruct causal LM: reads one line from stdin, prints one
reply, until EOF; the replies read the conversation so far.

    python recipes/chat.py --checkpoint runs/chitchat_seqgan/adversarial.pt [--temperature 0.8] [--top-k 40] \
        [--top-p 0.9] [--greedy] [--seed 0] [--history-turns 3]
    python recipes/chat.py --model models/smollm2-135m          # an instruct LM's Hugging Face folder
    printf 'hi there\nwhat do you study?\n' | python recipes/chat.py --checkpoint runs/chat_tiny/pretrain.pt

The context of a reply is the last ``--history-turns`` turns (both sides, the new line included; default: the
checkpoint's ``conditional.history_turns``; 1 answers each line alone). A seq2seq chatbot reads them joined by
spaces (the last ``conditional.context_max_len`` tokens); an instruct LM (``--model``, or a checkpoint of a
transformer generator whose Hugging Face tokenizer has a chat template) through the chat template. The line
``/reset`` forgets the conversation (and prints ``(history cleared)``). The reply is sampled with the given
settings (defaults: the checkpoint's ``sample`` section), or decoded greedily with ``--greedy``; the same seed
gives the same replies for the same input. A prompt is shown only when stdin is a terminal, so the output of a
pipe is exactly one line per input line.
"""

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import sys

import torch

from seqgan.chat import RESET, ChatHistory, chat_prompt, lm_reply
from seqgan.checkpoint import CheckpointError
from seqgan.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, Config, arg_type
from seqgan.runs import load_run, reply
from seqgan.runtime import resolve_device
from seqgan.stages import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", help="a checkpoint of a conditional run, or of an instruct LM fine-tuned here"
    )
    source.add_argument(
        "--model", help="a local Hugging Face folder of an instruct causal LM (chat template)"
    )
    p.add_argument(
        "--history-turns",
        type=arg_type(AT_LEAST_ONE, int),
        help="turns a reply reads (default: the config's)",
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


def load(args) -> tuple:
    """``(generator, tokenizer, config, instruct)`` from ``--checkpoint`` or ``--model``."""
    device = resolve_device(args.device)
    if args.model:
        from seqgan.data.tokenizers import HFTokenizer
        from seqgan.models.transformer import TransformerGenerator

        tokenizer = HFTokenizer.from_pretrained(args.model)
        generator = TransformerGenerator.from_pretrained(
            args.model, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        ).to(device)
        return generator, tokenizer, Config(), True
    run = load_run(args.checkpoint, device)
    instruct = run.cfg.generator.kind == "transformer" and bool(
        getattr(getattr(run.tokenizer, "hf", None), "chat_template", None)
    )
    if not run.conditional and not instruct:
        raise CheckpointError(
            f"recipes/chat.py needs a conditional checkpoint (a model trained on (context, response) pairs) or "
            f"an instruct LM; {args.checkpoint} holds an unconditional {run.cfg.generator.kind} generator: "
            f"sample from it with recipes/sample.py --checkpoint {args.checkpoint}"
        )
    return (
        run.generator,
        run.tokenizer,
        run.cfg,
        instruct,
    )  # a causal LM trained on pairs: its chat template too


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    generator, tokenizer, cfg, instruct = load(args)
    sc = cfg.sample
    temperature = sc.temperature if args.temperature is None else args.temperature
    top_k = 1 if args.greedy else (sc.top_k if args.top_k is None else args.top_k)
    top_p = sc.top_p if args.top_p is None else args.top_p
    max_len = args.max_len or cfg.data.max_len
    history = ChatHistory(args.history_turns or cfg.conditional.history_turns)
    rng = torch.Generator(device=generator.device).manual_seed(args.seed)
    generator.eval()
    interactive = sys.stdin.isatty()
    if interactive:
        print(
            f"chatting with {args.checkpoint or args.model} ({RESET} forgets, Ctrl-D quits)", file=sys.stderr
        )
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        if line.strip() == RESET:
            history.reset()
            print("(history cleared)", flush=True)
            continue
        history.add("user", line)
        if instruct:
            ids = lm_reply(
                generator,
                chat_prompt(tokenizer.hf, history.messages()),
                max_len,
                temperature,
                top_k,
                top_p,
                rng,
            )
            answer = tokenizer.decode(ids)
        else:
            (answer,) = reply(
                generator, tokenizer, [history.context()], max_len, cfg.conditional.context_max_len,
                temperature, top_k, top_p, rng,
            )  # fmt: skip
        history.add("assistant", answer)
        print(answer.replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
