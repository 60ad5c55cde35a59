"""The category task's pieces: labelled files and their errors, class-balanced batches, the class-conditional
generators (conditioning changes the output; one LSTM per class is really one model per class; the fused decoding
path draws from the model), the (k+1)-class discriminator's targets and step, SentiGAN's penalty loss and update,
CatGAN's category-wise loss, fitness and evolutionary selection, and the per-class evaluation on a case with a
known answer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqgan.config import CatGANConfig, ConfigError, SentiGANConfig, load_config
from seqgan.data.datasets import DataError
from seqgan.data.labelled import balanced_batches, load_labelled
from seqgan.losses import (
    class_scores,
    multiclass_targets,
    one_vs_rest_logit,
    sampled_log_probs,
    sentigan_penalty_loss,
)
from seqgan.models import CNNDiscriminator
from seqgan.models.class_conditional import ClassBoundDiscriminator, ClassLSTM, LSTMPerClass, class_labels
from seqgan.models.seq2seq import BoundGenerator
from seqgan.sampling import sample
from seqgan.trainers.category import multiclass_discriminator_step, sample_class
from seqgan.trainers.catgan import CatGANTrainer, category_loss, evolve, fitness
from seqgan.trainers.sentigan import SentiGANTrainer
from seqgan.utils import adam


def _write(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------------- data
def test_labelled_files_errors_name_the_file_and_the_line(tmp_path):
    f = _write(tmp_path / "a.tsv", ["pos\tgood film", "", "neg no tab here"])
    with pytest.raises(DataError, match=r"a\.tsv: line 3 has no TAB"):
        load_labelled(f)
    f = _write(tmp_path / "b.tsv", ["pos\tgood film", "\tlabel missing"])
    with pytest.raises(DataError, match=r"b\.tsv: line 2 has an empty label"):
        load_labelled(f)
    f = _write(tmp_path / "c.tsv", ["pos\tgood film", "neg\t   "])
    with pytest.raises(DataError, match=r"c\.tsv: line 2 has an empty sentence"):
        load_labelled(f)
    f = _write(tmp_path / "d.tsv", ["pos\tgood film", "neg\tbad film", "meh\tso so"])
    with pytest.raises(
        DataError, match=r"d\.tsv: line 3 has the unknown label 'meh' \(the run's classes: neg, pos\)"
    ):
        load_labelled(f, ["neg", "pos"])
    got = load_labelled(_write(tmp_path / "e.tsv", ["pos\tgood\tfilm", "neg\tbad film"]))
    assert got.sentences == ["good film", "bad film"] and got.classes() == ["neg", "pos"]


def _category_cfg(tmp_path, train: list[str], test: list[str], *extra: str):
    return load_config(
        "recipes/configs/mr15_tiny.yaml",
        [
            f"category.train={_write(tmp_path / 'train.tsv', train)}",
            f"category.test={_write(tmp_path / 'test.tsv', test)}",
            "category.max_per_class=0",
            *extra,
        ],
    )


def test_any_number_of_classes_per_class_counts_and_unknown_test_labels(tmp_path):
    from seqgan.runs import prepare_data

    train = ["b\tone two", "a\tthree four", "c\tfive", "b\tsix seven", "a\teight", "b\tnine"]
    cfg = _category_cfg(tmp_path, train, ["a\tone", "c\tfive two", "b\tsix"])
    data = prepare_data(cfg)
    assert data.classes == ["a", "b", "c"]  # sorted training labels
    assert "(a 2, b 3, c 1)" in data.reports["train"] and "(a 1, b 1, c 1)" in data.reports["test"]
    assert data.splits["train"].labels.tolist() == [1, 0, 2, 1, 0, 1]
    ordered = _category_cfg(tmp_path, train, ["a\tone"], "category.labels=[c,b,a]")
    assert prepare_data(ordered).splits["train"].labels.tolist() == [1, 2, 0, 1, 2, 1]
    bad = _category_cfg(tmp_path, train, ["a\tone", "d\tseven"])
    with pytest.raises(DataError, match=r"test\.tsv: line 2 has the unknown label 'd'"):
        prepare_data(bad)


def test_the_category_config_is_checked():
    base = ["category.train=x.tsv", "generator.kind=class_lstm"]
    with pytest.raises(ConfigError, match="trains with adversarial.method=sentigan or catgan"):
        load_config(None, base)
    with pytest.raises(ConfigError, match="needs generator.kind=class_lstm or lstm_per_class"):
        load_config(None, ["category.train=x.tsv", "adversarial.method=catgan"])
    with pytest.raises(ConfigError, match="needs labelled sentences: set category.train"):
        load_config(None, ["generator.kind=lstm_per_class"])
    with pytest.raises(ConfigError, match="trains the category task: set category.train"):
        load_config(None, ["adversarial.method=sentigan"])
    with pytest.raises(ConfigError, match="catgan.mutations"):
        CatGANConfig(mutations=["rsgan", "nonsense"])
    assert load_config(None, [*base, "adversarial.method=sentigan"]).task == "category"


def test_class_balanced_batches():
    labels = torch.tensor([0] * 10 + [1] * 2)
    got = list(balanced_batches(labels, 4, torch.Generator().manual_seed(0)))
    assert len(got) == 3  # ceil(12 / 4) batches an epoch
    for batch in got:
        assert labels[batch].tolist().count(0) == 2 and labels[batch].tolist().count(1) == 2
    first_three = torch.cat(got)[labels[torch.cat(got)] == 0]
    assert first_three.unique().numel() == 6  # the large class is read without repeats
    again = list(balanced_batches(labels, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(got, again, strict=True))


# ------------------------------------------------------------------------------------------------- models
def test_class_conditioning_changes_the_output_distribution():
    torch.manual_seed(0)
    # class 0 sentences are "4 4 4", class 1 "5 5 5": after MLE, sampling by class gives the class's token
    gen = ClassLSTM(8, ["a", "b"], embed_dim=8, hidden_dim=16, every_step=False)
    labels = torch.tensor([0, 1] * 8)
    tokens = torch.tensor([[4, 4, 4, 2], [5, 5, 5, 2]] * 8)
    opt = adam(gen.parameters(), lr=0.05)
    before = [sample_class(gen, c, 200, 4, rng=torch.Generator().manual_seed(1)).tokens for c in (0, 1)]
    for _ in range(60):
        logits = gen.masked_logits(labels[:, None], BoundGenerator(gen, labels[:, None]).teacher_inputs(tokens),
                                   tokens != 0)  # fmt: skip
        loss = F.cross_entropy(logits, tokens[tokens != 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [sample_class(gen, c, 200, 4, rng=torch.Generator().manual_seed(1)).tokens for c in (0, 1)]
    share = [(after[c][:, 0] == 4 + c).float().mean().item() for c in (0, 1)]
    assert min(share) > 0.95, share
    assert (before[0][:, 0] == 4).float().mean() < 0.5  # untrained: no such preference
    # the same weights, different class: different next-token distribution (BOS reads the class embedding)
    state = gen.init_state(torch.tensor([[0], [1]]))
    logits, _ = gen.step(torch.tensor([1, 1]), state)
    assert not torch.allclose(logits[0], logits[1])


def test_one_lstm_per_class_routes_every_row_to_its_class():
    torch.manual_seed(0)
    bank = LSTMPerClass(10, ["x", "y", "z"], embed_dim=6, hidden_dim=8)
    labels = torch.tensor([[2], [0], [1], [0]])
    inputs = torch.tensor([[1, 4, 5], [1, 6, 7], [1, 8, 4], [1, 5, 5]])
    out = bank(labels, inputs)
    for row, c in enumerate(labels[:, 0].tolist()):
        assert torch.allclose(out[row], bank.generators[c](inputs[row : row + 1])[0])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.allclose(bank.masked_logits(labels, inputs, mask), out[mask])
    with torch.no_grad():  # another class's weights do not move class 0's outputs
        bank.generators[1].proj.bias.add_(3.0)
    again = bank(labels, inputs)
    assert (
        torch.equal(again[1], out[1]) and torch.equal(again[3], out[3]) and not torch.equal(again[2], out[2])
    )
    logits, state = bank.step(inputs[:, 0], bank.init_state(labels))
    assert torch.allclose(logits, again[:, 0], atol=1e-6)
    assert LSTMPerClass.from_spec(bank.spec()).spec() == bank.spec() and bank.spec()["classes"] == [
        "x",
        "y",
        "z",
    ]


@pytest.mark.parametrize("kind", [ClassLSTM, LSTMPerClass])
def test_the_fused_decoding_path_draws_from_the_model(kind):
    torch.manual_seed(0)
    gen = kind(12, ["a", "b"], embed_dim=8, hidden_dim=8)
    bound = BoundGenerator(gen, class_labels(1, 1))
    assert bound.fast_decoder(1.0) is not None
    out = sample(bound, 64, 6, rng=torch.Generator().manual_seed(0))
    log_probs, _ = sampled_log_probs(bound, out.tokens, out.mask)  # the step contract's probabilities
    assert torch.allclose(out.log_probs[out.mask], log_probs[out.mask], atol=1e-5)
    mixed = BoundGenerator(gen, torch.tensor([[0], [1]]))
    assert (mixed.fast_decoder(1.0) is None) == (kind is LSTMPerClass)


# ------------------------------------------------------------------------------------------------- losses
def test_one_vs_rest_logit_and_class_scores_by_hand():
    z = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    target = torch.tensor([1, 0])
    got = one_vs_rest_logit(z, target)
    assert torch.allclose(torch.sigmoid(got), torch.softmax(z, 1)[[0, 1], [1, 0]])
    assert torch.allclose(got[0], torch.tensor(2.0 - math.log(math.exp(1.0) + math.exp(0.5))))
    assert class_scores(z, target).tolist() == [2.0 - 0.5, 0.0 - 3.0]  # z_c - z_fake (the last output)


def test_k_plus_one_class_discriminator_targets_and_step():
    assert multiclass_targets(torch.tensor([1, 0, 1]), 2, num_classes=2).tolist() == [1, 0, 1, 2, 2]
    torch.manual_seed(0)
    d = CNNDiscriminator(9, 8, [2], [6], dropout=0.0, num_outputs=3)
    opt = torch.optim.SGD(d.parameters(), lr=0.1)
    real = torch.tensor([[4, 5, 2, 0], [6, 7, 8, 2]])
    fake = torch.tensor([[4, 4, 4, 4], [5, 2, 0, 0], [8, 8, 2, 0]])
    labels = torch.tensor([1, 0])
    logits = d(torch.cat([real, fake]))
    by_hand = -(torch.log_softmax(logits, 1)[torch.arange(5), torch.tensor([1, 0, 2, 2, 2])]).mean()
    before = _params(d)
    metrics = multiclass_discriminator_step(d, opt, real, labels, fake)
    assert metrics["discriminator/loss"] == pytest.approx(by_hand.item(), rel=1e-6)
    changed = [k for k, v in _params(d).items() if not torch.equal(v, before[k])]
    assert "out.weight" in changed and "embedding.weight" in changed


def test_sentigan_penalty_loss_on_a_hand_computed_batch():
    p = torch.tensor([[0.5, 0.25, 0.1], [0.8, 0.4, 0.9]], requires_grad=True)
    log_probs = p.log()
    penalties = torch.tensor([[0.2, 0.6, 0.9], [0.5, 0.1, 0.7]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # probability form: (0.5*0.2 + 0.25*0.6 + 0.8*0.5 + 0.4*0.1 + 0.9*0.7) / 5 real tokens
    loss = sentigan_penalty_loss(log_probs, penalties, mask)
    assert loss.item() == pytest.approx((0.1 + 0.15 + 0.4 + 0.04 + 0.63) / 5)
    (grad,) = torch.autograd.grad(loss, p)
    assert torch.allclose(grad, (penalties / 5) * mask)  # d(p * V) / dp; padding gets nothing
    lp_loss = sentigan_penalty_loss(log_probs, penalties, mask, "log_probability")
    expected = (math.log(0.5) * 0.2 + math.log(0.25) * 0.6 + math.log(0.8) * 0.5 + math.log(0.4) * 0.1
                + math.log(0.9) * 0.7) / 5  # fmt: skip
    assert lp_loss.item() == pytest.approx(expected)
    with pytest.raises(ValueError):
        sentigan_penalty_loss(log_probs, penalties, mask, "reward")


# ------------------------------------------------------------------------------------------------- SentiGAN
def _sentigan(num_rollouts=2):
    torch.manual_seed(0)
    gen = LSTMPerClass(12, ["neg", "pos"], embed_dim=8, hidden_dim=8)
    d = CNNDiscriminator(12, 8, [2], [8], dropout=0.0, num_outputs=3)
    cfg = SentiGANConfig(
        batch_size=6, num_rollouts=num_rollouts, d_num_negatives=8, d_batch_size=4, g_lr=1e-2
    )
    return SentiGANTrainer(gen, d, cfg, max_len=5, rng=torch.Generator().manual_seed(0)), gen, d


def test_sentigan_rollout_rewards_are_the_discriminator_probability_of_the_class():
    _, gen, d = _sentigan()
    tokens = torch.tensor([[4, 5, 6, 2, 0], [7, 2, 0, 0, 0], [4, 4, 4, 4, 4]])
    bound = ClassBoundDiscriminator(d.eval(), torch.tensor([1, 0, 1]))
    probs = torch.softmax(d(tokens), dim=1)[torch.arange(3), torch.tensor([1, 0, 1])]
    assert torch.allclose(torch.sigmoid(bound(tokens)), probs, atol=1e-6)
    lengths = torch.tensor([4, 2, 5])
    seqs, b, t = tokens[[0, 2, 2]], torch.tensor([0, 2, 2]), torch.tensor([1, 1, 3])
    fast, plain = bound.rollout_scorer(tokens, lengths, True), bound.rollout_scorer(tokens, lengths, False)
    assert torch.allclose(fast(seqs, b, t), plain(seqs, b, t), atol=1e-5)


def test_sentigan_generator_step_follows_the_penalty_of_each_class():
    trainer, gen, d = _sentigan()
    with torch.no_grad():  # D says "real, class neg" for every sentence: neg's penalty is 0, pos's is 1
        d.out.weight.zero_()
        d.out.bias.copy_(torch.tensor([60.0, 0.0, 0.0]))
    g_before, d_before = _params(gen), _params(d)
    metrics = trainer.generator_step()
    assert metrics["rollout/reward_last_0"] == pytest.approx(1.0) and metrics["rollout/reward_last_1"] < 1e-6
    after = _params(gen)
    assert all(torch.equal(after[k], v) for k, v in g_before.items() if k.startswith("generators.0."))
    assert any(not torch.equal(after[k], v) for k, v in g_before.items() if k.startswith("generators.1."))
    assert all(
        torch.equal(v, d_before[k]) for k, v in _params(d).items()
    )  # the generator step leaves D alone
    assert trainer.g_steps == 1


def test_sentigan_baseline_and_mle_updates():
    trainer, gen, d = _sentigan()
    with torch.no_grad():  # the same penalty for every sentence
        d.out.weight.zero_()
        d.out.bias.zero_()
    real = torch.tensor([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 8, 9, 2, 0], [5, 5, 2, 0, 0]])
    labels = torch.tensor([0, 1, 0, 1])
    plain = trainer.generator_step()[
        "generator/grad_norm"
    ]  # a constant penalty still pushes every sample down
    trainer.config = SentiGANConfig(**{**vars(trainer.config), "baseline": "mean"})
    centred = trainer.generator_step()[
        "generator/grad_norm"
    ]  # centred: nothing left to learn from (rounding)
    assert plain > 1e-3 and centred < 1e-6 * plain
    trainer.config = SentiGANConfig(**{**vars(trainer.config), "mle_every": 1})
    before = _params(gen)
    metrics = trainer.generator_step(real, labels)
    assert metrics["generator/teacher_forcing_nll"] > 0
    assert any(not torch.equal(v, before[k]) for k, v in _params(gen).items())
    with pytest.raises(ValueError, match="mle_every needs real sentences"):
        trainer.generator_step()


def test_sentigan_discriminator_step_trains_only_the_discriminator():
    trainer, gen, d = _sentigan()
    g_before, d_before = _params(gen), _params(d)
    real = torch.tensor([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 8, 9, 2, 0], [5, 5, 2, 0, 0]])
    metrics = trainer.discriminator_step(real, torch.tensor([0, 1, 0, 1]))
    assert {"discriminator/loss", "discriminator/acc_real", "discriminator/acc_fake"} <= set(metrics)
    assert all(torch.equal(v, g_before[k]) for k, v in _params(gen).items())
    assert any(not torch.equal(v, d_before[k]) for k, v in _params(d).items())
    with pytest.raises(ValueError, match="3 outputs"):
        SentiGANTrainer(gen, CNNDiscriminator(12, 8, [2], [8]), max_len=5)


# ------------------------------------------------------------------------------------------------- CatGAN
def test_catgan_category_wise_loss_by_hand():
    from seqgan.losses import gan_d_loss, gan_g_loss

    real = torch.tensor([1.0, 2.0, -1.0, 0.0])  # class 0: rows 0-1, class 1: rows 2-3
    fake = torch.tensor([0.5, 0.0, 1.0, -2.0])

    def sp(x: float) -> float:
        return math.log1p(math.exp(x))  # softplus

    d_by_hand = ((sp(-(1.0 - 0.5)) + sp(-(2.0 - 0.0))) / 2 + (sp(-(-1.0 - 1.0)) + sp(-(0.0 + 2.0))) / 2) / 2
    assert category_loss("rsgan", gan_d_loss, real, fake, 2).item() == pytest.approx(d_by_hand)
    g_by_hand = ((sp(-(0.5 - 1.0)) + sp(-(0.0 - 2.0))) / 2 + (sp(-(1.0 + 1.0)) + sp(-(-2.0 - 0.0))) / 2) / 2
    assert category_loss("rsgan", gan_g_loss, real, fake, 2).item() == pytest.approx(g_by_hand)
    # not the same as pairing across classes: the class blocks matter
    assert category_loss("rsgan", gan_g_loss, real, fake.flip(0), 2).item() != pytest.approx(g_by_hand)


def test_fitness_by_hand():
    real = torch.tensor([1.0, 3.0, 0.0, 0.0])  # class means 2 and 0
    fake = torch.tensor([2.0, 0.0, 1.0, -1.0])
    quality = (0.5 + torch.sigmoid(torch.tensor(-2.0)).item() + torch.sigmoid(torch.tensor(1.0)).item()
               + torch.sigmoid(torch.tensor(-1.0)).item()) / 4  # fmt: skip
    score, q, div = fitness(real, fake, self_nll=3.0, lambda_diversity=0.1, num_classes=2)
    assert q == pytest.approx(quality) and div == 3.0 and score == pytest.approx(quality + 0.3)


def test_evolution_keeps_the_fittest_children():
    made = []

    def vary(parent, mutation):
        made.append((parent, mutation))
        return parent + mutation

    survivors, scores, origin = evolve([10, 20], [1, -5, 3], vary, lambda c: -abs(c - 22), population=2)
    assert made == [(10, 1), (10, -5), (10, 3), (20, 1), (20, -5), (20, 3)]  # every parent x every mutation
    assert survivors == [21, 23] and scores == [-1.0, -1.0] and origin == [(1, 0), (1, 2)]  # tie: made first
    assert evolve([0], ["a"], lambda p, m: 5, lambda c: 0.0, population=3)[0] == [5]


def test_catgan_evolution_step_keeps_the_fittest_child_and_resumes():
    torch.manual_seed(0)
    gen = ClassLSTM(12, ["neg", "pos"], embed_dim=8, hidden_dim=8, every_step=True)
    d = CNNDiscriminator(12, 8, [2], [8], dropout=0.0, num_outputs=3)
    cfg = CatGANConfig(batch_size=3, evolution=True, population=2, mutations=["rsgan", "standard", "lsgan"],
                       fitness_samples=4, g_lr=1e-2)  # fmt: skip
    trainer = CatGANTrainer(gen, d, cfg, max_len=5, rng=torch.Generator().manual_seed(0), total_steps=10)
    judged = []
    original = trainer._fitness

    def record(real_scores):
        out = original(real_scores)
        judged.append((out[0], _params(gen)))
        return out

    trainer._fitness = record
    real = torch.tensor([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 8, 9, 2, 0]] * 2)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    d_before = _params(d)
    metrics = trainer.evolution_step(lambda: (real, labels))
    assert len(judged) == 3  # one parent x three mutations
    best = max(range(3), key=lambda i: judged[i][0])
    assert metrics["evolution/fitness"] == pytest.approx(judged[best][0])
    assert metrics["evolution/mutation"] == best
    assert all(torch.equal(v, judged[best][1][k]) for k, v in _params(gen).items())
    assert len(trainer.population) == 2 and trainer.g_steps == 1
    assert all(torch.equal(v, d_before[k]) for k, v in _params(d).items())
    # the population is part of the trainer state: a rebuilt trainer continues identically
    state = trainer.state_dict()
    twin_gen = ClassLSTM(12, ["neg", "pos"], embed_dim=8, hidden_dim=8, every_step=True)
    twin_d = CNNDiscriminator(12, 8, [2], [8], dropout=0.0, num_outputs=3)
    twin = CatGANTrainer(
        twin_gen, twin_d, cfg, max_len=5, rng=torch.Generator().manual_seed(5), total_steps=10
    )
    twin.load_state_dict(state)
    trainer._fitness = original
    trainer.rng.manual_seed(3), twin.rng.manual_seed(3)
    trainer.evolution_step(lambda: (real, labels))
    twin.evolution_step(lambda: (real, labels))
    assert all(torch.equal(v, _params(twin_gen)[k]) for k, v in _params(gen).items())


# ------------------------------------------------------------------------------------------------- evaluation
def test_per_class_evaluation_and_class_accuracy_on_a_known_answer():
    from seqgan.data.tokenizers import WordTokenizer
    from seqgan.metrics.classes import CategoryEvaluator, accuracy, train_classifier

    fillers = ["film", "plot", "cast", "story", "music", "scene"]
    rng = torch.Generator().manual_seed(0)

    def sentences(word: str, n: int) -> list[str]:
        out = []
        for _ in range(n):
            f = [fillers[int(i)] for i in torch.randint(0, 6, (3,), generator=rng)]
            pos = int(torch.randint(0, 4, (1,), generator=rng))
            out.append(" ".join(f[:pos] + [word] + f[pos:]))
        return out

    train = {"neg": sentences("bad", 60), "pos": sentences("good", 60)}
    test = {
        "neg": sentences("bad", 20) + ["bad bad bad bad"],
        "pos": sentences("good", 20) + ["good good good good"],
    }
    tok = WordTokenizer.train(train["neg"] + train["pos"], split="whitespace")

    def encode(lines):
        rows = [tok.encode(s)[:4] + [tok.eos_id] for s in lines]
        return torch.tensor([r + [tok.pad_id] * (5 - len(r)) for r in rows])

    x = torch.cat([encode(train["neg"]), encode(train["pos"])])
    y = torch.tensor([0] * 60 + [1] * 60)
    clf = train_classifier(
        x, y, 2, tok.vocab_size, tok.pad_id, embed_dim=16, num_filters=16, epochs=20, seed=0
    )
    assert accuracy(clf, encode(test["neg"]), 0) == 1.0 and accuracy(clf, encode(test["pos"]), 1) == 1.0

    # a generator that writes "bad bad bad bad" for neg and "good good good good" for pos, then EOS
    gen = LSTMPerClass(tok.vocab_size, ["neg", "pos"], embed_dim=4, hidden_dim=4)
    with torch.no_grad():
        for c, word in enumerate(["bad", "good"]):
            g = gen.generators[c]
            for p in g.parameters():
                p.zero_()
            g.proj.bias.fill_(-60.0)
            g.proj.bias[tok.encode(word)[0]] = 60.0
    ev = CategoryEvaluator(tok, ["neg", "pos"], test, {c: encode(test[c]) for c in test}, clf)
    row, per_class, samples = ev.evaluate(gen, 10, 4)
    assert [tok.decode(r) for r in samples["pos"][:1].tolist()] == ["good good good good"]
    for c in ("neg", "pos"):
        assert (
            per_class[c]["bleu4"] == 1.0 and per_class[c]["self_bleu4"] == 1.0
        )  # its own class's references
        assert per_class[c]["class_acc"] == 1.0
    assert row["bleu2"] == 1.0 and row["class_acc"] == 1.0 and ev.heldout_accuracy() == 1.0
    # NLL_test: the one test sentence of four repeats costs ~0 nats, every other one ~120 per surprising token
    assert 0 < row["nll_test"] < 200
    # swapped classes: BLEU against the other class's references (no "good" there) and accuracy 0
    swapped = LSTMPerClass.from_spec(gen.spec())
    swapped.generators[0].load_state_dict(gen.generators[1].state_dict())
    swapped.generators[1].load_state_dict(gen.generators[0].state_dict())
    row, per_class, _ = ev.evaluate(swapped, 10, 4)
    assert row["class_acc"] == 0.0 and per_class["pos"]["bleu2"] < 0.2
    real, real_per_class = ev.real_data(train, 30)
    assert real["class_acc"] == 1.0 and 0 < real_per_class["neg"]["bleu2"] <= 1.0
