"""Class-conditional generators p(y | c) and a multi-class discriminator bound to classes, for the category task.

Both generators follow the conditional contract of :mod:`seqgan.models.seq2seq` with the *class ids* as the
"contexts": ``forward(labels, inputs)``, ``init_state(labels)``, ``step``, ``select_state``, ``spec`` with
``labels`` a ``(B, 1)`` long tensor. :class:`~seqgan.models.seq2seq.BoundGenerator` therefore binds them to a
batch of classes and turns them into ordinary :class:`~seqgan.models.base.Generator` s, so
:func:`~seqgan.sampling.sample`, :func:`~seqgan.losses.sequence_nll`, :func:`~seqgan.trainers.gumbel.relaxed_sample`
and :class:`~seqgan.rollout.MonteCarloRollout` work unchanged (the state carries each row's class, so a rollout
that repeats a state row repeats its class).

* :class:`ClassLSTM` (``generator.kind: class_lstm``): one LSTM whose first input is a learned class embedding
  read in place of BOS (the conditional MLE baseline), optionally also concatenated to every input
  (``every_step``: CatGAN's generator, Liu et al. 2020, arXiv 1911.06641, feeds the category vector at every
  step).
* :class:`LSTMPerClass` (``generator.kind: lstm_per_class``): one independent
  :class:`~seqgan.models.lstm.LSTMGenerator` per class (SentiGAN's k generators, Wang & Wan 2018); row ``b``
  is decoded by the generator of its class.

:class:`ClassBoundDiscriminator` binds a ``(k + 1)``-output :class:`~seqgan.models.discriminator.CNNDiscriminator`
(k real classes, then fake) to the classes of a batch: it returns the one-vs-rest logit of each row's class,
whose sigmoid is the softmax probability ``D_c(x)`` of that class, which is what the rollout averages.
"""

from __future__ import annotations

import torch
from torch import nn

from seqgan.decoding.decoders import Decoder, LSTMDecoder
from seqgan.decoding.samplers import FusedSampler
from seqgan.losses import one_vs_rest_logit
from seqgan.models.lstm import LSTMGenerator
from seqgan.models.seq2seq import ConditionalGenerator

__all__ = ["ClassBoundDiscriminator", "ClassLSTM", "ClassLSTMDecoder", "LSTMPerClass", "class_labels"]


def class_labels(label: int | torch.Tensor, num: int, device=None) -> torch.Tensor:
    """``(num, 1)`` class ids: ``label`` repeated, or a ``(num,)`` tensor as a column."""
    if isinstance(label, torch.Tensor):
        return label.reshape(-1, 1).to(device=device, dtype=torch.long)
    return torch.full((num, 1), int(label), dtype=torch.long, device=device)


class _ClassGenerator(ConditionalGenerator):
    """Shared parts: class names, the ``(B, 1)`` label convention, the ``(h, c, labels)`` state."""

    classes: list[str]
    num_layers: int
    hidden_dim: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name: str) -> int:
        """The id of class ``name``; ValueError naming the classes when it is not one of them."""
        if name not in self.classes:
            raise ValueError(f"unknown class {name!r}; this model's classes: {', '.join(self.classes)}")
        return self.classes.index(name)

    def context_mask(self, contexts: torch.Tensor) -> torch.Tensor:  # no context tokens: one class id per row
        return torch.ones_like(contexts, dtype=torch.bool)

    def _zeros(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.num_layers, batch, self.hidden_dim, device=self.device)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        h, c, labels = state
        return h[:, index], c[:, index], labels[index]


class ClassLSTM(_ClassGenerator):
    """An LSTM generator conditioned on a class (see the module docstring).

    Args:
        vocab_size: V.
        classes: class names (ids are their positions).
        embed_dim, hidden_dim, num_layers, dropout: as :class:`~seqgan.models.lstm.LSTMGenerator`.
        every_step: concatenate the class embedding to the token embedding at every step (the LSTM's input is
            then ``2 * embed_dim``); otherwise it is only the first input, read in place of BOS.
        pad_id, bos_id, eos_id: special ids.

    State: ``(h, c, labels)``, ``h`` and ``c`` ``(L, B, H)``, ``labels`` ``(B,)``.
    """

    def __init__(
        self,
        vocab_size: int,
        classes: list[str],
        embed_dim: int = 32,
        hidden_dim: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        every_step: bool = False,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        if len(classes) < 1:
            raise ValueError("a class-conditional generator needs at least one class")
        self.vocab_size, self.classes = vocab_size, list(classes)
        self.embed_dim, self.hidden_dim, self.num_layers = embed_dim, hidden_dim, num_layers
        self.dropout_p, self.every_step = dropout, every_step
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.class_embedding = nn.Embedding(len(self.classes), embed_dim)
        width = 2 * embed_dim if every_step else embed_dim
        self.lstm = nn.LSTM(
            width, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_dim, vocab_size)

    def _embed(self, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """``(B,)`` or ``(B, 1)`` classes and ``(B, T)`` ids -> ``(B, T, E)`` (or ``2E``) LSTM inputs: BOS reads
        the class embedding."""
        cls = self.class_embedding(labels.reshape(-1))[:, None, :]  # (B, 1, E)
        emb = self.embedding(inputs)  # (B, T, E)
        emb = torch.where((inputs == self.bos_id)[..., None], cls, emb)
        if self.every_step:
            emb = torch.cat([emb, cls.expand(-1, inputs.shape[1], -1)], dim=-1)
        return emb

    def forward(self, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self._embed(labels, inputs))  # (B, T, H)
        return self.proj(self.dropout(out))  # (B, T, V)

    def masked_logits(self, labels: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self._embed(labels, inputs))
        return self.proj(self.dropout(out[mask]))  # (N, V)

    def init_state(self, labels: torch.Tensor):
        labels = labels.reshape(-1)
        return self._zeros(labels.shape[0]), self._zeros(labels.shape[0]), labels

    def step(self, tokens: torch.Tensor, state):
        h, c, labels = state
        out, (h, c) = self.lstm(self._embed(labels, tokens[:, None]), (h, c))  # (B, 1, H)
        return self.proj(self.dropout(out[:, 0])), (h, c, labels)

    def bound_decoder(self, bound, temperature: float) -> ClassLSTMDecoder:
        """The fused decoder of this model bound to classes (:meth:`BoundGenerator.fast_decoder`)."""
        return ClassLSTMDecoder(self, bound, temperature)

    def spec(self) -> dict:
        return {
            "kind": "class_lstm",
            "vocab_size": self.vocab_size,
            "classes": list(self.classes),
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "every_step": self.every_step,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> ClassLSTM:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class LSTMPerClass(_ClassGenerator):
    """One :class:`~seqgan.models.lstm.LSTMGenerator` per class; row ``b`` is modelled by ``generators[c_b]``.

    Args: as :class:`ClassLSTM` (without ``every_step``). State: ``(h, c, labels)`` as :class:`ClassLSTM`.
    """

    def __init__(
        self,
        vocab_size: int,
        classes: list[str],
        embed_dim: int = 32,
        hidden_dim: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        super().__init__()
        if len(classes) < 1:
            raise ValueError("a class-conditional generator needs at least one class")
        self.vocab_size, self.classes = vocab_size, list(classes)
        self.embed_dim, self.hidden_dim, self.num_layers = embed_dim, hidden_dim, num_layers
        self.dropout_p = dropout
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.generators = nn.ModuleList(
            LSTMGenerator(vocab_size, embed_dim, hidden_dim, num_layers, dropout, pad_id, bos_id, eos_id)
            for _ in self.classes
        )

    def _groups(self, labels: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
        """``[(class, rows)]`` for the classes present; ``rows`` None when every row has that class."""
        labels = labels.reshape(-1)
        first = int(labels[0])
        if bool((labels == first).all()):
            return [(first, None)]
        return [(c, (labels == c).nonzero().squeeze(1)) for c in torch.unique(labels).tolist()]

    def forward(self, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        groups = self._groups(labels)
        if groups[0][1] is None:
            return self.generators[groups[0][0]](inputs)
        rows = torch.cat([r for _, r in groups])
        out = torch.cat([self.generators[c](inputs[r]) for c, r in groups])  # rows grouped by class
        return out[torch.argsort(rows)]  # (B, T, V) back in row order

    def masked_logits(self, labels: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        groups = self._groups(labels)
        if groups[0][1] is None:
            return self.generators[groups[0][0]].masked_logits(inputs, mask)
        flat = torch.arange(mask.numel(), device=mask.device).view(mask.shape)  # row-major position ids
        pos = torch.cat([flat[r][mask[r]] for _, r in groups])
        out = torch.cat([self.generators[c].masked_logits(inputs[r], mask[r]) for c, r in groups])
        return out[torch.argsort(pos)]  # (N, V) in the row-major order of ``mask``

    def init_state(self, labels: torch.Tensor):
        labels = labels.reshape(-1)
        return self._zeros(labels.shape[0]), self._zeros(labels.shape[0]), labels

    def step(self, tokens: torch.Tensor, state):
        h, c, labels = state
        groups = self._groups(labels)
        if groups[0][1] is None:
            logits, (h, c) = self.generators[groups[0][0]].step(tokens, (h, c))
            return logits, (h, c, labels)
        logits = None
        h_new, c_new = torch.empty_like(h), torch.empty_like(c)
        for k, r in groups:
            out, (hk, ck) = self.generators[k].step(tokens[r], (h[:, r], c[:, r]))
            if logits is None:
                logits = out.new_empty(tokens.shape[0], out.shape[1])
            logits[r], h_new[:, r], c_new[:, r] = out, hk, ck
        return logits, (h_new, c_new, labels)

    def bound_decoder(self, bound, temperature: float) -> LSTMDecoder | None:
        """Bound to one class: that class's LSTM's fused decoder; bound to several: None (decode by ``step``)."""
        labels = bound.contexts.reshape(-1)
        if labels.numel() == 0 or not bool((labels == labels[0]).all()):
            return None
        return LSTMDecoder(self.generators[int(labels[0])], temperature)

    def spec(self) -> dict:
        return {
            "kind": "lstm_per_class",
            "vocab_size": self.vocab_size,
            "classes": list(self.classes),
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "dropout": self.dropout_p,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> LSTMPerClass:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})


class ClassLSTMDecoder(Decoder):
    """:class:`ClassLSTM` bound to classes, fast path: ``step`` returns the ``(n, H)`` LSTM output and the output
    projection is fused with the draw (:class:`~seqgan.decoding.samplers.FusedSampler`), as
    :class:`~seqgan.decoding.decoders.LSTMDecoder` does for the unconditional LSTM. State ``(h, c, labels)``."""

    fused = True

    def __init__(self, model: ClassLSTM, bound, temperature: float) -> None:
        self.m, self.bound = model, bound
        self.sampler = FusedSampler(model.proj.weight, model.proj.bias, temperature, bound.never_sample)

    def init(self, n: int, capacity: int | None = None, seq_len: int | None = None):
        return self.bound.init_state(n)

    def step(self, tokens: torch.Tensor, state):
        h, c, labels = state
        out, (h, c) = self.m.lstm(self.m._embed(labels, tokens[:, None]), (h, c))  # (n, 1, H)
        return out[:, 0], (h, c, labels)  # dropout is the identity in eval mode

    def rearrange(self, state, n: int, keep: torch.Tensor | None, src: torch.Tensor):
        h, c, labels = state
        index = torch.cat([torch.arange(n, device=src.device) if keep is None else keep, src])
        return h[:, index], c[:, index], labels[index]


class ClassBoundDiscriminator(nn.Module):
    """A ``(k + 1)``-class discriminator bound to the ``(B,)`` classes of a batch of samples.

    ``forward(seqs, sample_index)`` -> ``(N,)`` logits ``z_c - logsumexp_{j != c} z_j`` with ``c`` the class of
    each row's sample (``labels[sample_index]``, or ``labels`` itself without an index), so that ``sigmoid`` of
    it is ``softmax(z)_c = D_c(x)``: the discriminator's probability that the sentence is a real one of its
    class. ``scores_by_sample`` and :meth:`rollout_scorer` let :class:`~seqgan.rollout.MonteCarloRollout` score
    every completion against its own sample's class, with the exact fast CNN scorer when it applies.
    """

    scores_by_sample = True

    def __init__(self, discriminator: nn.Module, labels: torch.Tensor) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.labels = labels.reshape(-1)  # plain attribute, not a buffer

    def rebind(self, labels: torch.Tensor) -> ClassBoundDiscriminator:
        self.labels = labels.reshape(-1)
        return self

    def _classes(self, n: int, sample_index: torch.Tensor | None) -> torch.Tensor:
        if sample_index is not None:
            return self.labels[sample_index.to(self.labels.device)]
        if n != self.labels.shape[0]:
            raise ValueError(f"{n} rows for {self.labels.shape[0]} bound classes and no sample_index")
        return self.labels

    def forward(self, seqs: torch.Tensor, sample_index: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.discriminator(seqs)  # (N, K + 1)
        return one_vs_rest_logit(logits, self._classes(seqs.shape[0], sample_index).to(logits.device))

    def rollout_scorer(self, tokens: torch.Tensor, lengths: torch.Tensor, fast: bool = True):
        """The rollout's scorer ``(seqs, b, t) -> (N,)``: the CNN scorer's class logits (when it applies) turned
        into each row's one-vs-rest logit."""
        from seqgan.models.cnn_scorer import CNNScorer

        cnn = CNNScorer.create(self.discriminator, tokens, lengths) if fast else None
        if cnn is None:
            return lambda seqs, b, t: self(seqs, b).float()
        return lambda seqs, b, t: one_vs_rest_logit(cnn(seqs, b, t), self.labels[b.to(self.labels.device)])
