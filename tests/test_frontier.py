"""The quality-diversity frontier: the gap to a reference curve on hand-computed curves, the temperatures
proposed to extend a curve, the LM score against a direct computation, and the benchmark's smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seqgan.metrics.frontier import (
    COCO_AXES,
    ORACLE_AXES,
    curve_points,
    frontier_gap,
    interpolate,
    next_temperatures,
    summarize,
)
from tests.conftest import run_recipe


def rows(points, x="self_bleu4", y="bleu4"):
    return [{x: a, y: b} for a, b in points]


def test_gap_of_a_curve_lying_a_constant_above_the_reference():
    reference = rows([(0.2, 0.1), (0.4, 0.3), (0.6, 0.5)])  # y = x - 0.1
    model = rows([(0.3, 0.3), (0.5, 0.5), (0.7, 0.7)])  # y = x, covering 0.3..0.7
    g = frontier_gap(model, reference, COCO_AXES)
    assert g["gap"] == pytest.approx(0.1, abs=1e-12)
    assert (g["lo"], g["hi"]) == pytest.approx((0.3, 0.6))
    assert g["coverage"] == pytest.approx(0.75)  # 0.3 of the reference's 0.4
    assert frontier_gap(reference, model, COCO_AXES)["gap"] == pytest.approx(-0.1, abs=1e-12)


def test_gap_averages_over_the_shared_range_not_the_points():
    # the model crosses the reference: +0.2 at x=0 falling linearly to -0.2 at x=1 -> mean 0 over [0, 1]
    reference = rows([(0.0, 0.5), (1.0, 0.5)])
    model = rows([(0.0, 0.7), (0.9, 0.34), (1.0, 0.3)])
    assert frontier_gap(model, reference, COCO_AXES, num=1001)["gap"] == pytest.approx(0.0, abs=1e-12)
    # only the part of the model's curve inside the reference's range counts
    short = rows([(0.0, 0.5), (0.5, 0.5)])
    g = frontier_gap(model, short, COCO_AXES, num=1001)
    assert g["gap"] == pytest.approx(0.1, abs=1e-12)  # +0.2 falling to 0.0 on [0, 0.5]
    assert g["coverage"] == pytest.approx(1.0)


def test_gap_sign_follows_the_direction_of_quality():
    # oracle: y is NLL_oracle (lower is better); a model 0.3 nats lower at every NLL_test is better by +0.3
    reference = rows([(5.0, 9.3), (6.0, 9.0)], "nll_test", "nll_oracle")
    model = rows([(5.0, 9.0), (6.0, 8.7)], "nll_test", "nll_oracle")
    assert frontier_gap(model, reference, ORACLE_AXES)["gap"] == pytest.approx(0.3)
    assert frontier_gap(reference, model, ORACLE_AXES)["gap"] == pytest.approx(-0.3)


def test_gap_is_nan_without_a_shared_range():
    a, b = rows([(0.1, 0.1), (0.2, 0.2)]), rows([(0.3, 0.1), (0.4, 0.2)])
    assert math.isnan(frontier_gap(a, b, COCO_AXES)["gap"])
    assert math.isnan(frontier_gap(rows([(0.1, 0.1)]), b, COCO_AXES)["gap"])


def test_curve_points_sort_average_and_skip_missing():
    xs, ys = curve_points(
        [{"self_bleu4": 0.5, "bleu4": 0.2}, {"self_bleu4": 0.1, "bleu4": 0.4}, {"self_bleu4": 0.5, "bleu4": 0.4},
         {"self_bleu4": 0.3}, {"self_bleu4": 0.2, "bleu4": float("nan")}],
        COCO_AXES,
    )  # fmt: skip
    assert xs.tolist() == [0.1, 0.5] and ys.tolist() == pytest.approx([0.4, 0.3])
    assert interpolate(xs, ys, 0.3) == pytest.approx(0.35)
    assert math.isnan(float(interpolate(xs, ys, 0.6)))


def test_next_temperatures_extrapolate_in_log_temperature_towards_missing_targets():
    # x falls by 0.2 per doubling of T: T=1 -> 0.5, T=2 -> 0.3
    done = [{"temperature": 1.0, "self_bleu4": 0.5}, {"temperature": 2.0, "self_bleu4": 0.3}]
    assert next_temperatures(done, [0.1], "self_bleu4") == [4.0]
    assert next_temperatures(done, [0.7], "self_bleu4") == [0.5]
    assert next_temperatures(done, [0.7, 0.1, 0.4], "self_bleu4") == [0.5, 4.0]  # 0.4 is covered
    assert next_temperatures(done, [0.45], "self_bleu4") == []
    assert next_temperatures(done, [-1.0], "self_bleu4", bounds=(0.2, 5.0)) == [5.0]  # clipped
    # x rising with T (NLL_test of an overconfident model) works the same way
    rising = [{"temperature": 1.0, "nll_test": 4.0}, {"temperature": 2.0, "nll_test": 5.0}]
    assert next_temperatures(rising, [6.0, 3.5], "nll_test") == [pytest.approx(2**-0.5, rel=1e-3), 4.0]
    # never an evaluated temperature again
    at_bound = [{"temperature": 5.0, "self_bleu4": 0.3}, {"temperature": 2.0, "self_bleu4": 0.5}]
    assert next_temperatures(at_bound, [0.0], "self_bleu4") == []
    with pytest.raises(ValueError, match="two"):
        next_temperatures(done[:1], [0.1], "self_bleu4")


def test_summarize_uses_the_sample_standard_deviation():
    s = summarize([1.0, 2.0, 3.0, float("nan")])
    assert s == {"mean": 2.0, "std": 1.0, "n": 3}
    assert summarize([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    assert summarize([])["n"] == 0


def tiny_hf_scorer():
    from transformers import LlamaConfig, LlamaForCausalLM

    from seqgan.data.tokenizers import WordTokenizer, to_hf_tokenizer
    from seqgan.metrics.lm_score import HFScorer

    words = "a man riding bike down the street dog on grass".split()
    tok = to_hf_tokenizer(WordTokenizer(words))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return HFScorer(LlamaForCausalLM(cfg), tok, batch_size=2)


def test_hf_lm_score_equals_the_token_weighted_mean_computed_one_sentence_at_a_time():
    scorer = tiny_hf_scorer()
    sentences = ["a man riding a bike", "the dog", "a dog on the grass down the street", ""]
    total, count = 0.0, 0
    for s in sentences[:3]:  # unbatched, unpadded, by hand
        ids = [scorer.start_id, *scorer.tokenizer(s, add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logp = scorer.model(torch.tensor([ids])).logits[0].log_softmax(-1)
        total -= sum(float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1))
        count += len(ids) - 1
    assert count == 5 + 2 + 8
    assert scorer.score(sentences) == pytest.approx(total / count, rel=1e-5)  # batches of 2, padded
    assert scorer.start_id == scorer.tokenizer.bos_token_id  # no <|endoftext|> in this vocabulary


def test_lm_scorer_names_what_it_accepts(tmp_path):
    from seqgan.metrics.lm_score import lm_scorer

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        lm_scorer(str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="neither 'smollm2'"):
        lm_scorer(str(tmp_path))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from tests.conftest import ROOT

    out = tmp_path_factory.mktemp("frontier")
    proc = run_recipe(["benchmarks/frontier.py", "--quick", "--out-dir", str(out)], cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_frontier_benchmark_quick(quick_run):
    out, summary = quick_run
    assert summary["quick"] and summary["reference"] == "MLE" and summary["task"] == "sentences"
    assert summary["gaps"]["SeqGAN"]["n"] == 1
    result = json.loads((out / "frontier.json").read_text())
    mle, gan = result["models"]["MLE"][0], result["models"]["SeqGAN"][0]
    assert len(mle["rows"]) == 7 and len(gan["rows"]) >= 7
    assert [r["temperature"] for r in mle["rows"]] == sorted(r["temperature"] for r in mle["rows"])
    for r in mle["rows"] + gan["rows"]:
        assert 0 <= r["bleu4"] <= 1 and 0 <= r["self_bleu4"] <= 1 and r["nll_test"] > 0 and r["lm_score"] > 0
    # the gap in the table is the gap of the stored curves
    again = frontier_gap(gan["rows"], mle["rows"], COCO_AXES)["gap"]
    assert summary["gaps"]["SeqGAN"]["mean"] == pytest.approx(again)
    assert (out / "frontier.png").stat().st_size > 10_000


def test_checkpoint_lm_score_is_the_nll_test_of_the_encoded_sentences(quick_run):
    from seqgan.data.datasets import encode_sentences
    from seqgan.metrics.lm_score import lm_scorer
    from seqgan.metrics.nll import nll_test

    scorer = lm_scorer(str(quick_run[0] / "tiny" / "pretrain.pt"))
    lines = ["a man riding a horse .", "two dogs play in the snow ."]
    tokens, _ = encode_sentences(lines, scorer.run.tokenizer, scorer.run.cfg.data.max_len)
    assert scorer.score(lines + ["  "]) == pytest.approx(nll_test(scorer.run.generator, tokens))


def test_frontier_reuses_the_points_of_unchanged_checkpoints(quick_run, tmp_path):
    from tests.conftest import ROOT

    tiny = quick_run[0] / "tiny"
    args = [
        "benchmarks/frontier.py", "--model", "MLE", str(tiny / "pretrain.pt"), "--model", "SeqGAN",
        str(tiny / "adversarial.pt"), "--samples", "60", "--lm", str(tiny / "pretrain.pt"), "--lm-samples", "20",
        "--temperatures", "0.8", "1.0", "1.2", "--rounds", "0", "--out-dir", str(tmp_path),
    ]  # fmt: skip
    first = run_recipe(args, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]

    def curves():
        models = json.loads((tmp_path / "frontier.json").read_text())["models"]
        return {name: [e["rows"] for e in seeds] for name, seeds in models.items()}

    rows = curves()
    again = run_recipe(args, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "reused 6 points" in again.stdout, again.stdout[-2000:]
    assert curves() == rows
    other = run_recipe([*args[:-2], "--seed", "7", "--out-dir", str(tmp_path)], cwd=ROOT, timeout=300)
    assert other.returncode == 0 and "reused" not in other.stdout  # another sampling seed: new points
