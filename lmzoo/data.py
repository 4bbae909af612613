"""Raw corpora (lmzoo.corpus) -> tokenized, packed, cached blocks.

Packing: documents are tokenized in batches (multi-process `datasets.map`), each followed by a separator token,
concatenated and cut into equal blocks with numpy (no Python loop over tokens); each block gets the model's
prefix/suffix special tokens (`--packing blocks`, the Hugging Face examples' way). `--packing documents` wraps
each document in the special tokens instead and stores position ids that restart at every document, so the
collators keep attention inside documents (no padding, no cross-document attention). The result is saved to disk
once (lmzoo.cache.build_once) and memory-mapped by every later run with the same corpus, tokenizer and block
layout.
"""

import hashlib
import json
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass

import numpy as np

from .cache import build_once
from .args import DataArguments
from .corpus import corpus_fingerprint
from .cpus import available_cpus
from .diskspace import out_of_space_in, require_free_space, tokenized_build_bytes
from .errors import UsageError, require
from .records import atomic_write_json

DATA_FORMAT_VERSION = 2  # 2: ids stored as uint16/int32 in the map's own Arrow shards (1: int32, save_to_disk)
SHARDS_FILE = "shards.json"  # split -> its Arrow files, in order, relative to the cache's data/ folder


# ------------------------------------------------------------------------------------------- tokenize and pack

@dataclass(frozen=True)
class BlockLayout:
    """How documents become fixed-length blocks: `prefix + body + suffix`, documents joined by `separator_id`."""
    block_length: int
    prefix_ids: tuple = ()
    suffix_ids: tuple = ()
    separator_id: int | None = None

    @property
    def body_length(self) -> int:
        return self.block_length - len(self.prefix_ids) - len(self.suffix_ids)


def mlm_layout(tokenizer, block_length: int) -> BlockLayout:
    """[CLS] ... [SEP] for BERT, <s> ... </s> for RoBERTa; documents separated by [SEP] / </s>."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    require(end is not None, "the tokenizer has no [SEP]/</s> token to separate documents")
    return BlockLayout(block_length, (start,) if start is not None else (), (end,), end)


def causal_layout(tokenizer, block_length: int) -> BlockLayout:
    """Plain token stream with an end-of-text token after each document (GPT-2's own recipe)."""
    return BlockLayout(block_length, (), (), tokenizer.eos_token_id)


def pack_token_lists(token_lists, layout: BlockLayout) -> np.ndarray:
    """Concatenate documents (each followed by the separator) and cut into [n_blocks, block_length]; the tail that
    does not fill a block is dropped, as in the Hugging Face examples."""
    sep = [] if layout.separator_id is None else [layout.separator_id]
    pieces = [np.asarray(ids + sep, dtype=np.int64) for ids in token_lists if ids]
    if not pieces:
        return np.zeros((0, layout.block_length), dtype=np.int64)
    stream = np.concatenate(pieces)
    body = layout.body_length
    n_blocks = len(stream) // body
    blocks = stream[: n_blocks * body].reshape(n_blocks, body)
    parts = []
    if layout.prefix_ids:
        parts.append(np.broadcast_to(np.asarray(layout.prefix_ids, dtype=np.int64), (n_blocks, len(layout.prefix_ids))))
    parts.append(blocks)
    if layout.suffix_ids:
        parts.append(np.broadcast_to(np.asarray(layout.suffix_ids, dtype=np.int64), (n_blocks, len(layout.suffix_ids))))
    return np.concatenate(parts, axis=1) if len(parts) > 1 else blocks


def pack_documents(token_lists, layout: BlockLayout) -> tuple[np.ndarray, np.ndarray]:
    """Like `pack_token_lists`, but the special tokens wrap each document (MLM: [CLS] doc [SEP]; causal: doc
    + end-of-text) instead of each block, and position ids restart at every document start (and at every block
    start), so that attention can be kept inside documents. Returns (input_ids, position_ids)."""
    ending = list(layout.suffix_ids) or ([] if layout.separator_id is None else [layout.separator_id])
    docs = [np.asarray(list(layout.prefix_ids) + ids + ending, dtype=np.int64) for ids in token_lists if ids]
    length = layout.block_length
    if not docs:
        empty = np.zeros((0, length), dtype=np.int64)
        return empty, empty
    stream = np.concatenate(docs)
    starts = np.zeros(len(stream), dtype=bool)
    starts[np.cumsum([0] + [len(d) for d in docs[:-1]])] = True
    n_blocks = len(stream) // length
    blocks = stream[: n_blocks * length].reshape(n_blocks, length)
    starts = starts[: n_blocks * length].reshape(n_blocks, length)
    starts[:, 0] = True
    index = np.broadcast_to(np.arange(length), (n_blocks, length))
    last_start = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    return blocks, index - last_start


def token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """The ids of each text, without special tokens: `tokenizer(texts, add_special_tokens=False)["input_ids"]`.

    A fast tokenizer's Rust backend is called directly when it is set to neither truncate nor pad: it skips the
    offsets and the attention masks and token type ids that packing throws away (about 1.2x on WikiText)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return [encoding.ids for encoding in encode(texts, add_special_tokens=False)]


def _pack_batch(batch, tokenizer, layout: BlockLayout, packing: str = "blocks"):
    texts = [t for t in batch["text"] if t and not t.isspace()]
    token_lists = token_ids(tokenizer, texts) if texts else []
    if packing == "documents":
        input_ids, position_ids = pack_documents(token_lists, layout)
        return {"input_ids": input_ids, "position_ids": position_ids}
    return {"input_ids": pack_token_lists(token_lists, layout)}


def _line_batch(batch, tokenizer, max_length: int):
    texts = [t.strip() for t in batch["text"] if t and not t.isspace()]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=False)
    return {"input_ids": encoded["input_ids"]}


def default_num_workers(n_rows: int) -> int:
    """One process for a small corpus (forking costs more than it saves), else every core this process may use."""
    return 1 if n_rows < 20_000 else available_cpus()


def id_dtype(vocab_size: int) -> str:
    """The narrowest storage for token ids: uint16 for vocabularies up to 65,536 (BERT, RoBERTa, GPT-2, T5: half
    the disk of int32), int32 above. Readers get Python ints either way."""
    return "uint16" if vocab_size <= 1 << 16 else "int32"


def tokenized_features(vocab_size: int, block_length: int, packing: str):
    from datasets import Features, Sequence, Value

    features = {"input_ids": Sequence(Value(id_dtype(vocab_size)))}
    if packing == "documents":
        features["position_ids"] = Sequence(Value(id_dtype(block_length)))
    return Features(features)


def tokenize_corpus(raw, tokenizer, layout: BlockLayout, line_by_line: bool = False, num_workers: int | None = None,
                    cache_file_names: dict | None = None, packing: str = "blocks"):
    """Tokenize every split; packed blocks, or one truncated example per line with `line_by_line`.

    `cache_file_names` ({split: path}) puts the Arrow files somewhere of the caller's choosing instead of the
    datasets cache; several workers write one file each beside it (`<name>_0000i_of_0000n.arrow`)."""
    workers = num_workers or default_num_workers(max(len(split) for split in raw.values()))
    if workers > 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the forked workers parallelise instead
    if line_by_line:
        fn, kwargs = _line_batch, {"tokenizer": tokenizer, "max_length": layout.block_length}
    else:
        fn, kwargs = _pack_batch, {"tokenizer": tokenizer, "layout": layout, "packing": packing}
    features = tokenized_features(len(tokenizer), layout.block_length, "blocks" if line_by_line else packing)
    return raw.map(fn, fn_kwargs=kwargs, batched=True, batch_size=1000, num_proc=workers if workers > 1 else None,
                   remove_columns=["text"], desc="Tokenizing and packing", load_from_cache_file=False,
                   cache_file_names=cache_file_names, features=features)


def tokenized_cache_dir(args: DataArguments, cache_root: str, raw, tokenizer, layout: BlockLayout, kind: str) -> str:
    if args.tokenized_dir:
        return args.tokenized_dir
    from .tokenizer import tokenizer_fingerprint

    key = json.dumps([DATA_FORMAT_VERSION, kind, corpus_fingerprint(raw), tokenizer_fingerprint(tokenizer),
                      layout.block_length, list(layout.prefix_ids), list(layout.suffix_ids), layout.separator_id,
                      args.line_by_line, args.packing]
                     # a count given is honoured (it decides the blocks); the default shares one cache across machines
                     + ([args.preprocessing_num_workers] if args.preprocessing_num_workers else []))
    return os.path.join(cache_root, "tokenized", f"{kind}-{layout.block_length}-"
                        + hashlib.sha256(key.encode()).hexdigest()[:16])


def describe_split_source(args: DataArguments, split: str) -> str:
    if split == "test":
        return f"--test_file {args.test_file}"
    if split == "validation" and args.validation_file:
        return f"--validation_file {args.validation_file}"
    if split == "validation" and not args.dataset_dir and not args.dataset_name:
        return f"{args.validation_split_percentage}% of the training documents"
    return f"--train_file {args.train_file}" if args.train_file else (args.dataset_dir or args.dataset_name)


def build_summary(raw, tokenized, text_bytes: int, seconds: float, data_dir: str) -> str:
    """One line after a tokenized cache is built: what went in and came out, how fast, at what cost."""
    import pyarrow.compute as pc

    documents = sum(len(split) for split in raw.values())
    blocks = sum(len(split) for split in tokenized.values())
    tokens = sum(pc.sum(pc.list_value_length(split.data.column("input_ids"))).as_py() or 0
                 for split in tokenized.values())
    disk = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(data_dir) for name in names)
    peak_rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return (f"[lmzoo] tokenized {documents:,} documents ({text_bytes / 1e6:,.1f} MB of text) into {blocks:,} blocks, "
            f"{tokens:,} tokens, in {seconds:,.1f} s ({text_bytes / 1e6 / max(seconds, 1e-9):,.2f} MB/s); peak RSS "
            f"{peak_rss / 1024:,.0f} MiB (largest process); cache {disk / 1e6:,.1f} MB ({disk / max(text_bytes, 1):.2f}x "
            "the text)")


def load_tokenized(args: DataArguments, cache_root: str, raw, tokenizer, layout: BlockLayout, kind: str):
    """Tokenized blocks for train/validation, built once and reused; trimmed by --max_*_samples.

    The cache is the tokenizing map's own Arrow files (one per worker), kept where they were written and listed in
    data/shards.json: no second copy is made, so the build needs the tokenized size once (uint16 ids: about 0.45x
    the text) instead of twice."""
    stream_head = getattr(raw, "stream_head", None)
    if stream_head is not None:  # --streaming: only the held-out splits are stored; the training blocks stream
        from datasets import DatasetDict

        raw = DatasetDict({split: raw[split] for split in raw if split != "train"})
        kind += "-heldout"
    folder = tokenized_cache_dir(args, cache_root, raw, tokenizer, layout, kind)
    advice = "free space, or give --cache_dir on a larger disk"

    def build(tmp):
        started = time.time()
        text_bytes = sum(split.data.nbytes for split in raw.values())
        needed = tokenized_build_bytes(text_bytes, np.dtype(id_dtype(len(tokenizer))).itemsize)
        require_free_space(tmp, needed, f"the tokenized cache of {text_bytes:,} bytes of text", advice=advice)
        data_dir = os.path.join(tmp, "data")
        names = {split: os.path.join(data_dir, split, f"{split}.arrow") for split in raw}
        for name in names.values():
            os.makedirs(os.path.dirname(name))
        with out_of_space_in(folder, "the tokenized cache (the partial build was removed)", advice=advice):
            tokenized = tokenize_corpus(raw, tokenizer, layout, args.line_by_line, args.preprocessing_num_workers,
                                        names, args.packing)
        for split in tokenized:  # before anything is kept
            require(len(tokenized[split]) > 0, f"the {split} split ({describe_split_source(args, split)}) has fewer "
                                               f"tokens than one block of {layout.block_length}; use a smaller "
                                               "--max_seq_length/--block_size or more text")
        shards = {split: [os.path.relpath(f["filename"], data_dir) for f in dataset.cache_files]
                  for split, dataset in tokenized.items()}
        atomic_write_json(os.path.join(data_dir, SHARDS_FILE), shards)
        print(build_summary(raw, tokenized, text_bytes, time.time() - started, data_dir), file=sys.stderr, flush=True)

    require(args.packing in ("blocks", "documents"), f"--packing must be blocks or documents, got {args.packing}")
    build_once(folder, build, f"tokenized {kind} blocks of {layout.block_length} tokens ({args.packing} packing)",
               required=args.require_cache)
    try:
        data = read_tokenized(os.path.join(folder, "data"))
    except Exception as err:  # datasets and pyarrow raise many types for a damaged folder
        raise UsageError(f"the tokenized cache {folder} cannot be read ({type(err).__name__}); delete it to "
                         "rebuild it") from err
    for split in data:
        require(len(data[split]) > 0, f"the {split} split has fewer tokens than one block of {layout.block_length}; "
                                      "use a smaller --max_seq_length/--block_size or more text")
    if stream_head is not None:
        data["train"] = block_stream(args, stream_head, tokenizer, layout)
    else:
        logging.getLogger("lmzoo").info("tokenized blocks: %s train, %s validation, in %s",
                                        f"{len(data['train']):,}", f"{len(data['validation']):,}", folder)
    if args.max_train_samples is not None:
        data["train"] = data["train"].select(range(min(args.max_train_samples, len(data["train"]))))
    if args.max_eval_samples is not None:
        for split in ("validation", "test"):
            if split in data:
                data[split] = data[split].select(range(min(args.max_eval_samples, len(data[split]))))
    return data


def block_stream(args: DataArguments, stream_head: dict, tokenizer, layout: BlockLayout):
    """--streaming: the training blocks, packed on the fly by the very function that fills the tokenized cache."""
    from .streaming import BlockStream
    from .tokenizer import tokenizer_fingerprint

    source = stream_head["source"]
    if args.line_by_line:
        split_lines = source.format == "text"  # the map path reads plain text line by line, records whole

        def pack(texts):
            lines = [line for text in texts for line in text.split("\n")] if split_lines else texts
            return [{"input_ids": ids} for ids in _line_batch({"text": lines}, tokenizer, layout.block_length)["input_ids"]]
    else:
        def pack(texts):
            columns = _pack_batch({"text": texts}, tokenizer, layout, args.packing)
            return [dict(zip(columns, row)) for row in zip(*(c.tolist() for c in columns.values()))]

    settings = json.dumps([tokenizer_fingerprint(tokenizer), layout.block_length, list(layout.prefix_ids),
                           list(layout.suffix_ids), layout.separator_id, args.line_by_line, args.packing])
    logging.getLogger("lmzoo").info("streaming the training blocks from %s (shuffle buffer %s blocks)",
                                    source.description, f"{args.shuffle_buffer:,}")
    return BlockStream(source, pack, start=stream_head["train_start"], shuffle_buffer=args.shuffle_buffer,
                       settings=settings)  # its seed: the Trainer's (lmzoo.streaming.prepare_trainer_for_stream)


def read_tokenized(data_dir: str):
    """The DatasetDict of a tokenized cache's data/ folder, memory-mapped (a cache made before shards.json
    existed was written by save_to_disk)."""
    from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

    shards_path = os.path.join(data_dir, SHARDS_FILE)
    if not os.path.exists(shards_path):
        return load_from_disk(data_dir)
    with open(shards_path, encoding="utf-8") as f:
        shards = json.load(f)
    splits = {}
    for split, files in shards.items():
        parts = [Dataset.from_file(os.path.join(data_dir, name)) for name in files]
        splits[split] = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return DatasetDict(splits)
