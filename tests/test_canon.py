"""The canon comparison (benchmarks/canon.py): the position of a point against a hand-made temperature curve, the
mean and standard deviation over seeds with rows that have fewer seeds, how each method's run starts, and the
quick smoke run (with a second invocation that reuses the finished runs)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from seqgan.metrics.frontier import COCO_AXES, ORACLE_AXES
from tests.conftest import ROOT, run_recipe


def _load_canon():
    spec = importlib.util.spec_from_file_location("canon_benchmark", ROOT / "benchmarks/canon.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


canon = _load_canon()

# BLEU-4 = Self-BLEU-4 - 0.1 between Self-BLEU-4 0.2 and 0.6 (three temperatures)
CURVE = [
    {"temperature": 1.2, "self_bleu4": 0.2, "bleu4": 0.1},
    {"temperature": 1.0, "self_bleu4": 0.4, "bleu4": 0.3},
    {"temperature": 0.8, "self_bleu4": 0.6, "bleu4": 0.5},
]


@pytest.mark.parametrize(
    ("x", "y", "offset", "label"),
    [
        (0.3, 0.25, 0.05, "above"),  # the curve gives 0.2 at 0.3
        (0.5, 0.402, 0.002, "on"),  # within the tolerance 0.005
        (0.5, 0.396, -0.004, "on"),
        (0.45, 0.33, -0.02, "below"),  # the curve gives 0.35 at 0.45
        (0.2, 0.1, 0.0, "on"),  # the curve's end is inside its range
    ],
)
def test_position_against_a_hand_made_coco_curve(x, y, offset, label):
    pos = canon.curve_position({"self_bleu4": x, "bleu4": y}, CURVE, COCO_AXES, 0.005)
    assert pos["curve_offset"] == pytest.approx(offset, abs=1e-12)
    assert pos["curve_y"] == pytest.approx(y - offset, abs=1e-12)
    assert pos["curve_label"] == label


def test_labels_of_an_offset():
    assert canon.position_label(0.005, 0.005) == "on"  # the tolerance itself counts as on
    assert canon.position_label(-0.005, 0.005) == "on"
    assert canon.position_label(0.0051, 0.005) == "above"
    assert canon.position_label(-0.0051, 0.005) == "below"
    assert canon.position_label(None, 0.005) == canon.position_label(float("nan"), 0.005)
    assert canon.position_label(None, 0.005) == "outside the curve's range"


def test_points_beyond_the_curve_are_outside_its_range():
    for x in (0.1, 0.61):
        pos = canon.curve_position({"self_bleu4": x, "bleu4": 0.9}, CURVE, COCO_AXES, 0.005)
        assert pos == {"curve_offset": None, "curve_y": None, "curve_label": "outside the curve's range"}
    missing = canon.curve_position({"bleu4": 0.3}, CURVE, COCO_AXES, 0.005)
    assert missing["curve_label"] == "outside the curve's range"


def test_oracle_position_is_better_when_nll_oracle_is_lower():
    curve = [{"nll_test": 8.0, "nll_oracle": 9.5}, {"nll_test": 9.0, "nll_oracle": 9.0}]
    better = canon.curve_position({"nll_test": 8.5, "nll_oracle": 9.1}, curve, ORACLE_AXES, 0.01)
    assert better["curve_y"] == pytest.approx(9.25)
    assert better["curve_offset"] == pytest.approx(0.15) and better["curve_label"] == "above"
    worse = canon.curve_position({"nll_test": 8.5, "nll_oracle": 9.3}, curve, ORACLE_AXES, 0.01)
    assert worse["curve_offset"] == pytest.approx(-0.05) and worse["curve_label"] == "below"


def _row(bleu2, offset=None, label=None, seconds=None, start="shared"):
    return {"bleu2": bleu2, "nll_test": 4.0 + bleu2, "curve_offset": offset, "curve_label": label,
            "adversarial_s": seconds, "start": start, "same_mle_start": True}  # fmt: skip


def test_aggregate_gives_mean_and_sample_std_over_the_seeds_that_have_a_row():
    per_seed = {
        "2": {"mle": _row(0.2), "seqgan": _row(0.4, 0.001, "on", 30.0)},
        "0": {"mle": _row(0.2), "seqgan": _row(0.3, 0.010, "above", 10.0), "cot": _row(0.6, -0.02, "below")},
        "1": {"mle": _row(0.2), "seqgan": _row(0.5, 0.010, "above", 20.0), "cot": _row(0.7, -0.04, "below")},
    }
    table = canon.aggregate(per_seed, ["bleu2", "nll_test", "fed"], tolerance=0.005)
    assert list(table) == ["mle", "seqgan", "cot"]
    s = table["seqgan"]
    assert s["n"] == 3 and s["seeds"] == [0, 1, 2]
    assert s["metrics"]["bleu2"] == {"mean": pytest.approx(0.4), "std": pytest.approx(0.1), "n": 3}
    assert s["metrics"]["adversarial_s"] == {"mean": 20.0, "std": 10.0, "n": 3}
    assert s["metrics"]["curve_offset"]["mean"] == pytest.approx(0.007)  # the mean's label: above
    assert s["position"] == "above" and s["labels"] == {"above": 2, "on": 1}
    assert s["metrics"]["fed"]["n"] == 0  # missing everywhere
    c = table["cot"]
    assert c["n"] == 2 and c["seeds"] == [0, 1]
    assert c["metrics"]["bleu2"]["std"] == pytest.approx(0.0707107, rel=1e-5)  # sqrt(0.005)
    # rows added by later invocations (CoT first, then Gumbel, real data last) still come in table order
    later = {
        "0": {"cot": _row(0.6), "mle": _row(0.2), "gumbel": _row(0.3), "seqgan": _row(0.4), "real": _row(0.9)}
    }
    assert list(canon.aggregate(later, ["bleu2"], 0.005)) == ["real", "mle", "seqgan", "gumbel", "cot"]
    assert c["position"] == "below" and c["metrics"]["curve_offset"]["mean"] == pytest.approx(-0.03)
    assert table["mle"]["position"] is None  # no curve label: the reference itself
    assert table["mle"]["metrics"]["bleu2"]["std"] == pytest.approx(0.0, abs=1e-12)

    md = canon.markdown_table("coco", table, {"mle": "MLE", "seqgan": "SeqGAN", "cot": "CoT"})
    lines = md.splitlines()
    assert lines[0].startswith("| model | seeds | BLEU-2 | NLL_test | vs MLE curve")
    assert "FED" not in lines[0]  # no row has it
    seqgan = next(line for line in lines if line.startswith("| SeqGAN"))
    assert "| 3 | 0.400 ± 0.100 |" in seqgan and "+0.007 ± 0.005 above (above 2, on 1)" in seqgan
    assert "| 20 ± 10 |" in seqgan
    cot = next(line for line in lines if line.startswith("| CoT"))
    assert "| 2 of 3 (seed 0, 1) |" in cot and "0.650 ± 0.071" in cot


def test_a_single_seed_has_no_spread_and_all_outside_points_say_so():
    table = canon.aggregate(
        {"0": {"gumbel": _row(0.3, None, "outside the curve's range", 5.0)}}, ["bleu2"], 0.005
    )
    g = table["gumbel"]
    assert g["position"] == "outside the curve's range" and g["metrics"]["curve_offset"]["n"] == 0
    line = canon.markdown_table("coco", table, {}).splitlines()[-1]
    assert line.startswith("| gumbel | 1 | 0.300 |") and "| outside the curve's range | 5 |" in line


def test_each_method_starts_from_the_mle_checkpoint_unless_its_models_differ():
    assert canon.config_path("oracle", "seqgan") == ROOT / "benchmarks/configs/oracle_seqgan.yaml"
    assert canon.config_path("coco", "cot") == ROOT / "recipes/configs/coco_cot.yaml"
    coco = canon.available_methods("coco")
    assert coco[0] == "seqgan" and {"maligan", "cot", "relgan", "scratchgan"} <= set(coco)
    assert all(canon.config_path("coco", m).is_file() for m in coco)
    from seqgan.config import load_config

    for bench, ref in (
        ("coco", "recipes/configs/coco_seqgan.yaml"),
        ("oracle", "benchmarks/configs/oracle_seqgan.yaml"),
    ):
        ref_cfg = load_config(ROOT / ref)
        expected = {"gumbel": "shared", "maligan": "shared", "dgsan": "shared", "cot": "own_pretrain",
                    "dpgan": "own_pretrain", "relgan": "own_generator", "scratchgan": "scratch"}  # fmt: skip
        for method, start in expected.items():
            cfg = load_config(canon.config_path(bench, method))
            assert canon.start_of(cfg, ref_cfg) == start, (bench, method)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("canon")
    proc = run_recipe(["benchmarks/canon.py", "--quick", "--threads", "1", "--out-dir", str(out)], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_canon_quick_run(quick_run):
    out, proc = quick_run
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["quick"] and summary["benchmark"] == "coco" and summary["seeds"] == [0]
    assert list(summary["rows"]) == ["real", "mle", "seqgan", "maligan", "cot"]
    store = json.loads((out / "canon.json").read_text())
    seed = store["benchmarks"]["coco"]["seeds"]["0"]
    runs, rows = seed["runs"], seed["rows"]
    assert runs["maligan"]["start"] == "shared"
    assert runs["maligan"]["mle_checkpoint"] == runs["seqgan"]["mle_checkpoint"]
    assert runs["cot"]["start"] == "own_pretrain" and runs["cot"]["same_mle_start"] is True
    for method in ("seqgan", "maligan", "cot"):
        assert rows[method]["adversarial_s"] > 0
        assert rows[method]["curve_label"] in ("above", "on", "below", "outside the curve's range")
        assert 0 < rows[method]["bleu4"] < 1 and rows[method]["nll_test"] > 0
    assert [r["temperature"] for r in seed["curve"]] == canon.GRID
    assert rows["real"]["bleu2"] > rows["mle"]["bleu2"]  # real captions beat a one-epoch model
    md = (out / "canon.md").read_text()
    assert "| CoT | 1 |" in md and "own pretraining, same MLE generator 1/1" in md

    # the SeqGAN run's adversarial stage moved the generator: not the same weights as its MLE start
    seqgan = out / "coco/seed_0/seqgan"
    assert not canon.same_generator(seqgan / "pretrain.pt", seqgan / "adversarial.pt")
    assert canon.same_generator(seqgan / "pretrain.pt", seqgan / "pretrain.pt")


@pytest.mark.slow  # a second quick run (about 15 s): the default run keeps the first one
def test_canon_quick_run_reuses_finished_runs(quick_run):
    out, first = quick_run
    ckpts = sorted(out.glob("coco/seed_0/*/*.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in ckpts}
    before = json.loads((out / "canon.json").read_text())["benchmarks"]["coco"]["seeds"]["0"]["rows"]
    proc = run_recipe(
        ["benchmarks/canon.py", "--quick", "--reuse", "--threads", "1", "--out-dir", str(out)], cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("adversarial stage finished before, reused") == 3
    assert proc.stdout.count("pretraining finished before, reused") == 2  # seqgan's and cot's own
    assert {p: p.stat().st_mtime_ns for p in ckpts} == stamps
    after = json.loads((out / "canon.json").read_text())["benchmarks"]["coco"]["seeds"]["0"]["rows"]
    for name in before:  # the same checkpoints and samples: the same scores, the same recorded times
        same = {k: v for k, v in after[name].items() if k != "seconds"}  # the scoring's own time
        assert same == {k: v for k, v in before[name].items() if k != "seconds"}, name


def test_store_is_read_again_before_each_write(tmp_path):
    """Two invocations for different benchmarks in one folder: the second one's write keeps the first one's
    entry even when the first finished after the second started (the store is read again before merging)."""
    path = tmp_path / "canon.json"
    store, entry = canon._read_store(path, "coco", {"mle": 9.038})
    assert store == {"benchmarks": {"coco": {"seeds": {}}}, "paper_oracle": {"mle": 9.038}} and entry == {
        "seeds": {}
    }
    canon._write_atomic(path, json.dumps({"benchmarks": {"oracle": {"seeds": {"0": {"rows": {"mle": {}}}}}}}))
    store, entry = canon._read_store(path, "coco", {"mle": 9.038})
    assert set(store["benchmarks"]) == {"oracle", "coco"} and entry is store["benchmarks"]["coco"]
    assert store["benchmarks"]["oracle"]["seeds"]["0"]["rows"] == {"mle": {}}
    assert [p.name for p in tmp_path.iterdir()] == ["canon.json"]  # no temporary file left
