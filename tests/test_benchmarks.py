"""Smoke runs of the benchmark scripts in their quick modes (no timing or quality assertions: the figures are
measured by running the scripts themselves, see the README)."""

from __future__ import annotations

import json

from tests.conftest import run_recipe


def last_json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_rollout_benchmark_quick(root):
    proc = run_recipe(
        ["benchmarks/rollout.py", "--quick", "--threads", "1", "--lengths", "6"], cwd=root, timeout=300
    )
    result = last_json(proc)
    for kind in ("lstm", "transformer", "transformer_wide"):
        for key in ("speedup", "ours_s", "naive_multinomial_s", "naive_draw_s", "gflops"):
            assert result[f"{key}_{kind}_len6"] > 0
    assert result["batch"] == 8 and result["num_rollouts"] == 4


def test_epoch_benchmark_quick_bf16(root):
    proc = run_recipe(
        ["benchmarks/epoch.py", "--quick", "--threads", "1", "--precision", "bf16"], cwd=root, timeout=600
    )
    result = last_json(proc)
    assert result["precision"] == "bf16" and result["quick"]
    phases = ("generator_update_s", "sample_negatives_s", "discriminator_s", "evaluation_s")
    assert all(result[k] > 0 for k in phases)
    assert result["epoch_s"] >= sum(result[k] for k in phases)
    assert 0.0 <= result["d_acc_fake"] <= 1.0 and result["nll_test"] > 0


def test_oracle_benchmark_quick(root, tmp_path):
    proc = run_recipe(["benchmarks/oracle.py", "--quick", "--out-dir", str(tmp_path)], cwd=root, timeout=600)
    result = last_json(proc)
    assert result["oracle"] in ("file", "random")
    assert result["nll_oracle_mle"] > 0 and result["nll_oracle_adversarial"] > 0 and result["wall_s"] > 0
    # the untrained generator is close to uniform tokens (11.4 under the paper's oracle) and worse than MLE
    assert result["nll_oracle_random"] > result["nll_oracle_mle"]
    if result["oracle"] == "file":
        assert abs(result["nll_oracle_random"] - 11.4) < 0.3, result["nll_oracle_random"]
    assert (tmp_path / "oracle_curve.png").stat().st_size > 0


def test_discriminator_benchmark_quick(root):
    proc = run_recipe(["benchmarks/discriminator.py", "--quick", "--threads", "1"], cwd=root, timeout=300)
    result = last_json(proc)
    assert result["agreement"]["max_abs_diff_forward"] < 1e-5
    assert result["agreement"]["max_abs_diff_grad"] < 1e-5
    assert result["peak_gflops"]["fp32"] > 0 and result["peak_gflops"]["bf16"] > 0
    for data in ("full", "trained"):
        for precision in ("fp32", "bf16"):
            for impl in ("seqgan", "conv2d"):
                assert result[f"{data}_{precision}_{impl}_s"] > 0
                assert result[f"{data}_{precision}_{impl}_gflops"] > 0
            assert 0.0 <= result["d_acc"][f"{data}_{precision}"] <= 1.0


def test_lm_benchmark_quick(root):
    proc = run_recipe(["benchmarks/lm.py", "--quick", "--threads", "1"], cwd=root, timeout=300)
    result = last_json(proc)
    assert result["quick"] and result["model"] == "tiny-llama" and result["batch"] == 4
    for key in (
        "sample_tokens_per_s",
        "hf_generate_tokens_per_s",
        "rollout_s",
        "naive_rollout_s",
        "update_s",
    ):
        assert result[key] > 0
    assert result["peak_rss_mb"] > 0
