"""Benchmark a real pretrained causal LM as a generator on a CPU: sampling speed, one adversarial update, memory.

Model: SmolLM2-135M-Instruct (Llama, 134.5M parameters, vocabulary 49,152) from the folder that
``recipes/prepare_lm.py smollm2 --out models/smollm2-135m`` writes; ``--quick``: a tiny random Llama instead
(for the test suite). Discriminator: a CNN (embedding 64, widths 2-5 x 100 filters, highway) with random weights,
EOS kept visible (padding is EOS for this tokenizer).

Each side is warmed up by one short call first. Measured, each side by side with the straightforward Hugging Face way, in the same run:

* sampling: ``batch`` sequences of at most ``length`` tokens by :func:`seqgan.sampling.sample` (the fast slot
  decoder) vs ``model.generate(do_sample=True, num_return_sequences=batch)``; tokens/s counts real tokens.
* rollout rewards: :class:`seqgan.rollout.MonteCarloRollout` (one cached pass for every prefix, all completions
  decoded as one batch, in chunks of at most ``--chunk-rows`` rows) vs the naive loop: for each prefix length t,
  ``generate`` the ``R`` completions of the ``batch`` prefixes ``[BOS, y_1 .. y_t]`` from scratch, then score them.
* one adversarial update: :meth:`~seqgan.trainers.seqgan.PolicyGradientTrainer.generator_step` (sample, rollout
  rewards, policy-gradient backward, Adam step) at the same batch, R and length; ``--precision bf16`` runs it
  under bfloat16 autocast.
* peak memory: the process's peak resident set size (``ru_maxrss``) after everything.

Usage: ``python benchmarks/lm.py [--model models/smollm2-135m] [--batch 8] [--rollouts 4] [--length 16]
[--threads 2] [--precision fp32] [--quick]``. The last output line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()

import torch

from seqgan.config import SeqGANConfig
from seqgan.models.discriminator import CNNDiscriminator
from seqgan.models.transformer import TransformerGenerator
from seqgan.rollout import MonteCarloRollout
from seqgan.sampling import sample
from seqgan.trainers import PolicyGradientTrainer


def build(args) -> TransformerGenerator:
    if args.quick:
        torch.manual_seed(0)
        return TransformerGenerator.from_config(
            64,
            64,
            2,
            1,
            2,
            n_layer=2,
            n_head=4,
            n_embd=32,
            dropout=0.0,
            model_type="llama",
            num_key_value_heads=2,
        )
    return TransformerGenerator.from_pretrained(args.model)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def naive_rollout(gen, disc, tokens: torch.Tensor, num_rollouts: int, seed: int) -> torch.Tensor:
    """``(B, T)`` rewards the straightforward way: ``generate`` every prefix's completions from scratch."""
    torch.manual_seed(seed)
    b, t_max = tokens.shape
    rewards = torch.zeros(b, t_max)
    inputs = gen.teacher_inputs(torch.cat([tokens, tokens[:, :1]], 1))  # (B, T + 1): [BOS, y_1 .. y_T]
    for t in range(1, t_max):
        out = gen.model.generate(
            input_ids=inputs[:, : t + 1], attention_mask=torch.ones_like(inputs[:, : t + 1]), do_sample=True,
            max_new_tokens=t_max - t, num_return_sequences=num_rollouts, eos_token_id=gen.eos_id,
            pad_token_id=gen.pad_id, top_k=0, top_p=1.0, temperature=1.0,
        )[:, 1:]  # fmt: skip
        out = torch.nn.functional.pad(out, (0, t_max - out.shape[1]), value=gen.pad_id)
        with torch.no_grad():
            rewards[:, t - 1] = torch.sigmoid(disc(out)).view(b, num_rollouts).mean(1)
    with torch.no_grad():
        rewards[:, -1] = torch.sigmoid(disc(tokens))
    return rewards


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/smollm2-135m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rollouts", type=int, default=4)
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--chunk-rows", type=int, default=0, help="rollout rows decoded at once (0: no cap)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--quick", action="store_true", help="a tiny random Llama (seconds)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.rollouts, args.length = 4, 2, 6
    torch.set_num_threads(args.threads)
    gen, load_s = timed(lambda: build(args).eval())
    vocab = gen.vocab_size
    torch.manual_seed(1)
    disc = CNNDiscriminator(
        vocab, 64, [2, 3, 4, 5], [100] * 4, 0.0, True, gen.pad_id, eos_id=gen.eos_id
    ).eval()
    b, r, length = args.batch, args.rollouts, args.length
    print(f"model: {gen.num_parameters:,} parameters, vocabulary {vocab:,}; loaded in {load_s:.1f} s")
    print(f"batch {b}, R {r}, length {length}, {args.threads} threads, {args.precision}")

    # ---- sampling (each side warmed up once: the fast decoder's self-check, first-call allocations)
    sample(gen, 1, 2, rng=torch.Generator().manual_seed(9))
    bos = torch.full((1, 1), gen.bos_id)
    gen.model.generate(input_ids=bos, attention_mask=torch.ones_like(bos), max_new_tokens=2, do_sample=False)
    rng = torch.Generator().manual_seed(0)
    samples, ours_sample_s = timed(lambda: sample(gen, b, length, rng=rng))
    ours_tokens = int(samples.mask.sum())
    torch.manual_seed(0)
    hf, hf_sample_s = timed(
        lambda: gen.model.generate(
            input_ids=bos,
            attention_mask=torch.ones_like(bos),
            do_sample=True,
            max_new_tokens=length,
            num_return_sequences=b,
            eos_token_id=gen.eos_id,
            pad_token_id=gen.pad_id,
            top_k=0,
            top_p=1.0,
        )  # fmt: skip
    )
    hf_new = hf[:, 1:]
    hf_tokens = int(((hf_new != gen.eos_id).cumsum(1) >= torch.arange(1, hf_new.shape[1] + 1)).sum())
    hf_tokens += int((hf_new == gen.eos_id).any(1).sum())  # each row's EOS is a real token too
    print(
        f"sampling: ours {ours_tokens / ours_sample_s:.1f} tokens/s, HF generate {hf_tokens / hf_sample_s:.1f}"
    )

    # ---- rollout rewards
    tokens = samples.tokens
    rollout = MonteCarloRollout(gen, update_rate=0.0, max_rows=args.chunk_rows or None)
    _, ours_rollout_s = timed(lambda: rollout(tokens, disc, r, rng=torch.Generator().manual_seed(2)))
    _, naive_rollout_s = timed(lambda: naive_rollout(gen, disc, tokens, r, 2))
    print(f"rollout rewards: ours {ours_rollout_s:.2f} s, naive generate per prefix {naive_rollout_s:.2f} s")

    # ---- one adversarial update
    cfg = SeqGANConfig(
        batch_size=b, num_rollouts=r, rollout_update_rate=0.0, rollout_chunk_rows=args.chunk_rows
    )
    trainer = PolicyGradientTrainer(gen, disc, cfg, max_len=length, rng=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
        metrics, update_s = timed(trainer.generator_step)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"one adversarial update: {update_s:.2f} s (pg_loss {metrics['generator/pg_loss']:.4f}); peak RSS {peak_mb:.0f} MB"
    )
    result = {
        "model": "tiny-llama" if args.quick else args.model,
        "parameters": gen.num_parameters,
        "batch": b,
        "num_rollouts": r,
        "length": length,
        "threads": args.threads,
        "precision": args.precision,
        "quick": args.quick,
        "sample_tokens_per_s": ours_tokens / ours_sample_s,
        "hf_generate_tokens_per_s": hf_tokens / hf_sample_s,
        "rollout_s": ours_rollout_s,
        "naive_rollout_s": naive_rollout_s,
        "rollout_speedup": naive_rollout_s / ours_rollout_s,
        "update_s": update_s,
        "peak_rss_mb": peak_mb,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
