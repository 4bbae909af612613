"""Documents read in order, each with the position to restart from: the reading side of the corpora.

A position is a small JSON-able dict; `documents(start=position)` goes on from there by seeking, never by reading
and discarding what came before (a compressed file is decompressed from its start up to the position, without
parsing or tokenizing: shard compressed corpora for fast resumes). The map-style path (lmzoo.corpus) reads plain
text through the same paragraph groups, so a stream (lmzoo.streaming) sees the very documents a tokenized cache
is built from.

  text (.txt/.raw/.tokens)  a document per paragraph (a run of non-blank lines), within groups of 10,000 lines
  JSON lines (.jsonl/.json) a document per record: its text column
  parquet                   a document per row: its text column, read by row group
  a Hub dataset             `datasets` streaming; the position is its own state_dict
"""

import bz2
import gzip
import json
import lzma
import os
import sys
import time

from .errors import UsageError

COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# Plain text is a document per paragraph (a run of non-blank lines, newlines kept): a document boundary is a blank
# line, not every line end. Paragraphs are joined within groups of this many lines from the start of the split's
# files (a paragraph that spans two groups is two documents), as lmzoo always has, so that the blocks do not change.
PARAGRAPH_GROUP_LINES = 10_000
CHUNK_BYTES = 1 << 24
PROGRESS_SECONDS = 30.0


def open_binary(path: str):
    """The file's bytes (decompressed), and the raw file under them, whose position tells the progress."""
    raw = open(path, "rb")
    ext = os.path.splitext(path.lower())[1]
    if ext == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if ext == ".bz2":
        return bz2.BZ2File(raw, "rb"), raw
    if ext == ".xz":
        return lzma.LZMAFile(raw, "rb"), raw
    return raw, raw


class Progress:
    """A line every PROGRESS_SECONDS while a long read goes on: bytes done of the total, rate, time left."""

    def __init__(self, what: str, total_bytes: int, clock=time.monotonic, stream=sys.stderr):
        self.what, self.total, self.clock, self.stream = what, total_bytes, clock, stream
        self.started = self.last = clock()

    def update(self, done_bytes: int) -> None:
        now = self.clock()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        rate = done_bytes / max(now - self.started, 1e-9)
        left = (self.total - done_bytes) / rate if rate > 0 else float("inf")
        print(f"[lmzoo] {self.what}: {done_bytes / 1e6:,.0f} of {self.total / 1e6:,.0f} MB "
              f"({done_bytes / max(self.total, 1):.0%}), {rate / 1e6:,.1f} MB/s, about {format_seconds(left)} left",
              file=self.stream, flush=True)


def format_seconds(seconds: float) -> str:
    if seconds == float("inf"):
        return "? min"
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


# ----------------------------------------------------------------------------------------------------- plain text

def text_chunks(paths: list, start: dict | None = None, chunk_bytes: int = CHUNK_BYTES, progress: Progress = None):
    """(file index, byte offset, number of the first line, lines) per chunk of whole lines, from `start`'s chunk.

    Read as bytes and decoded, with universal newlines (\\r\\n and \\r end a line, as text mode reads), so that a
    chunk's byte offset can be sought to later."""
    line = start["line"] if start else 0
    done = sum(os.path.getsize(p) for p in paths[:start["file"]]) if start else 0
    for index in range(start["file"] if start else 0, len(paths)):
        path = paths[index]
        offset = start["offset"] if start and index == start["file"] else 0
        stream, raw = open_binary(path)
        with stream, raw:
            if offset:
                stream.seek(offset)
            while True:
                try:
                    data = stream.read(chunk_bytes)
                    data += stream.readline()  # end on a line end
                except (OSError, EOFError, lzma.LZMAError) as err:  # a damaged or cut-short compressed file
                    raise UsageError(f"{path} cannot be read past byte {offset:,} of its text: {err}") from err
                if not data:
                    break
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise UsageError(f"{path} is not UTF-8 text: {err.reason} at byte {offset + err.start:,}") from err
                text = text.replace("\r\n", "\n").replace("\r", "\n")
                lines = text.split("\n")
                if text.endswith("\n"):
                    lines.pop()  # the empty string after the last line end is not a line
                yield index, offset, line, lines
                line += len(lines)
                offset += len(data)
                if progress is not None:
                    progress.update(done + raw.tell())
        done += os.path.getsize(path)


def paragraph_groups(paths: list, start: dict | None = None, chunk_bytes: int = CHUNK_BYTES,
                     progress: Progress = None):
    """(group number, seek point, paragraphs) per group of PARAGRAPH_GROUP_LINES lines of the files read in order
    as one stream of lines. The seek point {file, offset, line} is a chunk start at or before the group's first
    line: `start` = {**seek point, "group": n} reads again from group n."""
    group = start["group"] if start else 0
    first_wanted = group * PARAGRAPH_GROUP_LINES
    pending, chunks = [], []  # lines from the current group's start; the chunks they came from
    for index, offset, first_line, lines in text_chunks(paths, start, chunk_bytes, progress):
        if first_line < first_wanted:  # resuming: the seek point's chunk starts before the group
            lines = lines[first_wanted - first_line:]
        chunks.append({"file": index, "offset": offset, "line": first_line})
        pending.extend(lines)
        while len(pending) >= PARAGRAPH_GROUP_LINES:
            yield group, _seek_point(chunks, group), paragraphs(pending[:PARAGRAPH_GROUP_LINES])
            del pending[:PARAGRAPH_GROUP_LINES]
            group += 1
    if pending:
        yield group, _seek_point(chunks, group), paragraphs(pending)


def _seek_point(chunks: list, group: int) -> dict:
    """The last chunk starting at or before the group's first line; older chunks are dropped."""
    first = group * PARAGRAPH_GROUP_LINES
    while len(chunks) > 1 and chunks[1]["line"] <= first:
        del chunks[0]
    return dict(chunks[0])


def paragraphs(lines: list) -> list:
    found, current = [], []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            found.append("\n".join(current))
            current = []
    if current:
        found.append("\n".join(current))
    return found


def text_documents(paths: list, start: dict | None = None, chunk_bytes: int = CHUNK_BYTES):
    """(position, paragraph); the position restarts at the document after it."""
    skip = start["doc"] if start else 0
    for group, seek, found in paragraph_groups(paths, start, chunk_bytes):
        for number, text in enumerate(found):
            if skip:
                skip -= 1
                continue
            yield {**seek, "group": group, "doc": number + 1}, text


# ---------------------------------------------------------------------------------------------------- JSON lines

def json_documents(paths: list, column: str, start: dict | None = None, chunk_bytes: int = CHUNK_BYTES):
    """(position, the record's text) per record of JSON-lines files; a record without text is one line naming it."""
    skip = start["record"] if start else 0
    for index, offset, first_line, lines in text_chunks(paths, start, chunk_bytes):
        seek = {"file": index, "offset": offset, "line": first_line}
        record = 0
        for number, line in enumerate(lines, start=first_line + 1):
            if not line.strip():
                continue
            record += 1
            if record <= skip:
                continue
            yield {**seek, "record": record}, _json_text(line, column, paths[index], number)
        skip = 0  # only the first chunk read is partly done


def _json_text(line: str, column: str, path: str, number: int) -> str:
    try:
        value = json.loads(line)
    except ValueError as err:
        if number == 1 and line.lstrip().startswith("["):
            raise UsageError(f"{path}: one JSON document, not JSON lines; --streaming reads one record per line") from err
        raise UsageError(f"{path} line {number:,}: not valid JSON ({getattr(err, 'msg', err)})") from err
    text = value.get(column) if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise UsageError(f"{path} line {number:,}: no text in '{column}' (name the text column with --text_column)")
    return text


# ------------------------------------------------------------------------------------------------------- parquet

def parquet_documents(paths: list, column: str, start: dict | None = None):
    """(position, the row's text) per row, read one row group at a time."""
    import pyarrow.parquet as pq

    import pyarrow as pa

    for index in range(start["file"] if start else 0, len(paths)):
        try:
            reader = pq.ParquetFile(paths[index])
        except (OSError, pa.ArrowException) as err:
            raise UsageError(f"{paths[index]} cannot be read as parquet: {str(err).splitlines()[0][:200]}") from err
        if column not in reader.schema_arrow.names:
            raise UsageError(f"{paths[index]}: no column '{column}' (found {', '.join(reader.schema_arrow.names)}); "
                             "name the text column with --text_column")
        first_group = start["row_group"] if start and index == start["file"] else 0
        for group in range(first_group, reader.num_row_groups):
            skip = start["row"] if start and (index, group) == (start["file"], start["row_group"]) else 0
            values = reader.read_row_group(group, columns=[column]).column(0).to_pylist()
            for row in range(skip, len(values)):
                if values[row] is None:
                    raise UsageError(f"{paths[index]}: row {row + 1:,} of row group {group} has no text")
                yield {"file": index, "row_group": group, "row": row + 1}, values[row]


# --------------------------------------------------------------------------------------------------- Hub datasets

def hub_documents(dataset, column: str, start: dict | None = None, every: int = 1):
    """(position, text) from a `datasets` IterableDataset; the position is the dataset's own state_dict, taken
    after every `every`-th document only (a copy of it is not free), None after the others."""
    if start is not None:
        dataset.load_state_dict(start)
    for number, example in enumerate(dataset, start=1):
        text = example.get(column)
        if not isinstance(text, str):
            raise UsageError(f"the streamed dataset has a record without text in '{column}' (record {number:,} "
                             "read here); name the text column with --text_column")
        yield (dataset.state_dict() if number % every == 0 else None), text
