"""Every mistake on the command line gets one line naming the culprit, exit status 2, and touches nothing."""

import pytest

TINY = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,intermediate_size=128"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "good.txt").write_text("Some English text for a test.\n\n" * 50)
    (tmp_path / "one_document.txt").write_text("One paragraph of English text, no blank line.\n" * 50)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1") * 20)
    (tmp_path / "notes.docx").write_text("x")
    (tmp_path / "rows.jsonl").write_text('{"body": "no text column here"}\n')
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "short.txt").write_text("A few words only.\n")
    (tmp_path / "corrupt.json").write_text('{"model_type": "bert", "hidden_size": ')
    (tmp_path / "notes.txt").write_text("just some notes\n")
    (tmp_path / "null_text.jsonl").write_text('{"text": "Fine."}\n{"text": null}\n')
    (tmp_path / "missing_text.jsonl").write_text('{"text": "Fine."}\n{"title": "no text here"}\n')
    (tmp_path / "broken.jsonl").write_text('{"text": "Fine."}\n{"text": "cut short\n')
    (tmp_path / "broken.csv").write_text('text,label\n"Fine.",1\n"cut short,1\n')
    (tmp_path / "ragged.tsv").write_text("text\tlabel\nFine.\t1\nToo\tmany\tfields\n")
    return tmp_path


CASES = [
    # (extra args replacing the defaults, what the one line must name)
    ({"--config_name": "no-such/preset"}, "no-such/preset"),
    ({"--train_file": "{tmp}/missing.txt"}, "missing.txt does not exist"),
    ({"--train_file": "{tmp}/empty.txt"}, "empty.txt is empty"),
    ({"--train_file": "{tmp}/latin1.txt"}, "latin1.txt is not UTF-8"),
    ({"--train_file": "{tmp}/notes.docx"}, "unknown extension '.docx'"),
    ({"--train_file": "{tmp}/rows.jsonl"}, "no column 'text'"),
    ({"--train_file": None, "--dataset_name": "no-such/corpus"}, "--dataset_name no-such/corpus"),
    ({"--train_file": None}, "no training data"),
    ({"--train_file": "{tmp}/one_document.txt"}, "single document"),
    ({"--fp16": "True"}, "--fp16 needs a CUDA GPU"),
    ({"--bf16": "True", "--fp16": "True"}, "--fp16 and --bf16"),
    ({"--per_device_train_batch_size": "0"}, "--per_device_train_batch_size must be a positive integer"),
    ({"--learning_rate": "0"}, "--learning_rate must be > 0"),
    ({"--max_steps": "0"}, "--max_steps 0"),
    ({"--max_seq_length": "1024"}, "--max_seq_length 1024 is larger than the model's 512 positions"),
    ({"--output_dir": "{tmp}/a_file/run"}, "is not writable"),
    ({"--output_dir": "{tmp}/a_file"}, "is a file"),
    ({"--config_overrides": "hidden_size=sixty"}, "hidden_size=sixty"),
    ({"--tokenizer_name": "{tmp}/no-tokenizer-here"}, "no-tokenizer-here"),
    ({"--config_overrides": TINY + ",vocab_size=100", "--tokenizer_name": "{data}/tokenizers/bert-base-uncased"},
     "30522 tokens but the model's embedding table has 100"),
    ({"--mlm_probability": "1.5"}, "--mlm_probability"),
    ({"--config_name": "gpt2", "--config_overrides": None}, "run_mlm.py trains bert"),
    ({"--no_such_flag": "1"}, "--no_such_flag"),
    # an evaluation of nothing used to publish eval_loss 0 / perplexity 1.0
    ({"--max_eval_samples": "0"}, "--max_eval_samples must be a positive integer, got 0"),
    ({"--max_train_samples": "-1"}, "--max_train_samples must be a positive integer, got -1"),
    ({"--validation_file": "{tmp}/short.txt"}, "the validation split (--validation_file"),
    # files that are not what they claim to be: the file, the line or record, what is wrong
    ({"--config_name": "{tmp}/corrupt.json"}, "corrupt.json is not a JSON config file"),
    ({"--config_name": "{tmp}/notes.txt"}, "notes.txt is not a JSON config file"),
    ({"--train_file": "{tmp}/null_text.jsonl"}, "null_text.jsonl (train): record 2 has no text"),
    ({"--train_file": "{tmp}/missing_text.jsonl"}, "missing_text.jsonl (train): record 2 has no text"),
    ({"--train_file": "{tmp}/broken.jsonl"}, "broken.jsonl line 2: not valid JSON"),
    ({"--train_file": "{tmp}/broken.csv"}, "broken.csv line 3:"),
    ({"--train_file": "{tmp}/ragged.tsv"}, "ragged.tsv line 3: 3 fields, the header has 2"),
    # what would fail only after the model is built
    ({"--push_to_hub": "True"}, "--push_to_hub needs the Hugging Face Hub, which is offline"),
]


def build_args(files, data_dir, changes):
    args = {"--config_name": "bert-tiny", "--config_overrides": TINY, "--train_file": str(files / "good.txt"),
            "--output_dir": str(files / "out"), "--max_steps": "2", "--vocab_size": "500"}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value.format(tmp=files, data=data_dir if data_dir else "")
    flat = [part for pair in args.items() for part in pair] + ["--do_train"]
    return flat


@pytest.mark.parametrize("changes, culprit", CASES, ids=[c for _, c in CASES])
def test_run_mlm_bad_input(cli, files, changes, culprit, request):
    data_dir = request.getfixturevalue("data_dir") if "{data}" in str(changes) else None
    code, _, err = cli("run_mlm.py", *build_args(files, data_dir, changes))
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1 and culprit in errors[0], err
    assert not (files / "out" / "lmzoo_record.json").exists()


OTHER_SCRIPTS = [
    ("run_clm.py", ["--config_name", "bert-tiny"], "run_clm.py trains gpt2"),
    ("run_clm.py", ["--config_name", "gpt2", "--block_size", "64", "--max_seq_length", "32"], "--block_size and --max_seq_length disagree"),
    ("run_clm.py", ["--config_name", "gpt2", "--block_size", "4096"], "--block_size 4096 is larger than the model's 1024 positions"),
    ("run_clm.py", ["--config_name", "gpt2", "--packing", "sentences"], "--packing"),
    ("run_t5_span.py", ["--config_name", "t5-small", "--noise_density", "1.5"], "--noise_density must be in (0, 1)"),
    ("run_t5_span.py", ["--config_name", "t5-small", "--mean_noise_span_length", "0.5"], "--mean_noise_span_length must be >= 1"),
    ("run_t5_span.py", ["--config_name", "gpt2"], "run_t5_span.py trains t5"),
    ("run_t5_span.py", ["--config_name", "t5-small", "--max_seq_length", "4"], "--max_seq_length must be at least 8"),
    # strided evaluation: checked with the arguments, not after the whole training run
    ("run_clm.py", ["--config_name", "gpt2", "--block_size", "64", "--do_eval", "--eval_stride", "65"],
     "--eval_stride must be between 1 and the block size (64), got 65"),
    ("run_clm.py", ["--config_name", "gpt2", "--block_size", "64", "--do_eval", "--eval_stride", "0"],
     "--eval_stride must be between 1 and the block size (64), got 0"),
    ("run_clm.py", ["--config_name", "gpt2", "--block_size", "64", "--eval_stride", "32"],
     "--eval_stride scores the validation text after training: it needs --do_eval"),
]


@pytest.mark.parametrize("script, args, culprit", OTHER_SCRIPTS, ids=[c for _, _, c in OTHER_SCRIPTS])
def test_other_pretraining_scripts_bad_input(cli, files, script, args, culprit):
    code, _, err = cli(script, *args, "--train_file", files / "good.txt", "--output_dir", files / "out",
                       "--do_train", "--max_steps", "2", "--vocab_size", "300", "--cache_dir", files / "cache")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and "Traceback" not in err, err
    assert len(errors) == 1 and culprit in errors[0], err
    assert not (files / "out" / "lmzoo_record.json").exists()
    assert not (files / "cache" / "tokenizers").exists()  # refused before any data work


def test_json_arguments_file_and_a_missing_one(cli, files):
    import json

    config = files / "args.json"
    config.write_text(json.dumps({"config_name": "bert-tiny", "train_file": str(files / "missing.txt"),
                                  "output_dir": str(files / "out"), "do_train": True}))
    code, _, err = cli("run_mlm.py", config)
    assert code == 2 and "missing.txt does not exist" in err
    code, _, err = cli("run_mlm.py", files / "nope.yaml")
    assert code == 2 and "arguments file" in err and "nope.yaml" in err


@pytest.mark.parametrize("body, culprit", [
    ('{"config_name": "bert-tiny", ', "args.json is not valid JSON"),
    ('["bert-tiny"]', "args.json: expected flag names with their values, found a list"),
    ('{"config_name": "bert-tiny", "max_steps": "many"}', "args.json: 'max_steps' is 'many', expected an integer"),
    ('{"config_name": "bert-tiny", "bf16": "yes"}', "args.json: 'bf16' is 'yes', expected true/false"),
    ('{"config_name": "bert-tiny", "max_stepz": 3}', "args.json: Some keys are not used"),
])
def test_a_bad_arguments_file_is_one_line(cli, files, body, culprit):
    (files / "args.json").write_text(body)
    code, _, err = cli("run_mlm.py", files / "args.json")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1 and culprit in err, err


def test_an_arguments_file_and_flags_together_are_refused(cli, files):
    (files / "args.json").write_text('{"config_name": "bert-tiny", "do_train": true}')
    code, _, err = cli("run_mlm.py", files / "args.json", "--max_steps", "3")
    assert code == 2 and "give either an arguments file or command-line flags, not both" in err


def test_a_reporting_package_that_is_not_installed_is_named(cli, files):
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        pytest.skip("tensorboard is installed here")
    code, _, err = cli("run_mlm.py", *build_args(files, None, {"--report_to": "tensorboard"}))
    assert code == 2 and "--report_to tensorboard needs the tensorboard package" in err


def test_a_checkpoint_whose_weights_are_cut_short_is_one_line(cli, files, data_dir):
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    checkpoint = files / "checkpoint"
    BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(checkpoint)
    BertTokenizerFast.from_pretrained(data_dir / "tokenizers" / "bert-base-uncased").save_pretrained(checkpoint)
    weights = checkpoint / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    args = build_args(files, data_dir, {"--config_name": None, "--config_overrides": None, "--vocab_size": None,
                                        "--model_name_or_path": str(checkpoint), "--max_seq_length": "16"})
    code, _, err = cli("run_mlm.py", *args)
    assert code == 2 and "Traceback" not in err
    assert f"--model_name_or_path {checkpoint}: its weights file is damaged or cut short" in err
