"""The conditional (chatbot) path end to end on the shipped ChatterBot pairs: pretrain, adversarial (with
--resume), evaluate, and the chat recipe answering piped input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import torch

from seqgan.runs import load_run, reply

CONFIG = "recipes/configs/chat_tiny.yaml"


def _recipe(root, name: str):
    """A recipe module loaded in-process (saves the interpreter start-up of a subprocess per stage)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", root / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _chat(root, ckpt, lines: str, *flags: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "recipes/chat.py", "--checkpoint", str(ckpt), *flags],
        cwd=root,
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    _ok(proc)
    return proc.stdout.splitlines()


def test_chat_pipeline(root, tmp_path, capsys):
    out = tmp_path / "run"
    _recipe(root, "pretrain").main(["--config", CONFIG, f"out_dir={out}"])
    pre = torch.load(out / "pretrain.pt", weights_only=True)
    assert {"config", "tokenizer", "generator", "discriminator", "optimizers", "rng", "step"} <= set(pre)
    assert (pre["generator"]["spec"]["kind"], pre["discriminator"]["spec"]["kind"]) == ("seq2seq", "pair_cnn")
    assert pre["config"]["conditional"]["train"] == "data/chat/chatterbot_train.tsv"

    adversarial = _recipe(root, "adversarial")
    adversarial.main(["--config", CONFIG, f"out_dir={out}", "adversarial.epochs=1"])
    capsys.readouterr()
    adversarial.main(["--config", CONFIG, f"out_dir={out}", "adversarial.epochs=2", "--resume"])
    assert "resumed from" in capsys.readouterr().out
    adv = torch.load(out / "adversarial.pt", weights_only=True)
    assert adv["epoch"] == 2 and adv["stage"] == "adversarial"
    assert {"rollout", "g_optimizer", "d_optimizer", "data_rng"} <= set(adv["trainer"])
    records = [json.loads(line) for line in (out / "adversarial_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert "generator/teacher_forcing_nll" in records[-1] and "discriminator/acc_mismatch" in records[-1]

    result_path = tmp_path / "eval.json"
    argv = ["--checkpoint", str(out / "adversarial.pt"), "--num-samples", "40", "--json", str(result_path)]
    _recipe(root, "evaluate").main(argv)
    result = json.loads(result_path.read_text())
    keys = (
        "bleu1",
        "bleu2",
        "distinct1",
        "distinct2",
        "generic_share",
        "avg_len",
        "nll_test",
        "adversarial_success",
    )
    assert set(keys) <= set(result)
    assert result["protocol"]["test_pairs"] == 40 and len(result["examples"]) == 5

    # the chat recipe through a pipe: one reply per line (the empty line included) until EOF
    lines = "hello\nwhat language are you written in?\n\ntell me a joke\n"
    replies = _chat(root, out / "adversarial.pt", lines, "--seed", "3")
    assert len(replies) == 4
    greedy = _chat(root, out / "pretrain.pt", "hello\nhello\n", "--greedy", "--history-turns", "1")
    assert len(greedy) == 2 and greedy[0] == greedy[1]
    # with history, the second "hello" reads the first exchange too; /reset forgets it
    kept = _chat(
        root, out / "pretrain.pt", "hello\nhello\n/reset\nhello\n", "--greedy", "--history-turns", "3"
    )
    assert kept[0] == greedy[0] and kept[2] == "(history cleared)" and kept[3] == greedy[0] and len(kept) == 4
    run = load_run(out / "pretrain.pt")
    second = reply(run.generator, run.tokenizer, [f"hello {kept[0]} hello"], 12, 12, top_k=1)[0]
    assert kept[1] == second  # the context of the second reply is the three turns joined
    # same seed, same replies (in-process, the function the recipe calls)
    run = load_run(out / "adversarial.pt")
    again = [
        reply(run.generator, run.tokenizer, [line], 12, 12, rng=torch.Generator().manual_seed(3))[0]
        for line in ["hello"]
    ]
    assert again == replies[:1]
