import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from lmzoo.args import DataArguments
from lmzoo.corpus import load_raw_corpus
from lmzoo.data import BlockLayout, pack_token_lists, token_ids
from lmzoo.demo_corpus import demo_documents, demo_splits
from lmzoo.errors import UsageError
from lmzoo.tokenizer import load_tokenizer

WEBTEXT_ROWS = [
    {"id": 0, "ended": True, "length": 9, "text": "The first document of the webtext sample."},
    {"id": 1, "ended": False, "length": 7, "text": "A second one, cut short."},
    {"id": 2, "ended": True, "length": 5, "text": "And a third."},
]


def corpus(**kwargs):
    return load_raw_corpus(DataArguments(**kwargs))


def test_gpt2_output_dataset_jsonl_reads_its_text_field(tmp_path):
    path = tmp_path / "webtext.train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in WEBTEXT_ROWS) + "\n")
    raw = corpus(train_file=str(path), validation_split_percentage=34)
    assert raw["train"].column_names == ["text"]
    assert raw["validation"]["text"] == [WEBTEXT_ROWS[0]["text"]]  # the first documents, as in the HF examples
    assert raw["train"]["text"] == [r["text"] for r in WEBTEXT_ROWS[1:]]


@pytest.mark.parametrize("suffix, writer", [
    (".csv", lambda rows: "body,other\n" + "".join(f'"{r}",x\n' for r in rows)),
    (".tsv", lambda rows: "body\tother\n" + "".join(f"{r}\tx\n" for r in rows)),
])
def test_csv_and_tsv_with_a_named_text_column(tmp_path, suffix, writer):
    rows = ["alpha beta", "gamma delta", "epsilon"]
    (tmp_path / f"train{suffix}").write_text(writer(rows))
    (tmp_path / f"valid{suffix}").write_text(writer(rows[:1]))
    raw = corpus(train_file=str(tmp_path / f"train{suffix}"), validation_file=str(tmp_path / f"valid{suffix}"),
                 text_column="body")
    assert raw["train"]["text"] == rows and raw["validation"]["text"] == rows[:1]


def test_gzipped_text_and_parquet(tmp_path):
    with gzip.open(tmp_path / "train.txt.gz", "wt") as f:
        f.write("line one\nline two\nline three\n")
    raw = corpus(train_file=str(tmp_path / "train.txt.gz"), validation_split_percentage=34, line_by_line=True)
    assert raw["validation"]["text"] == ["line one"]
    raw["train"].to_parquet(str(tmp_path / "train.parquet"))
    again = corpus(train_file=str(tmp_path / "train.parquet"), validation_split_percentage=50)
    assert again["train"]["text"] == ["line three"]


def test_dataset_dir_save_to_disk_arrow_cache_and_plain_files(tmp_path):
    raw = corpus(dataset_name="demo")
    raw.save_to_disk(str(tmp_path / "saved"))
    assert corpus(dataset_dir=str(tmp_path / "saved"))["validation"]["text"] == raw["validation"]["text"]

    # the datasets cache layout many labs keep on shared storage: <name>/<config>/<version>/<name>-<split>.arrow
    shard_dir = tmp_path / "cache" / "wikipedia" / "20220301.en" / "2.0.0"
    shard_dir.mkdir(parents=True)
    for i, shard in enumerate(raw["train"].shard(2, k, contiguous=True) for k in range(2)):
        writer_path = shard_dir / f"wikipedia-train-0000{i}-of-00002.arrow"
        shard.flatten_indices().to_parquet(str(tmp_path / "tmp.parquet"))  # materialise, then write Arrow IPC
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(str(tmp_path / "tmp.parquet"))
        with pa.OSFile(str(writer_path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    from_cache = corpus(dataset_dir=str(tmp_path / "cache"), validation_split_percentage=5)
    assert len(from_cache["train"]) + len(from_cache["validation"]) == len(raw["train"])

    files = tmp_path / "files"
    files.mkdir()
    (files / "part-train-1.txt").write_text("a b c\nd e f\n")
    (files / "part-dev.txt").write_text("g h i\n")
    split = corpus(dataset_dir=str(files))
    assert split["train"]["text"] == ["a b c\nd e f"] and split["validation"]["text"] == ["g h i"]


@pytest.mark.parametrize("setup, culprit", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text(""), "is empty"),
    (lambda p: p.write_bytes(b"caf\xe9 au lait\n" * 3), "not UTF-8"),
])
def test_bad_training_files(tmp_path, setup, culprit):
    path = tmp_path / "train.txt"
    setup(path)
    with pytest.raises(UsageError, match=culprit) as err:
        corpus(train_file=str(path))
    assert "train.txt" in str(err.value)


def test_unknown_extension_and_missing_text_column(tmp_path):
    (tmp_path / "train.docx").write_text("x")
    with pytest.raises(UsageError, match="unknown extension '.docx'"):
        corpus(train_file=str(tmp_path / "train.docx"))
    (tmp_path / "train.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(UsageError, match="no column 'text' .*found body.*--text_column"):
        corpus(train_file=str(tmp_path / "train.jsonl"))


def test_no_source_and_offline_hub_name_explain_what_to_do(monkeypatch):
    with pytest.raises(UsageError, match="--train_file"):
        corpus()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UsageError, match="--dataset_name no-such/dataset.*--train_file"):
        corpus(dataset_name="no-such/dataset")


def test_packing_keeps_every_token_in_order():
    docs = [[1, 2, 3], [], [4, 5], [6, 7, 8, 9, 10, 11]]
    layout = BlockLayout(block_length=5, prefix_ids=(100,), suffix_ids=(101,), separator_id=0)
    blocks = pack_token_lists(docs, layout)
    assert blocks.shape == (4, 5)
    assert (blocks[:, 0] == 100).all() and (blocks[:, -1] == 101).all()
    stream = [1, 2, 3, 0, 4, 5, 0, 6, 7, 8, 9, 10, 11, 0]
    assert blocks[:, 1:-1].reshape(-1).tolist() == stream[:12]  # the tail that does not fill a block is dropped
    plain = pack_token_lists(docs, BlockLayout(block_length=4, separator_id=None))
    assert plain.reshape(-1).tolist() == [1, 2, 3, 4, 5, 6, 7, 8] and plain.dtype == np.int64


def test_demo_corpus_is_deterministic_english_with_disjoint_splits():
    docs = demo_documents()
    assert docs == demo_documents()
    splits = demo_splits()
    assert sum(len(d) for d in splits["train"]) > 500_000
    assert 10 < len(splits["validation"]) < len(splits["train"]) / 10
    assert not set(splits["train"]) & set(splits["validation"])
    assert any("the" in d.split() for d in splits["validation"])


def test_plain_text_becomes_paragraphs_unless_line_by_line(data_dir):
    files = dict(train_file=str(data_dir / "wikitext-2-raw" / "wiki.valid.raw"),
                 validation_file=str(data_dir / "wikitext-2-raw" / "wiki.test.raw"))
    lines = corpus(**files, line_by_line=True)
    assert len(lines["train"]) == 3760 and len(lines["validation"]) == 4358  # the official line counts
    paragraphs = corpus(**files)
    non_blank = [line for line in lines["train"]["text"] if line.strip()]
    assert "\n".join(paragraphs["train"]["text"]) == "\n".join(non_blank)  # nothing lost, nothing reordered
    assert len(paragraphs["train"]) < len(non_blank)
    speech = corpus(train_file=str(data_dir / "tinyshakespeare" / "input.txt"))["validation"][0]["text"]
    assert speech.startswith("First Citizen:\n") and "\n\n" not in speech


@pytest.mark.parametrize("name", ["bert-base-uncased", "gpt2", "roberta-base"])
def test_token_ids_are_what_the_tokenizer_gives(data_dir, name):
    texts = [t for t in corpus(train_file=str(data_dir / "wikitext-2-raw" / "wiki.test.raw"))["train"]["text"][:200]]
    tokenizer = load_tokenizer(str(data_dir / "tokenizers" / name))
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert token_ids(tokenizer, texts) == expected
    tokenizer.backend_tokenizer.enable_truncation(max_length=8)  # left so by a saved tokenizer.json, say
    assert token_ids(tokenizer, texts) == expected  # still whole texts: the backend is not called as it is


def test_tokenization_uses_every_core_it_may_not_a_fixed_cap(tmp_path, monkeypatch):
    from lmzoo import data

    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    empty = tmp_path / "no-cgroup"
    assert data.available_cpus(str(empty)) == 64  # the old default stopped at 8
    assert data.default_num_workers(1_000_000) == data.available_cpus() and data.default_num_workers(100) == 1
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cpu.max").write_text("1600000 100000\n")  # a container limited to 16 CPUs
    assert data.available_cpus(str(tmp_path / "v2")) == 16
    (tmp_path / "v2" / "cpu.max").write_text("max 100000\n")
    assert data.available_cpus(str(tmp_path / "v2")) == 64
    (tmp_path / "v1" / "cpu").mkdir(parents=True)
    (tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "v1" / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert data.available_cpus(str(tmp_path / "v1")) == 4


class WordIds:
    """A stand-in tokenizer whose ids are given per word: to reach ids past uint16 without a 70k vocabulary file."""

    def __init__(self, vocab_size, ids):
        self.vocab_size, self.ids = vocab_size, ids

    def __len__(self):
        return self.vocab_size

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[self.ids[word] for word in text.split()] for text in texts]}

    def get_vocab(self):
        return dict(self.ids)


@pytest.mark.parametrize("vocab_size, stored", [(30_522, "uint16"), (65_536, "uint16"), (250_112, "int32")])
def test_token_ids_are_stored_narrow_and_read_back_unchanged(tmp_path, vocab_size, stored):
    from datasets import Dataset, DatasetDict

    from lmzoo.data import read_tokenized, tokenize_corpus

    highest = vocab_size - 1  # the largest id the vocabulary has: it must survive the narrow storage
    tokenizer = WordIds(vocab_size, {"a": 0, "b": 1, "c": highest})
    texts = ["a b c c", "c a", "b b b a c"]
    raw = DatasetDict({split: Dataset.from_dict({"text": texts}) for split in ("train", "validation")})
    layout = BlockLayout(block_length=4, prefix_ids=(), suffix_ids=(), separator_id=1)
    names = {split: str(tmp_path / split / f"{split}.arrow") for split in raw}
    tokenized = tokenize_corpus(raw, tokenizer, layout, num_workers=1, cache_file_names=names)
    assert tokenized["train"].features["input_ids"].feature.dtype == stored
    expected = pack_token_lists(tokenizer(texts)["input_ids"], layout).tolist()
    assert expected[0][2] == highest and tokenized["train"]["input_ids"] == expected

    (tmp_path / "shards.json").write_text(json.dumps({"train": ["train/train.arrow"]}))
    assert read_tokenized(str(tmp_path))["train"]["input_ids"] == expected  # what training reads: Python ints


def test_paragraphs_read_in_one_pass_equal_the_datasets_text_builder_joined_in_line_groups(data_dir, tmp_path):
    """The published numbers depend on the documents: reading .txt ourselves (no copy of the lines on disk) must
    give exactly the paragraphs of the datasets text builder + a 10,000-line batched join, across files and
    through compression."""
    from datasets import load_dataset

    from lmzoo.corpus import _paragraph_corpus
    from lmzoo.readers import paragraphs

    wiki = data_dir / "wikitext-2-raw"
    shakespeare = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    compressed = tmp_path / "shakespeare.txt.xz"
    compressed.write_bytes(lzma.compress(shakespeare.replace(b"\n", b"\r\n")))  # Windows line ends, as a user has
    plain = tmp_path / "shakespeare.txt"
    plain.write_bytes(shakespeare.replace(b"\n", b"\r\n"))
    for files in ([str(wiki / "wiki.valid.raw"), str(wiki / "wiki.test.raw")], [str(compressed)]):
        reference_files = [str(plain)] if files == [str(compressed)] else files
        lines = load_dataset("text", data_files={"train": reference_files}, cache_dir=str(tmp_path / "hf"))["train"]
        expected = lines.map(lambda batch: {"text": paragraphs(batch["text"])}, batched=True,
                             batch_size=10_000)["text"]
        assert len(files) > 1 or len(lines) > 10_000  # several files, or several line groups
        assert _paragraph_corpus({"train": files}, str(tmp_path / "ours"))["train"]["text"] == expected


def test_a_glob_of_xz_shards_reads_as_their_concatenation_and_a_test_file_is_kept(tmp_path):
    import lzma

    books = ["First book, first paragraph.\nstill it.\n\nFirst book, second.\n\n",
             "Second book opens.\n\nSecond book closes.\n\n", "Third book, the only paragraph.\n\n"]
    for i, book in enumerate(reversed(books)):  # written out of order: read in name order all the same
        with lzma.open(tmp_path / f"train-{2 - i:02d}.txt.xz", "wt") as f:
            f.write(book)
    (tmp_path / "whole.txt").write_text("".join(books))
    (tmp_path / "valid.txt").write_text("A held-out paragraph.\n")
    (tmp_path / "test.txt").write_text("A test paragraph.\n\nAnother one.\n")
    sharded = corpus(train_file=str(tmp_path / "train-*.txt.xz"), validation_file=str(tmp_path / "valid.txt"),
                     test_file=str(tmp_path / "test.txt"), cache_dir=str(tmp_path / "cache"))
    whole = corpus(train_file=str(tmp_path / "whole.txt"), validation_file=str(tmp_path / "valid.txt"),
                   cache_dir=str(tmp_path / "cache"))
    assert sharded["train"]["text"] == whole["train"]["text"] and len(whole["train"]) == 5
    assert list(sharded["test"]["text"]) == ["A test paragraph.", "Another one."] and "test" not in whole
    with pytest.raises(UsageError, match=r"--train_file .*nothing-\*\.txt matches no file"):
        corpus(train_file=str(tmp_path / "nothing-*.txt"))
    with pytest.raises(UsageError, match="--test_file goes with --train_file"):
        corpus(dataset_name="demo", test_file=str(tmp_path / "test.txt"))


def test_several_compressed_json_files_are_read_in_parallel_in_file_order(tmp_path, monkeypatch):
    import gzip

    from lmzoo import corpus

    records = [{"text": f"document {i} " + "word " * (i % 7), "id": i} for i in range(3000)]
    for part in range(3):
        with gzip.open(tmp_path / f"train-{part}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records[part * 1000:(part + 1) * 1000])
    monkeypatch.setattr(corpus, "available_cpus", lambda: 2)
    files = {"train": [str(tmp_path / f"train-{part}.jsonl.gz") for part in range(3)]}
    assert corpus.reading_workers(files) == 2 and corpus.reading_workers({"train": files["train"][:1]}) is None
    loaded = corpus._load("json", files, (), str(tmp_path / "cache"), "train-*.jsonl.gz")["train"]
    assert len(loaded.cache_files) == 2  # written by two processes
    assert loaded["text"] == [r["text"] for r in records]


def test_the_number_of_tokenizing_workers_changes_the_blocks_of_a_large_corpus_and_is_recorded(tmp_path):
    """Several workers each pack their own slice of the documents, so 2 and 1 workers cut different blocks; the
    record keeps the count (read back from the cache's files) and the zoo's rerun command pins it."""
    from datasets import Dataset, DatasetDict

    from lmzoo.data import read_tokenized, tokenize_corpus, tokenized_cache_dir
    from lmzoo.pretrain import tokenizing_workers
    from lmzoo.zoo_costs import rerun_command

    tokenizer = WordIds(3, {"a": 0, "b": 1, "c": 2})
    texts = [" ".join("abc"[(i + j) % 3] for j in range(1 + i % 5)) for i in range(2_500)]
    raw = DatasetDict({"train": Dataset.from_dict({"text": texts})})
    layout = BlockLayout(block_length=8, prefix_ids=(), suffix_ids=(), separator_id=None)
    blocks = {}
    for workers in (1, 2):
        folder = tmp_path / f"workers{workers}"
        names = {"train": str(folder / "train" / "train.arrow")}
        (folder / "train").mkdir(parents=True)
        tokenized = tokenize_corpus(raw, tokenizer, layout, num_workers=workers, cache_file_names=names)
        files = [str(Path(f["filename"]).relative_to(folder)) for f in tokenized["train"].cache_files]
        (folder / "shards.json").write_text(json.dumps({"train": files}))
        stored = read_tokenized(str(folder))["train"]
        assert tokenizing_workers(stored) == workers
        blocks[workers] = stored["input_ids"]
    assert blocks[1] != blocks[2]
    command = "python run_mlm.py --train_file books.txt"
    assert rerun_command({"command": command, "tokenizing_workers": 2}) == command + " --preprocessing_num_workers 2"
    assert rerun_command({"command": command, "tokenizing_workers": 1}) == command
    assert rerun_command({"command": command + " --preprocessing_num_workers 4", "tokenizing_workers": 4}) \
        == command + " --preprocessing_num_workers 4"
    assert tokenizing_workers(None) is None and tokenizing_workers(iter([])) is None  # nothing trained; a stream
    # a count given keys its own cache (a rerun pinned to 2 must not reuse blocks cut by 16); the default is shared
    caches = {n: tokenized_cache_dir(DataArguments(train_file="books.txt", preprocessing_num_workers=n), str(tmp_path),
                                     raw, tokenizer, layout, "mlm") for n in (None, 2, 4)}
    assert len(set(caches.values())) == 3
