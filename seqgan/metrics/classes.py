"""Evaluation by class for class-conditional generators (the category task), and the class accuracy.

Protocol, per class ``c`` (every number is also returned with the ``protocol`` of the evaluation):

* **BLEU-2..5** of ``n`` sentences sampled for class ``c`` against *that class's* test sentences only, with the
  evaluation of :mod:`seqgan.metrics.evaluator` (nltk ``sentence_bleu``, method1 smoothing, computed exactly);
* **Self-BLEU-2..5** within the class's samples (each against the class's other samples);
* **NLL_test**: the mean per-token NLL of the class's test sentences under the generator conditioned on ``c``;
* **class accuracy**: the share of the class's samples that a text classifier puts in class ``c``. The
  classifier (:func:`train_classifier`, a CNN over words in the style of Kim 2014: SeqGAN's CNN discriminator
  with a ``k``-way head) is trained on the real *training* split only; its accuracy on the real *test* sentences
  (:func:`accuracy`) is its held-out accuracy, the ceiling a generator's class accuracy is read against.

The overall row is the mean over classes of every per-class metric (with the same number of samples per class
this is also the mean over all samples for BLEU and class accuracy), except NLL_test, which is the token-weighted
mean over every test sentence. The real-data row scores ``n`` random *training* sentences of each class the same
way; its class accuracy is the classifier's held-out accuracy on that class's test sentences (the training
sentences are the classifier's own training data).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from seqgan.data.datasets import batches, sequence_mask
from seqgan.data.tokenizers import Tokenizer
from seqgan.metrics.evaluator import Evaluator
from seqgan.models.class_conditional import class_labels
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.seq2seq import BoundGenerator

__all__ = [
    "CategoryEvaluator",
    "accuracy",
    "overall",
    "predict",
    "train_classifier",
]

MEAN_KEYS = (
    *(f"bleu{n}" for n in (2, 3, 4, 5)),
    *(f"self_bleu{n}" for n in (2, 3, 4, 5)),
    "distinct1",
    "distinct2",
    "avg_len",
    "class_acc",
)
"""Metrics whose overall value is the mean over classes."""


def train_classifier(
    tokens: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    vocab_size: int,
    pad_id: int | None,
    embed_dim: int = 64,
    filter_sizes: Sequence[int] = (2, 3, 4, 5),
    num_filters: int = 100,
    dropout: float = 0.5,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> CNNDiscriminator:
    """A CNN text classifier trained by cross-entropy on ``(N, T)`` ids with ``(N,)`` classes.

    Deterministic for a seed, and it leaves the process's random streams as they were (the training runs under
    :func:`torch.random.fork_rng`), so evaluating never changes a training run. Returned in eval mode.
    """
    device = tokens.device
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        model = CNNDiscriminator(
            vocab_size, embed_dim, list(filter_sizes), [num_filters] * len(filter_sizes), dropout, True, pad_id,
            num_outputs=num_classes,
        ).to(device)  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        order = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for idx in batches(tokens.shape[0], batch_size, True, order):
                idx = idx.to(device)
                loss = F.cross_entropy(model(tokens[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model.eval()


@torch.no_grad()
def predict(classifier: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """``(N,)`` predicted classes of ``(N, T)`` ids (eval mode)."""
    was = classifier.training
    classifier.eval()
    try:
        device = next(classifier.parameters()).device
        out = [
            classifier(tokens[s : s + batch_size].to(device)).argmax(dim=1)
            for s in range(0, len(tokens), batch_size)
        ]
    finally:
        classifier.train(was)
    return torch.cat(out).cpu() if out else torch.empty(0, dtype=torch.long)


def accuracy(classifier: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor | int) -> float:
    """Share of ``(N, T)`` rows the classifier puts in their class (``labels`` ``(N,)`` or one class for all)."""
    pred = predict(classifier, tokens)
    target = labels.cpu() if isinstance(labels, torch.Tensor) else torch.full_like(pred, int(labels))
    return float((pred == target).float().mean()) if pred.numel() else float("nan")


def overall(per_class: dict[str, dict[str, float]], nll: tuple[float, int] | None = None) -> dict[str, float]:
    """The overall row: the mean over classes of every :data:`MEAN_KEYS` metric present, and NLL_test as the
    token-weighted mean ``nll = (total NLL, total tokens)`` when given."""
    rows = list(per_class.values())
    out = {k: sum(r[k] for r in rows) / len(rows) for k in MEAN_KEYS if all(k in r for r in rows)}
    if nll is not None:
        out["nll_test"] = nll[0] / max(nll[1], 1)
    return out


class CategoryEvaluator:
    """Per-class and overall metrics of a class-conditional generator (see the module docstring).

    Args:
        tokenizer: the run's tokenizer.
        classes: class names in id order.
        test_lines: raw test sentences per class (``{name: [...]}``): the BLEU references.
        test_tokens: encoded test sentences per class (``{name: (n_c, T)}``): NLL_test and the classifier's
            held-out accuracy.
        classifier: the class-accuracy classifier (None: no class accuracy).
        lowercase: whether the data is lowercased.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        classes: Sequence[str],
        test_lines: dict[str, list[str]],
        test_tokens: dict[str, torch.Tensor],
        classifier: torch.nn.Module | None = None,
        lowercase: bool = True,
    ) -> None:
        self.tokenizer, self.classes = tokenizer, list(classes)
        missing = [c for c in self.classes if not test_lines.get(c)]
        if missing:
            raise ValueError(f"no test sentence for classes {missing}: per-class BLEU needs references")
        self.evaluators = {
            c: Evaluator(tokenizer, test_lines[c], test_tokens[c], lowercase) for c in self.classes
        }
        self.test_tokens = test_tokens
        self.classifier = classifier
        self.heldout = None
        if classifier is not None:
            self.heldout = {c: accuracy(classifier, test_tokens[c], i) for i, c in enumerate(self.classes)}

    def heldout_accuracy(self) -> float | None:
        """The classifier's accuracy over every real test sentence (None without a classifier)."""
        if self.heldout is None:
            return None
        sizes = [self.test_tokens[c].shape[0] for c in self.classes]
        return sum(self.heldout[c] * n for c, n in zip(self.classes, sizes, strict=True)) / sum(sizes)

    def evaluate(
        self,
        generator: torch.nn.Module,
        num_per_class: int,
        max_len: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, torch.Tensor]]:
        """Samples ``num_per_class`` sentences of every class (class ``i`` with seed ``seed + i``) and scores them.

        Returns:
            ``(overall, per_class, samples)``: the overall row, ``{class: metrics}`` and ``{class: (n, T) ids}``.
        """
        per_class, samples = {}, {}
        total, count = 0.0, 0
        for i, c in enumerate(self.classes):
            bound = BoundGenerator(generator, class_labels(i, 1, generator.device))
            metrics, tokens = self.evaluators[c].evaluate(
                bound, num_per_class, max_len, temperature, top_k, top_p, seed + i
            )
            n = int(sequence_mask(self.test_tokens[c], generator.eos_id).sum())
            total, count = total + metrics["nll_test"] * n, count + n
            if self.classifier is not None:
                metrics["class_acc"] = accuracy(self.classifier, tokens, i)
            per_class[c], samples[c] = metrics, tokens.cpu()
        return overall(per_class, (total, count)), per_class, samples

    def real_data(
        self, train_lines: dict[str, list[str]], num_per_class: int, seed: int = 0
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """The real-data rows: ``num_per_class`` random training sentences of each class; the class accuracy is
        the classifier's held-out accuracy on the class's test sentences. Returns ``(overall, per_class)``."""
        per_class = {}
        for i, c in enumerate(self.classes):
            lines = train_lines[c]
            pick = random.Random(seed + i).sample(range(len(lines)), min(num_per_class, len(lines)))
            ev = self.evaluators[c]
            per_class[c] = ev.score_tokens([ev.text_tokens(lines[j]) for j in pick])
            if self.heldout is not None:
                per_class[c]["class_acc"] = self.heldout[c]
        return overall(per_class), per_class
