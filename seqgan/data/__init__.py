"""Tokenizers and sentence datasets."""

from seqgan.data.datasets import (
    DataError,
    encode_sentences,
    load_text_splits,
    resolve_path,
    sequence_mask,
)
from seqgan.data.tokenizers import (
    HFTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    tokenizer_from_state,
)

__all__ = [
    "DataError",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "build_tokenizer",
    "encode_sentences",
    "load_text_splits",
    "resolve_path",
    "sequence_mask",
    "tokenizer_from_state",
]
