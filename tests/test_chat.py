"""The conversation a chatbot answers (history window, reset), chat-template prompts for instruct LMs and the
LM's reply (one cached pass over the prompt, then ``step``), and recipes/chat.py on a tiny instruct LM folder."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from seqgan.chat import ChatHistory, chat_prompt, lm_reply
from seqgan.data.tokenizers import HFTokenizer, WordTokenizer, to_hf_tokenizer
from seqgan.models.pretrained import export_generator
from seqgan.models.transformer import TransformerGenerator
from tests.conftest import ROOT

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} <eos> {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)
WORDS = ["<user>", "<assistant>", "hi", "there", "how", "are", "you", "fine", "thanks"]


def test_history_keeps_the_last_turns_and_resets():
    h = ChatHistory(3)
    for role, text in [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")]:
        h.add(role, text)
    assert h.context() == "c d e"
    assert h.messages() == [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
                            {"role": "user", "content": "e"}]  # fmt: skip
    h.add("assistant", "f")  # the window now starts with an assistant turn: messages start at a user turn
    assert h.context() == "d e f" and [m["content"] for m in h.messages()] == ["e", "f"]
    h.reset()
    assert h.context() == "" and h.messages() == []
    with pytest.raises(ValueError, match="at least 1"):
        ChatHistory(0)


def tiny_instruct(tmp_path):
    word = WordTokenizer(WORDS, split="whitespace")
    hf = to_hf_tokenizer(word)
    hf.chat_template = TEMPLATE
    torch.manual_seed(0)
    gen = TransformerGenerator.from_config(
        word.vocab_size, 64, word.pad_id, word.bos_id, word.eos_id, n_layer=1, n_head=2, n_embd=16, dropout=0.0,
        model_type="llama", num_key_value_heads=1,
    ).eval()  # fmt: skip
    return gen, HFTokenizer(hf), export_generator(gen, HFTokenizer(hf), tmp_path / "instruct")


def test_chat_prompt_and_lm_reply_match_the_reference_loop(tmp_path):
    gen, tok, _ = tiny_instruct(tmp_path)
    messages = [{"role": "user", "content": "hi there"}]
    ids = chat_prompt(tok.hf, messages)
    assert tok.hf.decode(ids) == "<user> hi there <eos> <assistant>"
    out = lm_reply(gen, ids, 6, temperature=0.7, rng=torch.Generator().manual_seed(1))
    # the same draws by the step-by-step reference: teacher-forced logits over prompt + reply
    g = torch.Generator().manual_seed(1)
    seq = list(ids)
    for expected in out:
        with torch.no_grad():
            logits = gen(torch.tensor([seq]))[:, -1]
        logits[:, gen.never_sample] = float("-inf")
        probs = torch.softmax(logits / 0.7, -1)
        u = torch.rand(1, 1, generator=g) * probs.cumsum(-1)[:, -1:]
        token = int(torch.searchsorted(probs.cumsum(-1), u).clamp(max=probs.shape[1] - 1))
        assert token == expected
        seq.append(token)
    with pytest.raises(ValueError, match="no chat template"):
        chat_prompt(to_hf_tokenizer(WordTokenizer(WORDS, split="whitespace")), messages)


def test_chat_recipe_answers_an_instruct_lm_folder_line_by_line(tmp_path):
    _, _, folder = tiny_instruct(tmp_path)
    proc = subprocess.run(
        [sys.executable, "recipes/chat.py", "--model", str(folder), "--max-len", "4", "--seed", "2"],
        cwd=ROOT, input="hi there\nhow are you\n/reset\nhi there\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and lines[2] == "(history cleared)"
