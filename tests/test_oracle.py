"""Tests for the SeqGAN synthetic-data oracle (seqgan.metrics.oracle)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from seqgan.metrics.oracle import PARAM_NAMES, OracleLSTM, nll_oracle
from tests.conftest import SHARED

# ---------------------------------------------------------------------------- helpers


def _np_log_probs(params: dict[str, np.ndarray], tokens: np.ndarray, start_token: int = 0) -> np.ndarray:
    """Independent float64 NumPy implementation of the README's cell equations (row-vector convention)."""

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    p = {k: v.astype(np.float64) for k, v in params.items()}
    n, t_len = tokens.shape
    h = np.zeros((n, p["Ui"].shape[0]))
    c = np.zeros_like(h)
    prev = np.full(n, start_token)
    out = np.zeros((n, t_len))
    for t in range(t_len):
        x = p["embedding"][prev]
        i = sigmoid(x @ p["Wi"] + h @ p["Ui"] + p["bi"])
        f = sigmoid(x @ p["Wf"] + h @ p["Uf"] + p["bf"])
        o = sigmoid(x @ p["Wog"] + h @ p["Uog"] + p["bog"])
        c_tilde = np.tanh(x @ p["Wc"] + h @ p["Uc"] + p["bc"])
        c = f * c + i * c_tilde
        h = o * np.tanh(c)
        logits = h @ p["Wo"] + p["bo"]
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        out[:, t] = logits[np.arange(n), tokens[:, t]] - lse
        prev = tokens[:, t]
    return out


def _params_np(oracle: OracleLSTM) -> dict[str, np.ndarray]:
    return {k: getattr(oracle, k).detach().double().numpy() for k in PARAM_NAMES}


def _chi_square(observed: np.ndarray, expected: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson chi-square with cells of expected count < min_expected pooled into one cell; returns (stat, df)."""
    small = expected < min_expected
    obs = np.append(observed[~small], observed[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    return float(((obs - exp) ** 2 / exp).sum()), len(exp) - 1


def _chi_square_limit(df: int) -> float:
    # About the 1 - 1e-6 quantile (Wilson-Hilferty): a correct sampler essentially never exceeds it, a wrong
    # distribution (off-by-one token, ignored conditioning) exceeds it by orders of magnitude.
    z = 4.9
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


# ---------------------------------------------------------------------------- the paper's oracle


PAPER_ORACLE = SHARED / "data/seqgan_oracle/seqgan_oracle.npz"


@pytest.fixture(scope="module")
def paper_oracle() -> OracleLSTM:
    if not PAPER_ORACLE.is_file():
        pytest.skip("SeqGAN oracle weights (../shared/data/seqgan_oracle/seqgan_oracle.npz) not available")
    return OracleLSTM.from_npz(PAPER_ORACLE)


@pytest.fixture(scope="module")
def paper_samples(paper_oracle: OracleLSTM) -> torch.Tensor:
    return paper_oracle.sample(4000, batch_size=500, generator=torch.Generator().manual_seed(1234))


def test_paper_oracle_shapes(paper_oracle: OracleLSTM) -> None:
    assert (paper_oracle.vocab_size, paper_oracle.embed_dim, paper_oracle.hidden_dim) == (5000, 32, 32)
    assert paper_oracle.seq_len == 20 and paper_oracle.start_token == 0
    oracle, kind = OracleLSTM.load_or_random(PAPER_ORACLE)
    assert kind == "file"
    assert torch.equal(oracle.Wo, paper_oracle.Wo)
    # the library never looks for the weights by itself: no path, a random oracle
    assert OracleLSTM.load_or_random()[1] == "random"


def test_paper_oracle_own_samples_nll(paper_oracle: OracleLSTM, paper_samples: torch.Tensor) -> None:
    assert paper_samples.shape == (4000, 20) and paper_samples.dtype == torch.long
    assert int(paper_samples.min()) >= 0 and int(paper_samples.max()) < 5000
    nll = paper_oracle.nll(paper_samples)
    assert abs(nll - 5.74) < 0.15, nll
    assert nll_oracle(paper_oracle, paper_samples) == pytest.approx(nll, abs=1e-12)


def test_paper_oracle_uniform_tokens_nll(paper_oracle: OracleLSTM) -> None:
    tokens = torch.randint(0, 5000, (2000, 20), generator=torch.Generator().manual_seed(7))
    nll = paper_oracle.nll(tokens)
    assert abs(nll - 11.4) < 0.3, nll


def test_paper_oracle_first_token_frequencies(paper_oracle: OracleLSTM, paper_samples: torch.Tensor) -> None:
    """The first sampled token follows the oracle's step-1 distribution (chi-square over pooled cells)."""
    probs = paper_oracle.step_probs()[0].double().numpy()
    assert probs.shape == (5000,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    observed = np.bincount(paper_samples[:, 0].numpy(), minlength=5000).astype(np.float64)
    stat, df = _chi_square(observed, probs * len(paper_samples))
    assert df >= 20  # enough populated cells for the test to have power
    assert stat < _chi_square_limit(df), (stat, df)


def test_paper_oracle_second_token_frequencies(paper_oracle: OracleLSTM, paper_samples: torch.Tensor) -> None:
    """The second token follows sum_y1 p(y1) p(y2 | y1): the sampler feeds the sampled token back in."""
    p1 = paper_oracle.step_probs()[0].double()
    p2_given_1 = paper_oracle.step_probs(torch.arange(5000).unsqueeze(1)).double()  # (5000, 5000)
    marginal2 = (p1 @ p2_given_1).numpy()
    # The second-step marginal differs strongly from the first-step distribution, so this check has teeth.
    assert np.abs(marginal2 - p1.numpy()).sum() > 0.5
    observed = np.bincount(paper_samples[:, 1].numpy(), minlength=5000).astype(np.float64)
    stat, df = _chi_square(observed, marginal2 * len(paper_samples))
    assert df >= 20
    assert stat < _chi_square_limit(df), (stat, df)


# ---------------------------------------------------------------------------- random oracles


def test_random_oracle_deterministic_per_seed() -> None:
    a = OracleLSTM.random(3, vocab_size=100, embed_dim=8, hidden_dim=8)
    b = OracleLSTM.random(3, vocab_size=100, embed_dim=8, hidden_dim=8)
    c = OracleLSTM.random(4, vocab_size=100, embed_dim=8, hidden_dim=8)
    for name in PARAM_NAMES:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert not torch.equal(getattr(a, name), getattr(c, name)), name
        assert not getattr(a, name).requires_grad


def test_random_oracle_is_standard_normal() -> None:
    oracle = OracleLSTM.random(0)  # paper size
    assert oracle.embedding.shape == (5000, 32) and oracle.Wo.shape == (32, 5000)
    all_values = torch.cat([getattr(oracle, n).flatten() for n in PARAM_NAMES])
    assert abs(float(all_values.mean())) < 0.01
    assert abs(float(all_values.std()) - 1.0) < 0.01
    assert abs(float(oracle.bo.std()) - 1.0) < 0.05  # biases are N(0, 1) too


def test_load_or_random_fallback_and_npz_roundtrip(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        OracleLSTM.load_or_random(tmp_path / "missing.npz")
    oracle = OracleLSTM.random(5, vocab_size=30, embed_dim=4, hidden_dim=6, seq_len=7)
    oracle.save_npz(tmp_path / "o.npz")
    loaded, kind = OracleLSTM.load_or_random(tmp_path / "o.npz")
    assert kind == "file"
    assert (loaded.vocab_size, loaded.embed_dim, loaded.hidden_dim) == (30, 4, 6)
    for name in PARAM_NAMES:
        assert torch.equal(getattr(loaded, name), getattr(oracle, name))


def test_log_probs_match_numpy_reference() -> None:
    oracle = OracleLSTM.random(11, vocab_size=50, embed_dim=8, hidden_dim=6, seq_len=9, start_token=3)
    tokens = torch.randint(0, 50, (37, 9), generator=torch.Generator().manual_seed(0))
    expected = _np_log_probs(_params_np(oracle), tokens.numpy(), start_token=3)
    got32 = oracle.log_probs(tokens, batch_size=10).double().numpy()  # several batches, incl. a ragged one
    np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-5)
    got64 = oracle.double().log_probs(tokens).numpy()
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-10)
    assert oracle.nll(tokens) == pytest.approx(-expected.mean(), abs=1e-9)


def _tiny_oracle(forget_bias: float) -> OracleLSTM:
    """V=3, E=H=2, weights exact in float32. Gates i, o saturate to 1, f to 0 or 1; embedding(0)=0, (1)=e1, (2)=e2; Wc = diag(a, b)."""
    z22 = np.zeros((2, 2))
    params = {
        "embedding": np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        "Wi": z22, "Ui": z22, "bi": np.full(2, 50.0),
        "Wf": z22, "Uf": z22, "bf": np.full(2, forget_bias),
        "Wog": z22, "Uog": z22, "bog": np.full(2, 50.0),
        "Wc": np.array([[0.5, 0.0], [0.0, -1.0]]), "Uc": z22, "bc": np.zeros(2),
        "Wo": np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        "bo": np.array([0.0, 0.75, 0.0]),
    }  # fmt: skip
    return OracleLSTM(
        vocab_size=3, embed_dim=2, hidden_dim=2, seq_len=3, start_token=0, params=params
    ).double()


def _log_softmax(logits: list[float], k: int) -> float:
    return logits[k] - math.log(sum(math.exp(v) for v in logits))


def test_nll_tiny_oracle_by_hand() -> None:
    # Forget gate 0: c_t = tanh(x_t Wc), h_t = tanh(c_t), logits = (2 h1, h2 + 0.75, 0); x_0 = emb(start) = 0.
    oracle = _tiny_oracle(forget_bias=-50.0)
    tokens = torch.tensor([[1, 2, 0], [2, 2, 1]])
    t5, t1 = math.tanh(math.tanh(0.5)), math.tanh(math.tanh(-1.0))
    step0 = [0.0, 0.75, 0.0]  # h = 0: logits = bo
    after1 = [2 * t5, 0.75, 0.0]  # previous token 1 -> h = (tanh tanh 0.5, 0)
    after2 = [0.0, t1 + 0.75, 0.0]  # previous token 2 -> h = (0, tanh tanh -1)
    lp = [
        [_log_softmax(step0, 1), _log_softmax(after1, 2), _log_softmax(after2, 0)],
        [_log_softmax(step0, 2), _log_softmax(after2, 2), _log_softmax(after2, 1)],
    ]
    z0 = 2 + math.exp(0.75)
    assert lp[0][0] == pytest.approx(0.75 - math.log(z0)) and lp[1][0] == pytest.approx(-math.log(z0))
    np.testing.assert_allclose(oracle.log_probs(tokens).numpy(), np.array(lp), rtol=0, atol=1e-12)
    assert oracle.nll(tokens) == pytest.approx(-sum(map(sum, lp)) / 6, abs=1e-12)


def test_nll_tiny_oracle_memory_by_hand() -> None:
    # Forget gate 1: the cell accumulates, c_2 = tanh(x_1 Wc) + tanh(x_2 Wc).
    oracle = _tiny_oracle(forget_bias=50.0)
    tokens = torch.tensor([[1, 2, 1]])
    c1 = (math.tanh(0.5), 0.0)
    c2 = (math.tanh(0.5), math.tanh(-1.0))
    lp = [
        _log_softmax([0.0, 0.75, 0.0], 1),
        _log_softmax([2 * math.tanh(c1[0]), math.tanh(c1[1]) + 0.75, 0.0], 2),
        _log_softmax([2 * math.tanh(c2[0]), math.tanh(c2[1]) + 0.75, 0.0], 1),
    ]
    np.testing.assert_allclose(oracle.log_probs(tokens)[0].numpy(), np.array(lp), rtol=0, atol=1e-12)


def test_log_probs_rejects_bad_tokens() -> None:
    oracle = OracleLSTM.random(0, vocab_size=10, embed_dim=4, hidden_dim=4, seq_len=5)
    with pytest.raises(ValueError):
        oracle.log_probs(torch.tensor([[0, 1, 10, 2, 3]]))
    with pytest.raises(ValueError):
        oracle.log_probs(torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError):
        oracle.log_probs(torch.zeros(2, 5))


def test_sampling_reproducible_with_generator() -> None:
    oracle = OracleLSTM.random(2, vocab_size=200, embed_dim=8, hidden_dim=8, seq_len=12)
    a = oracle.sample(300, batch_size=128, generator=torch.Generator().manual_seed(9))
    b = oracle.sample(300, batch_size=128, generator=torch.Generator().manual_seed(9))
    c = oracle.sample(300, batch_size=128, generator=torch.Generator().manual_seed(10))
    assert a.shape == (300, 12) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert oracle.sample(0).shape == (0, 12)


def test_sampler_matches_exact_sequence_distribution() -> None:
    """Empirical frequencies of all 4^3 sequences match exp(sum log_probs) of the enumerated sequences."""
    oracle = OracleLSTM.random(21, vocab_size=4, embed_dim=3, hidden_dim=3, seq_len=3, start_token=2)
    all_seqs = torch.tensor(list(itertools.product(range(4), repeat=3)))
    exact = oracle.log_probs(all_seqs).double().sum(dim=1).exp().numpy()
    assert exact.sum() == pytest.approx(1.0, abs=1e-5)
    n = 20000
    samples = oracle.sample(n, batch_size=4096, generator=torch.Generator().manual_seed(0))
    codes = (samples[:, 0] * 16 + samples[:, 1] * 4 + samples[:, 2]).numpy()
    observed = np.bincount(codes, minlength=64).astype(np.float64)
    stat, df = _chi_square(observed, exact * n)
    assert df >= 10
    assert stat < _chi_square_limit(df), (stat, df)


def test_prepare_oracle_converts_the_papers_pickle_and_refuses_anything_else(tmp_path, monkeypatch) -> None:
    """``recipes/prepare_oracle.py`` reads SeqGAN's parameter pickle (a list of arrays) without running code."""
    import os
    import pickle
    import runpy

    oracle = OracleLSTM.random(3, vocab_size=30, embed_dim=4, hidden_dim=6)
    arrays = [getattr(oracle, name).detach().numpy().astype(np.float64) for name in PARAM_NAMES]
    (tmp_path / "params.pkl").write_bytes(pickle.dumps(arrays, protocol=2))
    prepare = runpy.run_path("recipes/prepare_oracle.py")
    out = prepare["main"](["--pickle", str(tmp_path / "params.pkl"), "--out", str(tmp_path / "o.npz")])
    loaded = OracleLSTM.from_npz(out)
    assert all(torch.equal(getattr(loaded, n), getattr(oracle, n)) for n in PARAM_NAMES)

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "ran"),))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps([Evil()]))
    with pytest.raises(Exception, match="posix.mkdir: not an array list, refused"):
        prepare["main"](["--pickle", str(tmp_path / "evil.pkl"), "--out", str(tmp_path / "e.npz")])
    assert not (tmp_path / "ran").exists() and not (tmp_path / "e.npz").exists()
