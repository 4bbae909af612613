"""The prepared GPU call for the zoo's book rows (bench/gpu_zoo_books.sh), dry-run on CPU: a GPU is lent for
minutes, so the script must already work end to end, from the compressed shards to the parts that come back."""

import json
import math
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def books(repo_root, data_dir, tmp_path_factory):
    """The data folder the GPU machine gets: bench/gpu_bundle.sh's copy (one shard, no wheels), so that the dry
    runs below also show that the bundle holds everything the script reads."""
    if not (data_dir / "gutenberg" / "train-09.txt.xz").is_file():
        pytest.skip("the book corpus is not in the shared data folder")
    bundle = tmp_path_factory.mktemp("bundle")
    result = run_bundle(repo_root, bundle, data_dir)
    assert result.returncode == 0, result.stderr
    copied = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert [c for c in copied if "gutenberg" in c] == [f"data/gutenberg/{name}.txt.xz"
                                                       for name in ("test", "train-09", "validation")]
    assert (bundle / "data/gutenberg/train-09.txt.xz").read_bytes() == \
        (data_dir / "gutenberg/train-09.txt.xz").read_bytes()
    assert not (bundle / "wheels").exists()
    return bundle / "data"


def run_bundle(repo_root, folder, data_dir, shards="train-09.txt.xz"):
    environment = {**os.environ, "DATA_DIR": str(data_dir), "SHARDS": shards, "WHEELS": "0"}
    return subprocess.run(["bash", str(repo_root / "bench" / "gpu_bundle.sh"), str(folder)], env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-books")  # the tokenized caches, shared by the runs below


def run_script(repo_root, tmp_path, data_dir, out_root, **env):
    environment = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "DATA_DIR": str(data_dir),
                   "SHARDS": "train-09.txt.xz", "OUT_ROOT": str(out_root), "RUNS_DIR": str(tmp_path / "runs"),
                   "PACK_DIR": str(tmp_path / "pack"), "PART_SIZE": "1m", "OMP_NUM_THREADS": "2", **env}
    return subprocess.run(["bash", str(repo_root / "bench" / "gpu_zoo_books.sh")], env=environment,
                          capture_output=True, text=True, timeout=900)


def unpack(tmp_path, name) -> list[str]:
    """Join a run's parts into tmp_path/unpacked; the member names."""
    parts = sorted((tmp_path / "pack").glob(f"{name}.tar.part*"))
    assert parts and all(p.stat().st_size <= 2**20 for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    (tmp_path / "unpacked").mkdir(exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(tmp_path / "unpacked")], input=joined, check=True)
    listing = subprocess.run(["tar", "-t"], input=joined, check=True, capture_output=True).stdout.decode()
    return listing.split()


def test_the_dry_run_trains_both_rows_and_packs_what_must_come_back(repo_root, tmp_path, books, out_root):
    result = run_script(repo_root, tmp_path, books, out_root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, script in (("bert-mini-books", "run_mlm.py"), ("gpt2-books", "run_clm.py")):
        record = json.loads((tmp_path / "runs" / name / "lmzoo_record.json").read_text())
        assert record["status"] == "completed" and record["script"] == script
        assert math.isfinite(record["perplexity"]) and math.isfinite(record["test_perplexity"])
        assert record["corpus"] == "train-09.txt.xz (validation: validation.txt.xz, test: test.txt.xz)"
        assert (tmp_path / "pack" / f"{name}.log").is_file()
    bert = unpack(tmp_path, "bert-mini-books")
    assert len(list((tmp_path / "pack").glob("bert-mini-books.tar.part*"))) > 1  # the joining is exercised
    assert "bert-mini-books/model.safetensors" in bert
    gpt2 = unpack(tmp_path, "gpt2-books")
    assert "gpt2-books/lmzoo_record.json" in gpt2 and not any(m.endswith(".safetensors") for m in gpt2)
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder = tmp_path / "unpacked" / "bert-mini-books"
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert model.config.hidden_size == 64 and tokenizer("a book")["input_ids"][0] == tokenizer.cls_token_id


def test_a_run_that_overruns_its_guard_fails_the_call_but_the_other_still_comes_back(repo_root, tmp_path, books,
                                                                                   out_root):
    result = run_script(repo_root, tmp_path, books, out_root, BERT_TIMEOUT="1")
    assert result.returncode == 1
    assert "== bert-mini-books (at most 1 s)\n   exit 124" in result.stdout
    assert not (tmp_path / "runs" / "bert-mini-books" / "lmzoo_record.json").exists()
    assert "gpt2-books/lmzoo_record.json" in unpack(tmp_path, "gpt2-books")


def test_a_missing_corpus_stops_it_before_anything_is_installed_or_run(repo_root, tmp_path, out_root):
    result = run_script(repo_root, tmp_path, tmp_path / "nowhere", out_root)
    assert result.returncode == 2 and not (tmp_path / "runs").exists()
    assert result.stderr.strip() == (f"gpu_zoo_books: {tmp_path / 'nowhere'}/gutenberg/validation.txt.xz is missing "
                                     f"(DATA_DIR={tmp_path / 'nowhere'})")


def test_the_bundle_refuses_a_shard_that_is_not_there_before_writing_anything(repo_root, tmp_path, data_dir):
    result = run_bundle(repo_root, tmp_path / "bundle", data_dir, shards="train-99.txt.xz")
    assert result.returncode == 2 and not (tmp_path / "bundle").exists()
    assert result.stderr.strip() == f"gpu_bundle: no train shard matches {data_dir}/gutenberg/train-99.txt.xz"


def test_the_bundle_will_not_write_over_the_data_it_copies(repo_root, tmp_path, data_dir):
    source = tmp_path / "shared" / "data"
    (source / "gutenberg").mkdir(parents=True)
    for name in ("validation", "test", "train-09"):
        (source / "gutenberg" / f"{name}.txt.xz").symlink_to(data_dir / "gutenberg" / f"{name}.txt.xz")
    (source / "tokenizers").symlink_to(data_dir / "tokenizers")
    result = run_bundle(repo_root, tmp_path / "shared", source)
    assert result.returncode == 2 and result.stderr.strip().endswith("is DATA_DIR itself; name another folder")
    assert sorted(p.name for p in (source / "gutenberg").iterdir()) == ["test.txt.xz", "train-09.txt.xz",
                                                                       "validation.txt.xz"]
