"""The library loop (:func:`seqgan.loop.fit`): schedule, callbacks, stopping, exact resume, log averaging, the
metric sinks (TensorBoard read back, W&B offline), and the README's library example."""

from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from seqgan.checkpoint import load_checkpoint
from seqgan.config import ConfigError, load_config, replace
from seqgan.loop import Callback, EarlyStopping, FitState, fit
from seqgan.runs import evaluation, load_run, prepare_data
from seqgan.stages import RunDirError, pretrain
from seqgan.trainers import build_trainer
from seqgan.utils import read_metrics, seed_everything
from tests.conftest import ROOT

TINY = [
    "device=cpu",
    "pretrain.epochs=1",
    "pretrain.num_print_samples=0",
    "pretrain.d_rounds=1",
    "pretrain.d_num_negatives=64",
    "adversarial.eval_num_samples=30",
    "seqgan.d_num_negatives=32",
    "seqgan.batch_size=8",
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre")
    cfg = load_config(ROOT / "recipes/configs/tiny.yaml", [*TINY, f"out_dir={out}"])
    cfg = replace(
        cfg, data=replace(cfg.data, train=str(ROOT / cfg.data.train), test=str(ROOT / cfg.data.test))
    )
    pretrain(cfg)
    return out / "pretrain.pt"


def setup(pretrained: Path, out: Path, *overrides: str):
    """Config, tokenizer, train rows, trainer and evaluation for a fit in ``out`` (seeded alike every time)."""
    cfg = load_config(ROOT / "recipes/configs/tiny.yaml", [*TINY, f"out_dir={out}", *overrides])
    cfg = replace(
        cfg, data=replace(cfg.data, train=str(ROOT / cfg.data.train), test=str(ROOT / cfg.data.test))
    )
    seed_everything(cfg.seed)
    run = load_run(pretrained)
    data = prepare_data(cfg, run.tokenizer)
    rng = torch.Generator().manual_seed(cfg.seed + 1)
    trainer = build_trainer(cfg, run.generator, run.discriminator, rng=rng)
    return cfg, run.tokenizer, data, trainer


class Recorder(Callback):
    """Records every hook call: ``(hook, epoch)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.step_metrics: list[dict] = []

    def on_train_begin(self, state):
        self.calls.append(("begin", state.epoch))

    def on_step_end(self, state):
        self.calls.append(("step", state.epoch))
        self.step_metrics.append(dict(state.metrics))

    def on_evaluate(self, state, metrics):
        assert "eval/bleu4" in metrics and "eval/nll_test" in metrics
        self.calls.append(("evaluate", state.epoch))

    def on_save(self, state, path):
        assert path.is_file()
        self.calls.append(("save", state.epoch))

    def on_train_end(self, state):
        self.calls.append(("end", state.epoch))


class StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_step_end(self, state):
        if state.epoch == self.epoch:
            state.stop(f"stop at {self.epoch}")


def weights(path: Path) -> dict[str, torch.Tensor]:
    payload = load_checkpoint(path)
    return {
        **{f"g.{k}": v for k, v in payload["generator"]["state_dict"].items()},
        **{f"d.{k}": v for k, v in payload["discriminator"]["state_dict"].items()},
    }


def test_hooks_run_on_the_schedule(pretrained, tmp_path):
    cfg, tok, data, trainer = setup(
        pretrained, tmp_path, "max_steps=4", "eval_steps=2", "save_steps=3", "save_total_limit=2"
    )
    rec = Recorder()
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    state = fit(trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data), callbacks=[rec])
    assert rec.calls == [
        ("begin", 0),
        ("evaluate", 0),
        ("step", 1),
        ("evaluate", 2),
        ("step", 2),
        ("step", 3),
        ("save", 3),
        ("evaluate", 4),
        ("step", 4),
        ("save", 4),
        ("end", 4),
    ]
    assert state.epoch == 4 and not state.should_stop
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters(), strict=True))
    assert state.checkpoint == tmp_path / "adversarial.pt"
    assert sorted(p.name for p in tmp_path.glob("adversarial_0*.pt")) == [
        "adversarial_0003.pt",
        "adversarial_0004.pt",
    ]
    run = load_run(state.checkpoint)  # self-describing: the recipes and load_run read it
    assert run.payload["epoch"] == 4 and run.payload["stage"] == "adversarial"
    records = read_metrics(tmp_path / "adversarial_metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    assert [("eval/bleu4" in r) for r in records] == [True, False, True, False, True]
    assert json.loads((tmp_path / "adversarial_eval.json").read_text()) == state.final_metrics
    assert (tmp_path / "adversarial_curves.png").stat().st_size > 0


def test_a_callback_stops_the_run_with_a_checkpoint_and_the_final_evaluation(pretrained, tmp_path):
    cfg, tok, data, trainer = setup(pretrained, tmp_path, "max_steps=5", "eval_steps=10", "save_steps=10")
    state = fit(
        trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data), callbacks=[StopAt(2)]
    )
    assert state.should_stop and state.stop_reason == "stop at 2" and state.epoch == 2
    assert load_checkpoint(tmp_path / "adversarial.pt")["epoch"] == 2
    assert state.final_metrics and (tmp_path / "adversarial_eval.json").is_file()
    assert [r["epoch"] for r in read_metrics(tmp_path / "adversarial_metrics.jsonl")] == [0, 1, 2]


def test_stopped_and_resumed_equals_uninterrupted(pretrained, tmp_path):
    """A run stopped by a callback after epoch 2 and resumed to epoch 4 ends bit-identical to a run of 4 epochs,
    and the callbacks' own state (EarlyStopping's patience) travels in the checkpoint."""
    common = ("max_steps=4", "eval_steps=1", "save_steps=1")
    cfg, tok, data, trainer = setup(pretrained, tmp_path / "whole", *common)
    early = EarlyStopping("nll_test", mode="min", patience=100)
    fit(
        trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data), callbacks=[early, Callback()]
    )

    cfg, tok, data, trainer = setup(pretrained, tmp_path / "split", *common)
    fit(trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data),
        callbacks=[EarlyStopping("nll_test", mode="min", patience=100), StopAt(2)])  # fmt: skip
    cfg, tok, data, trainer = setup(pretrained, tmp_path / "split", *common)
    resumed = EarlyStopping("nll_test", mode="min", patience=100)
    with pytest.raises(RunDirError, match="--resume"):
        fit(trainer, data.splits["train"], cfg, tok, callbacks=[resumed, Callback()])
    state = fit(trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data),
                callbacks=[resumed, Callback()], resume=True)  # fmt: skip
    assert state.epoch == 4
    a, b = weights(tmp_path / "whole" / "adversarial.pt"), weights(tmp_path / "split" / "adversarial.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (resumed.best, resumed.best_epoch, resumed.bad) == (early.best, early.best_epoch, early.bad)
    whole = read_metrics(tmp_path / "whole" / "adversarial_metrics.jsonl")
    split = read_metrics(tmp_path / "split" / "adversarial_metrics.jsonl")
    assert [r["epoch"] for r in split] == [0, 1, 2, 3, 4]
    for r, s in zip(whole, split, strict=True):
        assert {k: v for k, v in r.items() if not k.startswith("time")} == {
            k: v for k, v in s.items() if not k.startswith("time")
        }


def test_early_stopping_by_hand():
    state = FitState(trainer=None, out_dir=Path("."), epochs=10)  # type: ignore[arg-type]
    stop = EarlyStopping("bleu4", mode="max", patience=2, min_delta=0.01)
    for epoch, value in enumerate([0.10, 0.20, 0.205, 0.25, 0.25, 0.255]):
        state.epoch = epoch
        stop.on_evaluate(state, {"eval/bleu4": value})
        if state.should_stop:
            break
    # 0.205 and 0.255 do not beat the best by more than 0.01: bad evaluations at epochs 2, 4 and 5
    assert stop.best == 0.25 and stop.best_epoch == 3 and state.epoch == 5 and state.should_stop
    assert "bleu4" in state.stop_reason
    low = EarlyStopping("eval/nll_test", mode="min", patience=1)
    state = FitState(trainer=None, out_dir=Path("."), epochs=10)  # type: ignore[arg-type]
    low.on_evaluate(state, {"eval/nll_test": 3.0})
    low.on_evaluate(state, {"eval/nll_test": 2.9})
    assert not state.should_stop
    low.on_evaluate(state, {"eval/nll_test": 2.95})
    assert state.should_stop
    with pytest.raises(KeyError, match="eval/bleu9"):
        EarlyStopping("bleu9").on_evaluate(state, {"eval/bleu4": 0.1})


def test_logging_steps_average_the_training_metrics(pretrained, tmp_path):
    cfg, tok, data, trainer = setup(pretrained, tmp_path, "max_steps=4", "logging_steps=2", "eval_steps=100")
    rec = Recorder()
    fit(trainer, data.splits["train"], cfg, tok, callbacks=[rec])  # no evaluation at all
    records = read_metrics(tmp_path / "adversarial_metrics.jsonl")
    assert [r["epoch"] for r in records] == [2, 4]
    for record, pair in zip(records, (rec.step_metrics[:2], rec.step_metrics[2:]), strict=True):
        for key in ("discriminator/loss", "rollout/reward_mean"):
            assert record[key] == pytest.approx((pair[0][key] + pair[1][key]) / 2, rel=1e-9)
    assert not (tmp_path / "adversarial_eval.json").exists()


def test_tensorboard_events_read_back(pretrained, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = ("max_steps=3", "eval_steps=1", "save_steps=1", "save_total_limit=3", "report_to=tensorboard")
    cfg, tok, data, trainer = setup(pretrained, tmp_path, *overrides)
    fit(trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data))
    # a crash after epoch 3 was logged but before its checkpoint: the run resumes from epoch 2, and the events
    # of epoch 3 written before the crash are purged (else TensorBoard shows epoch 3 twice)
    shutil.copy(tmp_path / "adversarial_0002.pt", tmp_path / "adversarial.pt")
    cfg, tok, data, trainer = setup(pretrained, tmp_path, *overrides)
    fit(trainer, data.splits["train"], cfg, tok, evaluate=evaluation(cfg, data), resume=True)
    events = EventAccumulator(str(tmp_path / "tb" / "adversarial"))
    events.Reload()
    records = read_metrics(tmp_path / "adversarial_metrics.jsonl")
    for tag in ("eval/bleu4", "discriminator/acc_fake", "rollout/reward_mean"):
        scalars = events.Scalars(tag)
        expected = [(r["epoch"], r[tag]) for r in records if tag in r]
        assert [(s.step, pytest.approx(s.value, rel=1e-6)) for s in scalars] == expected
        assert [s.step for s in scalars] == list(range(0 if tag.startswith("eval") else 1, 4))
    # --overwrite removes the stage's event folder with its other files
    cfg, tok, data, trainer = setup(pretrained, tmp_path, "max_steps=1", "report_to=none")
    fit(trainer, data.splits["train"], cfg, tok, overwrite=True)
    assert not (tmp_path / "tb" / "adversarial").exists()


def test_wandb_runs_offline(pretrained, tmp_path, monkeypatch):
    calls: dict[str, list] = {"init": [], "log": [], "finish": []}

    class FakeRun:
        def log(self, metrics, step):
            calls["log"].append((step, metrics))

        def finish(self):
            calls["finish"].append(True)

    def init(**kwargs):
        calls["init"].append(kwargs)
        return FakeRun()

    fake = types.ModuleType("wandb")
    fake.init = init
    fake.__spec__ = types.SimpleNamespace(name="wandb")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object() if name == "wandb" else None)
    cfg, tok, data, trainer = setup(pretrained, tmp_path, "max_steps=1", "report_to=[jsonl, wandb]")
    fit(trainer, data.splits["train"], cfg, tok)
    (init_kwargs,) = calls["init"]
    assert init_kwargs["mode"] == "offline" and init_kwargs["dir"] == str(tmp_path)
    assert init_kwargs["config"]["adversarial"]["epochs"] == 1
    assert [step for step, _ in calls["log"]] == [1]
    assert "discriminator/acc_fake" in calls["log"][0][1] and calls["finish"] == [True]


def test_a_missing_sink_package_is_refused_before_writing(pretrained, tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    cfg, tok, data, trainer = setup(pretrained, tmp_path / "out", "max_steps=1", "report_to=[tensorboard]")
    with pytest.raises(ConfigError, match="tensorboard package is not installed"):
        fit(trainer, data.splits["train"], cfg, tok)
    assert not (tmp_path / "out").exists()


def test_hugging_face_names(tmp_path):
    cfg = load_config(
        ROOT / "recipes/configs/tiny.yaml",
        ["max_steps=7", "bf16=true", "report_to=tensorboard", "save_total_limit=2", "output_dir=x",
         "eval_steps=3", "save_steps=4", "logging_steps=2"],
    )  # fmt: skip
    a = cfg.adversarial
    assert (a.epochs, a.eval_every, a.checkpoint_every, a.log_every) == (7, 3, 4, 2)
    assert (cfg.precision, cfg.report_to, cfg.checkpoint_keep, cfg.out_dir) == (
        "bf16",
        ["tensorboard"],
        2,
        "x",
    )
    assert load_config(None, ["report_to=none"]).report_to == ["jsonl"]
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 3\nadversarial:\n  epochs: 5\n")
    with pytest.raises(ConfigError, match="max_steps=3 .* contradicts adversarial.epochs=5"):
        load_config(path)
    # the command line wins over the file, whichever name each uses
    path.write_text("adversarial:\n  epochs: 5\n")
    assert load_config(path, ["max_steps=3"]).adversarial.epochs == 3
    with pytest.raises(ConfigError, match="bf16: expected true/false"):
        load_config(None, ["bf16=yes please"])
    with pytest.raises(ConfigError, match="report_to"):
        load_config(None, ["report_to=mlflow"])


def test_the_readme_library_example_runs(tmp_path, monkeypatch):
    """The README's library example, as printed there (pretraining, then the loop, on the tiny config)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- library example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "the README's library example is marked with <!-- library example -->"
    code = block.group(1)
    for name in ("recipes", "data"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    state = namespace["state"]
    assert state.checkpoint == Path("runs/tiny_gan/adversarial.pt") and state.checkpoint.is_file()
    assert "bleu4" in state.final_metrics


def test_wandb_offline_with_the_real_package(tmp_path):
    pytest.importorskip("wandb")
    from seqgan.reporting import make_reporter

    reporter = make_reporter(tmp_path, ["wandb"], stage="adversarial", config={"seed": 0})
    reporter.log(1, {"discriminator/acc_fake": 0.5, "eval/bleu4": float("nan")})
    reporter.close()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(run_dir.glob("run-*.wandb"))  # the offline record `wandb sync` uploads
    assert read_metrics(tmp_path / "metrics.jsonl")[0]["eval/bleu4"] is None
