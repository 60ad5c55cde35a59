"""Multi-seed reporting: ``recipes/run.py --seeds ...`` runs the pipeline per seed and reports mean and
standard deviation of every metric."""

import importlib.util
import json
import math

import pytest

from tests.conftest import ROOT


def _run_recipe_module():
    spec = importlib.util.spec_from_file_location("recipe_run", ROOT / "recipes" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_aggregate_seeds_by_hand():
    from seqgan.stages.pipeline import aggregate_seeds

    runs = {
        0: {"rows": {"MLE": {"bleu2": 0.1, "fed": None}}, "wall_s": {"total": 2.0}},
        1: {"rows": {"MLE": {"bleu2": 0.3, "fed": None}}, "wall_s": {"total": 3.0}},
        2: {"rows": {"MLE": {"bleu2": 0.5, "fed": None}}, "wall_s": {"total": 4.0}},
    }
    out = aggregate_seeds(runs)
    assert out["seeds"] == [0, 1, 2] and out["wall_s"] == {"total": 9.0}
    assert out["mean"]["MLE"]["bleu2"] == pytest.approx(0.3)
    assert out["std"]["MLE"]["bleu2"] == pytest.approx(0.2)  # sqrt((0.04 + 0 + 0.04) / 2)
    assert out["mean"]["MLE"]["fed"] is None and out["std"]["MLE"]["fed"] is None
    one = aggregate_seeds({5: runs[0]})
    assert one["std"]["MLE"]["bleu2"] == 0.0


def test_pipeline_with_two_seeds(tmp_path):
    run = _run_recipe_module()
    summary = run.main(
        [
            "--config",
            "recipes/configs/tiny.yaml",
            "--eval-samples",
            "50",
            f"out_dir={tmp_path}",
            "num_threads=1",
            "pretrain.num_print_samples=0",
            "adversarial.epochs=1",
            "adversarial.eval_every=100",
            "adversarial.eval_num_samples=30",
            "--seeds",  # last: it takes every number that follows
            "0",
            "1",
        ]
    )
    per_seed = {s: json.loads((tmp_path / f"seed_{s}" / "results.json").read_text())["rows"] for s in (0, 1)}
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["seeds"] == [0, 1] and written["mean"] == summary["mean"]
    assert set(written["mean"]) == {"real data", "MLE", "SeqGAN"}
    for name in ("MLE", "SeqGAN"):
        for key, mean in written["mean"][name].items():
            values = [per_seed[s][name][key] for s in (0, 1)]
            if mean is None:
                assert values == [None, None]
                continue
            assert mean == pytest.approx(sum(values) / 2)
            assert written["std"][name][key] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    assert per_seed[0]["MLE"]["bleu2"] != per_seed[1]["MLE"]["bleu2"]  # the seeds give different runs
    md = (tmp_path / "results.md").read_text()
    assert "over 2 seeds" in md and "| SeqGAN |" in md and " ± " in md
