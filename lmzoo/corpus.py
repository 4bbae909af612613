"""Raw corpora: where the text comes from, read into one `text` column per split, checked before any long work.

Where text comes from (first match wins):
  --train_file/--validation_file   .txt/.raw/.tokens, .json/.jsonl, .csv, .tsv, .parquet, optionally .gz/.bz2/.xz;
  (and --test_file)               a path or a glob of such files, read in name order
  --dataset_dir                    a `save_to_disk` folder; a datasets cache folder of .arrow shards
                                   (`<name>/<config>/<version>/<name>-<split>-NNNNN-of-NNNNN.arrow`); or a folder of
                                   text/jsonl/csv/parquet files (split by file name: train, valid(ation)/dev, test)
  --dataset_name [--dataset_config_name]   the Hub (online), or `demo`: the embedded demo corpus (lmzoo.demo_corpus)

The text column is `--text_column` (default `text`, which also reads OpenAI's GPT-2 output dataset jsonl). Without
a validation split, `--validation_split_percentage` of the training documents (the first ones, as in the
Hugging Face examples) become the validation split. Tokenizing and packing: lmzoo.data. With --streaming the
training split is read on the fly instead (lmzoo.streaming); only its head is read here.
"""

import csv
import glob
import hashlib
import json
import logging
import lzma
import os
import re
import sys

from .cache import build_once, default_cache_dir
from .cpus import available_cpus
from .args import DataArguments
from .errors import UsageError, require
from .readers import COMPRESSIONS, PARAGRAPH_GROUP_LINES, Progress, paragraph_groups

FILE_BUILDERS = {
    ".txt": "text", ".raw": "text", ".tokens": "text",
    ".json": "json", ".jsonl": "json",
    ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet",
}
SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                 "dev": "validation", "test": "test"}
# Hub datasets whose script-based loaders current `datasets` no longer runs -> their parquet successors.
HUB_RENAMES = {("wikipedia", "20220301.en"): ("wikimedia/wikipedia", "20231101.en")}


def builder_for(path: str, flag: str) -> tuple[str, tuple]:
    """The datasets builder and its options (as hashable (key, value) pairs) for a file, from its extension."""
    base, ext = os.path.splitext(path.lower())
    if ext in COMPRESSIONS:
        base, ext = os.path.splitext(base)
    if ext not in FILE_BUILDERS:
        raise UsageError(f"{flag} {path}: unknown extension '{ext or '(none)'}', expected one of "
                         f"{', '.join(sorted(FILE_BUILDERS))} (optionally .gz/.bz2/.xz)")
    builder = FILE_BUILDERS[ext]
    return builder, ((("delimiter", "\t"),) if ext == ".tsv" else ())


def check_readable_file(path: str, flag: str) -> None:
    """Missing, empty, unreadable or non-UTF-8 input: one clear line before any work."""
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} does not exist")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{flag} {path} is not readable (permissions)")
    builder, _ = builder_for(path, flag)
    opener = COMPRESSIONS.get(os.path.splitext(path.lower())[1], open)
    try:
        with opener(path, "rb") as f:
            head = f.read(1 << 20)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise UsageError(f"{flag} {path} cannot be read: {err}") from err
    if not head.strip():
        raise UsageError(f"{flag} {path} is empty")
    if builder != "parquet":
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as err:
            if len(head) < (1 << 20) or err.start < len(head) - 4:  # not just a character cut at the sample's end
                line = head[:err.start].count(b"\n") + 1
                raise UsageError(f"{flag} {path} is not UTF-8 text (bad byte at line {line}); "
                                 "convert it to UTF-8 first") from err


def _load(builder: str, data_files: dict, options: dict, cache_dir: str | None, culprit: str):
    from datasets import load_dataset

    quiet = logging.getLogger("datasets")  # it logs a parser's traceback before raising; we say it in one line
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return load_dataset(builder, data_files=data_files, cache_dir=cache_dir, num_proc=reading_workers(data_files),
                            **dict(options))
    except UnicodeDecodeError as err:
        raise UsageError(f"{culprit} is not UTF-8 text: {err.reason} at byte {err.start}") from err
    except Exception as err:  # datasets wraps parser errors in several types; name the input, not the library
        files = [f for paths in data_files.values() for f in ([paths] if isinstance(paths, str) else paths)]
        where = next(filter(None, (first_bad_line(f, builder, dict(options)) for f in files)), None)
        if where:
            raise UsageError(where) from err
        raise UsageError(f"{culprit} could not be read as {builder}: {str(err).splitlines()[0][:300]}") from err
    finally:
        quiet.setLevel(level)


def reading_workers(data_files: dict) -> int | None:
    """Files are read (decompressed, parsed, written as Arrow) in parallel, one process per file up to the cores
    available; a single file is one stream (a .gz cannot be split): shard large corpora for speed."""
    files = max(len([paths] if isinstance(paths, str) else paths) for paths in data_files.values())
    workers = min(files, available_cpus())
    return workers if workers > 1 else None


def first_bad_line(path: str, builder: str, options: dict) -> str | None:
    """'FILE line N: what is wrong' for the first line a json/csv parser cannot read, or None."""
    opener = COMPRESSIONS.get(os.path.splitext(path.lower())[1], open)
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            if builder == "json":
                return _first_bad_json_line(path, f)
            if builder == "csv":
                return _first_bad_csv_line(path, f, options.get("delimiter", ","))
    except (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError):
        return None
    return None


def _first_bad_json_line(path: str, lines) -> str | None:
    text = lines.read()
    if text.lstrip().startswith(("[", "{")) and "\n{" not in text.strip():  # one JSON document, not JSON lines
        try:
            json.loads(text)
        except ValueError as err:
            return f"{path} line {getattr(err, 'lineno', '?')}: not valid JSON ({getattr(err, 'msg', err)})"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                json.loads(line)
            except ValueError as err:
                return f"{path} line {number}: not valid JSON ({getattr(err, 'msg', err)})"
    return None


def _first_bad_csv_line(path: str, lines, delimiter: str) -> str | None:
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        for row in reader:
            if row and len(row) != len(header):
                separator = "tab" if delimiter == "\t" else f"'{delimiter}'"
                return (f"{path} line {reader.line_num}: {len(row)} fields, the header has {len(header)} "
                        f"(an unquoted {separator} or a missing quote?)")
    except csv.Error as err:
        return f"{path} line {reader.line_num}: {err}"
    return None


def check_text_present(split, source: str, split_name: str, column: str) -> None:
    """A row whose text is null (a JSON null, or a record without the field) is named, not a TypeError later."""
    import pyarrow.compute as pc

    values = split.data.column("text")
    if values.null_count:
        row = pc.index(pc.is_null(values), True).as_py()
        raise UsageError(f"{source} ({split_name}): record {row + 1} has no text (null or no '{column}' field); "
                         "remove it or fill it in")


def expand_files(pattern: str, flag: str) -> list[str]:
    """A path, or a glob (`train-*.txt.xz`) read as the matching files in name order."""
    if not glob.has_magic(pattern):
        return [pattern]
    paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    require(paths, f"{flag} {pattern} matches no file")
    return paths


def data_file_flags(args: DataArguments) -> dict:
    """split -> (flag, the value given), for the --*_file flags that were given."""
    given = {"train": ("--train_file", args.train_file), "validation": ("--validation_file", args.validation_file),
             "test": ("--test_file", args.test_file)}
    return {split: value for split, value in given.items() if value[1]}


def load_from_files(args: DataArguments, cache_dir: str | None, splits=("train", "validation", "test")):
    files = {}
    for split, (flag, pattern) in data_file_flags(args).items():
        if split in splits:
            files[split] = expand_files(pattern, flag)
            for path in files[split]:
                check_readable_file(path, flag)
    builders = {builder_for(path, "--train_file") for paths in files.values() for path in paths}
    if len(builders) > 1:
        raise UsageError("--train_file, --validation_file and --test_file must have the same format, got "
                         + ", ".join(sorted(b for b, _ in builders)))
    return _load_files(files, args, cache_dir, " and ".join(p for ps in files.values() for p in ps))


def _load_files(files: dict, args: DataArguments, cache_dir: str | None, culprit: str):
    """split -> files of one format, read: plain text as paragraphs (or lines with --line_by_line)."""
    builder, options = builder_for(next(iter(files.values()))[0], "--train_file")
    if builder == "text" and not args.line_by_line:
        return _paragraph_corpus(files, cache_dir)
    return _load(builder, files, options, cache_dir, culprit)


def _paragraph_corpus(files: dict, cache_dir: str | None):
    """The paragraphs of each split's text files (one path or a list, read in order as one stream of lines), in one
    pass: the lines are never stored, so the only copy of the text on disk is an Arrow file of paragraphs, built
    once per (files, sizes, time stamps) under `cache_dir` (compressed files are read as they decompress)."""
    from datasets import Dataset, DatasetDict

    root = os.path.join(cache_dir or os.path.join(default_cache_dir(), "hub"), "paragraphs")
    splits = {}
    for split, paths in files.items():
        paths = [os.path.abspath(p) for p in ([paths] if isinstance(paths, str) else paths)]
        stamps = [(os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]  # a changed file is read again
        key = hashlib.sha256(json.dumps([PARAGRAPH_GROUP_LINES, paths, stamps]).encode()).hexdigest()[:16]
        folder = os.path.join(root, f"{split}-{key}")

        def build(tmp, paths=paths, split=split):
            progress = Progress(f"reading the {split} text", sum(os.path.getsize(p) for p in paths))
            write_text_arrow(os.path.join(tmp, "paragraphs.arrow"),
                             (batch for _, _, batch in paragraph_groups(paths, progress=progress)))

        build_once(folder, build, f"the paragraphs of {', '.join(paths)}")
        splits[split] = Dataset.from_file(os.path.join(folder, "paragraphs.arrow"))
    return DatasetDict(splits)


def write_text_arrow(path: str, batches) -> None:
    """An Arrow file of one `text` column, written batch by batch (lists of strings): never all in memory."""
    import pyarrow as pa

    schema = pa.schema([("text", pa.string())])
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as out:
        for batch in batches:
            out.write_batch(pa.record_batch([pa.array(batch, pa.string())], schema=schema))


def _split_of(file_name: str) -> str | None:
    for token in re.split(r"[^a-z]+", file_name.lower()):
        if token in SPLIT_ALIASES:
            return SPLIT_ALIASES[token]
    return None


def load_from_dir(args: DataArguments, cache_dir: str | None):
    from datasets import DatasetDict, load_from_disk

    folder = args.dataset_dir
    if not os.path.isdir(folder):
        raise UsageError(f"--dataset_dir {folder} is not a folder")
    if is_saved_dataset(folder):
        loaded = load_from_disk(folder)
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    arrow = _arrow_shards(folder)
    if arrow:  # a datasets cache: <name>-<split>[-NNNNN-of-NNNNN].arrow
        by_split = {}
        for path in arrow:
            match = re.search(r"-(train|validation|test)(-\d+-of-\d+)?\.arrow$", os.path.basename(path))
            by_split.setdefault(match.group(1) if match else "train", []).append(path)
        return _load("arrow", by_split, (), cache_dir, f"--dataset_dir {folder}")
    return _load_files(dataset_dir_files(folder), args, cache_dir, f"--dataset_dir {folder}")


def is_saved_dataset(folder: str) -> bool:
    """A `save_to_disk` folder (a DatasetDict or a single Dataset)."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in ("dataset_dict.json", "state.json"))


def _folder_files(folder: str) -> list[str]:
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                  if not name.startswith("."))


def _arrow_shards(folder: str) -> list[str]:
    return [f for f in _folder_files(folder) if f.endswith(".arrow") and not os.path.basename(f).startswith("cache-")]


def dataset_dir_files(folder: str) -> dict:
    """split -> the text/jsonl/csv/parquet files of a --dataset_dir folder (split by file name), checked readable."""
    require(os.path.isdir(folder), f"--dataset_dir {folder} is not a folder")
    usable = [f for f in _folder_files(folder) if _has_known_extension(f)]
    if not usable:
        raise UsageError(f"--dataset_dir {folder} holds no dataset: expected save_to_disk output, .arrow shards, "
                         f"or files ending in {', '.join(sorted(FILE_BUILDERS))}")
    builders = {builder_for(f, "--dataset_dir") for f in usable}
    if len(builders) > 1:
        raise UsageError(f"--dataset_dir {folder} mixes file formats; keep one format per folder")
    by_split = {}
    for path in usable:
        check_readable_file(path, "--dataset_dir")
        by_split.setdefault(_split_of(os.path.basename(path)) or "train", []).append(path)
    if "train" not in by_split:
        raise UsageError(f"--dataset_dir {folder}: no training files (names containing 'train', or without a split name)")
    return by_split


def _has_known_extension(path: str) -> bool:
    base, ext = os.path.splitext(path.lower())
    if ext in COMPRESSIONS:
        ext = os.path.splitext(base)[1]
    return ext in FILE_BUILDERS


def hub_name(args: DataArguments) -> tuple[str, str | None]:
    """The Hub dataset and configuration to load: a script-based one is replaced by its parquet successor."""
    name, config = args.dataset_name, args.dataset_config_name
    if (name, config) in HUB_RENAMES:
        name, config = HUB_RENAMES[(name, config)]
        print(f"[lmzoo] {args.dataset_name} {args.dataset_config_name} is a script-based dataset that current "
              f"`datasets` cannot load; using its parquet successor {name} {config}", file=sys.stderr)
    return name, config


def load_from_hub(args: DataArguments, cache_dir: str | None):
    from datasets import load_dataset

    name, config = hub_name(args)
    try:
        return load_dataset(name, config, cache_dir=cache_dir)
    except Exception as err:
        raise UsageError(f"--dataset_name {args.dataset_name}: could not load it from the Hub "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); offline, point at local data "
                         "with --train_file/--validation_file or --dataset_dir (or use --dataset_name demo)") from err


def load_demo():
    from datasets import Dataset, DatasetDict

    from .demo_corpus import demo_splits

    return DatasetDict({split: Dataset.from_dict({"text": docs}) for split, docs in demo_splits().items()})


def load_raw_corpus(args: DataArguments, cache_dir: str | None = None):
    """A DatasetDict with `train` and `validation` (and `test` with --test_file), holding only the text column
    (renamed `text`). With --streaming, `train` is only the stream's head (lmzoo.streaming), for a tokenizer to
    learn from, and the DatasetDict's `stream_head` says where the stream itself starts."""
    from datasets import DatasetDict

    require(not args.test_file or args.train_file, "--test_file goes with --train_file (local files); "
                                                   "a --dataset_dir or Hub test split is not evaluated")
    if args.streaming:
        from .stream_head import load_streaming_corpus

        return load_streaming_corpus(args, cache_dir)
    raw, source = _load_source(args, cache_dir)
    require("train" in raw, f"{source}: no train split (found {', '.join(raw) or 'none'})")
    raw = _text_column_only(raw, source, args)
    if "validation" not in raw:
        pct = args.validation_split_percentage
        require(0 < pct < 100, f"--validation_split_percentage must be between 1 and 99, got {pct}")
        train = raw["train"]
        require(len(train) >= 2, f"{source} holds a single document, too few to hold out a validation split; "
                                 "give --validation_file (or separate documents with blank lines)")
        n_val = max(1, len(train) * pct // 100)
        raw = DatasetDict({"validation": train.select(range(n_val)), "train": train.select(range(n_val, len(train)))})
    return _kept_splits(raw, source, args)


def _load_source(args: DataArguments, cache_dir: str | None):
    if args.train_file:
        return load_from_files(args, cache_dir), args.train_file
    if args.dataset_dir:
        return load_from_dir(args, cache_dir), args.dataset_dir
    if args.dataset_name == "demo":
        return load_demo(), "the embedded demo corpus"
    if args.dataset_name:
        return load_from_hub(args, cache_dir), args.dataset_name
    raise UsageError("no training data: give --train_file (a local .txt/.jsonl/...), --dataset_dir, or "
                     "--dataset_name (a Hub dataset, or `demo` for the embedded demo corpus)")


def _text_column_only(raw, source: str, args: DataArguments):
    for split in list(raw):
        columns = raw[split].column_names
        if args.text_column not in columns:
            raise UsageError(f"{source} ({split}): no column '{args.text_column}' (found {', '.join(columns)}); "
                             "name the text column with --text_column")
        raw[split] = raw[split].select_columns([args.text_column])
        if args.text_column != "text":
            raw[split] = raw[split].rename_column(args.text_column, "text")
        check_text_present(raw[split], source, split, args.text_column)
    return raw


def _kept_splits(raw, source: str, args: DataArguments):
    from datasets import DatasetDict

    kept = [split for split in ("train", "validation", "test") if split in raw and (split != "test" or args.test_file)]
    for split in kept:
        require(len(raw[split]) > 0, f"{source}: the {split} split is empty")
    return DatasetDict({split: raw[split] for split in kept})


def corpus_fingerprint(raw) -> str:
    return hashlib.sha256(json.dumps([raw[s]._fingerprint for s in sorted(raw)]).encode()).hexdigest()[:16]
