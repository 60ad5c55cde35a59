import math

import pytest
import torch

from seqgan.data.tokenizers import WordTokenizer
from seqgan.metrics import bleu_multi, nll_test, self_bleu_multi
from seqgan.metrics.evaluator import Evaluator
from seqgan.metrics.suite import format_table, protocol, text_metrics
from seqgan.models import Generator, LSTMGenerator


class Uniform(LSTMGenerator):
    """Every next-token distribution is uniform: NLL is log(V) per token."""

    def forward(self, inputs):
        return torch.zeros(*inputs.shape, self.vocab_size) + 0 * self.proj.bias.sum()

    masked_logits = Generator.masked_logits  # through forward


def test_nll_test_hand_computed_and_masked():
    gen = Uniform(7, 4, 4, pad_id=0, bos_id=1, eos_id=2)
    tokens = torch.tensor([[3, 4, 2, 0, 0], [5, 2, 0, 0, 0]])
    assert nll_test(gen, tokens) == pytest.approx(math.log(7))
    assert nll_test(gen, tokens, temperature=0.5) == pytest.approx(math.log(7))


def test_nll_test_counts_only_real_tokens_and_updates_nothing():
    torch.manual_seed(0)
    gen = LSTMGenerator(9, 4, 4, pad_id=0, bos_id=1, eos_id=2)
    gen.train()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    tokens = torch.tensor([[3, 4, 2, 0], [5, 6, 7, 8]])
    logp = torch.log_softmax(gen(gen.teacher_inputs(tokens)), -1).gather(2, tokens[..., None]).squeeze(-1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    expected = -(logp[mask]).mean().item()
    assert nll_test(gen, tokens) == pytest.approx(expected, rel=1e-5)
    assert gen.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())


def test_text_metrics_agree_with_bleu_functions():
    refs = [["a", "cat", "sits"], ["a", "dog", "runs", "fast"], ["the", "cat", "runs"]]
    hyps = [["a", "cat", "runs"], ["the", "dog", "sits", "here"], ["a", "dog"]]
    m = text_metrics(hyps, refs)
    b, s = bleu_multi(hyps, refs), self_bleu_multi(hyps)
    for n in (2, 3, 4, 5):
        assert m[f"bleu{n}"] == pytest.approx(b[n], abs=1e-12)
        assert m[f"self_bleu{n}"] == pytest.approx(s[n], abs=1e-12)
    assert m["avg_len"] == pytest.approx(3.0)
    assert m["distinct1"] == pytest.approx(len({"a", "cat", "runs", "the", "dog", "sits", "here"}) / 9)
    table = format_table({"model": m})
    assert "bleu2" in table and "model" in table


def test_protocol_records_what_was_done():
    p = protocol(10, 20, "str.split()")
    assert p["num_hypotheses"] == 10 and p["num_references"] == 20
    assert p["ngram_weights"]["bleu4"] == [0.25] * 4 and "method1" in p["smoothing"]
    assert {"nltk", "torch", "seqgan"} <= set(p["versions"])


def test_evaluator_real_row_is_the_ceiling(coco_lines):
    tok = WordTokenizer.train(coco_lines)
    ev = Evaluator(tok, coco_lines[200:400])
    real = ev.real_data_row(coco_lines[:200], 100)
    gen = LSTMGenerator(tok.vocab_size, 8, 8)
    untrained, tokens = ev.evaluate(gen, 100, 20, with_nll=False)
    assert tokens.shape == (100, 20)
    assert real["bleu2"] > untrained["bleu2"] + 0.2
    assert ev.ids_tokens(torch.tensor([[tok.stoi["a"], tok.eos_id, 0]])) == [["a"]]


def test_nll_test_over_the_first_sentences_only(root):
    from seqgan.config import load_config
    from seqgan.metrics.nll import nll_test
    from seqgan.models import build_generator
    from seqgan.runs import SentenceTask, prepare_data

    cfg = load_config(
        root / "recipes/configs/tiny.yaml",
        [f"data.train={root / 'data/tiny/train.txt'}", f"data.test={root / 'data/tiny/test.txt'}",
         "adversarial.eval_nll_sentences=5"],
    )  # fmt: skip
    data = prepare_data(cfg)
    torch.manual_seed(0)
    gen = build_generator(cfg, data.tokenizer)
    test = data.splits["test"]
    assert len(test) > 5
    ev = SentenceTask.evaluator(data, cfg)
    assert torch.equal(ev.test_tokens, test[:5])
    assert SentenceTask.evaluator(data, cfg, 0).test_tokens.shape[0] == len(test)  # 0: all of them
    first, whole = nll_test(gen, test[:5]), nll_test(gen, test)
    assert first != whole
    metrics, _ = ev.evaluate(gen, 8, cfg.data.max_len, seed=0)
    assert metrics["nll_test"] == pytest.approx(first)
