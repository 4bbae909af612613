"""--streaming, the stored side: the held-out splits and the first HEAD_BYTES of the training split.

A stream (lmzoo.streaming) trains on the training split as it reads it; what must exist before training starts is
read here, once, into Arrow files under the corpus cache: the head of the training text (what a tokenizer is
trained on when none is named, and where --validation_split_percentage is held out from when there is no
validation split), a Hub dataset's validation split (its head), and the --validation_file/--test_file or
--dataset_dir held-out files, read as the stored path reads them (lmzoo.corpus).
"""

import hashlib
import json
import os

from .cache import build_once, default_cache_dir
from .corpus import (_kept_splits, _load_files, _text_column_only, dataset_dir_files, hub_name, load_from_files,
                     write_text_arrow)
from .errors import require
from .readers import hub_documents
from .streaming import DocumentSource, hub_split

HEAD_BYTES = 50_000_000


def load_streaming_corpus(args, cache_dir: str | None):
    """--streaming: the held-out splits read as usual (files, or a Hub validation split's head), the training
    split only as far as the stream's head (lmzoo.streaming.stream_head)."""
    from datasets import Dataset, DatasetDict

    root = os.path.join(cache_dir or os.path.join(default_cache_dir(), "hub"), "stream")
    source = DocumentSource(args, cache_dir)
    held, held_files = DatasetDict(), held_out_files(args)
    if args.validation_file or args.test_file:
        held = _text_column_only(load_from_files(args, cache_dir, splits=("validation", "test")),
                                 source.description, args)
    elif held_files:
        held = _text_column_only(_load_files(held_files, args, cache_dir, f"--dataset_dir {args.dataset_dir}"),
                                 source.description, args)
    elif hub_has_validation(args):  # its head, written with a `text` column
        held = DatasetDict({"validation": Dataset.from_file(hub_held_out(args, cache_dir, root))})
    head = stream_head(args, source, root, hold_out="validation" not in held, required=args.require_cache)
    source = source.description
    splits = {"train": Dataset.from_file(head["train"]), **held}
    if head["validation"]:
        splits["validation"] = Dataset.from_file(head["validation"])
    raw = _kept_splits(DatasetDict(splits), source, args)
    raw.stream_head = head  # where the stream starts, and what it reads: lmzoo.data.load_tokenized
    return raw


def stream_head(args, source: DocumentSource, cache_root: str, hold_out: bool, required: bool = False) -> dict:
    """The first HEAD_BYTES of training text, built once into Arrow files: {"train": path, "validation": path or
    None (held out when `hold_out`: the corpus has no validation split), "train_start": the stream's first
    position}."""
    pct = args.validation_split_percentage if hold_out else 0
    require(not hold_out or 0 < pct < 100, f"--validation_split_percentage must be between 1 and 99, got {pct}")
    key = hashlib.sha256(json.dumps([source.fingerprint, HEAD_BYTES, pct]).encode()).hexdigest()[:16]
    folder = os.path.join(cache_root, "stream-head", key)

    def build(tmp):
        texts, positions, size = [], [None], 0
        for after, text in source.documents(every=1):
            texts.append(text)
            positions.append(after)
            size += len(text.encode("utf-8"))
            if size >= HEAD_BYTES:
                break
        require(len(texts) >= (2 if pct else 1), f"{source.description}: too few documents to hold out a "
                                                  "validation split; give --validation_file")
        held = max(1, len(texts) * pct // 100) if pct else 0
        write_texts(os.path.join(tmp, "train.arrow"), texts[held:])
        if held:
            write_texts(os.path.join(tmp, "validation.arrow"), texts[:held])
        with open(os.path.join(tmp, "head.json"), "w", encoding="utf-8") as f:
            json.dump({"documents": len(texts), "held_out": held, "train_start": positions[held]}, f)

    build_once(folder, build, f"the first {HEAD_BYTES / 1e6:.0f} MB of {source.description}", required=required)
    with open(os.path.join(folder, "head.json"), encoding="utf-8") as f:
        head = json.load(f)
    validation = os.path.join(folder, "validation.arrow")
    return {"train": os.path.join(folder, "train.arrow"), "train_start": head["train_start"],
            "validation": validation if head["held_out"] else None, "source": source}


def write_texts(path: str, texts: list) -> None:
    write_text_arrow(path, (texts[begin:begin + 10_000] for begin in range(0, len(texts), 10_000)))


def held_out_files(args) -> dict:
    """split -> files of a --dataset_dir's validation/test files (none for --train_file)."""
    if not args.dataset_dir:
        return {}
    return {split: paths for split, paths in dataset_dir_files(args.dataset_dir).items() if split != "train"}


def hub_has_validation(args) -> bool:
    if args.train_file or args.dataset_dir:
        return False
    from datasets import get_dataset_split_names

    try:
        return "validation" in get_dataset_split_names(*hub_name(args))
    except Exception:  # noqa: BLE001 - unreachable or unknown: hold out from the stream instead
        return False


def hub_held_out(args, hub_cache: str, cache_root: str):
    """A Hub dataset's validation split, its first HEAD_BYTES of text, as an Arrow file built once."""
    key = hashlib.sha256(json.dumps([args.dataset_name, args.dataset_config_name, args.text_column,
                                     HEAD_BYTES]).encode()).hexdigest()[:16]
    folder = os.path.join(cache_root, "stream-head", f"validation-{key}")

    def build(tmp):
        texts, size = [], 0
        split = hub_split(*hub_name(args), hub_cache, "validation")
        for _, text in hub_documents(split, args.text_column, every=1 << 62):
            texts.append(text)
            size += len(text.encode("utf-8"))
            if size >= HEAD_BYTES:
                break
        write_texts(os.path.join(tmp, "validation.arrow"), texts)

    build_once(folder, build, f"the validation split of {args.dataset_name}", required=args.require_cache)
    return os.path.join(folder, "validation.arrow")
