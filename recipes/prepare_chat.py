#!/usr/bin/env python
"""Prepare (context, response) pair files (TSV: context TAB response) for the conditional recipes.

Chit-Chat Challenge corpus (BYU PCC lab, MIT) from the PyPI package ``chitchat-dataset`` (installed offline with
``pip install chitchat-dataset==0.9.0``; or point --dataset-json at its dataset.json):

    python recipes/prepare_chat.py chitchat --out data/chitchat [--dataset-json PATH] [--max-words 20]

Split by conversation (the last 1/20 of the conversations, in file order, are the test split), a turn is its
consecutive messages joined by a space, consecutive turns make a pair, both sides must have 1..max-words
whitespace tokens. With the defaults this writes 68,395 train / 3,457 test pairs:

    chitchat_pairs_train.tsv  sha256 3b088502e7c7a33a5b69917aea7e4e7cec8d66dc48a95e6e9ac6daf2dfea1b24
    chitchat_pairs_test.tsv   sha256 966448c613483fc0b817f9d3ca16b5fe5504fbdf3ea2b1531120dc6ee0858179

ChatterBot English corpus (BSD-3) YAML files -> the small shipped set in ``data/chat``:

    python recipes/prepare_chat.py chatterbot --src chatterbot-corpus/chatterbot_corpus/data/english --out data/chat

Consecutive utterances of each conversation, exact duplicate pairs removed (first occurrence kept, files in name
order), pairs with a side over --max-words whitespace tokens dropped (code blocks), then every 10th pair is a
test pair.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqgan.data.datasets import DataError
from seqgan.data.pairs import Pairs, chitchat_pairs, load_pairs_yaml, write_pairs_tsv


def chatterbot_split(src: str | Path, max_words: int = 20, test_every: int = 10) -> dict[str, Pairs]:
    """Deduplicated, length-filtered ChatterBot pairs split into train / test (every ``test_every``-th pair)."""
    raw = load_pairs_yaml(src)
    seen: set[tuple[str, str]] = set()
    kept: list[tuple[str, str]] = []
    for c, r in zip(raw.contexts, raw.responses, strict=True):
        if (c, r) in seen or len(c.split()) > max_words or len(r.split()) > max_words:
            continue
        seen.add((c, r))
        kept.append((c, r))
    test = [p for i, p in enumerate(kept) if i % test_every == test_every - 1]
    train = [p for i, p in enumerate(kept) if i % test_every != test_every - 1]
    return {
        name: Pairs([c for c, _ in ps], [r for _, r in ps]) for name, ps in (("train", train), ("test", test))
    }


def main(argv=None) -> dict[str, Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="corpus", required=True)
    cc = sub.add_parser("chitchat", help="the Chit-Chat corpus from the chitchat-dataset package")
    cc.add_argument("--out", default="data/chitchat")
    cc.add_argument(
        "--dataset-json", help="dataset.json of chitchat-dataset (default: the installed package's)"
    )
    cc.add_argument("--max-words", type=int, default=20)
    cb = sub.add_parser("chatterbot", help="ChatterBot YAML conversations (a file or a folder)")
    cb.add_argument(
        "--src", required=True, help="the corpus's chatterbot_corpus/data/english folder (or a copy)"
    )
    cb.add_argument("--out", default="data/chat")
    cb.add_argument("--max-words", type=int, default=20)
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.corpus == "chitchat":
        splits = chitchat_pairs(args.dataset_json, max_words=args.max_words)
        names = {"train": "chitchat_pairs_train.tsv", "test": "chitchat_pairs_test.tsv"}
    else:
        splits = chatterbot_split(args.src, args.max_words)
        names = {"train": "chatterbot_train.tsv", "test": "chatterbot_test.tsv"}
    written = {}
    for split, pairs in splits.items():
        written[split] = write_pairs_tsv(pairs, out / names[split])
        print(f"{written[split]}: {len(pairs)} pairs")
    return written


if __name__ == "__main__":
    try:
        main()
    except DataError as e:
        sys.exit(f"error: {e}")
