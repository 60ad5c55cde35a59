"""Evaluate a generator the same way everywhere (evaluate recipe, adversarial recipe schedule, benchmarks).

Evaluation tokens: for a word-level tokenizer, the generator's own tokens (``<unk>`` included, which never
matches a reference word) and the references split by the same tokenizer; for subword tokenizers, the
detokenized text and the references split into words with nltk's ``word_tokenize`` (lowercased when the data is).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from seqgan.data.tokenizers import Tokenizer, split_words
from seqgan.metrics.bleu import ReferenceBleu
from seqgan.metrics.nll import nll_test
from seqgan.metrics.suite import ORDERS, protocol, text_metrics
from seqgan.models.base import Generator
from seqgan.sampling import sample


def tokenization_note(tokenizer: Tokenizer, lowercase: bool) -> str:
    if tokenizer.kind == "word":
        split = getattr(tokenizer, "split", "nltk")
        how = "nltk.word_tokenize(preserve_line=True)" if split == "nltk" else "str.split()"
        return (
            f"word-level tokenizer tokens ({how}{', lowercased' if lowercase else ''}); <unk> kept in samples"
        )
    return f"detokenized text split by nltk.word_tokenize(preserve_line=True){', lowercased' if lowercase else ''}"


class Evaluator:
    """BLEU/Self-BLEU/distinct/length (and NLL_test, FED) of generator samples against a test split.

    Args:
        tokenizer: the run's tokenizer.
        test_lines: raw reference sentences.
        test_tokens: ``(N, T)`` encoded test split for NLL_test (None to skip).
        lowercase: whether the data is lowercased (subword tokenizers only).
        orders: BLEU orders.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        test_lines: Sequence[str],
        test_tokens: torch.Tensor | None = None,
        lowercase: bool = True,
        orders: Sequence[int] = ORDERS,
    ):
        self.tokenizer, self.lowercase, self.orders = tokenizer, lowercase, tuple(orders)
        self.test_lines = list(test_lines)
        self.test_tokens = test_tokens
        self.references = [self.text_tokens(s) for s in self.test_lines]
        self.ref_bleu = ReferenceBleu(self.references, max(self.orders))
        self.tokenization = tokenization_note(tokenizer, lowercase)

    def text_tokens(self, text: str) -> list[str]:
        if self.tokenizer.kind == "word":
            return self.tokenizer.tokens(text)
        return split_words(text, "nltk", self.lowercase)

    def ids_tokens(self, tokens: torch.Tensor) -> list[list[str]]:
        rows = tokens.tolist()
        if self.tokenizer.kind == "word":
            return [self.tokenizer.decode_tokens(r) for r in rows]
        return [split_words(self.tokenizer.decode(r), "nltk", self.lowercase) for r in rows]

    def score_tokens(self, hyps: list[list[str]], self_bleu: bool = True) -> dict[str, float]:
        return text_metrics(hyps, self.ref_bleu, self.orders, self_bleu)

    def real_data_row(self, train_lines: Sequence[str], num: int, seed: int = 0) -> dict[str, float]:
        """The same metrics for ``num`` random real training sentences: the ceiling a model is read against."""
        lines = list(train_lines)
        pick = random.Random(seed).sample(range(len(lines)), min(num, len(lines)))
        return self.score_tokens([self.text_tokens(lines[i]) for i in pick])

    def evaluate(
        self,
        generator: Generator,
        num_samples: int,
        max_len: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        self_bleu: bool = True,
        with_nll: bool = True,
    ) -> tuple[dict[str, float], torch.Tensor]:
        """Samples ``num_samples`` sentences and scores them; returns (metrics, sampled ids)."""
        rng = torch.Generator(device=generator.device)
        rng.manual_seed(seed)
        tokens = sample(
            generator, num_samples, max_len, temperature, top_k, top_p, rng=rng, batch_size=1024
        ).tokens
        metrics = self.score_tokens(self.ids_tokens(tokens.cpu()), self_bleu)
        if with_nll and self.test_tokens is not None:
            metrics["nll_test"] = nll_test(generator, self.test_tokens)
        return metrics, tokens

    def protocol(self, num_hypotheses: int, **extra) -> dict:
        return protocol(num_hypotheses, len(self.references), self.tokenization, self.orders, **extra)
