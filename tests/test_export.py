"""LoRA adapters on causal-LM generators and the export to a Hugging Face folder: only the adapters train, the
merged model computes the same logits, and plain ``transformers`` reloads the exported folder with our logits."""

from __future__ import annotations

import pytest
import torch

from seqgan.data.tokenizers import WordTokenizer
from seqgan.models.pretrained import export_generator, logit_difference
from seqgan.models.transformer import TransformerGenerator
from seqgan.sampling import sample
from tests.conftest import ROOT, run_recipe

VOCAB, MAX_LEN = 24, 10
FAMILIES = {"gpt2": {}, "llama": {"num_key_value_heads": 2}}


def tiny(family: str, seed: int = 0) -> TransformerGenerator:
    torch.manual_seed(seed)
    return TransformerGenerator.from_config(
        VOCAB, MAX_LEN, 0, 1, 2, n_layer=2, n_head=4, n_embd=32, dropout=0.0, model_type=family,
        **FAMILIES[family],
    ).eval()  # fmt: skip


def word_tokenizer() -> WordTokenizer:
    return WordTokenizer([f"w{i}" for i in range(VOCAB - 4)], split="whitespace")


def perturb_adapters(gen: TransformerGenerator, seed: int = 1) -> None:
    """LoRA's B starts at zero (the adapters change nothing): give them values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def inputs(gen: TransformerGenerator, n: int = 4, seed: int = 0) -> torch.Tensor:
    return gen.teacher_inputs(sample(gen, n, MAX_LEN, rng=torch.Generator().manual_seed(seed)).tokens)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lora_trains_only_the_adapters_and_merges_exactly(family):
    gen = tiny(family).add_lora(r=2, alpha=4.0)
    trainable = {n for n, p in gen.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    perturb_adapters(gen)
    before = {n: p.detach().clone() for n, p in gen.named_parameters()}
    opt = torch.optim.Adam([p for p in gen.parameters() if p.requires_grad], lr=1e-2)
    x = inputs(gen)
    gen.train()
    torch.nn.functional.cross_entropy(gen(x).flatten(0, 1), x.roll(-1, 1).flatten()).backward()
    opt.step()
    gen.eval()
    changed = {n for n, p in gen.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable  # every adapter moved, and nothing else
    merged = gen.merged_model()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=x).logits, gen(x), rtol=1e-5, atol=1e-5)
    assert any("lora_" in n for n, _ in gen.named_parameters())  # the generator keeps its adapters
    # the spec rebuilds the adapters: a checkpoint loads into the same keys and gives the same logits
    twin = TransformerGenerator.from_spec(gen.spec()).eval()
    twin.load_state_dict(gen.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(twin(x), gen(x), rtol=0, atol=0)
    assert gen.fast_decoder(1.0) is not None  # adapters keep the fast decoding path


@pytest.mark.parametrize("family,lora", [("gpt2", False), ("llama", True)])
def test_exported_folder_reloads_with_our_logits(tmp_path, family, lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gen = tiny(family, seed=2)
    if lora:
        gen.add_lora(r=2, alpha=4.0)
        perturb_adapters(gen)
    tok = word_tokenizer()
    out = export_generator(gen, tok, tmp_path / "hf")
    x = inputs(gen)
    assert logit_difference(gen, out, x) < 1e-5
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert (model.generation_config.pad_token_id, model.generation_config.eos_token_id) == (0, 2)
    assert not any("lora_" in n for n in model.state_dict())
    hf_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert hf_tok.encode("w3 w5", add_special_tokens=False) == tok.encode("w3 w5") == [7, 9]


def test_export_refuses_a_recurrent_generator(tmp_path):
    from seqgan.models import LSTMGenerator

    with pytest.raises(ValueError, match="only causal-LM .* not lstm"):
        export_generator(LSTMGenerator(VOCAB, 8, 8), word_tokenizer(), tmp_path / "x")


def test_pretrain_with_lora_then_export_recipe(tmp_path):
    res = run_recipe(
        [
            "recipes/pretrain.py", "--config", "recipes/configs/tiny.yaml", f"out_dir={tmp_path}",
            "generator.kind=transformer", "generator.model_type=llama", "generator.n_embd=16",
            "generator.n_head=2", "generator.n_layer=1", "generator.lora_r=2",
        ],
        ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(tmp_path / "pretrain.pt", weights_only=True)
    assert ckpt["generator"]["spec"]["lora"]["r"] == 2
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_export", ROOT / "recipes/export.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    diff = recipe.main(["--checkpoint", str(tmp_path / "pretrain.pt"), "--out", str(tmp_path / "hf")])
    assert diff < 1e-5
