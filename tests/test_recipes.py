"""Smoke runs of the recipes as a user runs them (subprocess, tiny config)."""

import json

import pytest
import torch

from tests.conftest import run_recipe


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.conftest import ROOT

    out = tmp_path_factory.mktemp("tiny")
    res = run_recipe(["recipes/pretrain.py", "--config", "recipes/configs/tiny.yaml", f"out_dir={out}"], ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_pretrain_writes_everything(tiny_run):
    out, res = tiny_run
    assert {"config.yaml", "metrics.jsonl", "pretrain.pt", "pretrain_curves.png"} <= {
        p.name for p in out.iterdir()
    }
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/nll_test" in r for r in records)
    assert any("discriminator/acc_real" in r for r in records)
    ckpt = torch.load(out / "pretrain.pt", weights_only=True)
    assert {"config", "tokenizer", "generator", "discriminator", "optimizers", "rng", "step"} <= set(ckpt)
    assert "over max_len dropped" in res.stdout


def test_sample_recipe(tiny_run, tmp_path, root):
    out, _ = tiny_run
    args = [
        "recipes/sample.py",
        "--checkpoint",
        str(out / "pretrain.pt"),
        "--num-samples",
        "5",
        "--seed",
        "3",
    ]
    a = run_recipe(args, root)
    assert a.returncode == 0, a.stderr[-2000:]
    lines = a.stdout.split("\n")
    assert len(lines) == 6 and lines[-1] == ""  # one line per sample (an immediate EOS is an empty line)
    assert sum(bool(line.strip()) for line in lines) >= 3
    assert run_recipe(args, root).stdout == a.stdout  # same seed, same samples
    b = run_recipe(args + ["--output", str(tmp_path / "s.txt"), "--temperature", "0.5"], root)
    assert b.returncode == 0 and len((tmp_path / "s.txt").read_text().splitlines()) == 5


def test_pretrain_is_deterministic(tiny_run, tmp_path, root):
    out, _ = tiny_run
    res = run_recipe(
        ["recipes/pretrain.py", "--config", "recipes/configs/tiny.yaml", f"out_dir={tmp_path}"], root
    )
    assert res.returncode == 0
    a = torch.load(out / "pretrain.pt", weights_only=True)["generator"]["state_dict"]
    b = torch.load(tmp_path / "pretrain.pt", weights_only=True)["generator"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_transformer_pretrain_smoke(tmp_path, root):
    res = run_recipe(
        [
            "recipes/pretrain.py",
            "--config",
            "recipes/configs/tiny.yaml",
            f"out_dir={tmp_path}",
            "generator.kind=transformer",
            "generator.n_embd=16",
            "generator.n_head=2",
            "generator.n_layer=1",
        ],
        root,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    s = run_recipe(
        ["recipes/sample.py", "--checkpoint", str(tmp_path / "pretrain.pt"), "--num-samples", "3"], root
    )
    assert s.returncode == 0 and s.stdout.count("\n") == 3


def test_bad_config_key_is_named(root, tmp_path):
    res = run_recipe(
        ["recipes/pretrain.py", "--config", "recipes/configs/tiny.yaml", "pretrain.epoch=3"], root
    )
    assert res.returncode != 0 and "pretrain.epoch" in res.stderr
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok line\n\xff\xfe broken\n")
    res = run_recipe(
        [
            "recipes/pretrain.py",
            "--config",
            "recipes/configs/tiny.yaml",
            f"data.train={bad}",
            f"out_dir={tmp_path}/o",
        ],
        root,
    )
    assert res.returncode != 0 and "line 2 is not valid UTF-8" in res.stderr


def test_evaluate_files(tmp_path, root):
    (tmp_path / "gen.txt").write_text("a man rides a bike\na cat on a mat\n")
    (tmp_path / "ref.txt").write_text("a man rides a horse\na cat sits on a mat\nthe dog\n")
    (tmp_path / "train.txt").write_text("a man on a bike\na dog on a mat\nthe cat\n")
    res = run_recipe(
        [
            "recipes/evaluate.py",
            "--samples",
            str(tmp_path / "gen.txt"),
            "--references",
            str(tmp_path / "ref.txt"),
            "--real",
            str(tmp_path / "train.txt"),
            "--json",
            str(tmp_path / "r.json"),
        ],
        root,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "r.json").read_text())
    from seqgan.metrics import bleu, self_bleu

    hyps = [["a", "man", "rides", "a", "bike"], ["a", "cat", "on", "a", "mat"]]
    refs = [s.split() for s in ["a man rides a horse", "a cat sits on a mat", "the dog"]]
    assert out["bleu3"] == pytest.approx(bleu(hyps, refs, 3))
    assert out["self_bleu2"] == pytest.approx(self_bleu(hyps, 2))
    assert out["protocol"]["num_references"] == 3 and "real_data" in out
    assert "real data" in res.stdout


def test_evaluate_checkpoint_with_sweep(tiny_run, tmp_path, root):
    out, _ = tiny_run
    res = run_recipe(
        [
            "recipes/evaluate.py",
            "--checkpoint",
            str(out / "pretrain.pt"),
            "--num-samples",
            "200",
            "--sweep",
            "0.8",
            "1.2",
            "--sweep-samples",
            "100",
            "--out-dir",
            str(tmp_path),
            "--json",
            str(tmp_path / "e.json"),
        ],
        root,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "e.json").read_text())
    keys = {f"bleu{n}" for n in (2, 3, 4, 5)} | {f"self_bleu{n}" for n in (2, 3, 4, 5)}
    assert keys | {"nll_test", "distinct1", "distinct2", "protocol", "real_data"} <= set(result)
    assert result["real_data"]["bleu2"] > result["bleu2"]  # one epoch of MLE is far from real captions
    assert [r["temperature"] for r in result["sweep"]] == [0.8, 1.2]
    png = tmp_path / "sweep.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_oracle_pretrain_and_evaluate(tmp_path, root):
    args = [
        "recipes/pretrain.py",
        "--config",
        "recipes/configs/tiny.yaml",
        f"out_dir={tmp_path}",
        "data.synthetic=oracle",
        "data.max_len=20",
        "data.num_train=256",
        "data.num_test=128",
        "pretrain.d_num_negatives=128",
    ]
    res = run_recipe(args, root)
    assert res.returncode == 0, res.stderr[-3000:]
    ev = run_recipe(
        [
            "recipes/evaluate.py",
            "--checkpoint",
            str(tmp_path / "pretrain.pt"),
            "--num-samples",
            "200",
            "--json",
            str(tmp_path / "e.json"),
        ],
        root,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads((tmp_path / "e.json").read_text())
    # an almost untrained generator is far from the oracle: NLL_oracle between the oracle's own level and
    # the uniform-token level (about 5.8 and 11.4 for the paper's oracle)
    assert 5.0 < result["nll_oracle"] < 12.0
    assert result["nll_test"] > 0


def test_pipeline_and_adversarial_resume(tmp_path, root):
    """run.py = pretrain -> adversarial -> evaluate; then --resume continues the adversarial stage."""
    res = run_recipe(
        [
            "recipes/run.py",
            "--config",
            "recipes/configs/tiny.yaml",
            "--eval-samples",
            "100",
            f"out_dir={tmp_path}",
        ],
        root,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["rows"]) == {"real data", "MLE", "SeqGAN"}
    assert summary["rows"]["SeqGAN"]["bleu2"] is not None and (tmp_path / "results.md").exists()
    adv = torch.load(tmp_path / "adversarial.pt", weights_only=True)
    pre = torch.load(tmp_path / "pretrain.pt", weights_only=True)
    assert adv["stage"] == "adversarial" and adv["epoch"] == 2
    assert {"generator", "discriminator", "rollout", "g_optimizer", "d_optimizer"} <= set(adv["trainer"])
    changed = [
        k
        for k in pre["generator"]["state_dict"]
        if not torch.equal(pre["generator"]["state_dict"][k], adv["generator"]["state_dict"][k])
    ]
    assert changed  # the adversarial generator is saved, not the MLE one
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert all("rollout/reward_mean" in r and "discriminator/acc_fake" in r for r in records[1:])
    assert all("eval/bleu2" in r and "eval/nll_test" in r for r in records)

    res = run_recipe(
        [
            "recipes/adversarial.py",
            "--config",
            "recipes/configs/tiny.yaml",
            f"out_dir={tmp_path}",
            "adversarial.epochs=3",
            "--resume",
        ],
        root,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (
        "resumed" in res.stdout and torch.load(tmp_path / "adversarial.pt", weights_only=True)["epoch"] == 3
    )
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]


def test_scratchgan_pipeline_from_scratch_and_resume(tmp_path, root):
    """adversarial.method=scratchgan: no MLE stage, fresh models with a per-prefix discriminator, resumable."""
    common = [
        "--config",
        "recipes/configs/tiny.yaml",
        f"out_dir={tmp_path}",
        "adversarial.method=scratchgan",
        "discriminator.kind=rnn",
        "discriminator.hidden_dim=16",
        "scratchgan.batch_size=32",
        "scratchgan.steps_per_epoch=2",
        "adversarial.eval_num_samples=50",
    ]
    res = run_recipe(["recipes/run.py", "--eval-samples", "100", *common, "adversarial.epochs=1"], root)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "training from scratch" in res.stdout and not (tmp_path / "pretrain.pt").exists()
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary["rows"]) == {"real data", "ScratchGAN"}
    adv = torch.load(tmp_path / "adversarial.pt", weights_only=True)
    assert adv["discriminator"]["spec"]["kind"] == "rnn" and adv["trainer"]["g_steps"] == 2
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert all("reward/mean" in r and "discriminator/prefix_acc_fake" in r for r in records[1:])

    res = run_recipe(["recipes/adversarial.py", *common, "adversarial.epochs=2", "--resume"], root)
    assert res.returncode == 0, res.stderr[-3000:]
    adv = torch.load(tmp_path / "adversarial.pt", weights_only=True)
    assert "resumed" in res.stdout and adv["epoch"] == 2 and adv["trainer"]["g_steps"] == 4


def test_adversarial_gumbel_and_resume(tiny_run, tmp_path, root):
    """adversarial.method=gumbel runs end to end from an MLE checkpoint, writes its metrics and resumes."""
    out, _ = tiny_run
    args = [
        "recipes/adversarial.py",
        "--config",
        "recipes/configs/tiny.yaml",
        f"out_dir={tmp_path}",
        f"adversarial.pretrain_checkpoint={out / 'pretrain.pt'}",
        "adversarial.method=gumbel",
        "adversarial.epochs=1",
        "gumbel.steps_per_epoch=2",
        "gumbel.batch_size=16",
        "gumbel.spectral_norm=true",
    ]
    res = run_recipe(args, root)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert "generator/inverse_temperature" in records[1] and "discriminator/acc_pair" in records[1]
    res = run_recipe([*args[:-4], "adversarial.epochs=2", *args[-3:], "--resume"], root)
    assert res.returncode == 0 and "resumed" in res.stdout, res.stderr[-3000:]
    adv = torch.load(tmp_path / "adversarial.pt", weights_only=True)
    assert adv["epoch"] == 2 and adv["trainer"]["g_steps"] == 4
    assert adv["discriminator"]["spec"]["spectral_norm"] is True


def test_compile_models_compiles_in_place():
    from seqgan.models.discriminator import CNNDiscriminator
    from seqgan.runtime import compile_models

    d = CNNDiscriminator(20, embed_dim=4, filter_sizes=(2,), num_filters=(3,))
    keys = list(d.state_dict())
    compile_models(False, d)
    assert d._compiled_call_impl is None
    compile_models(True, d)
    assert d._compiled_call_impl is not None  # compiled lazily on the first call
    assert isinstance(d, CNNDiscriminator) and list(d.state_dict()) == keys  # checkpoints are unchanged


@pytest.mark.slow
def test_pretrain_and_adversarial_with_compile(tmp_path, root):
    out = tmp_path / "compiled"
    common = ["--config", "recipes/configs/tiny.yaml", f"out_dir={out}", "compile=true", "pretrain.epochs=1"]
    res = run_recipe(["recipes/pretrain.py", *common, "pretrain.d_rounds=1"], root, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_recipe(["recipes/adversarial.py", *common, "adversarial.epochs=1"], root, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(out / "adversarial.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in ckpt["generator"]["state_dict"])
