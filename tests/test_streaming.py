"""--streaming: the same blocks as the tokenized cache, a shuffle that is a permutation, and exact resumes."""

import io
import json
import logging
import os

import pytest

from lmzoo.args import DataArguments
from lmzoo.corpus import load_raw_corpus
from lmzoo.data import causal_layout, load_tokenized, mlm_layout
from lmzoo.errors import UsageError
from lmzoo.readers import Progress, json_documents, paragraph_groups, paragraphs, text_chunks, text_documents
from lmzoo.streaming import BlockStream, DocumentSource


def tokenizer_at(data_dir, name):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(data_dir / "tokenizers" / name))


def blocks_of(args, tmp_path, tokenizer, layout, kind="clm"):
    raw = load_raw_corpus(args, str(tmp_path / "hub"))
    return load_tokenized(args, str(tmp_path / "cache"), raw, tokenizer, layout, kind)


def rows(dataset) -> list:
    return [dict(row) for row in dataset]


@pytest.fixture(scope="module")
def wiki_parts(data_dir, tmp_path_factory):
    """WikiText-2's validation text cut at a paragraph boundary into two files, and as JSON lines."""
    folder = tmp_path_factory.mktemp("wiki")
    text = (data_dir / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8")
    cut = text.index("\n \n", len(text) // 2) + 3
    (folder / "part-0.txt").write_text(text[:cut], encoding="utf-8")
    (folder / "part-1.txt").write_text(text[cut:], encoding="utf-8")
    with open(folder / "docs.jsonl", "w", encoding="utf-8") as f:
        for paragraph in paragraphs(text.split("\n")):
            f.write(json.dumps({"body": paragraph, "id": 1}) + "\n")
    return folder


@pytest.mark.parametrize("layout_of, kind, tokenizer_name, train, extra", [
    (causal_layout, "clm", "gpt2", "part-*.txt", {}),  # two files read as one, 5% held out of the head
    (mlm_layout, "mlm", "bert-base-uncased", "docs.jsonl", {"text_column": "body", "validation_split_percentage": 3}),
])
def test_the_stream_gives_the_blocks_of_the_tokenized_cache(data_dir, wiki_parts, tmp_path, layout_of, kind,
                                                           tokenizer_name, train, extra):
    tokenizer = tokenizer_at(data_dir, tokenizer_name)
    layout = layout_of(tokenizer, 64)
    common = dict(train_file=str(wiki_parts / train), **extra)
    stored = blocks_of(DataArguments(**common), tmp_path / "map", tokenizer, layout, kind)
    streamed = blocks_of(DataArguments(streaming=True, shuffle_buffer=0, **common), tmp_path / "stream", tokenizer,
                         layout, kind)
    stream = streamed["train"]
    assert isinstance(stream, BlockStream)
    stream.max_passes = 1
    assert len(stored["train"]) > 1000
    assert list(stream) == rows(stored["train"])
    assert rows(streamed["validation"]) == rows(stored["validation"])  # the held-out head is the map path's split


def test_the_shuffle_buffer_permutes_the_blocks_and_is_seeded(data_dir, wiki_parts, tmp_path):
    tokenizer = tokenizer_at(data_dir, "gpt2")
    args = DataArguments(train_file=str(wiki_parts / "part-*.txt"), streaming=True, shuffle_buffer=300)
    stream = blocks_of(args, tmp_path, tokenizer, causal_layout(tokenizer, 64))["train"]
    stream.max_passes = 1
    in_order = BlockStream(stream.source, stream.pack, start=stream.start, max_passes=1)
    stream.seed = 1
    first, again = list(stream), list(stream)
    stream.seed = 2
    other = list(stream)
    plain = list(in_order)
    key = lambda example: example["input_ids"]  # noqa: E731
    assert first == again and first != other and first != plain
    assert sorted(map(key, first)) == sorted(map(key, plain)) == sorted(map(key, other))


def test_a_stream_resumes_exactly_at_any_block(data_dir, wiki_parts, tmp_path):
    """Within a batch of documents, after batch and file boundaries, in the second pass, with a full buffer."""
    tokenizer = tokenizer_at(data_dir, "gpt2")
    args = DataArguments(train_file=str(wiki_parts / "part-*.txt"), validation_file=str(wiki_parts / "part-0.txt"),
                         streaming=True, shuffle_buffer=50)
    stream = blocks_of(args, tmp_path, tokenizer, causal_layout(tokenizer, 64))["train"]
    stream.max_passes, stream.seed = 2, 7
    everything = list(stream)
    per_pass = len(everything) // 2
    for consumed in (0, 37, 1_500, per_pass - 3, per_pass + 11, 2 * per_pass - 1):
        iterator = iter(stream)
        assert [next(iterator) for _ in range(consumed)] == everything[:consumed]
        folder = tmp_path / f"checkpoint-{consumed}"
        folder.mkdir()
        stream.save_state(str(folder), consumed)
        resumed = BlockStream(stream.source, stream.pack, start=stream.start, shuffle_buffer=50, seed=7,
                              settings=stream.settings, max_passes=2)
        resumed.load_state(str(folder))
        assert list(resumed) == everything[consumed:], consumed
    other = BlockStream(stream.source, stream.pack, start=stream.start, shuffle_buffer=50, seed=8, max_passes=2)
    with pytest.raises(UsageError, match="other data, tokenizer"):
        other.load_state(str(tmp_path / "checkpoint-37"))


def test_a_position_is_sought_to_not_read_up_to(data_dir, wiki_parts):
    """Restarting at a document reads from the byte offset of a chunk at or before its group of 10,000 lines (not
    from the start), and gives the documents that followed it, across files."""
    paths = [str(data_dir / "tinyshakespeare" / "input.txt"), str(wiki_parts / "part-0.txt")]
    documents = list(text_documents(paths, chunk_bytes=20_000))
    assert len(documents) > 7500
    for index in (0, 5, 4_321, 7_444, len(documents) - 2):
        position = documents[index][0]
        first = next(text_chunks(paths, position, chunk_bytes=20_000))
        assert first[:2] == (position["file"], position["offset"])  # the first read starts there
        assert index < 4_000 or position["file"] == 1 or position["offset"] > 200_000
        again = [text for _, text in text_documents(paths, position, chunk_bytes=20_000)]
        assert again == [text for _, text in documents[index + 1:]]


def test_paragraph_groups_are_the_same_whatever_the_chunk_size(wiki_parts):
    paths = [str(wiki_parts / "part-0.txt"), str(wiki_parts / "part-1.txt")]  # one group of 10,000 lines
    whole = [(group, found) for group, _, found in paragraph_groups(paths)]
    assert [(group, found) for group, _, found in paragraph_groups(paths, chunk_bytes=4096)] == whole
    lines = "".join(open(p, encoding="utf-8").read() for p in paths).split("\n")
    assert [p for _, found in whole for p in found] == [p for i in range(0, len(lines), 10_000)
                                                        for p in paragraphs(lines[i:i + 10_000])]


def test_json_lines_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": "also"\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad.jsonl line 3: not valid JSON"):
        list(json_documents([str(path)], "text"))
    path.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad.jsonl line 2: no text in 'text'"):
        list(json_documents([str(path)], "text"))


def test_progress_says_rate_and_time_left():
    now = [0.0]
    out = io.StringIO()
    progress = Progress("reading the train text", 1_000_000_000, clock=lambda: now[0], stream=out)
    progress.update(10_000_000)
    assert out.getvalue() == ""  # not before 30 s
    now[0] = 40.0
    progress.update(200_000_000)
    assert out.getvalue().strip() == ("[lmzoo] reading the train text: 200 of 1,000 MB (20%), 5.0 MB/s, "
                                      "about 3 min left")


def test_streaming_refuses_what_it_cannot_do(tmp_path, wiki_parts):
    with pytest.raises(UsageError, match="--max_train_samples"):
        DataArguments(train_file="x.txt", streaming=True, max_train_samples=5)
    csv = tmp_path / "train.csv"
    csv.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(UsageError, match="--streaming reads .* not '.csv'"):
        DocumentSource(DataArguments(train_file=str(csv), streaming=True))


CLM = ["--config_name", "gpt2", "--config_overrides", "n_layer=2,n_embd=64,n_head=2", "--block_size", "64",
       "--do_train", "--do_eval", "--per_device_train_batch_size", "8", "--max_eval_samples", "40", "--report_to",
       "none", "--disable_tqdm", "True", "--streaming", "--shuffle_buffer", "100", "--seed", "3"]


def test_run_clm_streaming_needs_max_steps(cli, data_dir, tmp_path):
    code, out, err = cli("run_clm.py", *CLM, "--tokenizer_name", data_dir / "tokenizers" / "gpt2", "--train_file",
                         data_dir / "wikitext-2-raw" / "wiki.valid.raw", "--output_dir", tmp_path / "out")
    assert code == 2 and "--streaming reads the corpus as it trains" in err and "give --max_steps" in err
    assert not (tmp_path / "out" / "lmzoo_record.json").exists()


def test_run_clm_streaming_resumed_after_a_kill_ends_with_the_same_weights(cli, data_dir, tmp_path, caplog):
    import shutil

    from safetensors.torch import load_file

    caplog.set_level(logging.INFO, logger="lmzoo")

    def run(output):
        return cli("run_clm.py", *CLM, "--tokenizer_name", data_dir / "tokenizers" / "gpt2",
                   "--train_file", data_dir / "wikitext-2-raw" / "wiki.valid.raw",
                   "--validation_file", data_dir / "wikitext-2-raw" / "wiki.test.raw", "--output_dir", output,
                   "--cache_dir", tmp_path / "cache", "--max_steps", "6", "--save_steps", "3")

    assert run(tmp_path / "whole")[0] == 0
    assert run(tmp_path / "cut")[0] == 0
    cut = tmp_path / "cut"
    for name in os.listdir(cut):  # as if killed after checkpoint-3 was written
        if name != "checkpoint-3":
            path = cut / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert (cut / "checkpoint-3" / "lmzoo_stream.json").is_file()
    code, out, err = run(cut)
    assert code == 0 and "streaming: resuming at block 24" in caplog.text
    whole, resumed = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert all(bool((whole[name] == resumed[name]).all()) for name in whole)
    records = [json.loads((folder / "lmzoo_record.json").read_text()) for folder in (tmp_path / "whole", cut)]
    assert records[0]["eval_loss"] == records[1]["eval_loss"]
    assert records[0]["streaming"] is True and records[0]["train_samples"] is None and records[0]["steps"] == 6
    assert records[0]["tokenizing_workers"] is None  # one reader packs the stream


def test_a_hub_style_stream_restarts_from_its_own_state_dict():
    """A `datasets` IterableDataset (what --dataset_name streams) resumes from the state taken every N documents."""
    from datasets import Dataset

    from lmzoo.readers import hub_documents

    texts = [f"document {i}" for i in range(50)]
    dataset = lambda: Dataset.from_dict({"text": texts, "n": list(range(50))}).to_iterable_dataset(num_shards=3)  # noqa: E731
    read = list(hub_documents(dataset(), "text", every=10))
    assert [text for _, text in read] == texts
    assert [i for i, (state, _) in enumerate(read) if state is not None] == [9, 19, 29, 39, 49]
    state = read[29][0]
    assert [text for _, text in hub_documents(dataset(), "text", start=state, every=10)] == texts[30:]
    with pytest.raises(UsageError, match="record without text in 'body'"):
        list(hub_documents(dataset(), "body"))


def test_damaged_input_is_one_line_naming_the_file(tmp_path, wiki_parts):
    import gzip

    whole = gzip.compress((wiki_parts / "part-0.txt").read_bytes())
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match=r"cut.txt.gz cannot be read past byte"):
        list(text_documents([str(cut)]))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(UsageError, match=r"bad.parquet cannot be read as parquet"):
        list(DocumentSource(DataArguments(train_file=str(bad), streaming=True)).documents())


def test_without_a_validation_split_the_percentage_must_hold_something_out(wiki_parts, tmp_path):
    args = DataArguments(train_file=str(wiki_parts / "part-0.txt"), streaming=True, validation_split_percentage=0)
    with pytest.raises(UsageError, match="--validation_split_percentage must be between 1 and 99, got 0"):
        load_raw_corpus(args, str(tmp_path))
