"""Benchmark one SeqGAN generator update (Monte-Carlo rollout rewards + policy-gradient step), fp32 on CPU.

Engine: :class:`seqgan.rollout.MonteCarloRollout` (one pass over the sample for all prefix states, every
completion of every prefix decoded as one batch, discriminator scored in large batches), with ``parallel=True``:
the two halves of the batch (``parts=2``) are decoded and scored at once, one torch thread each.

Baseline: the straightforward loop of TextGAN-PyTorch's ``ROLLOUT.get_reward`` written here with the same models
and the same sampling: for each rollout r and each prefix length t, re-run the prefix from scratch with one
teacher-forced forward pass over ``[BOS, y_1 .. y_t]`` (as TextGAN's ``gen.forward(prefix, need_hidden=True)``:
the LSTM's forward keeping its final state, or ``prefix_states`` for the transformer), decode the remaining
``T - t`` tokens with ``step`` + softmax + a draw (rows stop at EOS), and score the ``B`` completions with the
discriminator. Two baselines are timed: drawing with ``torch.multinomial`` as TextGAN-PyTorch does (the
straightforward loop; the headline ``speedup_*`` figures) and drawing with our inverse-CDF sampler (a stronger
baseline that already shares one of the engine's speed-ups; ``speedup_vs_naive_draw_*``). Its cost is linear in the number of
rollouts, so it is timed on ``--naive-rollouts`` of the R rollouts and scaled by R (the output says so). Both
sides add the same policy-gradient step.

Settings (TextGAN-PyTorch COCO): batch 64, vocabulary 4,661, R = 16, generator embedding / hidden 32 -- an LSTM
(``lstm``) or a GPT-2 with n_layer 2, n_head 4, n_embd 32 (``transformer``, ``TransformerGenerator.from_config``)
--, discriminator embedding 64, filters 2, 3, 4, 5 x 300 with highway; lengths 20 and 37. ``transformer_wide`` is
the same GPT-2 at n_embd 128 (four times the width, sixteen times the block FLOPs), reported beside it. Models have random weights: EOS has probability about
1/4,661 per step, so almost every sequence and completion runs to the maximum length -- the worst case for the
rollout (all ``B * (T - 1) * R`` completions needed).

FLOPs (analytic, multiply-add = 2): discriminator ``sum_k 2 k E n_k T`` (convolutions) ``+ 4 F^2``
(highway) ``+ 2 F`` per scored sequence, times the sequences scored; generator per decoded row-step: LSTM
``8 H (E + H) + 2 H V``; transformer (width ``d``) ``24 d^2`` per layer ``+ 4 d L_ctx`` attention ``+ 2 d V``. The engine's
GFLOP/s uses these dense-equivalent FLOPs (its discriminator reuses prefix windows, so it performs fewer).

Usage: ``python benchmarks/rollout.py [--quick] [--threads 2] [--naive-rollouts 1]
[--kinds lstm transformer transformer_wide]``.
The last output line is a JSON object with the speedups and the underlying seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# Idle OpenMP threads sleep instead of spinning: on a machine shared with other jobs a spinning thread keeps the
# core its descheduled partner needs, and every parallel kernel then waits a scheduler time slice (10x slower
# runs, for the engine and the baseline alike). Must be set before torch starts OpenMP.
from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()

import torch
import torch.nn.functional as F

from seqgan.data.datasets import sequence_mask
from seqgan.decoding import draw
from seqgan.losses import policy_gradient_loss
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.lstm import LSTMGenerator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import sample

PAD, BOS, EOS = 0, 1, 2


WIDTH = {"transformer": 32, "transformer_wide": 128}  # GPT-2 n_embd per benchmarked kind


def build(kind: str, vocab: int, max_len: int):
    """Generator (random weights, eval-mode sampling) and CNN discriminator at the COCO settings."""
    if kind == "lstm":
        gen = LSTMGenerator(vocab, embed_dim=32, hidden_dim=32, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    else:
        from seqgan.models.transformer import TransformerGenerator

        gen = TransformerGenerator.from_config(
            vocab, max_len, PAD, BOS, EOS, n_layer=2, n_head=4, n_embd=WIDTH[kind], dropout=0.0
        )
    disc = CNNDiscriminator(
        vocab, embed_dim=64, filter_sizes=(2, 3, 4, 5), num_filters=(300,) * 4, pad_id=PAD
    )
    return gen, disc


# ---------------------------------------------------------------------------------------------- baseline
@torch.no_grad()
def naive_rewards(
    gen, tokens: torch.Tensor, disc, num_rollouts: int, rng: torch.Generator, sampler: str = "draw"
) -> torch.Tensor:
    """The straightforward rollout loop (see the module docstring); ``(B, T)`` rewards.

    ``sampler``: ``"multinomial"`` draws with ``torch.multinomial`` as TextGAN-PyTorch does; ``"draw"`` uses our
    inverse-CDF sampler (a stronger baseline that already has one of the engine's speed-ups).
    """
    batch, seq_len = tokens.shape
    mask = sequence_mask(tokens, gen.eos_id)
    lengths = mask.sum(1)
    banned = torch.tensor(gen.never_sample, dtype=torch.long)
    inputs = gen.teacher_inputs(tokens)
    gen.eval()
    disc.eval()
    rewards = torch.zeros(batch, seq_len)
    for _ in range(num_rollouts):
        for t in range(1, seq_len):
            prefix = inputs[:, : t + 1]  # [BOS, y_1 .. y_t], re-run from scratch
            if isinstance(gen, LSTMGenerator):  # the model's forward, keeping the final (h, c)
                out, state = gen.lstm(gen.embedding(prefix))
                logits = gen.proj(out)[:, -1]
            else:
                ps = gen.prefix_states(prefix)
                logits, state = ps.logits[:, -1], ps.state(t + 1)
            seq = tokens.clone()
            alive = torch.ones(batch, dtype=torch.bool)
            for s in range(t, seq_len):
                probs = torch.softmax(logits.float().index_fill(1, banned, float("-inf")), dim=-1)
                if sampler == "multinomial":
                    tok = torch.multinomial(probs, 1, generator=rng).squeeze(1)
                else:
                    tok = draw(probs, rng)
                seq[:, s] = torch.where(alive, tok, gen.pad_id)
                alive &= tok != gen.eos_id
                if s < seq_len - 1:
                    logits, state = gen.step(tok, state)
            rewards[:, t - 1] += torch.sigmoid(disc(seq))
    rewards /= num_rollouts
    rewards[:, :-1] *= (torch.arange(1, seq_len)[None, :] < lengths[:, None]).float()
    rewards.scatter_(1, (lengths - 1)[:, None], torch.sigmoid(disc(tokens))[:, None])
    rewards[~mask] = 0.0
    return rewards


def pg_step(gen, opt, tokens: torch.Tensor, rewards: torch.Tensor) -> float:
    """The policy-gradient update both sides share."""
    gen.train()
    logits = gen(gen.teacher_inputs(tokens))  # (B, T, V)
    logp = F.log_softmax(logits.float(), dim=-1).gather(2, tokens[:, :, None]).squeeze(2)
    loss = policy_gradient_loss(logp, rewards, sequence_mask(tokens, gen.eos_id))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(gen.parameters(), 5.0)
    opt.step()
    return loss.item()


# ---------------------------------------------------------------------------------------------- FLOPs
def disc_flops(seq_len: int, embed: int = 64, widths=(2, 3, 4, 5), filters: int = 300) -> float:
    """Per full-length sequence: one window per start position and width (CNNDiscriminator pools the windows
    that start on a real token, reading zeros past the end)."""
    feat = filters * len(widths)
    conv = sum(2 * k * embed * filters * seq_len for k in widths)
    return conv + 4 * feat * feat + 2 * feat


def gen_step_flops(kind: str, vocab: int, context: float) -> float:
    if kind == "lstm":
        return 8 * 32 * (32 + 32) + 2 * 32 * vocab
    d = WIDTH[kind]
    return 2 * (24 * d * d + 4 * d * context) + 2 * d * vocab


def engine_flops(kind: str, lengths: torch.Tensor, seq_len: int, r: int, vocab: int) -> float:
    """Dense-equivalent FLOPs of one reward computation (EOS inside completions ignored: an upper bound)."""
    scored = int((lengths - 1).clamp(min=0).sum()) * r + lengths.numel()
    total = scored * disc_flops(seq_len)
    step = [gen_step_flops(kind, vocab, s + 1) for s in range(seq_len)]  # FLOPs of a step at context s + 1
    for length in lengths.tolist():
        total += sum(step[:length])  # teacher row: reads [BOS, y_1 .. y_{L-1}]
        for t in range(1, length):  # R completions of prefix t read their tokens at columns t .. T-2
            total += r * sum(step[t + 1 :])
    return total


# ---------------------------------------------------------------------------------------------- main
def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_case(kind: str, seq_len: int, args) -> dict:
    torch.manual_seed(0)
    gen, disc = build(kind, args.vocab, seq_len)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    tokens = sample(gen, args.batch, seq_len, rng=torch.Generator().manual_seed(1)).tokens
    lengths = sequence_mask(tokens, gen.eos_id).sum(1)
    # the two halves of the batch (parts=2) decode and score concurrently, one torch thread each
    rollout = MonteCarloRollout(gen, update_rate=0.0, parts=2, parallel=True)
    r = args.rollouts

    # warm-up (allocator, one-time checks) on a small slice
    rollout(tokens[:2], disc, 1, rng=torch.Generator().manual_seed(0))
    phases = {"decode": 0.0, "score": 0.0}
    for phase, name in (("decode", "_complete"), ("score", "_score")):  # time the two phases of the engine
        method = getattr(rollout, name)

        def wrapped(*a, _method=method, _phase=phase, **kw):
            t0 = time.perf_counter()
            out = _method(*a, **kw)
            phases[_phase] += time.perf_counter() - t0
            return out

        setattr(rollout, name, wrapped)
    engine_s, rewards = timed(lambda: rollout(tokens, disc, r, rng=torch.Generator().manual_seed(2)))
    pg_s, _ = timed(lambda: pg_step(gen, opt, tokens, rewards))

    nr = min(args.naive_rollouts, r)
    naive_part_s, naive = timed(
        lambda: naive_rewards(gen, tokens, disc, nr, torch.Generator().manual_seed(3))
    )
    naive_s = naive_part_s * r / nr
    multi_part_s, _ = timed(
        lambda: naive_rewards(gen, tokens, disc, nr, torch.Generator().manual_seed(3), "multinomial")
    )
    multi_s = multi_part_s * r / nr
    flops = engine_flops(kind, lengths, seq_len, r, args.vocab)
    ours = engine_s + pg_s
    theirs = naive_s + pg_s
    live = rewards[sequence_mask(tokens, gen.eos_id)]
    return {
        "kind": kind,
        "T": seq_len,
        "engine_s": engine_s,
        "decode_s": phases["decode"],
        "score_s": phases["score"],
        "pg_s": pg_s,
        "naive_s": naive_s,
        "naive_rollouts_timed": nr,
        "ours_update_s": ours,
        "naive_update_s": theirs,
        "speedup": theirs / ours,
        "naive_multinomial_update_s": multi_s + pg_s,
        "speedup_vs_multinomial": (multi_s + pg_s) / ours,
        "gflops": flops / engine_s / 1e9,
        "mean_len": float(lengths.float().mean()),
        "reward_mean": float(live.mean()),
        "naive_reward_mean": float(naive[sequence_mask(tokens, gen.eos_id)].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, R 4: a smoke test well under a minute")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive-rollouts", type=int, default=1, help="rollouts the baseline is timed on")
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["lstm", *WIDTH],
        choices=["lstm", *WIDTH],
    )
    parser.add_argument("--lengths", nargs="+", type=int, default=[20, 37])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.vocab = 4661
    args.batch, args.rollouts = (8, 4) if args.quick else (64, 16)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}), fp32; batch {args.batch}, "
        f"vocab {args.vocab}, R {args.rollouts}; baseline timed on {args.naive_rollouts} rollout(s) "
        f"and scaled x{args.rollouts / min(args.naive_rollouts, args.rollouts):g}"
    )
    results = []
    header = (
        f"{'generator':<17}{'T':>4}{'mean len':>9}{'decode s':>9}{'score s':>8}{'engine s':>9}{'pg s':>6}"
        f"{'update s':>9}{'naive s':>9}{'speedup':>8}{'multin s':>9}{'speedup':>8}{'GFLOP/s':>8}{'reward':>8}"
        f"{'naive':>8}"
    )
    print(header)
    print("-" * len(header))
    for kind in args.kinds:
        for seq_len in args.lengths:
            res = run_case(kind, seq_len, args)
            results.append(res)
            print(
                f"{kind:<17}{seq_len:>4}{res['mean_len']:>9.1f}{res['decode_s']:>9.2f}{res['score_s']:>8.2f}"
                f"{res['engine_s']:>9.2f}{res['pg_s']:>6.2f}{res['ours_update_s']:>9.2f}"
                f"{res['naive_update_s']:>9.2f}{res['speedup']:>7.1f}x{res['naive_multinomial_update_s']:>9.2f}"
                f"{res['speedup_vs_multinomial']:>7.1f}x{res['gflops']:>8.1f}"
                f"{res['reward_mean']:>8.4f}{res['naive_reward_mean']:>8.4f}",
                flush=True,
            )
    summary: dict = {}
    for res in results:
        key = f"{res['kind']}_len{res['T']}"
        summary[f"speedup_{key}"] = round(res["speedup_vs_multinomial"], 2)
        summary[f"speedup_vs_naive_draw_{key}"] = round(res["speedup"], 2)
        summary[f"ours_s_{key}"] = round(res["ours_update_s"], 3)
        summary[f"naive_multinomial_s_{key}"] = round(res["naive_multinomial_update_s"], 3)
        summary[f"naive_draw_s_{key}"] = round(res["naive_update_s"], 3)
        summary[f"decode_s_{key}"] = round(res["decode_s"], 3)
        summary[f"score_s_{key}"] = round(res["score_s"], 3)
        summary[f"gflops_{key}"] = round(res["gflops"], 1)
    summary["threads"] = torch.get_num_threads()
    summary["batch"], summary["num_rollouts"] = args.batch, args.rollouts
    summary["naive_rollouts_timed"] = min(args.naive_rollouts, args.rollouts)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
