"""Named model configurations, built locally with no download.

`--config_name` resolves, in order: a preset name or one of the Hub names people type for it; a path to a
config.json or a checkpoint folder; anything else is a Hub name (which fails offline with a list of presets).
`--config_overrides "num_hidden_layers=2,hidden_size=64"` then edits the config, as in the Hugging Face examples.
"""

import json
import os

from transformers import AutoConfig, BertConfig, DistilBertConfig, GPT2Config, RobertaConfig, T5Config

from .errors import UsageError

# name -> (config class, fields that differ from the class defaults).  The class defaults are BERT-base,
# DistilBERT-base, GPT-2 124M and T5-small, so most presets only state what changes.
_BERT_SIZES = {  # Turc et al. 2019 compact BERTs: (layers, hidden); heads = hidden / 64, intermediate = 4 x hidden
    "bert-tiny": (2, 128),
    "bert-mini": (4, 256),
    "bert-small": (4, 512),
    "bert-medium": (8, 512),
    "bert-base": (12, 768),
    "bert-large": (24, 1024),
}

PRESETS = {
    **{
        name: (BertConfig, dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                                intermediate_size=4 * hidden))
        for name, (layers, hidden) in _BERT_SIZES.items()
    },
    "roberta-base": (RobertaConfig, dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                                         layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "distilbert-base": (DistilBertConfig, dict(n_layers=6, dim=768, n_heads=12, hidden_dim=3072)),
    # GPT-2's GELU is the tanh approximation; "gelu_pytorch_tanh" is the same function as the Hub configs'
    # "gelu_new" (to float rounding) in one fused kernel instead of a chain of Python-level ops.
    "gpt2": (GPT2Config, dict(n_layer=12, n_embd=768, n_head=12, activation_function="gelu_pytorch_tanh")),
    "gpt2-medium": (GPT2Config, dict(n_layer=24, n_embd=1024, n_head=16, activation_function="gelu_pytorch_tanh")),
    "gpt2-large": (GPT2Config, dict(n_layer=36, n_embd=1280, n_head=20, activation_function="gelu_pytorch_tanh")),
    "t5-small": (T5Config, dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64)),
    "t5-base": (T5Config, dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64)),
    "t5-v1_1-small": (T5Config, dict(d_model=512, d_ff=1024, num_layers=8, num_heads=6, d_kv=64,
                                     feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "t5-v1_1-base": (T5Config, dict(d_model=768, d_ff=2048, num_layers=12, num_heads=12, d_kv=64,
                                    feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
}

# Hub names people type -> preset.
ALIASES = {
    "prajjwal1/bert-tiny": "bert-tiny",
    "prajjwal1/bert-mini": "bert-mini",
    "prajjwal1/bert-small": "bert-small",
    "prajjwal1/bert-medium": "bert-medium",
    "google/bert_uncased_L-2_H-128_A-2": "bert-tiny",
    "google/bert_uncased_L-4_H-256_A-4": "bert-mini",
    "google/bert_uncased_L-4_H-512_A-8": "bert-small",
    "google/bert_uncased_L-8_H-512_A-8": "bert-medium",
    "google/bert_uncased_L-12_H-768_A-12": "bert-base",
    "bert-base-uncased": "bert-base",
    "google-bert/bert-base-uncased": "bert-base",
    "bert-large-uncased": "bert-large",
    "google-bert/bert-large-uncased": "bert-large",
    "FacebookAI/roberta-base": "roberta-base",
    "distilbert-base-uncased": "distilbert-base",
    "distilbert/distilbert-base-uncased": "distilbert-base",
    "openai-community/gpt2": "gpt2",
    "openai-community/gpt2-medium": "gpt2-medium",
    "openai-community/gpt2-large": "gpt2-large",
    "google-t5/t5-small": "t5-small",
    "google-t5/t5-base": "t5-base",
    "google/t5-v1_1-small": "t5-v1_1-small",
    "google/t5-v1_1-base": "t5-v1_1-base",
}


def preset_name(name: str | None) -> str | None:
    """The preset a name stands for, or None."""
    if not name:
        return None
    if name in PRESETS:
        return name
    return ALIASES.get(name)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")


def preset_list() -> str:
    return ", ".join(PRESETS)


def load_config(config_name: str | None = None, model_type: str | None = None, overrides: str | None = None,
                cache_dir: str | None = None):
    """Build a config from a preset, a local config/checkpoint, a model type's defaults, or the Hub."""
    preset = preset_name(config_name)
    if preset is not None:
        config_class, fields = PRESETS[preset]
        config = config_class(**fields)
        for key, value in fields.items():  # some config classes re-derive fields in __init__ (T5's tying)
            setattr(config, key, value)
    elif config_name and os.path.isfile(config_name):
        config = _local_config(config_name, config_name)
    elif config_name and os.path.isdir(config_name):
        if not os.path.isfile(os.path.join(config_name, "config.json")):
            raise UsageError(f"--config_name {config_name} is a folder without config.json")
        config = _local_config(config_name, os.path.join(config_name, "config.json"))
    elif config_name:
        config = _hub_config(config_name, cache_dir)
    elif model_type:
        try:
            config = AutoConfig.for_model(model_type)
        except ValueError as err:
            raise UsageError(f"--model_type {model_type} is not a transformers model type") from err
    else:
        raise UsageError(f"give --config_name (a preset: {preset_list()}; a config.json or checkpoint folder) "
                         "or --model_name_or_path or --model_type")
    if overrides:
        apply_overrides(config, overrides)
    return config


def _local_config(path: str, file: str):
    """A config.json (or a checkpoint folder's), with one line naming the file when it is not one."""
    try:
        with open(file, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"--config_name {file} is not a JSON config file "
                         f"({' '.join(str(err).split())[:200]})") from err
    if not isinstance(values, dict):
        raise UsageError(f"--config_name {file} holds a JSON {type(values).__name__}, not a config's fields")
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"--config_name {file}: transformers cannot read it as a config "
                         f"({' '.join(str(err).split())[:200]})") from err


def _hub_config(name: str, cache_dir: str | None):
    looks_like_path = name.startswith((".", "/", "~")) or name.endswith(".json")
    if looks_like_path:
        raise UsageError(f"--config_name {name} does not exist (expected a config.json, a checkpoint folder or a preset)")
    if _hub_offline():
        raise UsageError(f"--config_name {name} is not a preset and the Hub is offline; presets: {preset_list()}")
    try:
        return AutoConfig.from_pretrained(name, cache_dir=cache_dir)
    except (OSError, ValueError) as err:
        raise UsageError(f"--config_name {name}: not a preset and not loadable from the Hub ({type(err).__name__}); "
                         f"presets: {preset_list()}") from err


def apply_overrides(config, overrides: str) -> None:
    """Apply "key=value,key=value", casting each value to the type the config already has for that key."""
    for item in overrides.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise UsageError(f"--config_overrides: '{item}' is not key=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        if not hasattr(config, key):
            raise UsageError(f"--config_overrides: {config.model_type} config has no field '{key}'")
        setattr(config, key, _cast_like(getattr(config, key), raw, key))


def _cast_like(current, raw: str, key: str):
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if current is None:
            for cast in (int, float):
                try:
                    return cast(raw)
                except ValueError:
                    pass
            return None if raw.lower() == "none" else raw
    except ValueError as err:
        raise UsageError(f"--config_overrides: {key}={raw} is not a valid {type(current).__name__}") from err
    return raw


def max_positions(config) -> int | None:
    """Longest sequence the model's position table allows (RoBERTa keeps 2 slots for its padding offset)."""
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if value:
            return value - 2 if config.model_type in ("roberta", "xlm-roberta", "camembert") else value
    return None  # relative positions (T5): no hard limit
