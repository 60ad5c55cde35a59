"""Monte-Carlo rollout rewards for SeqGAN's policy gradient (Yu et al. 2017, arXiv 1609.05473, Sec. 2, eq. 4).

For a sampled sequence ``y_1 .. y_T`` the action value of token ``y_t`` is the expected discriminator probability
of a complete sequence that starts with the prefix ``y_1 .. y_t``; it is estimated by completing the prefix
``R`` times with a *rollout policy* ``G_beta`` and averaging ``sigmoid(D(completion))``. The last real token
(the first EOS, or position ``T`` if there is none) gets ``sigmoid(D(y))`` of the sequence itself, and positions
after it get 0. With ``R = 0`` there are no rollouts: every real token gets ``sigmoid(D(y))`` of the whole
sequence (a sequence-level reward, one discriminator call per sample).

The rollout policy is a lagged copy of the generator: after every generator update
``beta <- rate * beta + (1 - rate) * theta`` (SeqGAN's ``update_rate``, 0.8 in the reference code, which also
copies the embeddings without lag; here every parameter is lagged the same way). ``rate = 0`` rolls out with
the current generator (TextGAN-PyTorch's choice) and keeps no copy.

Engine (:class:`MonteCarloRollout`), for a batch ``tokens`` ``(B, T)``:

* Completion rows. Prefix ``t`` of sample ``b`` (``1 <= t < L_b``, ``L_b`` the number of real tokens) is completed
  ``R`` times; completion ``(b, t, r)`` is row ``(b * (T - 1) + t - 1) * R + r`` of a ``(B * (T - 1) * R, T)``
  buffer (rows for ``t >= L_b`` are never decoded nor scored). Columns ``< t`` hold the real prefix, columns
  ``>= t`` the sampled continuation, ``pad_id`` after its first EOS.
* One decoding loop over time steps ``s = 0 .. T-1`` runs every row of a chunk in lockstep. *Teacher* rows
  (one per sample) read ``[BOS, y_1 .. y_{T-1}]``, i.e. the single pass over the sample that provides every
  prefix state; no prefix is ever recomputed. At step ``s >= 1`` the teacher row of ``b`` has just read ``y_s``:
  its next-token distribution is the one after prefix ``t = s``, so it draws the first continuation token of
  the ``R`` completions of that prefix (``R`` draws from one distribution), and those ``R`` rows *join* the
  batch with a copy of its state (``rearrange``). Continuing rows read their own last token and draw the
  next one. A completion of prefix ``t`` therefore decodes exactly the ``T - t`` tokens it needs (``T - t - 1``
  steps); rows stop at EOS and are dropped from the batch, and teacher rows retire after the last prefix their
  sample needs. There is no Python loop over rollouts or prefixes, only over the ``T`` time steps.
* Chunks: samples are split so that one chunk has at most ``max_rows`` rows (``1 + R * (T - 1)`` per sample).
* Decoding and sampling: a :class:`~seqgan.decoding.decoders.Decoder` from :func:`seqgan.decoding.make_decoder`
  (temperature and the generator's ``never_sample`` ids, inverse-CDF draws with one uniform per draw, from an
  optional ``torch.Generator``). LSTM and transformer generators have fused fast paths (the output projection
  fused with the draw; the transformer's key / value cache in preallocated slots, :mod:`seqgan.decoding.hf`);
  any other generator is decoded through its ``step`` / ``select_state`` contract.
* Scoring: all completions are scored by the discriminator in eval mode without gradient, ``score_batch`` rows
  at a time, in prefix-length order. A :class:`~seqgan.models.discriminator.CNNDiscriminator` is scored by
  :class:`~seqgan.models.cnn_scorer.CNNScorer` (exact up to float rounding, checked against the module on the
  first batch of every call; shared prefix windows, table lookups of the new ones). Any other discriminator is
  called on the completed ``(N, T)`` id sequences.
* Parts: with a fused decoder the batch is split into ``parts`` parts with their own random streams; with
  ``parallel=True`` they are decoded concurrently (see :class:`MonteCarloRollout`).
* Memory: the completion buffer (``B * (T - 1) * R * T`` ids), one chunk's decoding state (the transformer's
  key / value slots are capped at 256 MiB per chunk and reused), and one score batch of window responses.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from seqgan.data.datasets import sequence_mask
from seqgan.decoding import Decoder, make_decoder
from seqgan.models.base import Generator
from seqgan.models.cnn_scorer import CNNScorer

__all__ = ["MonteCarloRollout"]

_SLOT_BYTES = 2**28  # most preallocated decoding state (key / value slots) of one chunk

# (N, T) completions, (N,) sample indices, (N,) prefix lengths -> (N,) logits
_Scorer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class MonteCarloRollout:
    """SeqGAN's Monte-Carlo rollout reward (Yu et al. 2017, eq. 4) with a lagged rollout policy.

    Args:
        generator: the generator being trained; the rollout policy starts as a deep copy of it.
        update_rate: SeqGAN's ``update_rate``: after each generator update, :meth:`update_policy` sets
            ``beta <- update_rate * beta + (1 - update_rate) * theta``. 0 rolls out with the generator itself
            (no copy is kept, ``policy`` *is* the generator).
        temperature: softmax temperature of the continuations (the generator's ``never_sample`` ids are
            always excluded), as in :func:`seqgan.sampling.sample`.
        max_rows: most decoding rows in one chunk (None: no cap); a sample needs ``1 + R * (T - 1)`` rows (its
            teacher row and its completions), so a chunk holds ``max(1, max_rows // (1 + R * (T - 1)))`` samples.
            The transformer fast path also keeps a chunk's key / value slots under 256 MiB.
        score_batch: completions scored by the discriminator per call.
        rng: default ``torch.Generator`` for the continuation draws (the global RNG when None).
        fast: use the fused LSTM / transformer decoders and the CNN-discriminator scorer when they apply
            (``False`` forces the generic ``step`` / ``discriminator(ids)`` paths; results agree in
            distribution, and exactly for the scores).
        parts: with a fused decoder, the batch is split into this many parts of consecutive samples, each with
            its own random stream seeded from ``rng``. The streams depend on ``parts``, not on ``parallel`` nor on
            the thread count. The generic path decodes the batch in one part.
        parallel: decode and score the parts concurrently. Only when this is True, the tensors are on the CPU
            and torch runs ``n <= parts`` threads (``torch.get_num_threads()``): ``n`` parts at a time run on a
            thread pool, one torch thread each (decoding is many small kernels, which scale across independent
            parts better than inside each kernel). For the duration of the call the process-wide torch thread
            count is set to 1 (``torch.set_num_threads``), and restored afterwards, which affects other threads
            of the process running torch meanwhile. False (the default) decodes the parts in turn and leaves the
            thread count alone. Both consume the same random streams, so the rewards are the same, bit for bit
            when the kernels round alike with one and with ``n`` threads; CPU scaled-dot-product attention does
            not always (a transformer's rewards may then differ by rounding and a rare draw at a CDF boundary).
    """

    def __init__(
        self,
        generator: Generator,
        update_rate: float = 0.8,
        temperature: float = 1.0,
        max_rows: int | None = 16384,
        score_batch: int = 512,
        rng: torch.Generator | None = None,
        fast: bool = True,
        parts: int = 2,
        parallel: bool = False,
    ) -> None:
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        if not 0.0 <= update_rate < 1.0:
            raise ValueError(f"update_rate must be in [0, 1), got {update_rate}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if (max_rows is not None and max_rows < 1) or score_batch < 1:
            raise ValueError("max_rows and score_batch must be positive")
        self.update_rate = float(update_rate)
        self.temperature = float(temperature)
        self.max_rows = None if max_rows is None else int(max_rows)
        self.score_batch = int(score_batch)
        self.rng = rng
        self.fast = fast
        self.parts = int(parts)
        self.parallel = bool(parallel)
        if self.update_rate == 0.0:
            self.policy = generator
        else:
            self.policy = copy.deepcopy(generator)
            self.policy.requires_grad_(False)

    # ------------------------------------------------------------------ policy
    @torch.no_grad()
    def update_policy(self, generator: Generator) -> None:
        """``beta <- rate * beta + (1 - rate) * theta`` for every parameter (buffers are copied); with rate 0 the
        policy becomes ``generator`` itself."""
        if self.update_rate == 0.0:
            self.policy = generator
            return
        rate = self.update_rate
        own, new = list(self.policy.parameters()), list(generator.parameters())
        if len(own) != len(new):
            raise ValueError("update_policy: the generator's architecture differs from the rollout policy's")
        for p, q in zip(own, new, strict=True):
            p.copy_(rate * p + (1.0 - rate) * q.detach())
        for p, q in zip(self.policy.buffers(), generator.buffers(), strict=True):
            p.copy_(q)

    def state_dict(self) -> dict:
        """The policy's weights (None when it is the generator itself) and the update rate."""
        return {
            "update_rate": self.update_rate,
            "policy": None if self.update_rate == 0.0 else self.policy.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["policy"] is None) != (self.update_rate == 0.0):
            raise ValueError("rollout state was saved with a different update_rate (lagged copy vs none)")
        if state["policy"] is not None:
            self.policy.load_state_dict(state["policy"])

    # ------------------------------------------------------------------ rewards
    @torch.no_grad()
    def __call__(
        self,
        tokens: torch.Tensor,
        discriminator: nn.Module,
        num_rollouts: int,
        rng: torch.Generator | None = None,
        score: str = "sigmoid",
    ) -> torch.Tensor:
        """Rewards of sampled sequences.

        Args:
            tokens: ``(B, T)`` sampled ids (no BOS), ``pad_id`` after the first EOS.
            discriminator: ``(N, T)`` ids -> ``(N,)`` logits (real = positive), run in eval mode.
            num_rollouts: ``R``, completions per prefix; 0: no rollouts (sequence-level reward).
            rng: ``torch.Generator`` for the draws; defaults to the one given at construction.
            score: what is averaged over a prefix's completions: ``"sigmoid"``, the probability ``sigmoid(D)``
                (SeqGAN); ``"logit"``, the odds ``D / (1 - D) = exp(logit)`` (MaliGAN's importance weight),
                returned as the log of their mean (``logsumexp(logits) - log R``, stable for any logit);
                ``"value"``, the discriminator's output itself, untransformed (a ranker bound to its reference
                and comparison sets returns log rank scores: RankGAN's reward is their mean).
        Returns:
            ``(B, T)`` float rewards: column ``t - 1`` (token ``y_t``) holds the mean of ``sigmoid(D)`` over the
            ``R`` completions of ``y_1 .. y_t`` for ``t < L`` (``L`` = real tokens, EOS included), column
            ``L - 1`` holds ``sigmoid(D(tokens))``, later columns 0. With ``score="logit"``: the log of the mean
            odds of the completions, and ``D(tokens)``'s logit in column ``L - 1``; with ``score="value"``: the
            mean output over the completions, and ``D(tokens)`` itself in column ``L - 1``. With ``R = 0`` every column
            ``< L`` holds the score of ``D(tokens)`` (a sequence-level reward).
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T), got shape {tuple(tokens.shape)}")
        if num_rollouts < 0:
            raise ValueError(f"num_rollouts must be >= 0, got {num_rollouts}")
        if score not in ("sigmoid", "logit", "value"):
            raise ValueError(f"score must be 'sigmoid', 'logit' or 'value', got {score!r}")
        rng = self.rng if rng is None else rng
        policy = self.policy
        tokens = tokens.to(policy.device)
        batch, seq_len = tokens.shape
        lengths = sequence_mask(tokens, policy.eos_id).sum(dim=1)  # (B,) real tokens, >= 1
        was_training = (policy.training, discriminator.training)
        policy.eval()
        discriminator.eval()
        try:
            rewards = torch.zeros(batch, seq_len, device=tokens.device)
            whole = discriminator(tokens).float().view(-1)  # (B,) logits
            whole = torch.sigmoid(whole) if score == "sigmoid" else whole
            if num_rollouts == 0:  # sequence-level reward: every real token gets the whole sequence's score
                steps = torch.arange(seq_len, device=tokens.device)
                return torch.where(steps[None, :] < lengths[:, None], whole[:, None], rewards)
            rewards.scatter_(1, (lengths - 1)[:, None], whole[:, None])
            if seq_len > 1 and bool((lengths > 1).any()):
                rewards[:, :-1] += self._rollout_means(
                    policy, discriminator, tokens, lengths, num_rollouts, rng, score
                )
        finally:
            policy.train(was_training[0])
            discriminator.train(was_training[1])
        return rewards

    def _rollout_means(
        self,
        policy: Generator,
        discriminator: nn.Module,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        num_rollouts: int,
        rng: torch.Generator | None,
        score: str = "sigmoid",
    ) -> torch.Tensor:
        """``(B, T-1)`` mean completion scores (see :meth:`__call__`'s ``score``), the batch split into
        :attr:`parts` (see the class docstring)."""
        batch = tokens.shape[0]
        decoder = make_decoder(policy, self.temperature, self.fast)
        num_parts = min(self.parts, batch) if decoder.fused else 1
        bounds = [(i * batch // num_parts, (i + 1) * batch // num_parts) for i in range(num_parts)]
        # one random stream per part, drawn from ``rng``: the same draws for any thread count
        if num_parts > 1:
            seeds = torch.randint(0, 2**62, (num_parts,), generator=rng, device=tokens.device).tolist()
            rngs = [torch.Generator(device=tokens.device).manual_seed(seed) for seed in seeds]
        else:
            rngs = [rng]
        scorer = self._scorer(discriminator, tokens, lengths)

        @torch.no_grad()  # grad mode is per thread
        def part(i: int, part_decoder: Decoder) -> torch.Tensor:
            lo, hi = bounds[i]
            comp = self._complete(policy, part_decoder, tokens[lo:hi], lengths[lo:hi], num_rollouts, rngs[i])
            return self._score(
                scorer, tokens[lo:hi], lengths[lo:hi], comp, num_rollouts, offset=lo, score=score
            )

        threads = torch.get_num_threads()
        with decoder:
            if not self.parallel or num_parts == 1 or tokens.device.type != "cpu" or threads > num_parts:
                return torch.cat([part(i, decoder) for i in range(num_parts)])
            # as many concurrent parts as threads, one thread each: the many small kernels of decoding scale
            # better across parts than inside each kernel
            decoders = [decoder] + [decoder.fork() for _ in range(num_parts - 1)]
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(max_workers=threads) as pool:
                    return torch.cat(list(pool.map(part, range(num_parts), decoders)))
            finally:
                torch.set_num_threads(threads)

    def _scorer(self, discriminator: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> _Scorer:
        """How completions of ``tokens``' prefixes are scored: by
        :class:`~seqgan.models.cnn_scorer.CNNScorer` when it applies (``fast``), else by calling the discriminator.

        A discriminator with a true ``scores_by_sample`` attribute (a conditional discriminator bound to the
        batch's contexts) is called as ``d(seqs, b)``, ``b`` being the sample index of every row, so each
        completion is scored against its own sample's context; the whole-sequence call in :meth:`__call__`
        passes rows in sample order and needs no index. A discriminator with a ``rollout_scorer(tokens, lengths,
        fast)`` method (a multi-class discriminator bound to the samples' classes) supplies its own scorer.
        """
        make = getattr(discriminator, "rollout_scorer", None)
        if make is not None:  # a wrapper that knows how its scores are best computed (class-bound)
            return make(tokens, lengths, self.fast)
        if self.fast:
            cnn = CNNScorer.create(discriminator, tokens, lengths)
            if cnn is not None:
                return cnn
        if getattr(discriminator, "scores_by_sample", False):
            return lambda seqs, b, t: discriminator(seqs, b).float().view(-1)
        return lambda seqs, b, t: discriminator(seqs).float().view(-1)

    def _complete(
        self,
        policy: Generator,
        decoder: Decoder,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        num_rollouts: int,
        rng: torch.Generator | None,
    ) -> torch.Tensor:
        """All completions, ``(B * (T - 1) * R, T)`` in ``(b, t, r)`` row order (see the module docstring);
        ``decoder`` from :func:`make_decoder`, entered."""
        batch, seq_len = tokens.shape
        per_sample = 1 + num_rollouts * (seq_len - 1)
        chunk = batch if self.max_rows is None else max(1, self.max_rows // per_sample)
        row_bytes = decoder.row_bytes(seq_len)
        if row_bytes is not None:  # key / value slots: at most _SLOT_BYTES per chunk
            chunk = min(chunk, max(1, _SLOT_BYTES // (row_bytes * per_sample)))
        parts = []
        for start in range(0, batch, chunk):
            stop = min(batch, start + chunk)
            parts.append(
                _decode_chunk(policy, decoder, tokens[start:stop], lengths[start:stop], num_rollouts, rng)
            )
        comp = torch.cat(parts) if len(parts) > 1 else parts[0]  # (B, T-1, R, T) sampled part
        # real prefix: columns < t of the completions of prefix t
        col = torch.arange(seq_len, device=tokens.device)
        prefix = col[None, :] < torch.arange(1, seq_len, device=tokens.device)[:, None]  # (T-1, T)
        comp = torch.where(prefix[None, :, None, :], tokens[:, None, None, :], comp)
        return comp.reshape(-1, seq_len)

    def _score(
        self,
        scorer: _Scorer,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        completions: torch.Tensor,
        num_rollouts: int,
        offset: int = 0,
        score: str = "sigmoid",
    ) -> torch.Tensor:
        """``(B, T-1)`` mean ``sigmoid(D)`` over the ``R`` completions of each needed prefix (0 elsewhere), or with
        ``score="logit"`` the log of their mean odds ``log mean exp(D)``, or with ``score="value"`` the mean of
        ``D`` itself; ``tokens`` are samples ``offset ..`` of
        the batch ``scorer`` was built for."""
        batch, seq_len = tokens.shape
        r = num_rollouts
        t_idx = torch.arange(1, seq_len, device=tokens.device)
        needed = t_idx[None, :] < lengths[:, None]  # (B, T-1)
        tt, bb = needed.t().nonzero(as_tuple=True)  # prefixes in (t, b) order: similar lengths together
        t_of, b_of = (tt + 1).repeat_interleave(r), bb.repeat_interleave(r)
        rows = ((bb * (seq_len - 1) + tt)[:, None] * r + torch.arange(r, device=tokens.device)).view(-1)
        values = torch.empty(rows.numel(), device=tokens.device)
        for start in range(0, rows.numel(), self.score_batch):
            sl = slice(start, start + self.score_batch)
            values[sl] = scorer(completions.index_select(0, rows[sl]), b_of[sl] + offset, t_of[sl])
        means = torch.zeros(batch, seq_len - 1, device=tokens.device)
        if score == "sigmoid":
            means[bb, tt] = torch.sigmoid(values).view(-1, r).mean(dim=1)
        elif score == "value":
            means[bb, tt] = values.view(-1, r).mean(dim=1)
        else:  # log((1/R) sum_r exp(logit_r)): the log of the mean odds D / (1 - D)
            means[bb, tt] = torch.logsumexp(values.view(-1, r), dim=1) - math.log(r)
        return means


def _decode_chunk(
    policy: Generator,
    decoder: Decoder,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_rollouts: int,
    rng: torch.Generator | None,
) -> torch.Tensor:
    """Samples the continuations of every needed prefix of ``tokens`` ``(Bc, T)``.

    Returns ``(Bc, T - 1, R, T)`` ids: entry ``[b, t - 1, r, s]`` for ``s >= t`` is the token sampled at column
    ``s`` by completion ``r`` of prefix ``t`` (``pad_id`` after its EOS and for unneeded prefixes); columns
    ``< t`` are left as ``pad_id`` for the caller to fill with the prefix.
    """
    nb, seq_len = tokens.shape
    r = num_rollouts
    device = tokens.device
    pad, eos = policy.pad_id, policy.eos_id
    comp = torch.full((nb * (seq_len - 1) * r, seq_len), pad, dtype=torch.long, device=device)
    teacher_in = policy.teacher_inputs(tokens)  # (Bc, T): [BOS, y_1 .. y_{T-1}]
    sampler = decoder.sampler
    arange_r = torch.arange(r, device=device)

    # Rows: [teacher rows | completion rows]; teacher rows stay first (appends go to the end, compaction keeps
    # order). Per completion row: its row id in ``comp`` and its last token.
    teach_b = torch.arange(nb, device=device)  # sample of each teacher row
    row_id = torch.empty(0, dtype=torch.long, device=device)
    last = torch.empty(0, dtype=torch.long, device=device)
    alive = torch.ones(nb, dtype=torch.bool, device=device)  # over all rows
    alive[lengths <= 1] = False  # samples without a prefix to complete
    state = decoder.init(nb, capacity=nb * (1 + r * (seq_len - 1)), seq_len=seq_len)
    for s in range(seq_len):
        n_t = teach_b.numel()
        n = n_t + row_id.numel()
        if not bool(alive.any()):
            break
        inputs = torch.cat([teacher_in[teach_b, s], last])
        out, state = decoder.step(inputs, state)  # (n, H) features or (n, V) logits
        # continuing rows: next token at column s
        live_c = alive[n_t:].nonzero().squeeze(1)
        if live_c.numel():
            tok = sampler(out[n_t + live_c], 1, rng).squeeze(1)
            comp[row_id[live_c], s] = tok
            last[live_c] = tok
            if eos is not None:
                alive[n_t + live_c] = tok != eos
        # teacher rows that just read y_s (s >= 1): the R completions of prefix t = s join
        src = torch.empty(0, dtype=torch.long, device=device)
        new_ids = src
        new_tok = src
        if s >= 1:
            live_t = alive[:n_t].nonzero().squeeze(1)
            if live_t.numel():
                draws = sampler(out[live_t], r, rng)  # (nj, R)
                ids = ((teach_b[live_t] * (seq_len - 1) + (s - 1))[:, None] * r + arange_r).view(-1)
                flat = draws.view(-1)
                comp[ids, s] = flat
                keep = flat != eos if eos is not None else torch.ones_like(flat, dtype=torch.bool)
                src = live_t.repeat_interleave(r)[keep]
                new_ids, new_tok = ids[keep], flat[keep]
        if s == seq_len - 1:
            break
        # teacher rows are needed while a later prefix t = s + 1 < L_b remains
        alive[:n_t] &= lengths[teach_b] - 1 > s
        dead = n - int(alive.sum())
        keep_rows = None
        if dead and dead > decoder.compact_fraction * n:
            keep_rows = alive.nonzero().squeeze(1)
        if keep_rows is None and src.numel() == 0:
            continue
        state = decoder.rearrange(state, n, keep_rows, src)
        if keep_rows is not None:
            kt = keep_rows[keep_rows < n_t]
            kc = keep_rows[keep_rows >= n_t] - n_t
            teach_b, row_id, last = teach_b[kt], row_id[kc], last[kc]
            alive = torch.ones(keep_rows.numel(), dtype=torch.bool, device=device)
        row_id = torch.cat([row_id, new_ids])
        last = torch.cat([last, new_tok])
        alive = torch.cat([alive, torch.ones(new_ids.numel(), dtype=torch.bool, device=device)])
    return comp.view(nb, seq_len - 1, r, seq_len)
