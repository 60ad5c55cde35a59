"""Tokenizers: word-level, SentencePiece (trained locally), and Hugging Face (loaded from a local directory).

Every tokenizer has ``pad_id``, ``bos_id``, ``eos_id``, ``unk_id``, ``vocab_size``, ``encode(text) -> ids``
(no specials added), ``decode(ids) -> text`` (stops at EOS, drops PAD/BOS), ``tokens(text) -> list[str]`` (the
units BLEU is computed over) and ``state_dict()``; :func:`tokenizer_from_state` rebuilds any of them from its
state, so a checkpoint carries its tokenizer. States hold only str/int/list/tensor values, so they load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]


def split_words(text: str, method: str = "nltk", lowercase: bool = True) -> list[str]:
    """Splits a sentence into words: ``nltk`` uses ``word_tokenize(preserve_line=True)`` (no punkt data needed),
    ``whitespace`` uses ``str.split``."""
    if lowercase:
        text = text.lower()
    if method == "whitespace":
        return text.split()
    if method == "nltk":
        from nltk.tokenize import word_tokenize

        return word_tokenize(text, preserve_line=True)
    raise ValueError(f"unknown word split method {method!r} (use 'nltk' or 'whitespace')")


class Tokenizer:
    """Interface shared by all tokenizers."""

    kind: str
    pad_id: int
    bos_id: int
    eos_id: int
    unk_id: int

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def tokens(self, text: str) -> list[str]:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> token strings, stopping at EOS and skipping PAD/BOS."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def _cut(self, ids: Iterable[int]) -> list[int]:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(i)
        return out


class WordTokenizer(Tokenizer):
    """Word-level vocabulary built from a training corpus.

    Ids 0..3 are PAD, BOS, EOS, UNK; words follow by decreasing frequency, ties broken alphabetically, so the
    vocabulary is deterministic. Decoding joins words with single spaces.
    """

    kind = "word"

    def __init__(self, words: list[str], split: str = "nltk", lowercase: bool = True):
        self.itos = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.split, self.lowercase = split, lowercase
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    @classmethod
    def train(
        cls,
        lines: Iterable[str],
        min_freq: int = 1,
        max_size: int | None = None,
        split: str = "nltk",
        lowercase: bool = True,
    ) -> WordTokenizer:
        """Counts words over ``lines``; keeps those with count >= min_freq, at most max_size of them."""
        return cls.from_words(
            (split_words(line, split, lowercase) for line in lines), min_freq, max_size, split, lowercase
        )

    @classmethod
    def from_words(
        cls,
        texts: Iterable[list[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        split: str = "nltk",
        lowercase: bool = True,
    ) -> WordTokenizer:
        """The vocabulary of already split ``texts`` (lists of words): count >= min_freq, at most max_size words,
        by decreasing count then alphabetically."""
        counts: Counter[str] = Counter()
        for words in texts:
            counts.update(words)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        return cls(words, split, lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:
        return split_words(text, self.split, self.lowercase)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in self.tokens(text)]

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in self._cut(ids)]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.decode_tokens(ids))

    def state_dict(self) -> dict:
        return {"kind": self.kind, "itos": list(self.itos), "split": self.split, "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict) -> WordTokenizer:
        tok = cls([], state["split"], state["lowercase"])
        tok.itos = list(state["itos"])
        tok.stoi = {w: i for i, w in enumerate(tok.itos)}
        return tok


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece (BPE or unigram) trained locally on the training corpus, ids 0..3 = PAD, BOS, EOS, UNK."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, lowercase: bool = True):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.lowercase = lowercase
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (
            self.sp.pad_id(),
            self.sp.bos_id(),
            self.sp.eos_id(),
            self.sp.unk_id(),
        )

    @classmethod
    def train(
        cls, lines: Iterable[str], vocab_size: int = 4000, model_type: str = "bpe", lowercase: bool = True
    ) -> SentencePieceTokenizer:
        """Trains on ``lines`` (deterministic: single thread, no sentence sampling)."""
        import sentencepiece as spm

        text = [line.lower() if lowercase else line for line in lines]
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus.txt"
            corpus.write_text("\n".join(text) + "\n", encoding="utf-8")
            prefix = str(Path(tmp) / "sp")
            try:
                spm.SentencePieceTrainer.train(
                    input=str(corpus),
                    model_prefix=prefix,
                    vocab_size=vocab_size,
                    model_type=model_type,
                    pad_id=0,
                    bos_id=1,
                    eos_id=2,
                    unk_id=3,
                    character_coverage=1.0,
                    num_threads=1,
                    input_sentence_size=0,
                    shuffle_input_sentence=False,
                    minloglevel=2,
                )
            except RuntimeError as e:
                raise ValueError(
                    f"SentencePiece training failed ({e}); with a small corpus lower tokenizer.sp_vocab_size"
                ) from e
            proto = Path(prefix + ".model").read_bytes()
        return cls(proto, lowercase)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def _prep(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def with_lowercase(self, lowercase: bool) -> SentencePieceTokenizer:
        """The same model, lowercasing its inputs or not."""
        self.lowercase = lowercase
        return self

    def tokens(self, text: str) -> list[str]:
        return self.sp.encode(self._prep(text), out_type=str)

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(self._prep(text))

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in self._cut(ids)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode(self._cut(ids))

    def state_dict(self) -> dict:
        proto = torch.frombuffer(bytearray(self.model_proto), dtype=torch.uint8).clone()
        return {"kind": self.kind, "model_proto": proto, "lowercase": self.lowercase}

    @classmethod
    def from_state(cls, state: dict) -> SentencePieceTokenizer:
        return cls(state["model_proto"].numpy().tobytes(), state["lowercase"])


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer from a local directory (``AutoTokenizer.from_pretrained(path)``).

    Missing specials fall back as GPT-2 does: BOS and PAD fall back to EOS, UNK to EOS when the model has none
    (byte-level BPE never needs it). Only fast tokenizers can be stored inside a checkpoint.
    """

    kind = "hf"

    def __init__(self, hf_tokenizer, lowercase: bool = False):
        self.hf = hf_tokenizer
        self.lowercase = lowercase
        eos = hf_tokenizer.eos_token_id
        if eos is None:
            eos = hf_tokenizer.sep_token_id
        if eos is None:
            raise ValueError("the Hugging Face tokenizer defines neither an EOS nor a SEP token")
        self.eos_id = int(eos)
        self.bos_id = int(_first_not_none(hf_tokenizer.bos_token_id, hf_tokenizer.cls_token_id, eos))
        self.pad_id = int(_first_not_none(hf_tokenizer.pad_token_id, eos))
        self.unk_id = int(_first_not_none(hf_tokenizer.unk_token_id, eos))

    @classmethod
    def from_pretrained(cls, path: str | Path, lowercase: bool = False) -> HFTokenizer:
        from transformers import AutoTokenizer

        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"tokenizer directory not found: {path} (tokenizer.hf_path must be local)"
            )
        return cls(AutoTokenizer.from_pretrained(str(path), local_files_only=True), lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def _prep(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def tokens(self, text: str) -> list[str]:
        return self.hf.convert_ids_to_tokens(self.encode(text))

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(self._prep(text), add_special_tokens=False))

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        return self.hf.convert_ids_to_tokens(self._cut(ids))

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf.decode(self._cut(ids), skip_special_tokens=True).strip()

    def state_dict(self) -> dict:
        backend = getattr(self.hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                "only fast (tokenizers-backed) Hugging Face tokenizers can be saved in a checkpoint"
            )
        specials = {k: v for k, v in self.hf.special_tokens_map.items() if isinstance(v, str)}
        return {
            "kind": self.kind,
            "json": backend.to_str(),
            "specials": specials,
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_state(cls, state: dict) -> HFTokenizer:
        from tokenizers import Tokenizer as RawTokenizer
        from transformers import PreTrainedTokenizerFast

        hf = PreTrainedTokenizerFast(
            tokenizer_object=RawTokenizer.from_str(state["json"]), **state["specials"]
        )
        return cls(hf, state["lowercase"])


class IdTokenizer(Tokenizer):
    """Identity "tokenizer" for synthetic data whose tokens are already ids ``0 .. vocab_size-1`` (the SeqGAN
    oracle): text is ids written in decimal separated by spaces. Sequences have a fixed length and no EOS; the
    start token (BOS) is an ordinary id, as in the SeqGAN paper, and PAD is never used.
    """

    kind = "ids"

    def __init__(self, vocab_size: int, start_token: int = 0):
        self._vocab_size, self.start_token = int(vocab_size), int(start_token)
        self.pad_id = self.bos_id = self.unk_id = self.start_token
        self.eos_id = None  # type: ignore[assignment]

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def tokens(self, text: str) -> list[str]:
        return text.split()

    def encode(self, text: str) -> list[int]:
        ids = [int(t) for t in text.split()]
        bad = [i for i in ids if not 0 <= i < self._vocab_size]
        if bad:
            raise ValueError(f"token id {bad[0]} outside [0, {self._vocab_size})")
        return ids

    def decode_tokens(self, ids: Iterable[int]) -> list[str]:
        return [str(int(i)) for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.decode_tokens(ids))

    def state_dict(self) -> dict:
        return {"kind": self.kind, "vocab_size": self._vocab_size, "start_token": self.start_token}

    @classmethod
    def from_state(cls, state: dict) -> IdTokenizer:
        return cls(state["vocab_size"], state["start_token"])


def _first_not_none(*values):
    for v in values:
        if v is not None:
            return v
    return None


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuilds a tokenizer from ``Tokenizer.state_dict()``."""
    kinds = {c.kind: c for c in (WordTokenizer, SentencePieceTokenizer, HFTokenizer, IdTokenizer)}
    if state.get("kind") not in kinds:
        raise ValueError(f"unknown tokenizer kind {state.get('kind')!r} in checkpoint")
    return kinds[state["kind"]].from_state(state)


def build_tokenizer(
    cfg,
    lines: list[str],
    lowercase: bool = True,
    kept: Callable[[Tokenizer], list[list[str]]] | None = None,
) -> Tokenizer:
    """Builds the tokenizer that ``cfg`` (a TokenizerConfig) describes, trained on ``lines``.

    Args:
        cfg: the ``tokenizer`` config section.
        lines: the training texts.
        lowercase: lowercase before tokenizing.
        kept: the part of the training data the run keeps, as token strings: a function of a provisional
            tokenizer (whose ``tokens`` split texts into the units that count towards ``max_len``) returning
            the kept units of every kept text. The vocabulary is then built from those only, so a line dropped
            as overlong (or the cut-off tail of a truncated one) adds nothing to it. None: all of ``lines``.
    """
    if cfg.kind == "hf":
        return HFTokenizer.from_pretrained(cfg.hf_path, lowercase)
    if cfg.kind == "word":
        if kept is None:
            return WordTokenizer.train(lines, cfg.min_freq, cfg.max_size, cfg.word_split, lowercase)
        splitter = WordTokenizer([], cfg.word_split, lowercase)  # tokens() needs no vocabulary
        return WordTokenizer.from_words(kept(splitter), cfg.min_freq, cfg.max_size, cfg.word_split, lowercase)
    if cfg.kind == "sentencepiece":
        tok = SentencePieceTokenizer.train(lines, cfg.sp_vocab_size, cfg.sp_model_type, lowercase)
        if kept is None:
            return tok
        pieces = kept(tok)
        if sum(map(len, pieces)) == sum(len(tok.tokens(line)) for line in lines):
            return tok  # nothing was cut: the first model is the one
        texts = [" ".join("".join(p).replace("\u2581", " ").split()) for p in pieces]
        return SentencePieceTokenizer.train(
            texts, cfg.sp_vocab_size, cfg.sp_model_type, lowercase=False
        ).with_lowercase(lowercase)
    raise ValueError(f"unknown tokenizer kind {cfg.kind!r}")


def to_hf_tokenizer(tokenizer: Tokenizer):
    """A Hugging Face fast tokenizer with ``tokenizer``'s ids, for libraries that take one (TRL's trainers,
    ``generate``, ``save_pretrained``).

    A :class:`WordTokenizer` becomes a word-level model over whitespace-split text with the same vocabulary and
    special tokens, so the text :meth:`WordTokenizer.decode` writes encodes back to the same ids (raw text is
    split by whitespace only: encode it with this toolkit's tokenizer and decode it first, as
    :mod:`seqgan.integrations.trl` does). An :class:`HFTokenizer` gives its own tokenizer.

    Raises:
        ValueError: another kind of tokenizer.
    """
    if isinstance(tokenizer, HFTokenizer):
        return tokenizer.hf
    if not isinstance(tokenizer, WordTokenizer):
        raise ValueError(
            f"a {tokenizer.kind} tokenizer has no Hugging Face equivalent here; use tokenizer.kind=word or hf"
        )
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(WordLevel(dict(tokenizer.stoi), unk_token=tokenizer.itos[tokenizer.unk_id]))
    raw.pre_tokenizer = WhitespaceSplit()
    specials = {
        "pad_token": tokenizer.itos[tokenizer.pad_id],
        "bos_token": tokenizer.itos[tokenizer.bos_id],
        "eos_token": tokenizer.itos[tokenizer.eos_id],
        "unk_token": tokenizer.itos[tokenizer.unk_id],
    }
    return PreTrainedTokenizerFast(tokenizer_object=raw, **specials)
