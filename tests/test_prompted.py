"""A causal LM on (context, response) pairs: the context through the chat template is the prompt, the response is
what MLE, the policy gradient and the pair discriminator see; the TRL prompts of an HF tokenizer; the chatbot
stages end to end (pretrain, adversarial with --resume) with a tiny instruct Llama folder."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from seqgan.chat import chat_prompt, encode_prompts, lm_reply
from seqgan.config import ConditionalConfig, SeqGANConfig
from seqgan.data.pairs import load_pairs
from seqgan.data.tokenizers import HFTokenizer, WordTokenizer, to_hf_tokenizer
from seqgan.integrations.trl import prompt_texts
from seqgan.losses import sequence_nll
from seqgan.models import BoundGenerator, PairDiscriminator
from seqgan.models.pretrained import export_generator
from seqgan.models.prompted import PROMPT_PAD
from seqgan.models.transformer import TransformerGenerator
from seqgan.sampling import Samples, sample
from seqgan.trainers.conditional import ConditionalTrainer
from tests.test_chat import TEMPLATE, WORDS

CONTEXTS = ["hi", "how are you", "hi there how are you"]
RESPONSES = ["fine thanks", "fine", "hi there"]


def instruct_tokenizer(words=WORDS) -> HFTokenizer:
    hf = to_hf_tokenizer(WordTokenizer(words, split="whitespace"))
    hf.chat_template = TEMPLATE
    return HFTokenizer(hf)


def tiny_llama(tok, seed: int = 0) -> TransformerGenerator:
    torch.manual_seed(seed)
    return TransformerGenerator.from_config(
        tok.vocab_size, 64, tok.pad_id, tok.bos_id, tok.eos_id, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
        model_type="llama", num_key_value_heads=1,
    ).eval()  # fmt: skip


def encoded(tok, texts, width):
    rows = []
    for t in texts:
        ids = [*tok.encode(t), tok.eos_id]
        rows.append(ids + [tok.pad_id] * (width - len(ids)))
    return torch.tensor(rows)


def prompt_pairs():
    tok = instruct_tokenizer()
    contexts, responses = encoded(tok, CONTEXTS, 8), encoded(tok, RESPONSES, 4)
    return tok, contexts, responses, encode_prompts(tok, contexts)


def reference_log_probs(gen, prompt: list[int], response: list[int], banned: bool = False) -> torch.Tensor:
    """log p(response token | prompt, earlier response tokens) from one unpadded pass of the HF model (with
    ``banned``: over the sampling distribution, which never draws PAD or BOS)."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = gen.model(input_ids=ids).logits[0].float()
        if banned:
            logits[:, gen.never_sample] = float("-inf")
        logp = logits.log_softmax(-1)
    return logp[len(prompt) - 1 : -1].gather(1, torch.tensor(response)[:, None]).squeeze(1)


def real(row: torch.Tensor, pad: int, eos: int) -> list[int]:
    out = []
    for i in row.tolist():
        out.append(i)
        if i == eos:
            break
    return out


def test_prompts_are_the_chat_template_right_aligned():
    tok, contexts, _, prompts = prompt_pairs()
    for i, text in enumerate(CONTEXTS):
        expected = chat_prompt(tok.hf, [{"role": "user", "content": text}])
        row = prompts[i][prompts[i] != PROMPT_PAD].tolist()
        assert row == expected and prompts[i, -len(expected) :].tolist() == expected
        assert bool((prompts[i, : prompts.shape[1] - len(expected)] == PROMPT_PAD).all())
    assert tok.hf.decode(prompts[1][prompts[1] != PROMPT_PAD]) == "<user> how are you <eos> <assistant>"
    # without a chat template: BOS, the context's ids, EOS
    word = WordTokenizer(WORDS, split="whitespace")
    plain = encode_prompts(word, encoded(word, CONTEXTS, 8))
    assert plain[0][plain[0] != PROMPT_PAD].tolist() == [word.bos_id, *word.encode("hi"), word.eos_id]


def test_mle_counts_response_tokens_only():
    tok, _, responses, prompts = prompt_pairs()
    gen = tiny_llama(tok)
    with torch.no_grad():
        nll, count = sequence_nll(BoundGenerator(gen, prompts), responses)
    expected, n = 0.0, 0
    for p, r in zip(prompts, responses, strict=True):
        resp = real(r, tok.pad_id, tok.eos_id)
        expected -= float(reference_log_probs(gen, p[p != PROMPT_PAD].tolist(), resp).sum())
        n += len(resp)
    assert count == n == sum(len(r.split()) + 1 for r in RESPONSES)  # the response words and their EOS
    assert float(nll) == pytest.approx(expected, rel=1e-5)


def test_policy_gradient_and_kl_cover_response_tokens_only():
    tok, contexts, responses, prompts = prompt_pairs()
    gen = tiny_llama(tok).train()
    disc = PairDiscriminator(tok.vocab_size, 8, (1, 2), (4, 4), hidden=8)
    cfg = SeqGANConfig(batch_size=3, num_rollouts=2, kl_coef=0.5, kl_estimator="k3", entropy_coef=0.0)
    trainer = ConditionalTrainer(gen, disc, cfg, ConditionalConfig(), contexts, responses, max_len=4,
                                 prompts=prompts, rng=torch.Generator().manual_seed(0))  # fmt: skip
    trainer.bind(contexts, prompts)
    mask = responses != tok.pad_id
    samples = Samples(responses, torch.zeros(3, 4), mask)
    rewards = torch.tensor([[0.3, 0.9, 0.2, 0.0], [0.5, 0.1, 0.0, 0.0], [0.7, 0.4, 0.6, 0.0]])
    with torch.no_grad():  # the KL term is 0 against an identical reference: move the policy away from it
        for p in gen.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss, parts = trainer.policy.micro_loss(samples, rewards, int(mask.sum()))
    ref = trainer.policy.reference.model.lm
    pg, kl, n = 0.0, 0.0, int(mask.sum())
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        prompt, resp = p[p != PROMPT_PAD].tolist(), real(r, tok.pad_id, tok.eos_id)
        logp = reference_log_probs(gen, prompt, resp, banned=True)
        pg -= float((rewards[i, : len(resp)] * logp).sum())
        ratio = (
            reference_log_probs(ref, prompt, resp, banned=True) - logp
        )  # k3 = exp(r) - 1 - r, r = log q - log p
        kl += float((ratio.exp() - 1 - ratio).sum())
    assert float(parts["pg_loss"]) == pytest.approx(pg / n, rel=1e-4)
    assert float(parts["kl"]) == pytest.approx(kl / n, rel=1e-4, abs=1e-7)
    loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in gen.parameters())


def test_rewards_line_up_with_the_response_and_the_pair_discriminator_reads_contexts():
    tok, contexts, responses, prompts = prompt_pairs()
    gen = tiny_llama(tok)
    disc = PairDiscriminator(tok.vocab_size, 8, (1, 2), (4, 4), hidden=8).eval()
    cfg = SeqGANConfig(batch_size=3, num_rollouts=2)
    trainer = ConditionalTrainer(gen, disc, cfg, ConditionalConfig(), contexts, responses, max_len=5,
                                 prompts=prompts, rng=torch.Generator().manual_seed(0))  # fmt: skip
    trainer._index = torch.arange(3)
    samples, rewards = trainer.policy.draw()
    assert rewards.shape == samples.tokens.shape == (3, 5)
    lengths = samples.mask.sum(1)
    disc.eval()  # the rollout hands the bound discriminator back in training mode
    with torch.no_grad():
        whole = torch.sigmoid(disc(contexts, samples.tokens))
    for b in range(3):
        assert float(rewards[b, lengths[b] - 1]) == pytest.approx(float(whole[b]), abs=1e-6)
        assert bool((rewards[b, lengths[b] :] == 0).all()) and bool((rewards[b, : lengths[b]] > 0).all())


def test_sampling_continues_the_prompt_like_the_chat_reply():
    tok, _, _, prompts = prompt_pairs()
    gen = tiny_llama(tok, seed=3)
    prompt = prompts[2][prompts[2] != PROMPT_PAD].tolist()
    got = sample(
        BoundGenerator(gen, prompts[2:3]), 1, 6, temperature=0.8, rng=torch.Generator().manual_seed(5)
    )
    reply = lm_reply(gen, prompt, 6, temperature=0.8, rng=torch.Generator().manual_seed(5))
    tokens = got.tokens[0, : int(got.mask.sum())].tolist()
    assert tokens[: len(reply)] == reply and (len(tokens) == len(reply) or tokens[-1] == tok.eos_id)


def test_trl_prompts_decode_with_the_tokenizer_and_its_template():
    tok, contexts, _, _ = prompt_pairs()
    assert prompt_texts(tok, contexts) == [f"<user> {c} <eos> <assistant> " for c in CONTEXTS]
    plain = HFTokenizer(to_hf_tokenizer(WordTokenizer(WORDS, split="whitespace")))
    assert prompt_texts(plain, contexts)[1] == "how are you<eos>"


def _recipe(root, name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", root / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instruct_lm_pretrains_and_trains_adversarially_on_pairs(root, tmp_path, capsys):
    pairs = load_pairs(root / "data/chat/chatterbot_train.tsv")
    words = sorted({w for t in pairs.contexts + pairs.responses for w in t.split()})
    tok = instruct_tokenizer(["<user>", "<assistant>", *words])
    folder = export_generator(tiny_llama(tok), tok, tmp_path / "instruct")
    out = tmp_path / "run"
    args = ["--config", "recipes/configs/chat_tiny.yaml", f"out_dir={out}", "tokenizer.kind=hf",
            f"tokenizer.hf_path={folder}", "generator.kind=transformer", f"generator.pretrained_path={folder}",
            "data.lowercase=false", "conditional.max_train_pairs=200", "seqgan.kl_coef=0.1",
            "seqgan.baseline=group", "seqgan.group_size=2"]  # fmt: skip
    _recipe(root, "pretrain").main(args)
    assert "prompts of up to" in capsys.readouterr().out
    adversarial = _recipe(root, "adversarial")
    adversarial.main([*args, "adversarial.epochs=1"])
    adversarial.main([*args, "adversarial.epochs=2", "--resume"])
    assert "resumed from" in capsys.readouterr().out
    adv = torch.load(out / "adversarial.pt", weights_only=True)
    assert adv["epoch"] == 2 and adv["generator"]["spec"]["kind"] == "transformer"
    assert adv["tokenizer"]["chat_template"] == TEMPLATE
