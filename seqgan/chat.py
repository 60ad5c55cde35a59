"""A conversation, not single lines: the dialogue history a chatbot answers, and prompts for instruct LMs.

* :class:`ChatHistory` keeps the last ``history_turns`` turns (both sides); :meth:`ChatHistory.context` is what
  the model reads for its next reply. The seq2seq chatbot reads the turns joined by spaces (its context keeps the
  last ``conditional.context_max_len`` tokens); an instruct LM reads them through its tokenizer's chat template
  (:func:`chat_prompt`: user and assistant turns alternating, ending with the user's, then the assistant's
  header), and its reply is what follows.
* :func:`encode_prompts` gives the prompts a causal LM answers the contexts of (context, response) pairs with
  (one user turn through the chat template, or BOS, the context's tokens, EOS when the tokenizer has no
  template), right-aligned and padded on the left (:class:`~seqgan.models.prompted.PromptedLM` reads them).
* :func:`lm_reply` samples that reply from a :class:`~seqgan.models.transformer.TransformerGenerator` with one
  cached pass over the prompt, then one token at a time (temperature, top-k, top-p; a seeded generator).
"""

from __future__ import annotations

import torch

from seqgan.decoding import filter_logits
from seqgan.decoding.samplers import draw

__all__ = ["RESET", "ChatHistory", "chat_prompt", "encode_prompts", "lm_reply"]

RESET = "/reset"
"""The input line that clears the history (recipes/chat.py)."""


class ChatHistory:
    """The last ``turns`` turns of a conversation, oldest first; turn ``-1`` is the newest.

    Args:
        turns: turns kept (1: each input line is the whole context).
    """

    def __init__(self, turns: int) -> None:
        if turns < 1:
            raise ValueError(f"history turns must be at least 1, got {turns}")
        self.turns = turns
        self.lines: list[tuple[str, str]] = []  # (role, text), role "user" or "assistant"

    def add(self, role: str, text: str) -> None:
        """Appends a turn (``role``: ``"user"`` or ``"assistant"``) and forgets what falls out of the window."""
        if role not in ("user", "assistant"):
            raise ValueError(f"role must be user or assistant, got {role!r}")
        self.lines = [*self.lines, (role, text)][-self.turns :]

    def reset(self) -> None:
        """Forgets the conversation."""
        self.lines = []

    def context(self) -> str:
        """The kept turns joined by spaces (the seq2seq chatbot's context)."""
        return " ".join(text for _, text in self.lines if text)

    def messages(self) -> list[dict[str, str]]:
        """The kept turns as chat-template messages, starting with a user turn."""
        lines = self.lines
        while lines and lines[0][0] != "user":
            lines = lines[1:]
        return [{"role": role, "content": text} for role, text in lines]


def chat_prompt(hf_tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, with the assistant's header after them.

    Raises:
        ValueError: the tokenizer has no chat template.
    """
    if not getattr(hf_tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template (an instruct model's tokenizer has one)")
    ids = _input_ids(hf_tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True))
    return [int(i) for i in ids]


def _input_ids(out):
    """The ids ``apply_chat_template`` returned (some versions return a BatchEncoding)."""
    if isinstance(out, dict) or hasattr(out, "input_ids"):
        return out["input_ids"]
    return out


def encode_prompts(tokenizer, contexts: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The prompts a causal LM answers encoded contexts after, as :class:`~seqgan.models.prompted.PromptedLM`
    reads them.

    With a chat template (an HF tokenizer that has one) the context's ids are decoded with the tokenizer itself
    and the prompt is ``apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)``
    (so a context cut to its last tokens is the text of those tokens); without one it is ``BOS, the context's
    ids, EOS``.

    Args:
        tokenizer: the tokenizer that encoded ``contexts``.
        contexts: ``(N, Tc)`` ids, ``ids EOS PAD ..``.
        batch_size: contexts per call of the chat template.
    Returns:
        ``(N, P)`` long ids, each row right-aligned and padded on the left with
        :data:`~seqgan.models.prompted.PROMPT_PAD`, ``P`` the longest prompt.
    """
    from seqgan.models.prompted import PROMPT_PAD

    eos, pad = tokenizer.eos_id, tokenizer.pad_id
    ids = []
    for row in contexts.tolist():
        cut = row.index(eos) if eos in row else len(row)
        ids.append([i for i in row[:cut] if i != pad or pad == eos])
    hf = getattr(tokenizer, "hf", None)
    if getattr(hf, "chat_template", None):
        prompts = []
        for start in range(0, len(ids), batch_size):
            chats = [
                [{"role": "user", "content": tokenizer.decode(r)}] for r in ids[start : start + batch_size]
            ]
            out = hf.apply_chat_template(chats, tokenize=True, add_generation_prompt=True)
            prompts += [[int(i) for i in p] for p in _input_ids(out)]
    else:
        prompts = [[tokenizer.bos_id, *r, eos] for r in ids]
    width = max(len(p) for p in prompts) if prompts else 1
    out = torch.full((len(prompts), width), PROMPT_PAD, dtype=torch.long)
    for i, p in enumerate(prompts):
        out[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
    return out


@torch.no_grad()
def lm_reply(
    generator,
    prompt: list[int],
    max_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: torch.Generator | None = None,
) -> list[int]:
    """The reply a causal-LM generator samples after ``prompt`` (ids, chat template applied): at most
    ``max_len`` tokens, ending at its EOS (not included).

    The prompt is read in one cached pass (:meth:`~seqgan.models.transformer.TransformerGenerator.prefix_states`)
    and the reply drawn one token at a time from ``filter_logits(logits / temperature)``.
    """
    was = generator.training
    generator.eval()
    try:
        inputs = torch.tensor([prompt], dtype=torch.long, device=generator.device)  # (1, P)
        prefix = generator.prefix_states(inputs)
        state, logits = prefix.state(len(prompt)), prefix.next_logits(len(prompt))  # (1, V)
        out: list[int] = []
        for _ in range(max_len):
            logits = logits.float()
            logits[:, generator.never_sample] = float("-inf")  # PAD, BOS: never drawn, as in sample()
            probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            token = draw(probs, rng)  # (1,)
            if generator.eos_id is not None and int(token) == generator.eos_id:
                break
            out.append(int(token))
            logits, state = generator.step(token, state)
        return out
    finally:
        generator.train(was)
