import json
import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from lmzoo.generation import strided_perplexity

TINY_GPT2 = "n_layer=2,n_embd=64,n_head=2,resid_pdrop=0.0,embd_pdrop=0.0,attn_pdrop=0.0"


def clm_args(data_dir, out, *extra):
    return ["--config_name", "gpt2", "--config_overrides", TINY_GPT2,
            "--train_file", data_dir / "tinyshakespeare" / "input.txt", "--validation_split_percentage", "5",
            "--vocab_size", "1000", "--block_size", "64", "--max_eval_samples", "32",
            "--output_dir", out, "--do_train", "--do_eval", "--per_device_train_batch_size", "8",
            "--learning_rate", "3e-3", "--logging_steps", "5", "--disable_tqdm", "True", "--seed", "11", *extra]


def test_gpt2_trains_samples_and_reports_strided_perplexity(cli, data_dir, tmp_path):
    out = tmp_path / "gpt2"
    code, stdout, err = cli("run_clm.py", *clm_args(data_dir, out, "--max_steps", "60", "--eval_stride", "32",
                                                     "--sample_prompt", "ROMEO:", "--sample_prompt", "To be"))
    assert code == 0, err
    record = json.loads((out / "lmzoo_record.json").read_text())
    assert record["eval_loss"] < record["initial_eval_loss"] - 1.0
    assert record["initial_eval_loss"] > math.log(1000) - 0.5  # the untrained model is near uniform
    assert [s["prompt"] for s in record["samples"]] == ["ROMEO:", "To be"]
    assert all(s["continuation"] for s in record["samples"]) and "sample: 'ROMEO:'" in stdout
    strided = record["strided"]
    assert strided["strided_window"] == 64 and strided["strided_stride"] == 32
    assert "sliding-window" in strided["perplexity_kind"] and "every validation block" in record["perplexity_kind"]
    assert record["eval_examples"] == 32 and record["eval_tokens"] == 32 * 63  # 63 predicted tokens per block
    # more context per scored token than fixed blocks: the strided number is no worse
    assert strided["strided_perplexity"] < record["perplexity"] * 1.05
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.n_layer == 2 and model.config.vocab_size == 1000


def test_strided_perplexity_scores_every_token_once_and_matches_fixed_windows():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=64))
    ids = torch.randint(0, 50, (100,)).tolist()
    overlapping = strided_perplexity(model, ids, window=16, stride=4, batch_size=3)
    assert overlapping["strided_tokens"] == len(ids) - 1
    disjoint = strided_perplexity(model, ids, window=16, stride=16)
    by_hand, count = 0.0, 0
    for begin in range(0, 100, 16):
        chunk = torch.tensor([ids[begin:begin + 16]])
        with torch.no_grad():
            out = model(chunk, labels=chunk)
        by_hand += out.loss.item() * (chunk.shape[1] - 1)
        count += chunk.shape[1] - 1
    assert disjoint["strided_tokens"] == count
    assert math.isclose(disjoint["strided_loss"], by_hand / count, rel_tol=1e-5)


def test_webtext_jsonl_without_text_column_and_block_too_long(cli, data_dir, tmp_path):
    rows = tmp_path / "webtext.train.jsonl"
    rows.write_text(json.dumps({"id": 1, "ended": True, "length": 3, "body": "x y z"}) + "\n")
    args = clm_args(data_dir, tmp_path / "o", "--max_steps", "2")
    args[args.index("--train_file") + 1] = rows
    code, _, err = cli("run_clm.py", *args)
    assert code == 2 and "no column 'text'" in err and "webtext.train.jsonl" in err
    args = clm_args(data_dir, tmp_path / "o2", "--max_steps", "2")
    args[args.index(TINY_GPT2)] = TINY_GPT2 + ",n_positions=32"
    code, _, err = cli("run_clm.py", *args)
    assert code == 2 and "--block_size 64 is larger than the model's 32 positions" in err


def logged_losses(out):
    state = json.loads((out / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_torchrun_two_processes_match_one_process(data_dir, tmp_path, repo_root):
    """2 gloo processes x batch 4 see the same 8 blocks per step as 1 process x batch 8 (the sampler shards each
    global batch), so with dropout off the losses agree up to float summation order in the gradient all-reduce:
    we allow 1e-3 relative after 12 AdamW steps."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    base = [str(a) for a in clm_args(data_dir, single, "--max_steps", "12", "--logging_steps", "1",
                                     "--eval_on_start", "False")]
    subprocess.run([sys.executable, str(repo_root / "run_clm.py"), *base], check=True, env=env,
                   capture_output=True, timeout=600)
    double = tmp_path / "double"
    args = [a if a != str(single) else str(double) for a in base]
    args[args.index("--per_device_train_batch_size") + 1] = "4"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", str(repo_root / "run_clm.py"), *args, "--ddp_backend", "gloo"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = logged_losses(single), logged_losses(double)
    assert len(one) == len(two) == 12
    assert all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(one, two)), (one, two)
    record = json.loads((double / "lmzoo_record.json").read_text())
    assert record["hardware"]["world_size"] == record["world_size"] == 2
    assert (record["per_device_train_batch_size"], record["effective_batch_size"]) == (4, 8)
    single_eval = json.loads((single / "all_results.json").read_text())["eval_loss"]
    assert math.isclose(record["eval_loss"], single_eval, rel_tol=1e-3)  # eval reduced over both ranks


@pytest.fixture(scope="module")
def wikitext_lines(data_dir):
    return [line.rstrip("\n") for line in open(data_dir / "wikitext-2-raw" / "wiki.valid.raw", encoding="utf-8")]


@pytest.mark.parametrize("tokenizer_name", ["gpt2", "bert-base-uncased"])
def test_the_validation_text_tokenized_in_pieces_gives_the_ids_of_one_call(data_dir, wikitext_lines, tokenizer_name):
    from transformers import AutoTokenizer

    from lmzoo.generation import joined_token_ids

    tokenizer = AutoTokenizer.from_pretrained(data_dir / "tokenizers" / tokenizer_name)
    texts = wikitext_lines[:1500]
    pieces = list(joined_token_ids(texts, tokenizer, piece_chars=5000))
    assert len(pieces) > 20  # it really was cut
    assert [i for piece in pieces for i in piece] == tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]


def test_streamed_strided_perplexity_equals_the_one_shot_value_in_bounded_memory(data_dir, wikitext_lines,
                                                                                 monkeypatch):
    import tracemalloc

    from transformers import AutoTokenizer

    from lmzoo import generation
    from lmzoo.generation import joined_token_ids

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(data_dir / "tokenizers" / "gpt2")
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=64))
    texts = wikitext_lines[:120]  # about 8,000 tokens: 170 overlapping windows
    one_shot = strided_perplexity(model, tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"],
                                  window=64, stride=48, batch_size=4)
    streamed = strided_perplexity(model, joined_token_ids(texts, tokenizer, piece_chars=2000), 64, 48, 4)
    assert streamed == one_shot  # the same windows in the same batches: the same floats

    # the memory question is about the ids held, not the model: score windows for free while measuring
    monkeypatch.setattr(generation, "_score_windows", lambda model, group, device: (1.0, len(group)))

    def peak_bytes(lines):
        tracemalloc.start()
        strided_perplexity(model, joined_token_ids(iter(lines), tokenizer, piece_chars=3000), 64, 64, 4)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = wikitext_lines[:400], wikitext_lines[:400] * 8
    assert peak_bytes(large) < 1.5 * peak_bytes(small)  # what is held does not grow with the text
    text = "\n\n".join(large)
    tracemalloc.start()
    tokenizer(text, add_special_tokens=False)["input_ids"]  # what tokenizing it in one call holds
    one_call = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak_bytes(large) < 0.5 * one_call


def test_a_padded_vocabulary_round_trips_and_generation_never_emits_a_padding_row(cli, data_dir, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "padded"
    code, _, err = cli("run_clm.py", *clm_args(data_dir, out, "--max_steps", "3", "--pad_vocab_to_multiple_of",
                                                "64", "--eval_on_start", "False"))
    assert code == 0, err
    record = json.loads((out / "lmzoo_record.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    rows = model.config.vocab_size
    assert rows % 64 == 0 and len(tokenizer) < rows < len(tokenizer) + 64
    assert record["vocab_size"] == len(tokenizer) and record["embedding_rows"] == rows
    assert model.generation_config.suppress_tokens == list(range(len(tokenizer), rows))
    prompt = tokenizer("ROMEO:", return_tensors="pt")
    with torch.no_grad():  # make every padding row point along the last hidden state: the most likely next token
        hidden = model(**prompt, output_hidden_states=True).hidden_states[-1][0, -1]
        model.get_output_embeddings().weight[len(tokenizer):] = 100 * hidden / hidden.norm()
        logits = model(**prompt).logits[0, -1]
    assert logits.argmax() >= len(tokenizer)  # unsuppressed, a padding row would win
    generated = model.generate(**prompt, do_sample=False, max_new_tokens=8, pad_token_id=tokenizer.eos_token_id)
    assert int(generated.max()) < len(tokenizer)
