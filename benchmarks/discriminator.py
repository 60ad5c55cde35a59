#!/usr/bin/env python
"""One discriminator epoch of SeqGAN's CNN, this toolkit's against the straightforward ``nn.Conv2d`` way.

    python benchmarks/discriminator.py [--quick] [--threads 2] [--checkpoint runs/coco_seqgan/pretrain.pt]

Settings (TextGAN-PyTorch's COCO discriminator): vocabulary 4,661, embedding 64, filters of widths 2, 3, 4, 5 x
300 with a highway layer and dropout 0.25, Adam 1e-4; an epoch is 10,000 real + 10,000 generated sentences in
steps of 64 + 64 (157 steps: forward, backward, Adam). Two data settings:

* ``full``: untrained models' sentences, every one 37 tokens (the worst case, no padding);
* ``trained``: the lengths a trained model gives: the 10,000 COCO training captions as the real half and, as the
  generated half, samples of ``--checkpoint``'s generator (default: the 10,000 COCO test captions, whose lengths
  are alike).

Implementations, on the same batches and the same initial weights:

* ``seqgan``: :class:`seqgan.models.discriminator.CNNDiscriminator` trained by
  :func:`seqgan.trainers.steps.discriminator_epochs` with length-bucketed batches (the recipes' default): the
  convolutions and the masked max-over-time pooling are one operation whose backward gathers the argmax windows
  (``conv_max_pool``);
* ``conv2d``: the straightforward module written here (embedding -> ``nn.Conv2d`` of kernel ``(k, E)`` per width
  -> masked max -> highway -> dropout -> linear, autograd for the backward), trained by the same loop on plain
  random batches padded to the longest sentence, as the older toolkits do.

Both run in fp32 and under bf16 autocast. The script first checks that the two implementations agree (forward
and gradients, fp32), then times each epoch (fastest of ``--repeats`` alternated runs), and measures the CPU's
matrix-multiply peak in the same run (``torch.mm`` of 2048 x 2048 matrices). GFLOP/s count the dense FLOPs of a
training step (three times the forward's convolutions and highway layer, on the windows each batch needs); the
percentage is of that peak. The last line is one JSON object.
"""

from __future__ import annotations

from seqgan.runtime import prefer_passive_waits

prefer_passive_waits()  # before torch loads: see seqgan.runtime

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.data.tokenizers import WordTokenizer
from seqgan.models.discriminator import CNNDiscriminator, Highway
from seqgan.trainers.steps import discriminator_epochs, length_batches
from seqgan.utils import adam

ROOT = Path(__file__).resolve().parents[1]
VOCAB, EMBED, WIDTHS, FILTERS, MAX_LEN, BATCH = 4661, 64, (2, 3, 4, 5), 300, 37, 64
TEXTGAN_FULL_EPOCH_S = 20.2  # TextGAN-PyTorch's discriminator, full-length epoch, measured on this machine


class Conv2dCNN(nn.Module):
    """The same discriminator written the straightforward way: ``nn.Conv2d(1, n, (k, E))`` per width over the
    embedded sentence padded with ``kmax - 1`` zero rows, windows starting past a sentence masked, max-over-time
    pooling, highway, dropout, output layer; autograd does the rest."""

    def __init__(self, vocab: int, embed: int, widths, filters: int, dropout: float = 0.25) -> None:
        super().__init__()
        self.widths = list(widths)
        self.embedding = nn.Embedding(vocab, embed, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv2d(1, filters, (k, embed)) for k in self.widths)
        feat = filters * len(self.widths)
        self.highway = Highway(feat)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(feat, 1)

    def load_from(self, d: CNNDiscriminator) -> Conv2dCNN:
        """Copies ``d``'s weights (its ``(n, E, k)`` convolutions become ``(n, 1, k, E)``)."""
        with torch.no_grad():
            self.embedding.weight.copy_(d.embedding.weight)
            for c2, c1 in zip(self.convs, d.convs, strict=True):
                c2.weight.copy_(c1.weight.transpose(1, 2)[:, None])
                c2.bias.copy_(c1.bias)
            self.highway.load_state_dict(d.highway.state_dict())
            self.out.load_state_dict(d.out.state_dict())
        return self

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != 0).sum(dim=1).clamp(min=1)
        width = int(lengths.max())
        x = F.pad(self.embedding(tokens[:, :width]), (0, 0, 0, max(self.widths) - 1))[
            :, None
        ]  # (B, 1, T', E)
        starts = torch.arange(width, device=tokens.device)
        invalid = (starts[None, :] >= lengths[:, None])[:, None, :]  # (B, 1, L)
        pooled = []
        for k, conv in zip(self.widths, self.convs, strict=True):
            y = conv(x[:, :, : width + k - 1]).squeeze(3)  # (B, n, L)
            pooled.append(y.masked_fill(invalid, float("-inf")).amax(dim=2))
        h = self.highway(F.relu(torch.cat(pooled, dim=1)))
        return self.out(self.dropout(h)).squeeze(-1)


def encode(lines: list[str], tok: WordTokenizer) -> torch.Tensor:
    rows = []
    for line in lines:
        ids = tok.encode(line)[:MAX_LEN]
        ids = ids + [tok.eos_id] if len(ids) < MAX_LEN else ids
        rows.append(ids + [tok.pad_id] * (MAX_LEN - len(ids)))
    return torch.tensor(rows)


def datasets(args) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    n = args.num
    full = (
        torch.randint(4, VOCAB, (n, MAX_LEN), generator=g),
        torch.randint(4, VOCAB, (n, MAX_LEN), generator=g),
    )
    train = (ROOT / "data/coco/image_coco.txt").read_text(encoding="utf-8").splitlines()
    test = (ROOT / "data/coco/test_coco.txt").read_text(encoding="utf-8").splitlines()
    tok = WordTokenizer.train(train)
    real = encode(train[:n], tok)
    if args.checkpoint:
        from seqgan.runs import load_run
        from seqgan.sampling import sample

        run = load_run(args.checkpoint)
        fake = sample(run.generator, n, MAX_LEN, rng=torch.Generator().manual_seed(1), batch_size=1024).tokens
    else:
        fake = encode(test[:n], tok)
    return {"full": full, "trained": (real.clamp(max=VOCAB - 1), fake.clamp(max=VOCAB - 1))}


def step_flops(lengths: list[int]) -> float:
    """Dense FLOPs of one training step (forward x 3) on batches whose longest sentences are ``lengths``."""
    feat = FILTERS * len(WIDTHS)
    conv = sum(2 * EMBED * k * FILTERS * L * 2 * BATCH for k in WIDTHS for L in lengths)  # windows on a token
    highway = 2 * BATCH * 2 * (2 * feat * feat) * len(lengths)  # two F x F layers, real and generated halves
    return 3.0 * (conv + highway)


def epoch_plain(model, opt, real, fake, rng) -> list[int]:
    """The straightforward loop: random batches, BCE on real vs generated, one Adam step each."""
    lens = []
    for r_idx, f_idx in length_batches((real, fake), len(real), BATCH, rng):
        r, f = real[r_idx], fake[f_idx]
        w = int(max((r != 0).sum(1).max(), (f != 0).sum(1).max()))
        logits = model(torch.cat([r[:, :w], f[:, :w]]))
        target = torch.cat([torch.ones(len(r)), torch.zeros(len(f))])
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lens += [w] * (len(r) + len(f))
    return lens


def batch_widths(model, real, fake, rng) -> list[int]:
    """Per sentence, the width of its bucketed batch (what the seqgan loop computes windows for)."""
    lengths = model.lengths
    widths = []
    for r_idx, f_idx in length_batches((real, fake), len(real), BATCH, rng, lengths):
        w = int(max(lengths(real[r_idx]).max(), lengths(fake[f_idx]).max()))
        widths += [w] * (len(r_idx) + len(f_idx))
    return widths


def check_agreement() -> dict[str, float]:
    """Forward and gradients of the two implementations on one padded batch (fp32, dropout off)."""
    torch.manual_seed(3)
    d = CNNDiscriminator(VOCAB, EMBED, WIDTHS, (FILTERS,) * len(WIDTHS), dropout=0.0, pad_id=0)
    ref = Conv2dCNN(VOCAB, EMBED, WIDTHS, FILTERS, dropout=0.0).load_from(d)
    tokens = torch.randint(4, VOCAB, (32, MAX_LEN))
    for i in range(32):
        tokens[i, 5 + i :] = 0
    weights = torch.randn(32)
    (a := d(tokens)).mul(weights).sum().backward()
    (b := ref(tokens)).mul(weights).sum().backward()
    grads = [
        (d.embedding.weight.grad, ref.embedding.weight.grad),
        *(
            (c1.weight.grad, c2.weight.grad.squeeze(1).transpose(1, 2))
            for c1, c2 in zip(d.convs, ref.convs, strict=True)
        ),
        (d.highway.gate.weight.grad, ref.highway.gate.weight.grad),
    ]
    return {
        "max_abs_diff_forward": float((a - b).detach().abs().max()),
        "max_abs_diff_grad": max(float((x - y).abs().max()) for x, y in grads),
    }


def matmul_peak(dtype: torch.dtype) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 1/50 of the sentences, one repeat")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timed epochs per setting (the fastest counts)")
    p.add_argument("--checkpoint", help="an MLE checkpoint whose samples give the generated half's lengths")
    args = p.parse_args(argv)
    args.num = 200 if args.quick else 10000
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    agreement = check_agreement()
    print(f"agreement with the nn.Conv2d module (fp32): {agreement}")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"matrix-multiply peak on {args.threads} threads: fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s"
    )
    data = datasets(args)
    result: dict = {"agreement": agreement, "peak_gflops": peak, "quick": args.quick, "threads": args.threads}
    print(
        f"{'data':8s} {'precision':9s} {'impl':7s} {'epoch s':>8s} {'GFLOP/s':>8s} {'% peak':>7s} {'speedup':>8s}"
    )
    for name, (real, fake) in data.items():
        for precision in ("fp32", "bf16"):
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
                if precision == "bf16"
                else contextlib.nullcontext()
            )
            times: dict[str, float] = {}
            flops: dict[str, float] = {}
            for rep in range(repeats):
                for impl in ("seqgan", "conv2d") if rep % 2 == 0 else ("conv2d", "seqgan"):
                    torch.manual_seed(0)
                    d = CNNDiscriminator(VOCAB, EMBED, WIDTHS, (FILTERS,) * len(WIDTHS), pad_id=0)
                    model = d if impl == "seqgan" else Conv2dCNN(VOCAB, EMBED, WIDTHS, FILTERS).load_from(d)
                    opt = adam(model.parameters(), lr=1e-4)
                    rng = torch.Generator().manual_seed(rep)
                    t0 = time.perf_counter()
                    with ctx:
                        if impl == "seqgan":
                            metrics = discriminator_epochs(d, opt, real, fake, 1, BATCH, rng, by_length=True)
                            widths = None
                        else:
                            widths = epoch_plain(model, opt, real, fake, rng)
                    seconds = time.perf_counter() - t0
                    if impl == "seqgan":
                        widths = batch_widths(d, real, fake, torch.Generator().manual_seed(rep))
                        result.setdefault("d_acc", {})[f"{name}_{precision}"] = metrics[
                            "discriminator/acc_fake"
                        ]
                    flops[impl] = step_flops(widths[:: 2 * BATCH]) if widths else 0.0
                    times[impl] = min(times.get(impl, float("inf")), seconds)
            for impl in ("seqgan", "conv2d"):
                gflops = flops[impl] / times[impl] / 1e9
                speedup = times["conv2d"] / times[impl]
                print(
                    f"{name:8s} {precision:9s} {impl:7s} {times[impl]:8.2f} {gflops:8.1f} "
                    f"{100 * gflops / peak[precision]:6.1f}% {speedup:7.2f}x"
                )
                result[f"{name}_{precision}_{impl}_s"] = round(times[impl], 3)
                result[f"{name}_{precision}_{impl}_gflops"] = round(gflops, 1)
            result[f"speedup_{name}_{precision}"] = round(times["conv2d"] / times["seqgan"], 2)
    if not args.quick:
        full = result["full_fp32_seqgan_s"]
        print(
            f"full-length fp32 epoch: {full:.2f} s (target <= 8 s; TextGAN-PyTorch's module took "
            f"{TEXTGAN_FULL_EPOCH_S} s here: {TEXTGAN_FULL_EPOCH_S / full:.2f}x)"
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
