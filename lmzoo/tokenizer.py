"""Tokenizers: load the one the user names, or train one on the training corpus.

With no `--tokenizer_name` (and no checkpoint to take one from), a tokenizer is trained with the `tokenizers`
library, in the model family's usual kind: uncased WordPiece for BERT/DistilBERT, byte-level BPE for GPT-2 and
RoBERTa, Unigram with 100 sentinel tokens `<extra_id_0..99>` for T5. Its size is the preset's vocabulary size
unless `--vocab_size` says otherwise. It is cached by corpus fingerprint (so the next run on the same corpus
reuses it) and saved with the model.
"""

import hashlib
import json
import os

from transformers import AutoTokenizer, BertTokenizer, GPT2Tokenizer, PreTrainedTokenizerFast, RobertaTokenizer

from .cache import build_once
from .errors import UsageError
from .logs import is_terminal

T5_SENTINELS = 100
TRAIN_BATCH_DOCS = 1000

FAMILIES = {
    "bert": "wordpiece",
    "distilbert": "wordpiece",
    "electra": "wordpiece",
    "gpt2": "byte-bpe",
    "roberta": "byte-bpe",
    "t5": "unigram",
}


def tokenizer_family(model_type: str) -> str:
    if model_type not in FAMILIES:
        raise UsageError(f"no tokenizer recipe for model type '{model_type}' ({', '.join(FAMILIES)}); "
                         "give --tokenizer_name")
    return FAMILIES[model_type]


def load_tokenizer(name_or_path: str, cache_dir: str | None = None):
    """A tokenizer folder or Hub name, with one clear line when it cannot be loaded."""
    local = os.path.isdir(name_or_path)
    if not local and (name_or_path.startswith((".", "/", "~")) or os.path.exists(name_or_path)):
        raise UsageError(f"--tokenizer_name {name_or_path}: expected a tokenizer folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, cache_dir=cache_dir)
    except (OSError, ValueError, TypeError, KeyError) as err:
        tokenizer = _from_vocabulary_files(name_or_path) if local else None
        if tokenizer is not None:
            return tokenizer
        where = "folder" if local else "Hub name (is the Hub reachable?)"
        raise UsageError(f"tokenizer {name_or_path}: cannot load it as a {where}: {str(err).splitlines()[0]}") from err
    if isinstance(tokenizer, bool) or not hasattr(tokenizer, "convert_tokens_to_ids"):
        raise UsageError(f"tokenizer {name_or_path}: not a tokenizer")
    return tokenizer


def _from_vocabulary_files(folder: str):
    """Folders holding only vocabulary files (an old hub snapshot whose config.json has no model_type)."""
    if os.path.isfile(os.path.join(folder, "vocab.txt")):
        return BertTokenizer.from_pretrained(folder)
    if os.path.isfile(os.path.join(folder, "vocab.json")) and os.path.isfile(os.path.join(folder, "merges.txt")):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            has_mask = "<mask>" in json.load(f)
        return (RobertaTokenizer if has_mask else GPT2Tokenizer).from_pretrained(folder)
    return None


def _batches(dataset, text_column: str):
    for start in range(0, len(dataset), TRAIN_BATCH_DOCS):
        yield dataset[start:start + TRAIN_BATCH_DOCS][text_column]


def train_tokenizer(model_type: str, dataset, text_column: str, vocab_size: int):
    """Train the family's tokenizer on `dataset[text_column]` and wrap it as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    family = tokenizer_family(model_type)
    texts = _batches(dataset, text_column)
    show_progress = is_terminal()  # in a log file its bar is lines of cursor codes (lmzoo.logs)
    if family == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                                  show_progress=show_progress),
                                length=len(dataset))
        return BertTokenizer(vocab=tok.get_vocab(), do_lower_case=True)
    if family == "byte-bpe":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if model_type == "roberta" else ["<|endoftext|>"]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
        tok.train_from_iterator(texts, trainer, length=len(dataset))
        model = json.loads(tok.to_str())["model"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        if model_type == "roberta":
            return RobertaTokenizer(vocab=model["vocab"], merges=merges)
        return GPT2Tokenizer(vocab=model["vocab"], merges=merges)
    # Unigram for T5: pad=0, eos=1, unk=2, then the sentinels, then the learned pieces.  Sentinel ids therefore
    # do not sit at the end of the vocabulary as in Google's spiece.model: code looks them up by string.
    sentinels = [f"<extra_id_{i}>" for i in range(T5_SENTINELS)]
    specials = ["<pad>", "</s>", "<unk>"] + sentinels
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                           unk_token="<unk>", show_progress=show_progress),
                            length=len(dataset))
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=sentinels)


def trained_tokenizer(model_type: str, dataset, text_column: str, vocab_size: int, corpus_fingerprint: str,
                      cache_root: str, required: bool = False):
    """Train once per (family, size, corpus) and reuse it from `cache_root/tokenizers/`."""
    family = tokenizer_family(model_type)
    key = hashlib.sha256(json.dumps([family, model_type, vocab_size, corpus_fingerprint, 1]).encode()).hexdigest()[:16]
    folder = os.path.join(cache_root, "tokenizers", f"{model_type}-{family}-{vocab_size}-{key}")

    def build(tmp):
        train_tokenizer(model_type, dataset, text_column, vocab_size).save_pretrained(tmp)

    build_once(folder, build, f"a {family} tokenizer (up to {vocab_size} tokens) trained on the corpus",
               required=required)
    return AutoTokenizer.from_pretrained(folder)


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_fits_model(tokenizer, config, source: str) -> None:
    """A tokenizer larger than the embedding table surfaces as an IndexError inside the first step: refuse it."""
    size = len(tokenizer)
    if size > config.vocab_size:
        raise UsageError(f"tokenizer {source} has {size} tokens but the model's embedding table has "
                         f"{config.vocab_size}; use a matching tokenizer or a config with vocab_size >= {size}")
