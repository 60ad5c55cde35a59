"""A generator wrapping a Hugging Face ``transformers`` causal language model.

``TransformerGenerator`` adapts any ``AutoModelForCausalLM`` (by default a small GPT-2 built from a config, so no
weights are ever downloaded) to the :class:`~seqgan.models.base.Generator` contract:

* ``forward(inputs)`` is one teacher-forced pass (no attention mask: causal attention means right padding after
  EOS never affects earlier positions; the caller masks the loss).
* ``init_state`` / ``step`` decode incrementally with the model's KV cache. States are *functional*: ``step``
  never modifies the state it is given, so one state can be continued several times (Monte-Carlo rollouts).
* ``select_state`` picks / repeats batch rows of a state, and ``prefix_states`` runs ONE cached forward pass over
  a whole sequence and then hands out the state after any prefix length.

State layout (:class:`TransformerState`): ``cache`` is ``None`` before the first token, otherwise an HF
``DynamicCache`` whose layers hold keys / values of shape ``(B, H, length, D)``; ``length`` is the number of
tokens read so far (and therefore the position id of the next token); ``batch_size`` is ``B``.

Only the public ``transformers`` API is used here; cache operations, the padding-warning override and the fast
decoding path (:meth:`TransformerGenerator.fast_decoder`) live in :mod:`seqgan.decoding.hf`, which checks the
``transformers`` version (5.x) once.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from seqgan.decoding import hf
from seqgan.models.base import Generator

__all__ = ["TransformerGenerator", "TransformerState", "PrefixStates"]


@dataclass(frozen=True)
class TransformerState:
    """Decoding state of a :class:`TransformerGenerator`.

    Attributes:
        cache: ``None`` before any token was read, else an HF ``Cache`` (a ``DynamicCache``) with ``length``
            cached positions per layer (keys / values ``(batch_size, H, length, D)``). Treat it as read-only.
        length: number of tokens read so far; also the position id of the next token.
        batch_size: number of rows ``B``.
    """

    cache: hf.Cache | None
    length: int
    batch_size: int


def _plain(value: Any) -> Any:
    """Reduces a config value to str/int/float/bool/None/list/dict (anything else becomes its ``str``)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, (str, int)) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return str(value)


def _first_id(value: Any) -> int | None:
    """A config token id that may be ``None``, an int or a list of ints -> ``None`` or the first int."""
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return None if value is None else int(value)


class PrefixStates:
    """Result of :meth:`TransformerGenerator.prefix_states`: one cached pass over ``inputs`` ``(B, T)``.

    Attributes:
        logits: ``(B, T, V)`` float32 logits, identical to ``generator(inputs)``.
        inputs: the ``(B, T)`` input ids.
    """

    def __init__(self, inputs: torch.Tensor, logits: torch.Tensor, cache: hf.Cache) -> None:
        self.inputs = inputs
        self.logits = logits
        self._cache = cache

    @property
    def length(self) -> int:
        """``T``, the number of inputs read by the pass."""
        return self.inputs.shape[1]

    def state(self, t: int) -> TransformerState:
        """The state after reading ``inputs[:, :t]``, ``0 <= t <= T`` (``t = 0`` is ``init_state(B)``).

        Continuing it with ``step(inputs[:, t], state)`` reproduces ``logits[:, t]``.
        """
        batch_size, total = self.inputs.shape
        if not 0 <= t <= total:
            raise ValueError(f"prefix length must be in [0, {total}], got {t}")
        if t == 0:
            return TransformerState(cache=None, length=0, batch_size=batch_size)
        cache = hf.fork_cache(self._cache)
        hf.truncate_cache(cache, total - t)
        return TransformerState(cache=cache, length=t, batch_size=batch_size)

    def next_logits(self, t: int) -> torch.Tensor:
        """``(B, V)`` logits of the token after ``inputs[:, :t]`` (``1 <= t <= T``), i.e. ``logits[:, t - 1]``."""
        if not 1 <= t <= self.length:
            raise ValueError(f"prefix length must be in [1, {self.length}], got {t}")
        return self.logits[:, t - 1]


class TransformerGenerator(Generator):
    """A :class:`Generator` backed by a ``transformers`` causal LM.

    Args:
        model: any causal LM (``AutoModelForCausalLM``) whose vocabulary contains ``pad_id``, ``bos_id``, ``eos_id``.
        pad_id: padding id (written after EOS).
        bos_id: id fed as the first input.
        eos_id: end-of-sequence id, or ``None`` for fixed-length sequences.
    """

    def __init__(self, model: PreTrainedModel, pad_id: int, bos_id: int, eos_id: int | None) -> None:
        super().__init__()
        self.model = model
        # Inputs are right-padded after EOS and attention is causal, so padding never reaches a real position and
        # no attention mask is passed; HF's "input_ids may be padded" warning (and its per-call host sync) would
        # only mislead.
        hf.silence_padding_warning(model)
        self._fallback_noted = False  # the fast path's fallback is reported once (fast_decoder)
        self.lora: dict | None = None  # the adapters' settings (add_lora), recorded in the spec
        self.pad_id = int(pad_id)
        self.bos_id = int(bos_id)
        self.eos_id = None if eos_id is None else int(eos_id)
        out = model.get_output_embeddings()
        self.vocab_size = int(out.weight.shape[0]) if out is not None else int(model.config.vocab_size)
        for name, idx in (("pad_id", self.pad_id), ("bos_id", self.bos_id), ("eos_id", self.eos_id)):
            if idx is not None and not 0 <= idx < self.vocab_size:
                raise ValueError(f"{name}={idx} is outside the vocabulary of size {self.vocab_size}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        vocab_size: int,
        max_len: int,
        pad_id: int,
        bos_id: int,
        eos_id: int | None,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.1,
        model_type: str = "gpt2",
        attn_implementation: str = "sdpa",
        **config_overrides: Any,
    ) -> TransformerGenerator:
        """A freshly initialised small model built from a config (nothing is downloaded).

        Args:
            vocab_size: ``V``.
            max_len: longest token sequence (without BOS); the model gets ``max_len + 1`` positions.
            pad_id, bos_id, eos_id: special ids (also written into the HF config).
            n_layer, n_head, n_embd: depth, attention heads and width.
            dropout: residual / embedding / attention dropout.
            model_type: an HF model type; ``"gpt2"`` uses GPT-2 argument names, others the generic
                ``hidden_size`` / ``num_hidden_layers`` / ``num_attention_heads`` / ``max_position_embeddings``.
            attn_implementation: ``"sdpa"`` (default; runs on CPU, KV-cache parity verified) or ``"eager"``.
            **config_overrides: extra config fields.
        Returns:
            The generator, in float32.
        """
        if model_type == "gpt2":
            fields: dict[str, Any] = dict(
                n_positions=max_len + 1,
                n_layer=n_layer,
                n_head=n_head,
                n_embd=n_embd,
                resid_pdrop=dropout,
                embd_pdrop=dropout,
                attn_pdrop=dropout,
            )
        else:
            fields = dict(
                max_position_embeddings=max_len + 1,
                num_hidden_layers=n_layer,
                num_attention_heads=n_head,
                hidden_size=n_embd,
                intermediate_size=4 * n_embd,
                attention_dropout=dropout,
            )
        fields.update(vocab_size=vocab_size, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id)
        fields.update(config_overrides)
        config = AutoConfig.for_model(model_type, **fields)
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=attn_implementation, dtype=torch.float32
        )
        return cls(model, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        pad_id: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        attn_implementation: str = "sdpa",
        dtype: torch.dtype = torch.float32,
    ) -> TransformerGenerator:
        """Loads a causal LM saved with ``save_pretrained`` in the local directory ``path`` (never the Hub).

        Args:
            path: local model directory.
            pad_id: defaults to the config's ``pad_token_id``, else its ``eos_token_id``.
            bos_id: defaults to the config's ``bos_token_id``.
            eos_id: defaults to the config's ``eos_token_id`` (the first one if it is a list).
            attn_implementation: attention kernel (``"sdpa"`` or ``"eager"``).
            dtype: parameter dtype (transformers 5.x would otherwise load the checkpoint's dtype).
        Returns:
            The generator.
        Raises:
            FileNotFoundError: ``path`` is not an existing directory.
            ValueError: no pad / bos id given and none in the config.
        """
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"TransformerGenerator.from_pretrained: {path!r} is not a local model directory "
                "(models are never downloaded; save one with `save_pretrained(dir)` first)"
            )
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, attn_implementation=attn_implementation, dtype=dtype
        )
        config = model.config.get_text_config(decoder=True)
        config_eos = _first_id(getattr(config, "eos_token_id", None))
        if eos_id is None:
            eos_id = config_eos
        if bos_id is None:
            bos_id = _first_id(getattr(config, "bos_token_id", None))
        if pad_id is None:
            pad_id = _first_id(getattr(config, "pad_token_id", None))
            if pad_id is None:
                pad_id = eos_id
        if bos_id is None or pad_id is None:
            raise ValueError(
                f"{path!r}: the config has no bos/pad token id (bos={bos_id}, pad={pad_id}); pass them explicitly"
            )
        return cls(model, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)

    def add_lora(
        self, r: int, alpha: float, dropout: float = 0.0, target_modules: list[str] | None = None
    ) -> TransformerGenerator:
        """Puts LoRA adapters (Hu et al. 2021, arXiv 2106.09685) on the model's linear layers in place, through
        ``peft``: every other parameter stops training, so only the adapters train; :meth:`merged_model` folds them
        back in. The model keeps its class, base model and LM head, so the fast decoding path still applies.

        Args:
            r: rank of each adapter.
            alpha: scale numerator (the update is ``alpha / r * B @ A``).
            dropout: dropout on the adapters' input during training.
            target_modules: names of the layers to adapt (e.g. ``["q_proj", "v_proj"]``); None or empty: every
                linear layer except the LM head.
        Returns:
            ``self``.
        """
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise ImportError('LoRA adapters need the peft package: pip install -e ".[smollm2]"') from None
        if self.lora is not None:
            raise ValueError("the generator has LoRA adapters already")
        targets = list(target_modules or [])
        config = LoraConfig(
            r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets or "all-linear"
        )
        with warnings.catch_warnings():  # GPT-2's Conv1D layers: peft transposes them itself and says so
            warnings.filterwarnings("ignore", "fan_in_fan_out is set to False")
            inject_adapter_in_model(config, self.model)
        self.lora = {"r": int(r), "alpha": float(alpha), "dropout": float(dropout), "target_modules": targets}
        return self

    def merged_model(self) -> PreTrainedModel:
        """A copy of the Hugging Face model with any LoRA adapters merged into its weights and removed (the model
        itself is left as it is): what ``save_pretrained`` should write."""
        model = copy.deepcopy(self.model)
        if self.lora is None:
            return model
        from peft.tuners.lora import LoraLayer

        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, module.get_base_layer())
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def spec(self) -> dict:
        """``{"kind": "transformer", "hf_config": dict, "attn_implementation": str, "pad_id", "bos_id", "eos_id"}``
        (and ``"lora"``: :meth:`add_lora`'s arguments, when the model has adapters).

        Plain data only, so it survives ``torch.save`` + ``torch.load(weights_only=True)``.
        """
        return {
            "kind": "transformer",
            "hf_config": _plain(self.model.config.to_dict()),
            "attn_implementation": _plain(hf.attn_implementation(self.model) or "sdpa"),
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            **({"lora": dict(self.lora)} if self.lora is not None else {}),
        }

    @classmethod
    def from_spec(cls, spec: dict) -> TransformerGenerator:
        """Rebuilds the architecture described by :meth:`spec` (fresh weights; use ``load_state_dict`` after)."""
        if spec.get("kind") != "transformer":
            raise ValueError(f"not a transformer generator spec: kind={spec.get('kind')!r}")
        fields = dict(spec["hf_config"])
        model_type = fields.pop("model_type")
        fields.pop("transformers_version", None)
        dtype = fields.get("dtype")
        config = AutoConfig.for_model(model_type, **fields)
        model = AutoModelForCausalLM.from_config(
            config,
            attn_implementation=spec.get("attn_implementation") or "sdpa",
            dtype=getattr(torch, dtype)
            if isinstance(dtype, str) and hasattr(torch, dtype)
            else torch.float32,
        )
        gen = cls(model, pad_id=spec["pad_id"], bos_id=spec["bos_id"], eos_id=spec["eos_id"])
        lora = spec.get("lora")
        if lora is not None:
            gen.add_lora(lora["r"], lora["alpha"], lora.get("dropout", 0.0), lora.get("target_modules"))
        return gen

    @property
    def num_parameters(self) -> int:
        """Number of distinct parameters (tied input / output embeddings counted once)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def max_positions(self) -> int | None:
        """Most input positions the model supports (``max_len + 1`` for ``from_config``), if the config says."""
        config = self.model.config.get_text_config(decoder=True)
        for name in ("n_positions", "max_position_embeddings"):
            value = getattr(config, name, None)
            if isinstance(value, int):
                return value
        return None

    # ------------------------------------------------------------------ teacher forcing
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits.

        Args:
            inputs: ``(B, T)`` token ids whose first column is BOS (right padding allowed, no mask needed).
        Returns:
            ``(B, T, V)`` float32 logits; row t predicts the token after ``inputs[:, t]``.
        """
        self._check_positions(inputs.shape[1])
        out = self.model(input_ids=inputs, use_cache=False)
        return out.logits.float()

    def masked_logits(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits at masked positions only: the base model's hidden states through the output embedding.

        Models whose head does more than one linear map (e.g. final logit soft-capping) use the full forward.
        """
        if getattr(self.model.config, "final_logit_softcapping", None):
            return self(inputs)[mask]
        self._check_positions(inputs.shape[1])
        hidden = self.model.base_model(input_ids=inputs, use_cache=False).last_hidden_state  # (B, T, D)
        return self.model.get_output_embeddings()(hidden[mask]).float()  # (N, V)

    # ------------------------------------------------------------------ incremental decoding
    def init_state(self, batch_size: int) -> TransformerState:
        """The empty state (no cache, length 0); the next ``step`` input is BOS."""
        return TransformerState(cache=None, length=0, batch_size=batch_size)

    def step(self, tokens: torch.Tensor, state: TransformerState) -> tuple[torch.Tensor, TransformerState]:
        """Reads one token per row with the KV cache.

        Args:
            tokens: ``(B,)`` ids (BOS for the first step).
            state: the state before ``tokens``; it is left unchanged.
        Returns:
            ``(B, V)`` float32 logits of the next token and the new state (``length + 1``).
        """
        if tokens.dim() != 1 or tokens.shape[0] != state.batch_size:
            raise ValueError(f"expected tokens of shape ({state.batch_size},), got {tuple(tokens.shape)}")
        self._check_positions(state.length + 1)
        cache = None if state.cache is None else hf.fork_cache(state.cache)
        position_ids = torch.full((tokens.shape[0], 1), state.length, dtype=torch.long, device=tokens.device)
        out = self.model(
            input_ids=tokens[:, None],
            position_ids=position_ids,
            use_cache=True,
            **hf.cache_kwargs(cache),
        )
        new_state = TransformerState(
            cache=hf.output_cache(out), length=state.length + 1, batch_size=state.batch_size
        )
        return out.logits[:, -1].float(), new_state

    def select_state(self, state: TransformerState, index: torch.Tensor) -> TransformerState:
        """Picks / repeats batch rows: row ``i`` of the result is row ``index[i]`` of ``state``.

        Args:
            state: a state of batch size ``B``; left unchanged.
            index: ``(B',)`` long tensor of row indices in ``[0, B)``, e.g.
                ``torch.arange(B).repeat_interleave(R)`` for ``R`` rollouts per row.
        Returns:
            A state of batch size ``B'``.
        """
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() != 1:
            raise ValueError(f"index must be 1-D, got shape {tuple(index.shape)}")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= state.batch_size):
            raise IndexError(f"row index out of range for batch size {state.batch_size}")
        if state.cache is None:
            return TransformerState(cache=None, length=state.length, batch_size=index.numel())
        cache = hf.fork_cache(state.cache)
        hf.select_cache_rows(cache, index.to(self.device))
        return TransformerState(cache=cache, length=state.length, batch_size=index.numel())

    def prefix_states(self, inputs: torch.Tensor) -> PrefixStates:
        """One cached forward pass over ``inputs`` from which the state after any prefix can be taken.

        Args:
            inputs: ``(B, T)`` ids starting with BOS, e.g. ``[BOS, y_1 .. y_T]`` (``T <= max_positions``).
        Returns:
            A :class:`PrefixStates`: ``.logits`` ``(B, T, V)``, ``.state(t)`` the state after ``inputs[:, :t]``.
        """
        self._check_positions(inputs.shape[1])
        # Sliding-window layers would otherwise drop positions that ``PrefixStates.state(t)`` needs to crop back to.
        cache = hf.new_cache(self.model.config, record_past=True)
        out = self.model(input_ids=inputs, use_cache=True, **hf.cache_kwargs(cache))
        return PrefixStates(inputs, out.logits.float(), hf.output_cache(out))

    def fast_decoder(self, temperature: float) -> hf.SlotTransformerDecoder | None:
        """The fused decoder (key / value slots, base model, LM head fused with the draw) when the model fits it
        and it agrees with :meth:`step` on a numerical self-check; None otherwise (see
        :class:`seqgan.decoding.hf.SlotTransformerDecoder`), with a ``RuntimeWarning`` naming the reason, once
        per generator."""
        decoder, reason = hf.SlotTransformerDecoder.try_create(self, temperature)
        if reason is not None and not self._fallback_noted:
            self._fallback_noted = True
            warnings.warn(
                f"{type(self.model).__name__}: the fast decoding path does not apply ({reason}); sampling and "
                "rollouts decode through step() (same distribution, slower)",
                RuntimeWarning,
                stacklevel=2,
            )
        return decoder

    def _check_positions(self, length: int) -> None:
        limit = self.max_positions
        if limit is not None and length > limit:
            raise ValueError(f"sequence of {length} positions exceeds the model's {limit} positions")
