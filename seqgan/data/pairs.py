"""(context, response) pair data: TSV and ChatterBot YAML loaders, encoding, mismatched negatives, Chit-Chat.

Formats:

* TSV: one pair per line, ``context<TAB>response`` (UTF-8, no header); blank lines are skipped, a line without
  exactly one TAB or with an empty side is an error naming the file and line.
* ChatterBot YAML (``{categories: [...], conversations: [[u1, u2, ...], ...]}``): every utterance answers the
  previous one, so the pairs are consecutive items ``(u_i, u_{i+1})``. A path may be one ``.yml`` file or a folder
  of them (sorted by name). Conversations that are not lists are skipped (the English corpus has one).

The discriminator of the conditional GAN (Li et al. 2017, arXiv 1701.06547) also sees *mismatched* pairs: a
context with a human response that belongs to another context. :func:`mismatched_indices` draws them so that a
context is never paired with its own response, nor with any response that some copy of the same context has in
the data (identical after tokenization), nor with an identical response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from seqgan.data.datasets import DataError, check_text_file, count_unknown, fit_length, pad_row, resolve_path
from seqgan.data.tokenizers import Tokenizer

__all__ = [
    "Pairs",
    "EncodedPairs",
    "load_pairs",
    "load_pairs_tsv",
    "load_pairs_yaml",
    "encode_pairs",
    "mismatched_indices",
    "chitchat_pairs",
]


@dataclass
class Pairs:
    """Raw pairs: ``contexts[i]`` is answered by ``responses[i]``."""

    contexts: list[str]
    responses: list[str]

    def __len__(self) -> int:
        return len(self.contexts)

    def head(self, n: int) -> Pairs:
        """The first ``n`` pairs (all when ``n`` is 0)."""
        return self if not n else Pairs(self.contexts[:n], self.responses[:n])


def load_pairs_tsv(path: str | Path) -> Pairs:
    """Reads ``context<TAB>response`` lines; raises :class:`DataError` naming the file and line."""
    p = check_text_file(path)
    contexts, responses = [], []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(
                f"{p}: line {lineno} has {len(parts) - 1} TABs; expected 'context<TAB>response' (exactly one)"
            )
        c, r = parts[0].strip(), parts[1].strip()
        if not c or not r:
            raise DataError(f"{p}: line {lineno} has an empty {'context' if not c else 'response'}")
        contexts.append(c)
        responses.append(r)
    if not contexts:
        raise DataError(f"{p}: no pairs")
    return Pairs(contexts, responses)


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.yml"), *path.glob("*.yaml")])
        if not files:
            raise DataError(f"{path}: folder holds no .yml / .yaml files")
        return files
    return [check_text_file(path)]


def load_pairs_yaml(path: str | Path) -> Pairs:
    """ChatterBot conversations (a file or a folder of files) -> consecutive-utterance pairs."""
    root = resolve_path(path)
    if not root.exists():
        raise DataError(f"pair file not found: {path}")
    contexts, responses = [], []
    for f in _yaml_files(root):
        try:
            # BaseLoader: every scalar stays the text it is (safe_load would read an answer "yes" as True)
            doc = yaml.load(f.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        except yaml.YAMLError as e:
            raise DataError(f"{f}: not valid YAML: {e}") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
            raise DataError(f"{f}: expected a mapping with a 'conversations' list (ChatterBot format)")
        for conv in doc["conversations"]:
            if not isinstance(conv, list):
                continue  # a malformed entry (a plain string) in the English corpus
            turns = [" ".join(str(u).split()) for u in conv if u is not None]
            for c, r in zip(turns, turns[1:], strict=False):
                if c and r:
                    contexts.append(c)
                    responses.append(r)
    if not contexts:
        raise DataError(f"{path}: no (context, response) pairs in the conversations")
    return Pairs(contexts, responses)


def load_pairs(path: str | Path) -> Pairs:
    """TSV (any other suffix) or ChatterBot YAML (``.yml`` / ``.yaml`` file, or a folder)."""
    p = resolve_path(path)
    if p.is_dir() or p.suffix.lower() in (".yml", ".yaml"):
        return load_pairs_yaml(p)
    return load_pairs_tsv(p)


# ---------------------------------------------------------------------------------------------- encoding
@dataclass
class EncodedPairs:
    """Encoded pairs: ``contexts`` ``(N, Tc)`` and ``responses`` ``(N, T)``, each ``ids EOS PAD ..``.

    ``kept`` are the indices of the raw pairs that were kept (responses longer than ``max_len`` may be dropped).
    """

    contexts: torch.Tensor
    responses: torch.Tensor
    kept: list[int]
    raw: Pairs
    truncated_contexts: int = 0
    truncated_responses: int = 0
    dropped: int = 0
    unk_share: float = 0.0
    examples: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return self.contexts.shape[0]

    @property
    def kept_raw(self) -> Pairs:
        return Pairs([self.raw.contexts[i] for i in self.kept], [self.raw.responses[i] for i in self.kept])

    def summary(self, name: str) -> str:
        return (
            f"{name}: {len(self)}/{len(self.raw)} pairs kept ({self.dropped} dropped); "
            f"{self.truncated_contexts} contexts cut to their last tokens, {self.truncated_responses} responses "
            f"truncated; {100 * self.unk_share:.2f}% unknown tokens"
        )


def encode_pairs(
    pairs: Pairs, tokenizer: Tokenizer, max_len: int, context_max_len: int, overlong: str = "truncate"
) -> EncodedPairs:
    """Encodes pairs with one tokenizer for both sides, with the sentences' truncation rule
    (:func:`~seqgan.data.datasets.fit_length`).

    Contexts keep their *last* ``context_max_len`` tokens (the end is what the response answers); responses follow
    the unconditional path's rule (``y_1 .. y_n EOS PAD ..``, overlong ones truncated or dropped). Pairs where a
    side encodes to no token are dropped.
    """
    if overlong not in ("truncate", "drop"):
        raise ValueError(f"overlong must be 'truncate' or 'drop', got {overlong!r}")
    ctx_rows, resp_rows, kept = [], [], []
    out = EncodedPairs(torch.empty(0), torch.empty(0), [], pairs)
    unk = total = 0
    for i, (c, r) in enumerate(zip(pairs.contexts, pairs.responses, strict=True)):
        c_ids, r_ids = tokenizer.encode(c), tokenizer.encode(r)
        if not c_ids or not r_ids:
            out.dropped += 1
            continue
        r_kept = fit_length(r_ids, max_len, overlong)
        if r_kept is None:
            out.dropped += 1
            if len(out.examples) < 5:
                out.examples.append(i)
            continue
        c_kept = fit_length(c_ids, context_max_len, "truncate", keep="tail")
        out.truncated_responses += len(r_kept) < len(r_ids)
        out.truncated_contexts += len(c_kept) < len(c_ids)
        unk += count_unknown(c_kept, tokenizer) + count_unknown(r_kept, tokenizer)
        total += len(c_kept) + len(r_kept)
        ctx_rows.append(pad_row(c_kept, context_max_len, tokenizer))
        resp_rows.append(pad_row(r_kept, max_len, tokenizer))
        kept.append(i)
    if not kept:
        raise DataError(
            f"no pair left after encoding {len(pairs)} pairs (max_len={max_len}, overlong={overlong})"
        )
    out.contexts = torch.tensor(ctx_rows, dtype=torch.long)
    out.responses = torch.tensor(resp_rows, dtype=torch.long)
    out.kept = kept
    out.unk_share = unk / max(total, 1)
    return out


# ---------------------------------------------------------------------------------------------- negatives
def _row_groups(rows: torch.Tensor) -> torch.Tensor:
    """``(N, T)`` -> ``(N,)`` group id: equal rows get equal ids."""
    return torch.unique(rows, dim=0, return_inverse=True)[1]


def mismatched_indices(
    contexts: torch.Tensor,
    responses: torch.Tensor,
    index: torch.Tensor,
    rng: torch.Generator | None = None,
    max_tries: int = 100,
) -> torch.Tensor:
    """For each pair ``i`` in ``index``, a pair ``j`` whose response is a mismatched negative for context ``i``.

    ``j`` is drawn uniformly among the pairs whose response (compared as token ids) differs from every response
    that context ``i`` (compared as token ids, so repeated contexts count together) has anywhere in the data; in
    particular ``j != i`` and ``responses[j] != responses[i]``. Rejection sampling: rows that draw a forbidden
    ``j`` draw again.

    Args:
        contexts: ``(N, Tc)`` all contexts of the pool.
        responses: ``(N, T)`` their responses.
        index: ``(B,)`` pairs that need a negative.
        rng: ``torch.Generator`` for the draws.
        max_tries: redraw rounds before giving up.
    Returns:
        ``(B,)`` indices into the pool.
    Raises:
        ValueError: some context has no valid mismatched response (e.g. every response in the pool is the same).
    """
    n = responses.shape[0]
    ctx_g, resp_g = _row_groups(contexts), _row_groups(responses)
    num_r = int(resp_g.max()) + 1
    allowed_keys = torch.unique(ctx_g * num_r + resp_g)  # (context group, response group) pairs that are real
    index = index.to(torch.long)
    out = torch.empty_like(index)
    todo = torch.arange(index.numel())
    for _ in range(max_tries):
        j = torch.randint(0, n, (todo.numel(),), generator=rng)
        bad = torch.isin(ctx_g[index[todo]] * num_r + resp_g[j], allowed_keys)
        out[todo[~bad]] = j[~bad]
        todo = todo[bad]
        if todo.numel() == 0:
            return out
    # exhaustive fallback for the rows that kept missing (rare valid choices) -- or a clear error
    for k in todo.tolist():
        ok = ~torch.isin(ctx_g[index[k]] * num_r + resp_g, allowed_keys)
        choices = ok.nonzero().squeeze(1)
        if choices.numel() == 0:
            raise ValueError(
                f"pair {int(index[k])} has no mismatched response: every response in the pool belongs to its context"
            )
        out[k] = choices[torch.randint(0, choices.numel(), (1,), generator=rng)]
    return out


# ---------------------------------------------------------------------------------------------- Chit-Chat
def chitchat_pairs(
    dataset_json: str | Path | None = None,
    test_every: int = 20,
    min_words: int = 1,
    max_words: int = 20,
) -> dict[str, Pairs]:
    """Train / test pairs of the Chit-Chat Challenge corpus (BYU PCC lab, MIT licence).

    Reads ``dataset.json`` of the PyPI package ``chitchat-dataset`` (the installed package's file when
    ``dataset_json`` is None; no network). Conversations in file order; the last ``len // test_every`` are the
    test split (a split by conversation, so no conversation is in both). A turn is its consecutive messages
    joined by one space with whitespace collapsed; every consecutive (turn i, turn i + 1) pair is kept when both
    sides have ``min_words .. max_words`` whitespace tokens. With the defaults this gives 68,395 / 3,457 pairs,
    the files ``recipes/prepare_chat.py chitchat`` writes (their sha256 sums are in its docstring).
    """
    if dataset_json is None:
        try:
            import chitchat_dataset
        except ImportError as e:
            raise DataError(
                "the Chit-Chat corpus needs the package chitchat-dataset (pip install chitchat-dataset==0.9.0) "
                "or the path of its dataset.json"
            ) from e
        dataset_json = Path(chitchat_dataset.__file__).with_name("dataset.json")
    path = Path(dataset_json)
    if not path.is_file():
        raise DataError(f"Chit-Chat dataset.json not found: {path}")
    convs = list(json.loads(path.read_text(encoding="utf-8")).values())
    num_test = len(convs) // test_every
    parts = {"train": convs[: len(convs) - num_test], "test": convs[len(convs) - num_test :]}
    out = {}
    for name, group in parts.items():
        contexts, responses = [], []
        for conv in group:
            turns = [" ".join(" ".join(m["text"] for m in turn).split()) for turn in conv["messages"]]
            for c, r in zip(turns, turns[1:], strict=False):
                if min_words <= len(c.split()) <= max_words and min_words <= len(r.split()) <= max_words:
                    contexts.append(c)
                    responses.append(r)
        out[name] = Pairs(contexts, responses)
    return out


def write_pairs_tsv(pairs: Pairs, path: str | Path) -> Path:
    """Writes ``context<TAB>response`` lines (TABs and newlines inside a side become spaces)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for c, r in zip(pairs.contexts, pairs.responses, strict=True):
            f.write(f"{' '.join(c.split())}\t{' '.join(r.split())}\n")
    return path
