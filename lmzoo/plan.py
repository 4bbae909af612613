"""The resolved plan of a pretraining run: what will be trained, fixed once, read by everything after it.

    config = build_config(model_args, run)                       # lmzoo.pretrain: preset / config.json / checkpoint
    plan = plan_model(model_args, config, raw, run, block=...)   # tokenizer, vocabulary, special ids: final
    model = build_model(plan, AutoModelForMaskedLM)

`plan_model` settles the tokenizer (named, the checkpoint's, or trained on the corpus), the embedding table's size
(a from-scratch preset takes the tokenizer's size, rounded up to --pad_vocab_to_multiple_of; a distilled student
the teacher's) and the special-token ids, and returns a frozen ModelPlan. The parsed arguments are never changed;
the tokenized cache, the model and the results record all read the plan.
"""

import logging
from dataclasses import dataclass

from safetensors import SafetensorError

from .errors import UsageError
from .logs import new_weights_note
from .presets import preset_name
from .tokenizer import check_fits_model, load_tokenizer, trained_tokenizer

logger = logging.getLogger("lmzoo")

# Embedding rows are rounded up to a multiple of this on a GPU (matmul tiles; nanoGPT's 50,257 -> 50,304).
GPU_VOCAB_MULTIPLE = 64


@dataclass(frozen=True)
class ModelPlan:
    config: object  # the model's config, final: overrides, vocabulary size, special-token ids
    tokenizer: object
    tokenizer_source: str  # where the tokenizer came from, in words (for the log and the record)
    vocab_size_requested: int | None  # what --vocab_size (or the preset) asked of a tokenizer trained here
    block: int  # tokens per training example (the input length)
    checkpoint: str | None  # the checkpoint the model continues, or None: from scratch

    @property
    def embedding_rows(self) -> int:
        return self.config.vocab_size


def continues_checkpoint(model_args) -> str | None:
    """The checkpoint --model_name_or_path names (a preset name there means: from scratch), or None."""
    name = model_args.model_name_or_path
    return name if name and preset_name(name) is None else None


def plan_model(model_args, config, raw, run, *, block: int, tokenizer_name: str | None = None,
               vocab_size: int | None = None) -> ModelPlan:
    """The frozen plan (see the module docstring). `tokenizer_name` overrides --tokenizer_name (a distilled
    student's default is its teacher's); `vocab_size` fixes the embedding rows (the teacher's)."""
    checkpoint = continues_checkpoint(model_args)
    tokenizer, source, requested = resolve_tokenizer(model_args, config, raw, run, tokenizer_name or
                                                     model_args.tokenizer_name, checkpoint)
    if vocab_size is not None:
        config.vocab_size = vocab_size
    elif embedding_follows_tokenizer(model_args, checkpoint):
        multiple = model_args.pad_vocab_to_multiple_of or (GPU_VOCAB_MULTIPLE if cuda_in_use(run.training_args) else 1)
        config.vocab_size = -(-len(tokenizer) // multiple) * multiple
    check_fits_model(tokenizer, config, source)
    if checkpoint is None:  # a fresh model takes the tokenizer's special ids
        for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(tokenizer, attr, None)
            if value is not None and hasattr(config, attr):
                setattr(config, attr, value)
        if config.model_type == "t5":
            config.decoder_start_token_id = tokenizer.pad_token_id
    logger.info("tokenizer: %s; the model's embedding table: %s rows%s", source, f"{config.vocab_size:,}",
                "" if config.vocab_size == len(tokenizer) else
                " (rows past the tokenizer's last id are never looked up, and never generated)")
    return ModelPlan(config, tokenizer, source, requested, block, checkpoint)


def resolve_tokenizer(model_args, config, raw, run, tokenizer_name: str | None, checkpoint: str | None):
    """(tokenizer, where it came from, the size asked of a trained one): the named tokenizer, the checkpoint's,
    or one trained on the training split (cached by corpus)."""
    from .corpus import corpus_fingerprint

    if tokenizer_name or checkpoint:
        name = tokenizer_name or checkpoint
        return load_tokenizer(name, run.hub_cache), name, None
    requested = model_args.vocab_size or config.vocab_size
    tokenizer = trained_tokenizer(config.model_type, raw["train"], "text", requested, corpus_fingerprint(raw),
                                  run.cache_root, required=run.require_cache)
    source = f"trained on the corpus ({len(tokenizer):,} tokens"
    if len(tokenizer) > requested:
        source += (f"; --vocab_size asked for {requested:,}, below the corpus's characters plus the special "
                   "tokens, which every tokenizer keeps")
        logger.warning("--vocab_size %d is below what a tokenizer of this corpus can have; it has %d tokens",
                       requested, len(tokenizer))
    elif len(tokenizer) < requested:
        source += f"; {requested:,} were asked for, the corpus has no more distinct pieces to merge"
    return tokenizer, source + ")", requested


def embedding_follows_tokenizer(model_args, checkpoint: str | None) -> bool:
    """A preset trained from scratch takes the tokenizer's size (a smaller vocabulary trains faster); any other
    config keeps its own, which must have room for every token (checked)."""
    is_preset = preset_name(model_args.config_name or model_args.model_name_or_path) is not None
    return checkpoint is None and is_preset and "vocab_size" not in (model_args.config_overrides or "")


def cuda_in_use(training_args) -> bool:
    import torch

    return torch.cuda.is_available() and not training_args.use_cpu


def build_model(plan: ModelPlan, auto_class):
    """The checkpoint to continue, or a fresh model from the plan's config."""
    if plan.checkpoint is not None:
        try:
            model, loading_info = auto_class.from_pretrained(plan.checkpoint, config=plan.config,
                                                             output_loading_info=True)
        except SafetensorError as err:
            raise UsageError(f"--model_name_or_path {plan.checkpoint}: its weights file is damaged or cut short "
                             f"({str(err).splitlines()[0][:200]})") from err
        except (OSError, ValueError) as err:
            raise UsageError(f"--model_name_or_path {plan.checkpoint}: cannot load a checkpoint "
                             f"({str(err).splitlines()[0][:200]})") from err
        note = new_weights_note(loading_info)
        if note:
            logger.warning("--model_name_or_path %s: %s", plan.checkpoint, note)
        return model
    model = auto_class.from_config(plan.config)
    suppress_unused_rows(model, plan.tokenizer)
    return model


def suppress_unused_rows(model, tokenizer) -> None:
    """Generation never emits an id the tokenizer does not have (the rows that pad the vocabulary): the saved
    generation config suppresses them."""
    rows = model.get_input_embeddings().num_embeddings
    if rows > len(tokenizer) and getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.suppress_tokens = list(range(len(tokenizer), rows))
