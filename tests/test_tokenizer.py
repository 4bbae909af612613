import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from lmzoo.demo_corpus import demo_splits
from lmzoo.errors import UsageError
from lmzoo.presets import load_config
from lmzoo.tokenizer import check_fits_model, load_tokenizer, trained_tokenizer


@pytest.fixture(scope="module")
def demo_train():
    return Dataset.from_dict({"text": demo_splits()["train"][:300]})


def test_wordpiece_is_uncased_and_cached_by_corpus(demo_train, tmp_path):
    tok = trained_tokenizer("bert", demo_train, "text", 2000, "fp-1", str(tmp_path))
    assert len(tok) == 2000 and tok.mask_token == "[MASK]"
    assert tok("Hello")["input_ids"] == tok("hello")["input_ids"]
    ids = tok("The function returns a list.")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    cached = list((tmp_path / "tokenizers").iterdir())
    again = trained_tokenizer("bert", demo_train, "text", 2000, "fp-1", str(tmp_path))
    assert list((tmp_path / "tokenizers").iterdir()) == cached and again.get_vocab() == tok.get_vocab()
    trained_tokenizer("bert", demo_train, "text", 2000, "fp-2", str(tmp_path))
    assert len(list((tmp_path / "tokenizers").glob("bert-*"))) == 4  # two folders, two lock files


def test_byte_level_bpe_round_trips_any_text(demo_train, tmp_path):
    tok = trained_tokenizer("gpt2", demo_train, "text", 1000, "fp", str(tmp_path))
    text = "Ünïcode — and tabs\tsurvive byte-level BPE."
    assert tok.decode(tok(text)["input_ids"]) == text
    roberta = trained_tokenizer("roberta", demo_train, "text", 1000, "fp", str(tmp_path))
    assert roberta.mask_token == "<mask>" and roberta.convert_tokens_to_ids("<pad>") == 1


def test_unigram_for_t5_has_100_sentinels_found_by_name(demo_train, tmp_path):
    tok = trained_tokenizer("t5", demo_train, "text", 1200, "fp", str(tmp_path))
    vocab = tok.get_vocab()
    sentinels = [vocab[f"<extra_id_{i}>"] for i in range(100)]
    assert len(set(sentinels)) == 100
    assert max(sentinels) < len(tok) - 1  # not at the end of the vocabulary as in Google's spiece.model
    assert tok("a test")["input_ids"][-1] == tok.eos_token_id
    reloaded = AutoTokenizer.from_pretrained(str(next((tmp_path / "tokenizers").glob("t5-*[!k]"))))
    assert reloaded.get_vocab() == vocab


def test_tokenizer_larger_than_embedding_table_is_refused(demo_train, tmp_path):
    tok = trained_tokenizer("bert", demo_train, "text", 2000, "fp", str(tmp_path))
    config = load_config("bert-tiny", overrides="vocab_size=1000")
    with pytest.raises(UsageError, match="2000 tokens but the model's embedding table has 1000"):
        check_fits_model(tok, config, "trained")


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(UsageError, match="expected a tokenizer folder"):
        load_tokenizer(str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="cannot load"):
        load_tokenizer(str(tmp_path))


def test_real_tokenizer_files_give_the_known_ids(data_dir):
    folder = data_dir / "tokenizers"
    assert load_tokenizer(str(folder / "gpt2"))("Hello world")["input_ids"] == [15496, 995]
    assert load_tokenizer(str(folder / "roberta-base"))("Hello world")["input_ids"] == [0, 31414, 232, 2]
    assert load_tokenizer(str(folder / "bert-base-uncased"))("Hello world!")["input_ids"] == [101, 7592, 2088, 999, 102]
