import pytest
import torch

from seqgan.config import load_config
from seqgan.data.datasets import DataError, check_text_file, encode_sentences, load_text_splits, sequence_mask
from seqgan.data.tokenizers import WordTokenizer


@pytest.fixture
def tok():
    return WordTokenizer.train(["a b c d e f"], split="whitespace")


def test_encode_layout_truncate_and_drop(tok):
    lines = ["a b", "a b c", "a b c d e f", "   "]
    x, rep = encode_sentences(lines, tok, max_len=3, overlong="truncate")
    a, b, c = tok.stoi["a"], tok.stoi["b"], tok.stoi["c"]
    assert x.tolist()[0] == [a, b, tok.eos_id]
    assert x.tolist()[1] == [a, b, c]  # exactly max_len tokens: kept without EOS
    assert x.tolist()[2] == [a, b, c]  # truncated
    assert (rep.total, rep.kept, rep.truncated, rep.dropped) == (4, 3, 1, 1)  # the blank line is dropped
    x, rep = encode_sentences(lines, tok, max_len=3, overlong="drop")
    assert x.shape == (2, 3) and rep.dropped == 2 and "dropped" in rep.summary("train")


def test_padding_and_unknown_counts(tok):
    x, rep = encode_sentences(["a zz"], tok, max_len=5)
    assert x.tolist() == [[tok.stoi["a"], tok.unk_id, tok.eos_id, tok.pad_id, tok.pad_id]]
    assert rep.unk_tokens == 1 and rep.tokens == 3


def test_only_overlong_lines_is_an_error(tok):
    with pytest.raises(DataError, match="max_len"):
        encode_sentences(["a b c d e f"], tok, max_len=3, overlong="drop")


def test_sequence_mask_uses_first_eos():
    t = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8], [2, 2, 2, 2]])
    m = sequence_mask(t, eos_id=2)
    assert m.tolist() == [[True, True, False, False], [True] * 4, [True, False, False, False]]
    assert sequence_mask(t, None).all()


def _cfg(tmp_path, **files):
    return load_config(None, [f"data.{k}={v}" for k, v in files.items()])


def test_load_local_splits_through_datasets(tmp_path):
    (tmp_path / "train.txt").write_text("one two\n\nthree four\nfive six\nseven\n")
    (tmp_path / "test.txt").write_text("x y\n")
    cfg = _cfg(tmp_path, train=tmp_path / "train.txt", test=tmp_path / "test.txt", valid_fraction=0.25)
    splits = load_text_splits(cfg.data, seed=0)
    assert len(splits["train"]) == 3 and len(splits["valid"]) == 1 and splits["test"] == ["x y"]
    assert sorted(splits["train"] + splits["valid"]) == ["five six", "one two", "seven", "three four"]
    assert load_text_splits(cfg.data, seed=0) == splits  # seeded


def test_missing_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="not found: .*nope.txt"):
        check_text_file(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="empty.txt.*empty"):
        check_text_file(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes(b"fine line\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match=r"latin.txt: line 2 is not valid UTF-8 \(byte 0xe9 at column 4\)"):
        check_text_file(tmp_path / "latin.txt")


def test_relative_paths_fall_back_to_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_text_file("data/coco/test_coco.txt").is_file()


def _corpus(tmp_path, long_line: str):
    (tmp_path / "train.txt").write_text("a man rides a bike\na dog on a bike\n" + long_line + "\n")
    (tmp_path / "test.txt").write_text("a man on a bike\n")


@pytest.mark.parametrize("overlong", ["drop", "truncate"])
def test_the_vocabulary_comes_from_what_is_kept(tmp_path, overlong):
    """A line dropped as overlong adds no word to the vocabulary; a truncated one only its kept words."""
    from seqgan.config import load_config
    from seqgan.runs import prepare_data

    _corpus(tmp_path, "k1 k2 k3 k4 k5 k6 " + " ".join(f"tail{i}" for i in range(5000)))
    cfg = load_config(None, [f"data.train={tmp_path / 'train.txt'}", f"data.test={tmp_path / 'test.txt'}",
                             "data.max_len=6", f"data.overlong={overlong}"])  # fmt: skip
    tok = prepare_data(cfg).tokenizer
    words = set(tok.itos)
    assert "tail4999" not in words and "tail0" not in words
    assert ("k6" in words) == (overlong == "truncate")
    assert tok.vocab_size == 4 + len({"a", "man", "rides", "bike", "dog", "on"}) + 6 * (
        overlong == "truncate"
    )


def test_the_conditional_vocabulary_comes_from_what_is_kept(tmp_path):
    from seqgan.config import load_config
    from seqgan.runs import prepare_data

    (tmp_path / "pairs.tsv").write_text(
        "hello there\thi\n" + " ".join(f"old{i}" for i in range(50)) + " last words\tfine thanks\n"
        "how are you\t" + " ".join(f"long{i}" for i in range(50)) + "\n"
    )
    cfg = load_config(None, [f"conditional.train={tmp_path / 'pairs.tsv'}", "generator.kind=seq2seq",
                             "conditional.context_max_len=2", "data.max_len=5", "data.overlong=drop"])  # fmt: skip
    words = set(prepare_data(cfg).tokenizer.itos)
    assert {"last", "words", "fine", "thanks", "hello", "hi"} <= words  # a context keeps its last tokens
    assert "old0" not in words and "long0" not in words and "how" not in words  # cut, or a dropped pair
