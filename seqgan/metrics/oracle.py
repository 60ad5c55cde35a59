"""Synthetic-data oracle of SeqGAN (the "target LSTM").

SeqGAN (Yu, Zhang, Wang and Yu, "SeqGAN: Sequence Generative Adversarial Nets with Policy Gradient", AAAI 2017,
arXiv:1609.05473, Section "Synthetic Data Experiments") evaluates generators on data drawn from a randomly
initialised LSTM, the *oracle*. The oracle produces 10,000 training sequences of length 20 over a vocabulary of
5,000 tokens, and a generator ``G`` is scored by

    NLL_oracle = - E_{Y ~ G} [ 1/T * sum_t log G_oracle(y_t | Y_{1:t-1}) ]

estimated on 10,000 sequences sampled from ``G`` (mean per-token negative log-likelihood, natural log). Lower is
better; sequences sampled from the oracle itself reach the floor (about 5.74 nats/token for the paper's oracle).

The cell follows the reference implementation (``target_lstm.py`` of github.com/LantaoYu/SeqGAN), with the
row-vector convention (``x`` is (B, E), ``x @ Wi`` is (B, H))::

    i  = sigmoid(x Wi  + h Ui  + bi)        f = sigmoid(x Wf + h Uf + bf)
    o  = sigmoid(x Wog + h Uog + bog)       c~ = tanh(x Wc + h Uc + bc)
    c  = f * c_prev + i * c~                h = o * tanh(c)
    logits = h Wo + bo                      (softmax at temperature 1)

with ``h0 = c0 = 0``. The start token (id 0) is only the first input: at step ``t`` the input is the embedding of
the previous token (the start token at ``t = 0``), and the generated ids range over all of ``[0, vocab_size)``.
There is no end-of-sequence token; every sequence has exactly ``seq_len`` tokens.

Initialisation of :meth:`OracleLSTM.random`: the paper states the oracle's parameters are drawn from the normal
distribution N(0, 1). The reference ``target_lstm.py`` loads fixed parameters from ``save/target_params.pkl``; its
(unused) ``init_matrix`` helper is ``tf.random_normal(shape, stddev=1.0)``, and the published weights indeed have
empirical standard deviation close to 1 for every tensor, biases included. We therefore draw *every* tensor
(embedding, the twelve gate tensors, ``Wo`` and ``bo``) i.i.d. from N(0, 1). Note that SeqGAN's *generator* uses
std 0.1; that is a different network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["OracleLSTM", "nll_oracle"]

#: Names of the oracle tensors, in the order of the SeqGAN parameter pickle (and of the random draws).
PARAM_NAMES: tuple[str, ...] = (
    "embedding",
    "Wi", "Ui", "bi",
    "Wf", "Uf", "bf",
    "Wog", "Uog", "bog",
    "Wc", "Uc", "bc",
    "Wo", "bo",
)  # fmt: skip


def _param_shapes(vocab_size: int, embed_dim: int, hidden_dim: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"embedding": (vocab_size, embed_dim)}
    for gate in ("i", "f", "og", "c"):
        shapes[f"W{gate}"] = (embed_dim, hidden_dim)
        shapes[f"U{gate}"] = (hidden_dim, hidden_dim)
        shapes[f"b{gate}"] = (hidden_dim,)
    shapes["Wo"] = (hidden_dim, vocab_size)
    shapes["bo"] = (vocab_size,)
    return shapes


class OracleLSTM(nn.Module):
    """The SeqGAN oracle ("target LSTM"): a fixed LSTM language model used as ground truth.

    All tensors are stored as frozen parameters (``requires_grad=False``) named as in the SeqGAN parameter file,
    so ``.to(device)`` / ``.double()`` work as for any module. Construct it with :meth:`random`,
    :meth:`from_npz` or :meth:`load_or_random`.

    Args:
        vocab_size: number of tokens V (all ids in ``[0, V)`` are real tokens).
        embed_dim: embedding size E.
        hidden_dim: LSTM state size H.
        seq_len: fixed sequence length T.
        start_token: id fed as the input at step 0 (it is also an ordinary token).
        params: optional mapping name -> array/tensor with the shapes of :data:`PARAM_NAMES`; zeros if omitted.
    """

    def __init__(
        self,
        vocab_size: int = 5000,
        embed_dim: int = 32,
        hidden_dim: int = 32,
        seq_len: int = 20,
        start_token: int = 0,
        params: dict[str, np.ndarray | torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= start_token < vocab_size:
            raise ValueError(f"start_token {start_token} outside [0, {vocab_size})")
        if seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        self.vocab_size = int(vocab_size)
        self.embed_dim = int(embed_dim)
        self.hidden_dim = int(hidden_dim)
        self.seq_len = int(seq_len)
        self.start_token = int(start_token)
        shapes = _param_shapes(self.vocab_size, self.embed_dim, self.hidden_dim)
        for name in PARAM_NAMES:
            if params is None:
                value = torch.zeros(shapes[name])
            else:
                if name not in params:
                    raise KeyError(f"oracle parameter {name!r} missing")
                value = torch.as_tensor(np.asarray(params[name]), dtype=torch.float32).clone()
                if tuple(value.shape) != shapes[name]:
                    raise ValueError(f"{name}: expected shape {shapes[name]}, got {tuple(value.shape)}")
            self.register_parameter(name, nn.Parameter(value, requires_grad=False))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def random(
        cls,
        seed: int,
        vocab_size: int = 5000,
        embed_dim: int = 32,
        hidden_dim: int = 32,
        seq_len: int = 20,
        start_token: int = 0,
    ) -> OracleLSTM:
        """A fresh oracle with every tensor drawn i.i.d. from N(0, 1), as in the SeqGAN paper.

        Draws use a CPU ``torch.Generator`` seeded with ``seed``, in the order of :data:`PARAM_NAMES`, so the
        same seed gives bit-identical weights across runs and machines.

        Args:
            seed: generator seed.
            vocab_size, embed_dim, hidden_dim, seq_len, start_token: see the class docstring.

        Returns:
            The oracle (float32, on CPU).
        """
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        shapes = _param_shapes(vocab_size, embed_dim, hidden_dim)
        params = {name: torch.randn(shapes[name], generator=gen, dtype=torch.float32) for name in PARAM_NAMES}
        return cls(vocab_size, embed_dim, hidden_dim, seq_len, start_token, params=params)

    @classmethod
    def from_npz(cls, path: str | Path, seq_len: int = 20, start_token: int = 0) -> OracleLSTM:
        """Load oracle weights from a NumPy archive with the keys of :data:`PARAM_NAMES`.

        Args:
            path: ``.npz`` file, e.g. the SeqGAN paper's weights (``recipes/prepare_oracle.py`` converts them).
            seq_len: sequence length (20 in the paper).
            start_token: start token id (0 in the paper).

        Returns:
            The oracle (float32, on CPU); V, E and H are read from the array shapes.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            params = {name: np.asarray(data[name]) for name in PARAM_NAMES}
        vocab_size, embed_dim = params["embedding"].shape
        hidden_dim = params["Ui"].shape[0]
        return cls(vocab_size, embed_dim, hidden_dim, seq_len, start_token, params=params)

    def save_npz(self, path: str | Path) -> None:
        """Write the weights to ``path`` in the format read by :meth:`from_npz` (float32)."""
        arrays = {name: getattr(self, name).detach().cpu().float().numpy() for name in PARAM_NAMES}
        np.savez(Path(path), **arrays)

    @classmethod
    def load_or_random(
        cls, path: str | Path | None = None, seed: int = 0, seq_len: int = 20
    ) -> tuple[OracleLSTM, str]:
        """The oracle whose weights are at ``path`` (``.npz``, e.g. the SeqGAN paper's oracle converted by
        ``recipes/prepare_oracle.py``), else a random N(0, 1) oracle of the paper's size from ``seed``.

        Args:
            path: ``.npz`` file to load, or None for the random oracle. A path that does not exist raises
                ``FileNotFoundError`` (no silent fallback).
            seed: seed of the random oracle.
            seq_len: sequence length T.
        Returns:
            ``(oracle, kind)`` with ``kind`` ``"file"`` (loaded from ``path``) or ``"random"``.
        """
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"oracle weights not found: {path}")
            return cls.from_npz(path, seq_len=seq_len), "file"
        oracle = cls.random(seed)
        oracle.seq_len = seq_len
        return oracle, "random"

    # ------------------------------------------------------------------ cell

    def _gate_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gates concatenated in the order (i, f, o, c~): W (E, 4H), U (H, 4H), b (4H,)."""
        w = torch.cat([self.Wi, self.Wf, self.Wog, self.Wc], dim=1)
        u = torch.cat([self.Ui, self.Uf, self.Uog, self.Uc], dim=1)
        b = torch.cat([self.bi, self.bf, self.bog, self.bc], dim=0)
        return w, u, b

    def _cell(
        self, x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step given the input projection ``x W + b`` (B, 4H); returns (h, c), each (B, H)."""
        z = x_proj + h @ u
        hd = self.hidden_dim
        i = torch.sigmoid(z[:, :hd])
        f = torch.sigmoid(z[:, hd : 2 * hd])
        o = torch.sigmoid(z[:, 2 * hd : 3 * hd])
        c_tilde = torch.tanh(z[:, 3 * hd :])
        c = f * c + i * c_tilde
        h = o * torch.tanh(c)
        return h, c

    def _check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = torch.as_tensor(tokens)
        if tokens.dim() != 2 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must be (N, T) with T >= 1, got shape {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        return tokens.long()

    # ------------------------------------------------------------------ scoring

    @torch.no_grad()
    def log_probs(self, tokens: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Per-token log-probabilities under the oracle, by teacher forcing.

        Args:
            tokens: integer tensor (N, T) of ids in ``[0, V)``; usually T = ``seq_len`` (any T >= 1 works: the
                oracle's conditionals are defined for every prefix).
            batch_size: sequences processed at once (memory is about ``batch_size * V`` floats).

        Returns:
            Tensor (N, T) on CPU, dtype of the oracle's weights: ``log p(y_t | y_<t)`` (natural log).
        """
        tokens = self._check_tokens(tokens)
        device = self.Wo.device
        w, u, b = self._gate_weights()
        n, t_len = tokens.shape
        out = torch.empty((n, t_len), dtype=self.Wo.dtype)
        for lo in range(0, n, batch_size):
            y = tokens[lo : lo + batch_size].to(device)
            bsz = y.shape[0]
            start = torch.full((bsz, 1), self.start_token, dtype=torch.long, device=device)
            inputs = torch.cat([start, y[:, :-1]], dim=1)  # (B, T): previous token at every step
            x_proj = self.embedding[inputs] @ w + b  # (B, T, 4H)
            h = torch.zeros(bsz, self.hidden_dim, dtype=w.dtype, device=device)
            c = torch.zeros_like(h)
            for t in range(t_len):
                h, c = self._cell(x_proj[:, t], h, c, u)
                logits = torch.addmm(self.bo, h, self.Wo)  # (B, V)
                target = logits.gather(1, y[:, t : t + 1]).squeeze(1)
                out[lo : lo + bsz, t] = (target - torch.logsumexp(logits, dim=1)).cpu()
        return out

    @torch.no_grad()
    def nll(self, tokens: torch.Tensor, batch_size: int = 512) -> float:
        """Mean per-token negative log-likelihood (nats) of ``tokens`` under the oracle.

        Args:
            tokens: integer tensor (N, T).
            batch_size: see :meth:`log_probs`.

        Returns:
            ``-mean(log_probs(tokens))`` over all N * T tokens, as a Python float (accumulated in float64).
        """
        lp = self.log_probs(tokens, batch_size=batch_size)
        return float(-lp.double().mean())

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(
        self, num: int, batch_size: int = 512, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ancestral sampling at temperature 1.

        Each step draws from the softmax by inverse-CDF lookup: ``searchsorted(cumsum(p), u * sum(p))`` with
        ``u ~ U[0, 1)`` (``right=True``, so zero-probability tokens are never returned), which is much cheaper
        than ``torch.multinomial`` on CPU and samples the same distribution (up to float rounding of the
        cumulative sum).

        Args:
            num: number of sequences N.
            batch_size: sequences generated in parallel.
            generator: ``torch.Generator`` on the oracle's device for reproducible draws; ``None`` uses the global
                RNG. The same generator state gives the same samples for the same ``batch_size``.

        Returns:
            LongTensor (N, seq_len) of ids in ``[0, V)``, on the oracle's device.
        """
        if num < 0:
            raise ValueError("num must be >= 0")
        device = self.Wo.device
        w, u, b = self._gate_weights()
        emb_proj = self.embedding @ w + b  # (V, 4H): input projection of every token, looked up per step
        out = torch.empty((num, self.seq_len), dtype=torch.long, device=device)
        for lo in range(0, num, batch_size):
            bsz = min(batch_size, num - lo)
            prev = torch.full((bsz,), self.start_token, dtype=torch.long, device=device)
            h = torch.zeros(bsz, self.hidden_dim, dtype=w.dtype, device=device)
            c = torch.zeros_like(h)
            for t in range(self.seq_len):
                h, c = self._cell(emb_proj[prev], h, c, u)
                probs = torch.softmax(torch.addmm(self.bo, h, self.Wo), dim=1)  # (B, V)
                cdf = probs.cumsum(dim=1)
                r = torch.rand(bsz, 1, generator=generator, device=device, dtype=cdf.dtype) * cdf[:, -1:]
                prev = torch.searchsorted(cdf, r, right=True).squeeze(1).clamp_(max=self.vocab_size - 1)
                out[lo : lo + bsz, t] = prev
        return out

    @torch.no_grad()
    def step_probs(self, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token distribution after a prefix.

        Args:
            prefix: integer tensor (B, t) of already generated tokens (t may be 0), or ``None`` for the first
                step of a single sequence.

        Returns:
            Tensor (B, V) of probabilities ``p(y_{t+1} | prefix)``.
        """
        if prefix is None:
            prefix = torch.zeros((1, 0), dtype=torch.long)
        prefix = torch.as_tensor(prefix).long()
        device = self.Wo.device
        w, u, b = self._gate_weights()
        bsz = prefix.shape[0]
        inputs = torch.cat([torch.full((bsz, 1), self.start_token, dtype=torch.long), prefix.cpu()], dim=1)
        inputs = inputs.to(device)
        h = torch.zeros(bsz, self.hidden_dim, dtype=w.dtype, device=device)
        c = torch.zeros_like(h)
        for t in range(inputs.shape[1]):
            h, c = self._cell(self.embedding[inputs[:, t]] @ w + b, h, c, u)
        return torch.softmax(h @ self.Wo + self.bo, dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`log_probs` (N, T) -> (N, T)."""
        return self.log_probs(tokens)


def nll_oracle(oracle: OracleLSTM, generator_samples: torch.Tensor, batch_size: int = 512) -> float:
    """SeqGAN's NLL_oracle metric: mean per-token NLL (nats) of generated samples under the oracle.

    Protocol (Yu et al. 2017, arXiv:1609.05473): draw sequences from the trained generator (the paper uses 10,000
    sequences of length 20), then average ``-log G_oracle(y_t | y_<t)`` over all tokens of all sequences. Lower
    is better; the oracle's own samples score its entropy rate (about 5.74 for the paper's oracle), uniformly
    random tokens about 11.4. This is exactly ``oracle.nll(generator_samples)``.

    Args:
        oracle: the oracle.
        generator_samples: LongTensor (N, seq_len) sampled from the generator.
        batch_size: scoring batch size.

    Returns:
        The mean per-token NLL as a float.
    """
    return oracle.nll(generator_samples, batch_size=batch_size)
