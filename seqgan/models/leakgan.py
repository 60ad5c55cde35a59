"""LeakGAN's hierarchical generator (Guo et al. 2018, "Long Text Generation via Adversarial Training with Leaked
Information", AAAI, arXiv 1709.08624): a Manager that reads the discriminator's leaked features and a Worker
that writes the tokens.

Notation: ``s_t = y_1 .. y_t`` is the prefix after ``t`` tokens (``s_0`` is empty) and ``f_t = F(s_t)`` its
feature vector, leaked by the discriminator (:meth:`~seqgan.models.discriminator.CNNDiscriminator.prefix_features`:
the pooled, highway-transformed CNN features, ``F`` wide). At step ``t`` (reading ``y_t``, or BOS when ``t = 0``):

1. Manager: an LSTM over ``f_t``; a linear head gives ``g^_t`` (``F`` wide) and the goal ``g_t = g^_t / ||g^_t||``,
   a direction in the discriminator's feature space.
2. Goal embedding: ``w_t = psi(sum_{i=1..c} g_{t-i})`` with ``psi`` a linear map without bias, ``F -> k``
   (``W_psi``); ``c`` is ``step_size`` (the paper: 4) and ``k`` is ``goal_size`` (the paper: 16). A goal the
   Manager emitted at step ``t`` thus steers the ``c`` tokens that follow it. Before the first step there are no
   goals: each missing ``g_{t-i}`` (``t - i < 0``) is a learned unit vector, ``goal_init``.
3. Worker: an LSTM over the token embedding gives ``h_t``; a linear map gives the matrix
   ``O_t = reshape(W_O h_t + b_O, (V, k))``; the next-token logits are ``O_t w_t`` (``(V,)``), so
   ``G(. | s_t) = softmax(O_t w_t / temperature)``. ``O_t`` is never materialised: ``O_t w_t`` is computed as
   ``W_O' (w_t outer h_t) + B_O w_t`` (:meth:`LeakGANGenerator.token_logits`).

The goals enter the Worker as constants (detached): the Worker's likelihood and policy gradient train the Worker
(embedding, Worker LSTM, ``W_O``, ``psi``, ``goal_init``: :meth:`LeakGANGenerator.worker_parameters`) and the
Manager is trained only by its own objectives (:meth:`LeakGANGenerator.manager_parameters`), as in the paper,
where the two modules have separate updates. The Manager's MLE-stage objective is :meth:`mle_extra_loss`.

The features are those of the discriminator bound with :meth:`~seqgan.models.base.Generator.bind_features`
(see :mod:`seqgan.models.base`): ``forward`` / ``masked_logits`` compute ``f_0 .. f_{T-1}`` of the teacher-forced
prefixes in one discriminator call, ``step`` carries the prefix in its state and computes ``f_t`` of it, so both
paths read the same features and agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.data.datasets import sequence_mask
from seqgan.models.base import Generator

__all__ = ["LeakGANGenerator", "LeakTrajectory"]


@dataclass
class LeakTrajectory:
    """What the hierarchical policy computes along ``(B, T)`` sequences (teacher forcing).

    Attributes:
        features: ``(B, T + 1, F)`` leaked features ``f_0 .. f_T`` of the prefixes (constants).
        goals: ``(B, T, F)`` unit goals ``g_0 .. g_{T-1}`` (with gradient to the Manager).
        log_probs: ``(B, T)`` log-probability of each token ``y_{t+1}`` under ``softmax(O_t w_t / temperature)``
            (with gradient to the Worker), 0 where ``mask`` is False.
        mask: ``(B, T)`` True for real tokens (up to and including the first EOS).
    """

    features: torch.Tensor
    goals: torch.Tensor
    log_probs: torch.Tensor
    mask: torch.Tensor


class LeakGANGenerator(Generator):
    """Manager LSTM over leaked features + Worker LSTM over tokens (see the module docstring).

    The incremental state is ``(inputs, (h_M, c_M), (h_W, c_W), window)``: the ``(B, s)`` ids read so far (BOS
    first), the Manager's and the Worker's LSTM states (each ``(1, B, H)``), and the ``(B, c, F)`` last ``c``
    goals, oldest first.

    Args:
        vocab_size: V.
        feature_dim: F, the width of the discriminator's features (the sum of its filter counts).
        embed_dim: Worker's token embedding size.
        hidden_dim: Worker LSTM size.
        manager_hidden_dim: Manager LSTM size.
        goal_size: k, the width of the goal embedding ``w_t`` and of the Worker's ``O_t`` columns (paper: 16).
        step_size: c, the goal horizon (paper: 4).
        dropout: on the Worker's output before ``O_t`` (training updates only).
        pad_id, bos_id, eos_id: special ids (``eos_id=None`` for fixed-length data).
    """

    needs_features = True

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 32,
        hidden_dim: int = 32,
        manager_hidden_dim: int = 32,
        goal_size: int = 16,
        step_size: int = 4,
        dropout: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int | None = 2,
    ):
        super().__init__()
        if min(vocab_size, feature_dim, embed_dim, hidden_dim, manager_hidden_dim, goal_size, step_size) < 1:
            raise ValueError("every size of a LeakGANGenerator must be positive")
        self.vocab_size, self.feature_dim, self.embed_dim = vocab_size, feature_dim, embed_dim
        self.hidden_dim, self.manager_hidden_dim = hidden_dim, manager_hidden_dim
        self.goal_size, self.step_size, self.dropout_p = goal_size, step_size, dropout
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        # Worker
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.worker = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.worker_out = nn.Linear(hidden_dim, vocab_size * goal_size)  # O_t = (W_O h + b_O) as (V, k)
        self.psi = nn.Linear(feature_dim, goal_size, bias=False)  # w_t = W_psi (sum of the last c goals)
        self.goal_init = nn.Parameter(torch.randn(feature_dim) / math.sqrt(feature_dim))
        # Manager
        self.manager = nn.LSTM(feature_dim, manager_hidden_dim, batch_first=True)
        self.goal_head = nn.Linear(manager_hidden_dim, feature_dim)

    # ------------------------------------------------------------------ parameter groups
    def manager_parameters(self) -> list[nn.Parameter]:
        """The Manager's parameters (LSTM and goal head): trained by the Manager's objectives only."""
        return [*self.manager.parameters(), *self.goal_head.parameters()]

    def worker_parameters(self) -> list[nn.Parameter]:
        """The Worker's parameters (embedding, LSTM, ``W_O``, ``psi``, ``goal_init``): trained by the likelihood and
        the Worker's policy gradient."""
        manager = {id(p) for p in self.manager_parameters()}
        return [p for p in self.parameters() if id(p) not in manager]

    # ------------------------------------------------------------------ the pieces
    def leaked(self, tokens: torch.Tensor, num: int) -> torch.Tensor:
        """``(B, num, F)`` features ``f_0 .. f_{num-1}`` of the prefixes of ``tokens`` ``(B, L)`` (``num <= L + 1``)
        from the bound leak, one discriminator call over ``B * num`` rows."""
        leak = self._leak_fn()
        b = tokens.shape[0]
        rows = tokens.repeat_interleave(num, dim=0)  # (B * num, L)
        lengths = torch.arange(num, device=tokens.device).repeat(b)  # 0 .. num-1 per row
        return leak(rows, lengths).view(b, num, -1)

    def _leak_fn(self):
        leak = self.__dict__.get("_leak")
        if leak is None:
            raise RuntimeError(
                "LeakGANGenerator reads a discriminator's features: bind them first "
                "(seqgan.models.bind_leak(generator, discriminator))"
            )
        return leak

    def goals(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` features -> ``(B, T, F)`` unit goals ``g_t`` (the Manager from its initial state)."""
        out, _ = self.manager(features)
        return F.normalize(self.goal_head(out), dim=-1)

    def goal_window(self, goals: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` goals -> ``(B, T, F)`` sums ``sum_{i=1..c} g_{t-i}`` (``goal_init`` for ``t - i < 0``)."""
        b, t, f = goals.shape
        c = self.step_size
        first = F.normalize(self.goal_init, dim=0).expand(b, c, f)
        padded = torch.cat([first, goals], dim=1)  # (B, c + T, F): padded[:, c + j] = g_j
        return padded.unfold(1, c, 1)[:, :t].sum(dim=-1)  # window t: g_{t-c} .. g_{t-1}

    def worker_matrix(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(N, H)`` Worker outputs -> ``(N, V, k)`` matrices ``O_t`` (for inspection; :meth:`token_logits` does
        not build them)."""
        return self.worker_out(hidden).view(*hidden.shape[:-1], self.vocab_size, self.goal_size)

    def token_logits(self, hidden: torch.Tensor, goal_embed: torch.Tensor) -> torch.Tensor:
        """``O_t w_t``: ``(N, H)`` Worker outputs and ``(N, k)`` goal embeddings -> ``(N, V)`` logits.

        ``sum_j O[v, j] w[j] = sum_{j,h} W_O[(v, j), h] w[j] h[h] + sum_j b_O[(v, j)] w[j]``: one product with
        the ``(N, k * H)`` outer products instead of ``N`` matrices of ``V x k``.
        """
        n = hidden.shape[0]
        weight = self.worker_out.weight.view(self.vocab_size, self.goal_size * self.hidden_dim)  # (V, k*H)
        bias = self.worker_out.bias.view(self.vocab_size, self.goal_size)  # (V, k)
        outer = (goal_embed[:, :, None] * hidden[:, None, :]).reshape(n, -1)  # (N, k*H)
        return torch.addmm(goal_embed @ bias.t(), outer, weight.t())

    def _parts(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features ``(B, T, F)``, goals ``(B, T, F)``, Worker outputs ``(B, T, H)`` (after dropout) and goal
        embeddings ``(B, T, k)`` along teacher-forced ``inputs`` ``(B, T)`` (BOS first)."""
        features = self.leaked(inputs[:, 1:], inputs.shape[1])  # f_0 .. f_{T-1}
        goals = self.goals(features)
        goal_embed = self.psi(self.goal_window(goals.detach()))  # the Worker reads the goals as constants
        hidden, _ = self.worker(self.embedding(inputs))
        return features, goals, self.dropout(hidden), goal_embed

    # ------------------------------------------------------------------ the Generator contract
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        _, _, hidden, goal_embed = self._parts(inputs)
        b, t = inputs.shape
        return self.token_logits(hidden.reshape(b * t, -1), goal_embed.reshape(b * t, -1)).view(b, t, -1)

    def masked_logits(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _, _, hidden, goal_embed = self._parts(inputs)
        return self.token_logits(hidden[mask], goal_embed[mask])  # (N, V)

    def init_state(self, batch_size: int):
        device, dtype = self.device, self.goal_head.weight.dtype
        inputs = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        manager = tuple(
            torch.zeros(1, batch_size, self.manager_hidden_dim, device=device, dtype=dtype) for _ in range(2)
        )
        worker = tuple(
            torch.zeros(1, batch_size, self.hidden_dim, device=device, dtype=dtype) for _ in range(2)
        )
        first = F.normalize(self.goal_init.detach(), dim=0).to(dtype)
        window = first.expand(batch_size, self.step_size, self.feature_dim).clone()
        return inputs, manager, worker, window

    def step(self, tokens: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        inputs, manager, worker, window = state
        inputs = torch.cat([inputs, tokens[:, None]], dim=1)  # (B, s): BOS, y_1 .. y_t
        t = inputs.shape[1] - 1
        prefix = inputs[:, 1:]  # (B, t)
        feats = self._leak_fn()(prefix, torch.full_like(tokens, t))  # (B, F) f_t
        out, manager = self.manager(feats[:, None, :], manager)
        goal = F.normalize(self.goal_head(out[:, 0]), dim=-1)  # (B, F) g_t
        goal_embed = self.psi(window.sum(dim=1))  # w_t from g_{t-c} .. g_{t-1}
        hidden, worker = self.worker(self.embedding(tokens)[:, None, :], worker)
        logits = self.token_logits(self.dropout(hidden[:, 0]), goal_embed)  # (B, V)
        window = torch.cat([window[:, 1:], goal.detach()[:, None, :]], dim=1)
        return logits, (inputs, manager, worker, window)

    @staticmethod
    def select_state(state, index: torch.Tensor):
        inputs, (mh, mc), (wh, wc), window = state
        return inputs[index], (mh[:, index], mc[:, index]), (wh[:, index], wc[:, index]), window[index]

    # ------------------------------------------------------------------ training
    def trajectory(self, tokens: torch.Tensor, temperature: float = 1.0) -> LeakTrajectory:
        """Features, goals and token log-probabilities along ``(B, T)`` target sequences in one teacher-forced pass
        (the generator's current mode: the policy gradient calls it in eval mode, as the samples were drawn).

        The log-probabilities are those of the sampling distribution: ``softmax(O_t w_t / temperature)`` with
        ``never_sample`` ids excluded.
        """
        inputs = self.teacher_inputs(tokens)
        mask = sequence_mask(tokens, self.eos_id)  # (B, T)
        features = self.leaked(tokens, tokens.shape[1] + 1)  # (B, T + 1, F): f_0 .. f_T
        goals = self.goals(features[:, :-1])
        goal_embed = self.psi(self.goal_window(goals.detach()))
        hidden, _ = self.worker(self.embedding(inputs))
        logits = self.token_logits(self.dropout(hidden)[mask], goal_embed[mask]).float()  # (N, V)
        if self.never_sample:
            banned = torch.tensor(self.never_sample, device=tokens.device)
            logits = logits.index_fill(1, banned, float("-inf"))
        chosen = torch.log_softmax(logits / temperature, dim=-1).gather(1, tokens[mask][:, None]).squeeze(1)
        log_probs = torch.zeros(tokens.shape, dtype=chosen.dtype, device=tokens.device).masked_scatter(
            mask, chosen
        )
        return LeakTrajectory(features, goals, log_probs, mask)

    def mle_extra_loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """The Manager's pretraining objective on real sentences ``(B, T)`` (Guo et al. 2018): its goals should
        point where the real sentences move in feature space, ``-mean_t cos(f_{t+c} - f_t, g_t)``
        (:func:`~seqgan.losses.leakgan_manager_loss` with unit weights)."""
        from seqgan.losses import goal_directions, leakgan_manager_loss

        mask = sequence_mask(tokens, self.eos_id)
        features = self.leaked(tokens, tokens.shape[1] + 1)
        goals = self.goals(features[:, :-1])
        directions = goal_directions(features, mask.sum(dim=1), self.step_size)
        return leakgan_manager_loss(goals, directions, torch.ones(mask.shape, device=tokens.device), mask)

    def spec(self) -> dict:
        return {
            "kind": "leakgan",
            "vocab_size": self.vocab_size,
            "feature_dim": self.feature_dim,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "manager_hidden_dim": self.manager_hidden_dim,
            "goal_size": self.goal_size,
            "step_size": self.step_size,
            "dropout": self.dropout_p,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
        }

    @classmethod
    def from_spec(cls, spec: dict) -> LeakGANGenerator:
        return cls(**{k: v for k, v in spec.items() if k != "kind"})
