import pytest
import torch

from seqgan.data.tokenizers import (
    HFTokenizer,
    SentencePieceTokenizer,
    WordTokenizer,
    split_words,
    tokenizer_from_state,
)


def _roundtrip_state(tok, tmp_path):
    torch.save({"tok": tok.state_dict()}, tmp_path / "t.pt")
    return tokenizer_from_state(torch.load(tmp_path / "t.pt", weights_only=True)["tok"])


def test_word_vocabulary_is_deterministic_and_ordered():
    lines = ["b a a", "c b a", "d"]
    tok = WordTokenizer.train(lines, split="whitespace")
    assert tok.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert tok.itos[4:] == ["a", "b", "c", "d"]  # by frequency, ties alphabetical
    assert WordTokenizer.train(list(reversed(lines)), split="whitespace").itos == tok.itos
    assert WordTokenizer.train(lines, min_freq=2, split="whitespace").itos[4:] == ["a", "b"]
    assert WordTokenizer.train(lines, max_size=1, split="whitespace").itos[4:] == ["a"]


def test_word_round_trip_and_unknown(tmp_path, coco_lines):
    tok = WordTokenizer.train(coco_lines)
    text = coco_lines[0]
    ids = tok.encode(text)
    assert tok.decode(ids) == " ".join(split_words(text))
    assert tok.decode(ids + [tok.eos_id, 5, 6]) == tok.decode(ids)  # stops at EOS
    assert tok.encode("zzqx unseenword") == [tok.unk_id, tok.unk_id]
    tok2 = _roundtrip_state(tok, tmp_path)
    assert tok2.itos == tok.itos and tok2.encode(text) == ids


def test_nltk_split_offline():
    assert split_words("A man, riding.", "nltk") == ["a", "man", ",", "riding", "."]


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trip(tmp_path, coco_lines, model_type):
    tok = SentencePieceTokenizer.train(coco_lines, vocab_size=300, model_type=model_type)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 300
    text = coco_lines[1].lower()
    assert tok.decode(tok.encode(text)) == text
    tok2 = _roundtrip_state(tok, tmp_path)
    assert tok2.encode(text) == tok.encode(text)
    # same corpus, same model (the proto also records the temporary training paths, so compare the pieces)
    again = SentencePieceTokenizer.train(coco_lines, 300, model_type)
    pieces = [(tok.sp.id_to_piece(i), tok.sp.get_score(i)) for i in range(tok.vocab_size)]
    assert pieces == [(again.sp.id_to_piece(i), again.sp.get_score(i)) for i in range(again.vocab_size)]


def test_sentencepiece_too_large_vocab_is_explained(coco_lines):
    with pytest.raises(ValueError, match="sp_vocab_size"):
        SentencePieceTokenizer.train(coco_lines[:5], vocab_size=5000)


def _local_hf_tokenizer(tmp_path, lines):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(
        lines, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[BOS]", "[EOS]", "[UNK]"])
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]", unk_token="[UNK]"
    )
    fast.save_pretrained(tmp_path / "hf_tok")
    return tmp_path / "hf_tok"


def test_hf_tokenizer_from_local_dir(tmp_path, coco_lines):
    path = _local_hf_tokenizer(tmp_path, coco_lines)
    tok = HFTokenizer.from_pretrained(path)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    text = "a man riding a bike"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_id] + ids) == text
    tok2 = _roundtrip_state(tok, tmp_path)
    assert tok2.encode(text) == ids and tok2.vocab_size == tok.vocab_size


def test_hf_tokenizer_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="local"):
        HFTokenizer.from_pretrained(tmp_path / "nope")
