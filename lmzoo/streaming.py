"""--streaming: the training split read, tokenized and packed on the fly, never stored; resumed exactly.

The stream reads its documents in order (lmzoo.readers), tokenizes and packs them 1,000 at a time as the
tokenized cache does (the same function, so the same blocks), optionally through a shuffle buffer of
`--shuffle_buffer` blocks, and starts another pass over the corpus when it ends (training stops at --max_steps).
A background thread does the reading and tokenizing while the model trains.

Exact resume: before each batch of documents the stream notes where it is (the reader's position, the shuffle
buffer, the random state, how many blocks it has handed out). At each checkpoint the Trainer has consumed exactly
steps x batch x accumulation x ranks blocks; the note before that count, and how many blocks to skip after it,
go into the checkpoint (lmzoo_stream.json, and the buffer in lmzoo_stream_buffer.npz). A resumed run seeks the
reader there and re-packs one batch of documents: the prefix is never read again (see lmzoo.readers for
compressed files). The Trainer's own skipping of batches (transformers#11284) is turned off.

Held-out text stays map-style (tokenized once, cached): --validation_file/--test_file, a Hub validation split (its
first 50 MB of text), or, without either, the first --validation_split_percentage of the stream's head: the
first 50 MB of training text, which is also what a tokenizer is trained on when none is named (lmzoo.stream_head).
"""

import collections
import hashlib
import json
import logging
import os
import queue
import threading

import numpy as np
import torch
from transformers import TrainerCallback

from .errors import UsageError, require
from .readers import COMPRESSIONS, hub_documents, json_documents, parquet_documents, text_documents

DOCS_PER_BATCH = 1000  # as the tokenized cache's map batches: the same blocks
STATE_NAME = "lmzoo_stream.json"
BUFFER_NAME = "lmzoo_stream_buffer.npz"
STREAMED_BUILDERS = ("text", "json", "parquet")  # formats read in order with a position to seek back to
logger = logging.getLogger("lmzoo")


def file_format(path: str, flag: str) -> str:
    from .corpus import FILE_BUILDERS, builder_for

    builder, _ = builder_for(path, flag)  # an unknown extension is its own one line
    base, ext = os.path.splitext(path.lower())
    if ext in COMPRESSIONS:
        ext = os.path.splitext(base)[1]
    streamed = sorted(e for e, b in FILE_BUILDERS.items() if b in STREAMED_BUILDERS)
    require(builder in STREAMED_BUILDERS, f"{flag} {path}: --streaming reads {', '.join(streamed)} files (optionally "
                                          f".gz/.bz2/.xz), not '{ext}'; convert it, or drop --streaming")
    return builder


class DocumentSource:
    """The training documents in order: local files of one format, or a Hub dataset streamed by `datasets`."""

    def __init__(self, args, hub_cache: str | None = None):
        self.column = args.text_column
        self.hub = None
        if args.train_file or args.dataset_dir:
            from .corpus import check_readable_file, dataset_dir_files, expand_files, is_saved_dataset

            require(args.train_file or not is_saved_dataset(args.dataset_dir),
                    f"--dataset_dir {args.dataset_dir} is a saved dataset, already on disk: drop --streaming")
            self.paths = (expand_files(args.train_file, "--train_file") if args.train_file
                          else dataset_dir_files(args.dataset_dir)["train"])
            flag = "--train_file" if args.train_file else "--dataset_dir"
            formats = {file_format(p, flag) for p in self.paths}
            require(len(formats) == 1, f"{flag}: the training files mix formats ({', '.join(sorted(formats))})")
            self.format = formats.pop()
            for path in self.paths:
                check_readable_file(path, flag)
            stamps = [(os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in self.paths]
            self.description = f"{flag} {args.train_file or args.dataset_dir}"
        else:
            require(args.dataset_name and args.dataset_name != "demo",
                    "--streaming reads --train_file, --dataset_dir (files) or a Hub --dataset_name")
            self.format, self.paths = "hub", []
            from .corpus import hub_name

            self.hub = (*hub_name(args), hub_cache)
            stamps = [args.dataset_name, args.dataset_config_name]
            self.description = f"--dataset_name {args.dataset_name}"
        self.fingerprint = hashlib.sha256(json.dumps([self.format, self.column, stamps]).encode()).hexdigest()[:16]

    def documents(self, start: dict | None = None, every: int = DOCS_PER_BATCH):
        """(position after the document, or None where none was taken, text), from `start`."""
        if self.format == "text":
            return text_documents(self.paths, start)
        if self.format == "json":
            return json_documents(self.paths, self.column, start)
        if self.format == "parquet":
            return parquet_documents(self.paths, self.column, start)
        return hub_documents(hub_split(*self.hub, "train"), self.column, start, every)


def hub_split(name: str, config: str | None, cache_dir: str | None, split: str):
    from datasets import load_dataset

    try:
        return load_dataset(name, config, split=split, streaming=True, cache_dir=cache_dir)
    except Exception as err:  # offline, unknown name or split: one line
        raise UsageError(f"--dataset_name {name}: cannot stream its {split} split ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]})") from err


def document_batches(documents, start, size: int = DOCS_PER_BATCH):
    """(position of the batch's first document, texts) per `size` documents."""
    batch, batch_start = [], start
    for after, text in documents:
        batch.append(text)
        if len(batch) == size:
            yield batch_start, batch
            batch, batch_start = [], after
    if batch:
        yield batch_start, batch


# ------------------------------------------------------------------------------------------------------ the stream

class BlockStream(torch.utils.data.IterableDataset):
    """Blocks packed on the fly from a DocumentSource, endlessly (pass after pass), resumable exactly.

    `pack(texts)` -> a list of examples (dicts of id lists). `max_passes` ends the stream after that many passes
    (the shuffle buffer drained), for tests and tools; training uses the endless stream."""

    def __init__(self, source: DocumentSource, pack, *, start: dict | None = None, shuffle_buffer: int = 0,
                 seed: int = 0, settings: str = "", max_passes: int | None = None, prefetch: int = 4096):
        self.source, self.pack, self.start = source, pack, start
        self.shuffle_buffer, self.seed, self.max_passes, self.prefetch = shuffle_buffer, seed, max_passes, prefetch
        self.settings = settings  # the tokenizer and block layout, as a string: part of the identity
        # Notes more than this many blocks behind the newest are dropped: the reader runs ahead of the Trainer by
        # the queue and the loaders' prefetch at most. Each note holds the shuffle buffer as it was, so old notes
        # keep old blocks alive: the bound is also what the stream's memory grows to.
        self.lookahead_blocks = 2 * prefetch
        self._restored = None
        self._notes = collections.deque()
        self._lock = threading.Lock()
        self._stop = None

    @property
    def identity(self) -> str:
        """What a saved state must match to be resumed here: the data, tokenizer, layout, buffer and seed."""
        return hashlib.sha256(json.dumps([self.source.fingerprint, self.settings, self.shuffle_buffer, self.seed,
                                          self.start]).encode()).hexdigest()[:16]

    # --- iteration -----------------------------------------------------------------------------------------------
    def __iter__(self):
        if self._stop is not None:
            self._stop.set()  # a new iteration replaces the previous one's reader thread
        stop, out = threading.Event(), queue.Queue(maxsize=self.prefetch)
        self._stop = stop
        thread = threading.Thread(target=self._produce, args=(stop, out), daemon=True, name="lmzoo-stream")
        thread.start()
        try:
            while True:
                item = out.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:  # the iterator was dropped or closed: its reader thread stops too
            stop.set()

    def _produce(self, stop: threading.Event, out: queue.Queue) -> None:
        try:
            for example in self.examples():
                while not stop.is_set():
                    try:
                        out.put(example, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            out.put(_END)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            out.put(_Failure(err))

    def examples(self):
        """The stream itself, in this thread (the background thread runs this)."""
        note = self._restored or {"position": self.start, "pass": 0, "yielded": 0, "skip": 0, "buffer": [],
                                  "rng": np.random.Generator(np.random.PCG64(self.seed)).bit_generator.state}
        rng = np.random.Generator(np.random.PCG64())
        rng.bit_generator.state = note["rng"]
        buffer, yielded, skip, passes, position = list(note["buffer"]), note["yielded"], note["skip"], note["pass"], \
            note["position"]
        with self._lock:
            self._notes.clear()
        while True:
            blocks_this_pass = 0
            for batch_start, texts in document_batches(self.source.documents(position), position):
                self._note({"position": batch_start, "pass": passes, "yielded": yielded, "skip": 0,
                            "rng": rng.bit_generator.state, "buffer": list(buffer)})
                for example in self.pack(texts):
                    blocks_this_pass += 1
                    if self.shuffle_buffer > 0:
                        if len(buffer) < self.shuffle_buffer:
                            buffer.append(example)
                            continue
                        index = int(rng.integers(len(buffer)))
                        example, buffer[index] = buffer[index], example
                    yielded += 1
                    if skip:
                        skip -= 1
                        continue
                    yield example
            if blocks_this_pass == 0:
                raise UsageError(f"{self.source.description}: a whole pass gave no block (too little text for one)")
            passes, position = passes + 1, self.start
            logger.info("streaming: pass %d over %s begins (%s blocks so far)", passes + 1, self.source.description,
                        f"{yielded:,}")
            if self.max_passes is not None and passes >= self.max_passes:
                while buffer:
                    example = buffer.pop(int(rng.integers(len(buffer))))
                    yielded += 1
                    if skip:
                        skip -= 1
                        continue
                    yield example
                return

    def _note(self, note: dict) -> None:
        with self._lock:
            self._notes.append(note)
            while len(self._notes) > 1 and self._notes[1]["yielded"] <= note["yielded"] - self.lookahead_blocks:
                self._notes.popleft()

    # --- state -----------------------------------------------------------------------------------------------------
    def state_at(self, consumed: int) -> dict:
        """Where to restart so that the next block is the `consumed`-th (counting from 0) this stream gave out."""
        with self._lock:
            usable = [n for n in self._notes if n["yielded"] <= consumed]
        if not usable:
            raise RuntimeError(f"the stream kept no note at or before block {consumed:,}; raise lookahead_blocks")
        return {**usable[-1], "skip": consumed - usable[-1]["yielded"]}

    def save_state(self, folder: str, consumed: int) -> None:
        state = self.state_at(consumed)
        buffer = state.pop("buffer")
        with open(os.path.join(folder, STATE_NAME), "w", encoding="utf-8") as f:
            json.dump({"identity": self.identity, "consumed": consumed, **state}, f)
        np.savez(os.path.join(folder, BUFFER_NAME), **pack_examples(buffer))

    def load_state(self, folder: str) -> None:
        path = os.path.join(folder, STATE_NAME)
        require(os.path.isfile(path), f"{folder} holds no {STATE_NAME}: it was not written by a --streaming run, "
                                      "so it cannot be resumed with --streaming")
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        require(state.get("identity") == self.identity,
                f"{folder} was written by a stream with other data, tokenizer, block, --shuffle_buffer or --seed "
                "settings; resume it with the same flags")
        with np.load(os.path.join(folder, BUFFER_NAME)) as arrays:
            state["buffer"] = unpack_examples(dict(arrays))
        state.pop("identity"), state.pop("consumed")
        self._restored = state
        logger.info("streaming: resuming at block %s (pass %d)", f"{state['yielded'] + state['skip']:,}",
                    state["pass"] + 1)


class _Failure:
    def __init__(self, error):
        self.error = error


_END = object()


def pack_examples(examples: list) -> dict:
    """A list of {name: id list} as flat arrays and lengths (npz-able)."""
    arrays = {}
    for name in (examples[0] if examples else {}):
        values = [np.asarray(e[name], dtype=np.int64) for e in examples]
        arrays[name] = np.concatenate(values)
        arrays[f"{name}.lengths"] = np.asarray([len(v) for v in values], dtype=np.int64)
    return arrays


def unpack_examples(arrays: dict) -> list:
    names = [k for k in arrays if not k.endswith(".lengths")]
    if not names:
        return []
    columns = {}
    for name in names:
        ends = np.cumsum(arrays[f"{name}.lengths"])
        columns[name] = [piece.tolist() for piece in np.split(arrays[name], ends[:-1])]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


# --------------------------------------------------------------------------------------------- with the Trainer

def consumed_blocks(args, global_step: int, batch_size: int | None = None) -> int:
    """Blocks the Trainer has taken from the stream after `global_step` optimizer steps: on the main process, which
    reads for every rank (accelerate dispatches an IterableDataset's batches: a batch per rank and micro-step, one
    in all with split_batches). `batch_size`: the Trainer's own (TrainerState.train_batch_size: per device x GPUs
    of this process, after any --auto_find_batch_size halving). Checked: transformers 5.24, accelerate 1.16."""
    batch = batch_size or args.train_batch_size
    readers = 1 if args.accelerator_config.split_batches else args.world_size
    return global_step * batch * args.gradient_accumulation_steps * readers


def prepare_trainer_for_stream(args, stream: BlockStream) -> None:
    """The Trainer's data seed for the shuffle buffer; no batch skipping on resume (the stream seeks); no loader
    workers (the stream's position lives in this process)."""
    stream.seed = args.data_seed if args.data_seed is not None else args.seed
    args.ignore_data_skip = True
    if args.dataloader_num_workers:
        logger.info("streaming: data loader workers 0 (was %d): the stream reads and tokenizes in a thread of its "
                    "own, and its position must live in this process", args.dataloader_num_workers)
        args.dataloader_num_workers = 0
        args.dataloader_persistent_workers = False
        args.dataloader_prefetch_factor = None
    stream.lookahead_blocks = max(stream.lookahead_blocks, 8 * consumed_blocks(args, 1) + stream.prefetch)


class StreamStateSaver(TrainerCallback):
    """Writes the stream's position into each checkpoint (main process; before the checkpoint is sealed)."""

    def __init__(self, stream: BlockStream):
        self.stream = stream

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            self.stream.save_state(folder, consumed_blocks(args, state.global_step, state.train_batch_size))
