"""The category task end to end on 60 MR15 sentences per class: pretraining (the conditional MLE baseline),
SentiGAN and CatGAN (with its evolution) through the shared recipes, an interrupted run resumed equal to an
uninterrupted one for both methods, sampling by class, the per-class evaluation and the pipeline."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from seqgan.checkpoint import CheckpointError
from seqgan.config import ConfigError
from tests.test_resume import _assert_same_tensors


def _records(path) -> list[dict]:
    """The metrics log without wall times."""
    lines = path.read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time")} for line in lines]


CONFIG = "recipes/configs/mr15_tiny.yaml"


def _recipe(root, name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", root / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from tests.conftest import ROOT

    out = tmp_path_factory.mktemp("mr15_pre")
    _recipe(ROOT, "pretrain").main(["--config", CONFIG, f"out_dir={out}"])
    return out / "pretrain.pt"


class _Interrupt(Exception):
    pass


def _adversarial(root, out, pre, method: str, *extra: str, stop_after: int | None = None, resume=False):
    """The adversarial recipe in-process; ``stop_after``: crash in the epoch after that many (a run killed
    between two checkpoints)."""
    stage = importlib.import_module(
        "seqgan.stages.adversarial"
    )  # the module (the package exports the function)

    args = ["--config", CONFIG, f"out_dir={out}", f"adversarial.pretrain_checkpoint={pre}",
            f"adversarial.method={method}", "adversarial.epochs=3", "adversarial.eval_every=100", *extra]  # fmt: skip
    build = stage.build_trainer

    def crashing(*a, **k):
        trainer = build(*a, **k)
        epoch = trainer.train_epoch
        done = []

        def train_epoch(*args, **kwargs):
            if len(done) == stop_after:
                raise _Interrupt
            done.append(1)
            return epoch(*args, **kwargs)

        trainer.train_epoch = train_epoch
        return trainer

    stage.build_trainer = crashing if stop_after is not None else build
    try:
        _recipe(root, "adversarial").main(args + (["--resume"] if resume else []))
    finally:
        stage.build_trainer = build


@pytest.mark.parametrize(
    "method, extra",
    [("sentigan", []), ("catgan", ["catgan.evolution=true", "catgan.population=2"])],
)
def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(root, tmp_path, pretrained, method, extra):
    full, killed = tmp_path / "full", tmp_path / "killed"
    _adversarial(root, full, pretrained, method, *extra)
    with pytest.raises(_Interrupt):
        _adversarial(root, killed, pretrained, method, *extra, stop_after=1)
    assert torch.load(killed / "adversarial.pt", weights_only=True)["epoch"] == 1
    _adversarial(root, killed, pretrained, method, *extra, resume=True)
    x = torch.load(full / "adversarial.pt", weights_only=True)
    y = torch.load(killed / "adversarial.pt", weights_only=True)
    assert x["epoch"] == y["epoch"] == 3
    assert (x["generator"]["spec"]["kind"], x["discriminator"]["spec"]["num_outputs"]) == ("class_lstm", 3)
    for part in ("generator", "discriminator"):
        assert _assert_same_tensors(x[part]["state_dict"], y[part]["state_dict"], part) > 0
    assert _assert_same_tensors(x["trainer"], y["trainer"], "trainer") > 10
    if method == "catgan":
        assert len(x["trainer"]["population"]) == 2
    records = _records(full / "adversarial_metrics.jsonl")
    assert records == _records(killed / "adversarial_metrics.jsonl")
    assert {"eval/class_acc", "eval/bleu4_pos", "eval/class_acc_neg"} <= set(records[-1])
    assert (
        "generator/penalty_loss" in records[1] if method == "sentigan" else "evolution/fitness" in records[1]
    )


def test_sample_by_class_and_the_per_class_evaluation(root, tmp_path, pretrained, capsys):
    sample = _recipe(root, "sample")
    pos = sample.main(
        ["--checkpoint", str(pretrained), "--label", "pos", "--num-samples", "4", "--seed", "3"]
    )
    assert len(pos) == 4 and pos == sample.main(["--checkpoint", str(pretrained), "--label", "pos",
                                                 "--num-samples", "4", "--seed", "3"])  # fmt: skip
    every = sample.main(["--checkpoint", str(pretrained), "--num-samples", "2"])
    assert [line.split("\t")[0] for line in every] == ["neg", "neg", "pos", "pos"]
    with pytest.raises(ConfigError, match="'happy' is not a class of this model: neg, pos"):
        sample.main(["--checkpoint", str(pretrained), "--label", "happy"])

    from seqgan.runs import load_run, sample_by_class

    run = load_run(pretrained)
    assert run.category and run.generator.classes == ["neg", "pos"]
    again = sample_by_class(run.generator, run.tokenizer, "pos", 4, run.cfg.data.max_len,
                            rng=torch.Generator().manual_seed(3))  # fmt: skip
    assert again == pos

    out = tmp_path / "eval.json"
    _recipe(root, "evaluate").main(
        ["--checkpoint", str(pretrained), "--num-samples", "20", "--json", str(out)]
    )
    result = json.loads(out.read_text())
    assert set(result["per_class"]) == {"neg", "pos"} == set(result["real_data"]["per_class"])
    for key in ("bleu2", "bleu5", "self_bleu2", "nll_test", "class_acc"):
        assert key in result and key in result["per_class"]["pos"]
    assert result["bleu2"] == pytest.approx(
        (result["per_class"]["neg"]["bleu2"] + result["per_class"]["pos"]["bleu2"]) / 2
    )
    assert 0 <= result["classifier"]["heldout_acc"] <= 1 and result["protocol"]["classes"] == ["neg", "pos"]
    assert "real data pos" in capsys.readouterr().out


def test_the_pipeline_reports_per_class_rows(root, tmp_path):
    out = tmp_path / "run"
    _recipe(root, "run").main(["--config", CONFIG, f"out_dir={out}", "adversarial.method=catgan",
                               "adversarial.epochs=1", "--eval-samples", "10"])  # fmt: skip
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert list(rows)[:3] == ["real data", "MLE", "CatGAN"]
    assert {"MLE (neg)", "CatGAN (pos)", "real data (pos)"} <= set(rows)
    assert rows["CatGAN"]["class_acc"] is not None and rows["real data"]["nll_test"] is None


def test_a_checkpoint_of_other_classes_is_refused(root, tmp_path, pretrained):
    with pytest.raises(CheckpointError, match=r"was trained on the classes \['neg', 'pos'\]"):
        _adversarial(root, tmp_path / "x", pretrained, "sentigan", "category.labels=[pos,neg]")


def test_the_library_loop_trains_a_category_method_and_its_callbacks_see_the_per_class_metrics(
    tmp_path, pretrained
):
    from seqgan.config import load_config
    from seqgan.loop import Callback, EarlyStopping, fit
    from seqgan.runs import evaluation, load_run, prepare_data
    from seqgan.trainers import build_trainer
    from seqgan.utils import seed_everything

    class Seen(Callback):
        def __init__(self):
            self.evaluated: list[dict] = []

        def on_evaluate(self, state, metrics):
            self.evaluated.append(dict(metrics))

    cfg = load_config(CONFIG, [f"out_dir={tmp_path}", "adversarial.method=sentigan", "adversarial.epochs=4",
                               "adversarial.eval_every=1"])  # fmt: skip
    seed_everything(cfg.seed)
    run = load_run(pretrained)
    data = prepare_data(cfg, run.tokenizer)
    trainer = build_trainer(cfg, run.generator, run.discriminator, rng=torch.Generator().manual_seed(1))
    seen = Seen()
    stopper = EarlyStopping("class_acc", patience=1, min_delta=2.0)  # no change counts: stops at epoch 1
    state = fit(trainer, data.splits["train"], cfg, run.tokenizer, evaluate=evaluation(cfg, data),
                callbacks=[seen, stopper])  # fmt: skip
    assert state.epoch == 1 and state.stop_reason.startswith("early stopping: eval/class_acc")
    assert len(seen.evaluated) == 2  # before training and after epoch 1
    assert {"eval/class_acc_neg", "eval/class_acc_pos", "eval/bleu4_pos"} <= set(seen.evaluated[-1])
    assert torch.load(tmp_path / "adversarial.pt", weights_only=True)["epoch"] == 1
    assert "class_acc" in json.loads((tmp_path / "adversarial_eval.json").read_text())
