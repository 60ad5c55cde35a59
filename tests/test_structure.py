"""The shape of the package: one house for transformers internals, no process-wide side effects from the
library, a licence that matches the metadata, configs that read only what a clone has, and settings of an
unselected method reported by name."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from seqgan.config import ConfigError, inactive_settings, load_config
from tests.conftest import ROOT

ALLOWED_TRANSFORMERS = {  # public API only, but in seqgan/decoding/hf.py
    "seqgan/decoding/hf.py",
    "seqgan/models/transformer.py",
    "seqgan/models/pretrained.py",
    "seqgan/data/tokenizers.py",
    "seqgan/metrics/fed.py",
    "seqgan/integrations/trl.py",
    "seqgan/metrics/lm_score.py",
}


def _imports(path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def test_transformers_internals_are_touched_in_one_module():
    users = {}
    for path in sorted((ROOT / "seqgan").rglob("*.py")):
        mods = [m for m in _imports(path) if m == "transformers" or m.startswith("transformers.")]
        if mods:
            users[str(path.relative_to(ROOT))] = mods
    assert set(users) <= ALLOWED_TRANSFORMERS, users
    internals = {f: [m for m in mods if m != "transformers"] for f, mods in users.items()}
    assert not [f for f, mods in internals.items() if mods and f != "seqgan/decoding/hf.py"], internals


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_importing_the_library_changes_no_process_state():
    code = """
import os, sys
import seqgan
assert "torch" not in sys.modules, "import seqgan loads torch"
import torch
threads = torch.get_num_threads()
import seqgan.stages, seqgan.runs, seqgan.trainers, seqgan.rollout, seqgan.sampling, seqgan.metrics
from seqgan import LSTMGenerator, CNNDiscriminator, MonteCarloRollout, sample
g = LSTMGenerator(20, 8, 8); d = CNNDiscriminator(20, 8, (2,), (4,))
MonteCarloRollout(g, update_rate=0.0)(sample(g, 4, 6).tokens, d, 2)
assert "OMP_WAIT_POLICY" not in os.environ, os.environ["OMP_WAIT_POLICY"]
assert torch.get_num_threads() == threads
print("ok")
"""
    proc = _fresh_python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_the_recipes_set_the_wait_policy_before_torch_loads():
    proc = _fresh_python(
        "import runpy, sys; sys.argv = ['sample.py', '--help']\n"
        "try:\n    runpy.run_path('recipes/sample.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    assert proc.stdout.strip().splitlines()[-1] == "PASSIVE", proc.stderr[-2000:]


def test_licence_matches_the_package_metadata():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def test_configs_read_only_files_a_clone_has_or_a_documented_prepare_step_makes():
    for path in sorted((ROOT / "recipes/configs").glob("*.yaml")):
        cfg = load_config(path)
        header = path.read_text().split("\nseed:")[0]
        files = [cfg.data.train, cfg.data.valid, cfg.data.test, cfg.conditional.train, cfg.conditional.test,
                 cfg.category.train, cfg.category.test]  # fmt: skip
        if cfg.data.synthetic:
            files = [cfg.data.oracle_path]
        for f in filter(None, files):
            assert not f.startswith(("/", "..")), f"{path.name} reads {f} outside the project"
            if not (ROOT / f).exists():
                assert "prepare_" in header, (
                    f"{path.name}: {f} is not shipped and no prepare command is named"
                )


def test_settings_of_an_unselected_method_are_named():
    cfg = load_config(None, ["gumbel.loss=hinge", "gumbel.g_lr=0.01", "scratchgan.discount=0.5"])
    assert inactive_settings(cfg) == ["gumbel.loss='hinge'", "gumbel.g_lr=0.01", "scratchgan.discount=0.5"]
    cfg = load_config(None, ["adversarial.method=gumbel", "gumbel.loss=hinge", "seqgan.num_rollouts=4"])
    assert inactive_settings(cfg) == ["seqgan.num_rollouts=4"]
    assert inactive_settings(load_config(None, ["conditional.mismatch_fraction=0.2"])) == [
        "conditional.mismatch_fraction=0.2"
    ]
    assert inactive_settings(load_config(None, ["gumbel.loss=hinge"]), stage="pretrain") == []


def test_the_adversarial_stage_prints_what_has_no_effect(tmp_path, capsys):
    from seqgan.stages import adversarial

    cfg = load_config("recipes/configs/tiny.yaml", [f"out_dir={tmp_path}", "gumbel.loss=hinge"])
    with pytest.raises(Exception):  # noqa: B017  (no pretrain.pt: the note comes first)
        adversarial(cfg)
    assert "note: gumbel.loss='hinge' has no effect with adversarial.method=seqgan" in capsys.readouterr().out


def test_moved_keys_are_refused_with_their_new_name_and_old_checkpoints_upgrade():
    from seqgan.config import config_from_saved, to_dict

    with pytest.raises(ConfigError, match="'adversarial.num_rollouts' is now 'seqgan.num_rollouts'"):
        load_config(None, ["adversarial.num_rollouts=4"])
    old = to_dict(load_config(None, []))
    old["adversarial"]["num_rollouts"] = 4
    del old["seqgan"]
    old["conditional"]["d_hidden"] = 7
    del old["discriminator"]["pair_hidden"]
    cfg = config_from_saved(old)
    assert cfg.seqgan.num_rollouts == 4 and cfg.discriminator.pair_hidden == 7


def test_a_pretrained_model_needs_its_own_tokenizer():
    with pytest.raises(ConfigError, match="needs the model's own tokenizer: set tokenizer.kind=hf"):
        load_config(None, ["generator.kind=transformer", "generator.pretrained_path=some/dir"])
