"""A causal LM as a conditional generator: the context is a prompt, the response is what the LM writes after it.

:class:`PromptedLM` wraps a :class:`~seqgan.models.transformer.TransformerGenerator` in the
:class:`~seqgan.models.seq2seq.ConditionalGenerator` contract, so :class:`~seqgan.models.seq2seq.BoundGenerator`
(and through it sampling, Monte-Carlo rollouts, MLE and the policy gradient) treats it like the encoder-decoders.
What it reads as "contexts" are *prompts*: ``(B, P)`` ids right-aligned in their row and padded on the left with
:data:`PROMPT_PAD` (-1), built by :func:`seqgan.chat.encode_prompts` (the context through the tokenizer's chat
template). Responses keep the generators' convention (``y_1 .. y_n EOS PAD ..``, teacher inputs
``[BOS, y_1 .. y_{T-1}]``); the BOS slot stands for the prompt's last token, so the first response token is
predicted where the prompt ends, and only response tokens are ever predicted: the prompt gets no MLE loss, no
log-probability and no reward.

* ``forward(prompts, inputs)``: one pass over ``prompt + y_1 .. y_{T-1}`` with an attention mask over the left
  padding and position ids that start at each row's first real token; the logits of the ``T`` response
  positions ``(B, T, V)``.
* ``init_state(prompts)``: one cached pass over the prompt but its last token (the key / value cache of
  :mod:`seqgan.decoding.hf`); ``step`` then decodes one token at a time with that cache, feeding the prompt's
  last token in place of BOS. States are functional (``step`` never changes the state it is given), as
  :class:`~seqgan.rollout.MonteCarloRollout` needs. The fused slot decoder of :mod:`seqgan.decoding.hf` does not
  take prompts: prompted sampling and rollouts decode through this ``step``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqgan.models.seq2seq import ConditionalGenerator

__all__ = ["PROMPT_PAD", "PromptState", "PromptedLM"]

PROMPT_PAD = -1
"""Left padding of prompt rows (never a token id)."""


@dataclass(frozen=True)
class PromptState:
    """Decoding state of a :class:`PromptedLM`.

    Attributes:
        cache: HF key / value cache of the ``length`` positions read so far (None when none), read-only.
        length: positions read (left padding included).
        mask: ``(B, length)`` True at real positions (False at left padding).
        positions: ``(B,)`` position id of each row's next token.
        first: ``(B,)`` the prompt's last token, fed by the next ``step`` in place of its input (BOS); None
            once it was read.
    """

    cache: object
    length: int
    mask: torch.Tensor
    positions: torch.Tensor
    first: torch.Tensor | None


class PromptedLM(ConditionalGenerator):
    """A causal-LM generator answering prompts (see the module docstring).

    Args:
        lm: a :class:`~seqgan.models.transformer.TransformerGenerator` (shared, not copied).
    """

    def __init__(self, lm) -> None:
        super().__init__()
        self.lm = lm
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = (
            lm.vocab_size,
            lm.pad_id,
            lm.bos_id,
            lm.eos_id,
        )

    def _prompt(self, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, P)`` prompts -> ids (padding replaced by ``pad_id``), ``(B, P)`` real mask, position ids."""
        if prompts.dim() != 2 or prompts.shape[1] == 0:
            raise ValueError(f"prompts must be (B, P) with P >= 1, got shape {tuple(prompts.shape)}")
        mask = prompts != PROMPT_PAD
        if not bool(mask[:, -1].all()):
            raise ValueError("prompt rows must end with a real token (right-aligned, padded on the left)")
        start = int(mask.any(dim=0).long().argmax())  # columns that are padding in every row are dropped
        prompts, mask = prompts[:, start:], mask[:, start:]
        ids = torch.where(mask, prompts, self.pad_id)
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
        return ids, mask, positions

    def _joined(self, prompts: torch.Tensor, inputs: torch.Tensor):
        """``prompt + inputs[:, 1:]`` with its attention mask and position ids; the prompt's last position
        reads where the BOS of ``inputs`` stands."""
        ids, mask, positions = self._prompt(prompts)
        tail = inputs[:, 1:]
        t = tail.shape[1]
        steps = positions[:, -1:] + 1 + torch.arange(t, device=inputs.device)  # (B, T - 1)
        seq = torch.cat([ids, tail], dim=1)
        attention = torch.cat([mask, torch.ones_like(tail, dtype=torch.bool)], dim=1).long()
        self.lm._check_positions(int(positions[:, -1].max()) + 1 + t)
        return seq, attention, torch.cat([positions, steps], dim=1), ids.shape[1]

    def forward(self, prompts: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` prompts and ``(B, T)`` teacher inputs ``[BOS, y_1 .. y_{T-1}]`` -> ``(B, T, V)`` float32
        logits of ``y_1 .. y_T``."""
        seq, attention, positions, p = self._joined(prompts, inputs)
        out = self.lm.model(input_ids=seq, attention_mask=attention, position_ids=positions, use_cache=False)
        return out.logits[:, p - 1 :].float()

    def masked_logits(self, prompts: torch.Tensor, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``forward(prompts, inputs)[mask]`` without projecting the other positions onto the vocabulary."""
        model = self.lm.model
        if getattr(model.config, "final_logit_softcapping", None):
            return self(prompts, inputs)[mask]
        seq, attention, positions, p = self._joined(prompts, inputs)
        hidden = model.base_model(
            input_ids=seq, attention_mask=attention, position_ids=positions, use_cache=False
        ).last_hidden_state  # (B, P + T - 1, D)
        return model.get_output_embeddings()(hidden[:, p - 1 :][mask]).float()  # (N, V)

    def init_state(self, prompts: torch.Tensor) -> PromptState:
        """The state after one cached pass over each prompt but its last token (read by the first ``step``)."""
        from seqgan.decoding import hf

        ids, mask, positions = self._prompt(prompts)
        head = ids.shape[1] - 1
        cache = None
        if head:
            cache = hf.new_cache(self.lm.model.config)
            out = self.lm.model(
                input_ids=ids[:, :head],
                attention_mask=mask[:, :head].long(),
                position_ids=positions[:, :head],
                use_cache=True,
                **hf.cache_kwargs(cache),
            )
            cache = hf.output_cache(out)
        return PromptState(cache, head, mask[:, :head], positions[:, -1], ids[:, -1])

    def step(self, tokens: torch.Tensor, state: PromptState) -> tuple[torch.Tensor, PromptState]:
        """Reads one token per row (the prompt's last token at the first step); the state is left unchanged.

        Returns:
            ``(B, V)`` float32 logits of the next token and the new state.
        """
        from seqgan.decoding import hf

        if state.first is not None:
            tokens = state.first
        b = tokens.shape[0]
        self.lm._check_positions(int(state.positions.max()) + 1)
        mask = torch.cat([state.mask, state.mask.new_ones(b, 1)], dim=1)
        cache = None if state.cache is None else hf.fork_cache(state.cache)
        out = self.lm.model(
            input_ids=tokens[:, None],
            attention_mask=mask.long(),
            position_ids=state.positions[:, None],
            use_cache=True,
            **hf.cache_kwargs(cache),
        )
        new = PromptState(hf.output_cache(out), state.length + 1, mask, state.positions + 1, None)
        return out.logits[:, -1].float(), new

    def select_state(self, state: PromptState, index: torch.Tensor) -> PromptState:
        """Rows ``index`` ``(N,)`` of ``state`` (repeats allowed); ``state`` is left unchanged."""
        from seqgan.decoding import hf

        index = torch.as_tensor(index, dtype=torch.long, device=state.mask.device)
        cache = None
        if state.cache is not None:
            cache = hf.fork_cache(state.cache)
            hf.select_cache_rows(cache, index)
        first = None if state.first is None else state.first[index]
        return PromptState(cache, state.length, state.mask[index], state.positions[index], first)

    def spec(self) -> dict:
        return self.lm.spec()

    @property
    def device(self) -> torch.device:
        return self.lm.device
