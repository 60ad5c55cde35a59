"""A GAN inside TRL (:mod:`seqgan.integrations.trl`): the discriminator reward's arithmetic, the online
discriminator's schedule inside a real GRPO run (its parameters change at its steps only, the policy's at
every step), TRL's logs, resume, the Hugging Face tokenizer with our ids, and the recipe end to end."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from seqgan.data.tokenizers import WordTokenizer, to_hf_tokenizer  # noqa: E402
from seqgan.integrations.trl import DiscriminatorCallback, DiscriminatorReward, ids_to_rows  # noqa: E402
from seqgan.models.discriminator import CNNDiscriminator  # noqa: E402
from seqgan.models.pair_discriminator import PairDiscriminator  # noqa: E402
from seqgan.models.transformer import TransformerGenerator  # noqa: E402
from tests.conftest import ROOT, run_recipe  # noqa: E402

MAX_LEN = 10


@pytest.fixture(scope="module")
def tok() -> WordTokenizer:
    lines = (ROOT / "data/tiny/train.txt").read_text(encoding="utf-8").splitlines()
    return WordTokenizer.train(lines, min_freq=2)


def cnn(tok) -> CNNDiscriminator:
    torch.manual_seed(0)
    return CNNDiscriminator(tok.vocab_size, 8, [2, 3], [8, 8], dropout=0.25, pad_id=tok.pad_id)


def real_rows(tok, n: int = 64) -> torch.Tensor:
    lines = (ROOT / "data/tiny/train.txt").read_text(encoding="utf-8").splitlines()[:n]
    rows = []
    for line in lines:
        ids = tok.encode(line)[: MAX_LEN - 1] + [tok.eos_id]
        rows.append(ids + [tok.pad_id] * (MAX_LEN - len(ids)))
    return torch.tensor(rows)


def test_hf_tokenizer_keeps_our_ids(tok):
    hf = to_hf_tokenizer(tok)
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id, hf.unk_token_id) == (0, 1, 2, 3)
    assert len(hf) == tok.vocab_size
    for line in (ROOT / "data/tiny/test.txt").read_text(encoding="utf-8").splitlines()[:50]:
        ids = tok.encode(line)
        assert hf(tok.decode(ids), add_special_tokens=False)["input_ids"] == ids
        assert hf.decode(ids) == tok.decode(ids)
    assert hf(f"{hf.bos_token} a", add_special_tokens=False)["input_ids"] == [1, tok.stoi["a"]]


def test_reward_is_the_discriminators_verdict(tok):
    d = cnn(tok)
    reward = DiscriminatorReward(d, MAX_LEN, tok.pad_id, "prob", buffer_size=3)
    ids = [[5, 6, 2], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [4]]  # the second is cut to MAX_LEN
    logged = []
    out = reward(["p"] * 3, ["c"] * 3, completion_ids=ids, log_metric=lambda k, v: logged.append(k))
    rows = torch.zeros(3, MAX_LEN, dtype=torch.long)
    rows[0, :3] = torch.tensor([5, 6, 2])
    rows[1] = torch.arange(7, 17)
    rows[2, 0] = 4
    assert torch.equal(ids_to_rows(ids, MAX_LEN, tok.pad_id), rows)
    d.eval()
    with torch.no_grad():
        logits = d(rows)
    assert out == pytest.approx(torch.sigmoid(logits).tolist(), abs=1e-6)
    d.train()
    reward(["p"], ["c"], completion_ids=[[5]])
    assert d.training  # scoring ran in eval mode and restored the mode it found
    reward.fake = reward.fake[:0]
    reward(["p"] * 3, ["c"] * 3, completion_ids=ids)
    assert reward.log_metric is not None
    for kind, f in (("logit", lambda z: z), ("log_prob", torch.nn.functional.logsigmoid)):
        r = DiscriminatorReward(d, MAX_LEN, tok.pad_id, kind)
        assert r(["p"] * 3, ["c"] * 3, completion_ids=ids) == pytest.approx(f(logits).tolist(), abs=1e-6)
    # the buffer keeps the most recent buffer_size completions
    reward(["p"], ["c"], completion_ids=[[9, 9, 2]])
    assert reward.fake.shape == (3, MAX_LEN)
    assert torch.equal(reward.fake, torch.cat([rows[1:], ids_to_rows([[9, 9, 2]], MAX_LEN, 0)]))
    with pytest.raises(ValueError, match="completion_ids"):
        reward(["p"], ["c"])
    with pytest.raises(ValueError, match="reward must be one of"):
        DiscriminatorReward(d, MAX_LEN, 0, "hinge")


def test_pair_reward_scores_each_completion_with_its_prompts_context(tok):
    torch.manual_seed(0)
    d = PairDiscriminator(tok.vocab_size, 8, [1, 2], [8, 8], dropout=0.0, hidden=8, pad_id=tok.pad_id)
    contexts = {"hello there": [5, 6, 2, 0], "bye": [7, 2, 0, 0]}

    def contexts_of(prompts):
        return torch.tensor([contexts[p] for p in prompts])

    reward = DiscriminatorReward(d, MAX_LEN, tok.pad_id, "logit", contexts_of=contexts_of)
    ids = [[8, 9, 2], [8, 9, 2]]
    out = reward(["hello there", "bye"], ["x", "x"], completion_ids=ids)
    with torch.no_grad():
        expected = d(contexts_of(["hello there", "bye"]), ids_to_rows(ids, MAX_LEN, 0))
    assert out == pytest.approx(expected.tolist(), abs=1e-6)
    assert out[0] != pytest.approx(out[1])  # same response, different contexts
    assert torch.equal(reward.contexts, contexts_of(["hello there", "bye"]))


class Snapshots(TrainerCallback):
    """After every step (and after the discriminator callback, which runs first): both models' parameters."""

    def __init__(self, policy, discriminator):
        self.policy, self.discriminator = policy, discriminator
        self.policy_params: list[list[torch.Tensor]] = [[p.detach().clone() for p in policy.parameters()]]
        self.disc_params: list[list[torch.Tensor]] = [
            [p.detach().clone() for p in discriminator.parameters()]
        ]

    def on_step_end(self, args, state, control, **kwargs):
        self.policy_params.append([p.detach().clone() for p in self.policy.parameters()])
        self.disc_params.append([p.detach().clone() for p in self.discriminator.parameters()])


def changed(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def grpo(tok, out, steps: int, discriminator, save_steps: int = 100, resume: bool = False, probe=None):
    torch.manual_seed(1)
    policy = TransformerGenerator.from_config(tok.vocab_size, MAX_LEN, tok.pad_id, tok.bos_id, tok.eos_id,
                                              n_layer=1, n_head=2, n_embd=16, dropout=0.0).model  # fmt: skip
    hf = to_hf_tokenizer(tok)
    reward = DiscriminatorReward(discriminator, MAX_LEN, tok.pad_id, "prob", buffer_size=64)
    callback = DiscriminatorCallback(reward, real_rows(tok), every=2, steps=1, batch_size=16, lr=1e-2, seed=0)
    snaps = Snapshots(policy, discriminator)
    args = GRPOConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=MAX_LEN, learning_rate=1e-2, beta=0.0, logging_steps=1, save_steps=save_steps,
        report_to="none", use_cpu=True, seed=0, disable_tqdm=True, lr_scheduler_type="constant",
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=policy, reward_funcs=[reward], args=args, processing_class=hf,
        train_dataset=Dataset.from_dict({"prompt": [hf.bos_token] * 64}),
        callbacks=[callback, snaps, *([probe] if probe else [])],
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer, callback, snaps


def test_the_discriminator_trains_on_its_schedule_inside_grpo(tok, tmp_path):
    d = cnn(tok)
    trainer, callback, snaps = grpo(tok, tmp_path, 4, d)
    # the policy moves at every step; the discriminator only after steps 2 and 4 (every=2)
    policy_moved = [changed(a, b) for a, b in zip(snaps.policy_params, snaps.policy_params[1:], strict=False)]
    disc_moved = [changed(a, b) for a, b in zip(snaps.disc_params, snaps.disc_params[1:], strict=False)]
    assert policy_moved == [True] * 4 and disc_moved == [False, True, False, True]
    assert [h["step"] for h in callback.history] == [2, 4] and callback.updates == 2
    assert callback.reward.fake.shape == (32, MAX_LEN)  # 4 steps x 8 completions
    logs = [r for r in trainer.state.log_history if "reward" in r]
    assert len(logs) == 4 and all("rewards/discriminator/mean" in r for r in logs)
    assert all(0.0 < r["rewards/discriminator/mean"] < 1.0 for r in logs)
    # TRL's logger reports the discriminator's metrics with the step after its update
    assert "discriminator/acc_fake" in logs[2] and "discriminator/loss" in logs[2]


def test_a_resumed_grpo_run_continues_the_discriminator(tok, tmp_path):
    d = cnn(tok)
    grpo(tok, tmp_path, 2, d, save_steps=2)
    saved = torch.load(tmp_path / "checkpoint-2" / "seqgan_discriminator.pt", weights_only=True)
    assert saved["updates"] == 1

    fresh = cnn(tok)
    torch.manual_seed(5)
    for p in fresh.parameters():
        p.data.normal_()
    loaded = []

    class Check(TrainerCallback):  # runs after the discriminator callback's on_train_begin
        def on_train_begin(self, args, state, control, **kwargs):
            loaded.append(state.global_step)
            for k, v in fresh.state_dict().items():
                assert torch.equal(v, saved["discriminator"][k])

    trainer, callback, _ = grpo(tok, tmp_path, 4, fresh, save_steps=2, resume=True, probe=Check())
    assert loaded == [2]
    assert trainer.state.global_step == 4 and callback.updates == 2
    assert [h["step"] for h in callback.history] == [2, 4]


@pytest.mark.parametrize("config", ["trl_tiny", "chat_trl_tiny"])
def test_the_recipe_runs_and_resumes(config, tmp_path):
    base = ["recipes/trl_gan.py", "--config", f"recipes/configs/{config}.yaml", f"out_dir={tmp_path}"]
    proc = run_recipe(base, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "trl_eval.json").read_text())
    key = "bleu2"
    assert key in report["before"] and key in report["after_sft"] and key in report["after"]
    assert [h["step"] for h in report["discriminator_history"]] == [0, 2, 4]  # warm-up, then every 2 steps
    assert (tmp_path / "trl_curves.png").stat().st_size > 0
    records = [json.loads(line) for line in (tmp_path / "trl_metrics.jsonl").read_text().splitlines()]
    assert {r["step"] for r in records if "rewards/discriminator/mean" in r} == {1, 2, 3, 4}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    assert (
        AutoTokenizer.from_pretrained(tmp_path / "policy").eos_token_id == 2 and policy.config.vocab_size > 4
    )
    again = run_recipe(base, cwd=ROOT, timeout=300)
    assert again.returncode == 1 and "already holds a TRL run" in again.stderr
    if config == "trl_tiny":
        more = run_recipe([*base, "trl.steps=6", "--resume"], cwd=ROOT, timeout=300)
        assert more.returncode == 0, more.stderr[-3000:]
        report = json.loads((tmp_path / "trl_eval.json").read_text())
        assert [h["step"] for h in report["discriminator_history"]] == [0, 2, 4, 6]
        assert (tmp_path / "trl" / "checkpoint-6" / "seqgan_discriminator.pt").is_file()
