"""The prepared GPU call for the zoo's book rows (bench/gpu_zoo_books.sh), dry-run on CPU: a GPU is lent for
minutes, so the script must already work end to end, from the compressed shards to the parts that come back."""

import json
import math
import os
import subprocess
import sys

import pytest


def run_script(repo_root, tmp_path, data_dir, **env):
    environment = {**os.environ, "QUICK": "1", "PYTHON": sys.executable, "DATA_DIR": str(data_dir),
                   "OUT_ROOT": str(tmp_path / "root"), "RUNS_DIR": str(tmp_path / "runs"),
                   "PACK_DIR": str(tmp_path / "pack"), "OMP_NUM_THREADS": "2", **env}
    return subprocess.run(["bash", str(repo_root / "bench" / "gpu_zoo_books.sh")], env=environment,
                          capture_output=True, text=True, timeout=900)


def test_the_dry_run_trains_both_rows_and_packs_a_loadable_checkpoint(repo_root, tmp_path, data_dir):
    if not (data_dir / "gutenberg" / "train-09.txt.xz").is_file():
        pytest.skip("the book corpus is not in the shared data folder")
    result = run_script(repo_root, tmp_path, data_dir, SHARDS="train-09.txt.xz")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, script in (("bert-mini-books", "run_mlm.py"), ("gpt2-books", "run_clm.py")):
        record = json.loads((tmp_path / "runs" / name / "lmzoo_record.json").read_text())
        assert record["status"] == "completed" and record["script"] == script
        assert math.isfinite(record["perplexity"]) and math.isfinite(record["test_perplexity"])
        assert record["corpus"] == "train-09.txt.xz (validation: validation.txt.xz, test: test.txt.xz)"
    parts = sorted((tmp_path / "pack").glob("bert-mini-books.tar.part*"))
    assert parts and all(p.stat().st_size < 16 * 2**20 for p in parts)
    assert not any("safetensors" in p.name for p in (tmp_path / "pack").iterdir())
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(f"cat {' '.join(map(str, parts))} | tar -x -C {unpacked}", shell=True, check=True)
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(unpacked / "bert-mini-books")
    tokenizer = AutoTokenizer.from_pretrained(unpacked / "bert-mini-books")
    assert model.config.hidden_size == 64 and tokenizer("a book")["input_ids"][0] == tokenizer.cls_token_id


def test_a_missing_corpus_stops_it_before_anything_is_installed_or_run(repo_root, tmp_path):
    result = run_script(repo_root, tmp_path, tmp_path / "nowhere")
    assert result.returncode == 2 and not (tmp_path / "runs").exists()
    assert result.stderr.strip() == (f"gpu_zoo_books: {tmp_path / 'nowhere'}/gutenberg/validation.txt.xz is missing "
                                     f"(DATA_DIR={tmp_path / 'nowhere'})")
