"""An offline, umT5-shaped tokenizer for tests and the tiny engine.

The real umT5 tokenizer (`google/umt5-xxl`) lives on the Hugging Face Hub, which these machines cannot
reach. The prompt-preparation code only relies on a few of its behaviours, so this module rebuilds them
on a small vocabulary: a SentencePiece-style Unigram model (`<pad>`=0, `</s>`=1, `<unk>`=2), sentinel
tokens `<extra_id_N>` at the end of the vocabulary in reverse order (so `<extra_id_0>` has the largest
id, as in T5/umT5), each kept as one special token, an EOS appended to every sequence, and padding with
`<pad>`. It is written as a transformers `T5Tokenizer` folder, so the same loading code path
(`AutoTokenizer.from_pretrained`) serves the tiny and the real tokenizer.

The vocabulary is learnt from the release's example prompts (English and Chinese) plus some generic
text: the `tokenizers` Unigram trainer supplies the sub-word pieces, and whole words are added with
their corpus log-frequency so that English prompts tokenise into roughly one token per word (the real
umT5 does about that; a character-level tokenizer would push the longer official prompts past 512).
Everything is sorted and rounded, so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TINY_EXTRA_IDS = 100
"""Sentinels in the tiny tokenizer (`<extra_id_0..99>`, like T5; umT5 has 300)."""

OFFICIAL_PROMPTS = Path(__file__).resolve().parents[1] / "data" / "official_prompts.jsonl"

# Generic text written for this project, so words outside the example prompts still get pieces.
GENERIC_TEXT: tuple[str, ...] = (
    "A man and a woman talk quietly at a kitchen table while rain taps on the window.",
    "The camera slowly pushes in on her face as she smiles and answers in a warm, calm voice.",
    "Wide shot of a busy street at night, neon signs, cars passing, distant music and footsteps.",
    "He turns to the left, points at the map and says the plan out loud, then the video ends.",
    "The audio has clear close dialogue, soft room tone, light wind and no background music.",
    "Two children laugh in a park on a sunny afternoon; birds sing and leaves rustle.",
    "A cartoon robot waves hello and speaks in a bright, friendly, slightly metallic voice.",
    "Medium close-up, stable framing, no cuts; the lighting is soft and natural.",
    "一位年轻女子坐在窗边，阳光洒在她的脸上，她轻声说话，背景安静。",
    "画面中没有人物对白，也没有任何旁白，只有海浪声和风声。",
    "镜头缓慢推进，人物表情自然，声音清晰，环境音轻微，整体氛围温暖。",
    "一只小猫在房间里跑来跑去，脚步声轻快，远处传来汽车的声音。",
    "两个人在咖啡馆里聊天，左边的人先说话，右边的人点头回应。",
    "0 1 2 3 4 5 6 7 8 9 , . ! ? : ; ' \" ( ) - <S> <E> ， 。 ！ ？ ： ； “ ” 、",
)


@dataclass(frozen=True)
class TinyTokenizerSpec:
    """Sizes of the tiny tokenizer; `vocab_size` counts pieces before the sentinels."""

    trainer_vocab_size: int = 800
    max_word_pieces: int = 1200
    extra_ids: int = TINY_EXTRA_IDS
    max_length: int = 512


def load_training_text(
    prompts_path: Path = OFFICIAL_PROMPTS, clean: Callable[[str], str] | None = None
) -> list[str]:
    """The English and Chinese example prompts (when the file is present) plus the generic text.

    `clean` should be the encoder's prompt cleaning, so the pieces are learnt on the text the
    tokenizer will actually see (ftfy turns full-width punctuation into ASCII, for instance).
    """
    lines: list[str] = []
    if prompts_path.is_file():
        for raw in prompts_path.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                lines.append(json.loads(raw)["prompt"])
    else:
        logger.warning("%s not found: training the tiny tokenizer on generic text only", prompts_path)
    lines += list(GENERIC_TEXT)
    return [clean(t) for t in lines] if clean else lines


def _trained_pieces(texts: list[str], vocab_size: int) -> list[tuple[str, float]]:
    """Sub-word pieces chosen by the `tokenizers` Unigram trainer (specials excluded), rescored."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
        max_piece_length=16,
    )
    tok.train_from_iterator(texts, trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    pieces = {p for p, _ in vocab if p not in ("<pad>", "</s>", "<unk>")}
    return _frequency_scores(pieces, texts)


def _marked_words(texts: list[str]) -> str:
    """The corpus as SentencePiece sees it: every word prefixed with the `▁` word marker."""
    return "".join("▁" + word for text in texts for word in text.split())


def _frequency_scores(pieces: set[str], texts: list[str]) -> list[tuple[str, float]]:
    """Score pieces by corpus log-frequency.

    The Unigram trainer's own scores for rare characters depend on hash-map order (they differ from
    run to run in the last digits), so they are replaced by counts, which are reproducible.
    """
    marked = _marked_words(texts)
    total = max(len(marked), 1)
    return [(p, math.log(max(marked.count(p), 1) / total)) for p in sorted(pieces)]


def _word_pieces(texts: list[str], limit: int) -> list[tuple[str, float]]:
    """Whole whitespace-separated words as `▁word` pieces scored by corpus log-frequency."""
    counts: Counter[str] = Counter()
    for text in texts:
        for word in text.split():
            if len(word) <= 24:
                counts["▁" + word] += 1
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [(piece, math.log(n / total)) for piece, n in ranked]


def build_vocab(texts: list[str], spec: TinyTokenizerSpec) -> list[tuple[str, float]]:
    """The full T5-layout vocabulary: specials, pieces (best first), sentinels in reverse order."""
    merged: dict[str, float] = {}
    for piece, score in _trained_pieces(texts, spec.trainer_vocab_size) + _word_pieces(texts, spec.max_word_pieces):
        if piece.startswith("<extra_id_"):
            continue
        merged[piece] = max(score, merged.get(piece, -math.inf))
    pieces = sorted(((p, round(s, 6)) for p, s in merged.items()), key=lambda kv: (-kv[1], kv[0]))
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in range(spec.extra_ids - 1, -1, -1)]
    return specials + pieces + sentinels


def write_tiny_tokenizer(
    folder: str | Path,
    spec: TinyTokenizerSpec | None = None,
    clean: Callable[[str], str] | None = None,
) -> Path:
    """Train and save the tiny umT5-like tokenizer as a transformers `T5Tokenizer` folder.

    Returns the folder. It loads with `AutoTokenizer.from_pretrained(folder)`.
    """
    from transformers import T5Tokenizer

    spec = spec or TinyTokenizerSpec()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(load_training_text(clean=clean), spec)
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=spec.extra_ids, model_max_length=spec.max_length)
    tokenizer.save_pretrained(str(folder))
    logger.info("wrote tiny umT5 tokenizer (%d tokens) to %s", len(tokenizer), folder)
    return folder
