"""Model FLOPs per trained token and the device's peak: the two halves of MFU.

FLOPs follow the convention of PaLM (appendix B) and nanoGPT: a matmul with a weight of N parameters costs
2N FLOPs per row forward and 4N backward, so 6N per token for every parameter a token passes through; attention
adds, per layer and token, the score and value products, 2 x 2 x context x width forward, x3 with backward:
12 x width x context (the causal mask's skipped half is not subtracted). Look-up tables (token, position and
token-type embeddings, T5's relative position buckets) cost nothing; an output layer tied to the token
embeddings costs its matmul. So GPT-2 124M at 1024 tokens is 6 x 123,653,376 + 12 x 12 x 768 x 1024 =
855,166,464 FLOPs per token.

Each stack is charged at its own length: T5's encoder runs on the input (e.g. 512 tokens), its decoder and
output layer on the target (114), its cross-attention keys and values on the encoder's output, and the cross
attention's products at target x input; the result is per *input* token, the token the throughput counts. A
masked-LM head that runs on the masked rows only (the sparse head) is charged for that fraction of the tokens.

Peaks are dense (no sparsity) data-sheet figures, matched by the exact device name: an H100 PCIe is not an
H100 SXM. An unknown device has no peak (no MFU is printed) rather than a wrong one. On a CPU the peak is the
best rate a matmul probe has shown on this machine.
"""

import json
import math
import os
import re
import time

import torch

# Dense peak FLOP/s by precision, from the vendors' data sheets, and the device names torch reports for them.
GPU_PEAKS = (
    # (name pattern, label, {precision: FLOP/s})
    (r"H100.*PCIe", "H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51e12}),
    (r"H100.*NVL", "H100 NVL", {"bf16": 835e12, "fp16": 835e12, "tf32": 418e12, "fp32": 60e12}),
    (r"H100", "H100 SXM", {"bf16": 989e12, "fp16": 989e12, "tf32": 495e12, "fp32": 67e12}),
    (r"H200.*NVL", "H200 NVL", {"bf16": 835e12, "fp16": 835e12, "tf32": 418e12, "fp32": 60e12}),
    (r"H200", "H200 SXM", {"bf16": 989e12, "fp16": 989e12, "tf32": 495e12, "fp32": 67e12}),
    (r"A100", "A100", {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    (r"L40S", "L40S", {"bf16": 362e12, "fp16": 362e12, "tf32": 183e12, "fp32": 91.6e12}),
    (r"\bL4\b", "L4", {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
)


def gpu_peak_flops(device_name: str, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s, where it came from) for a device name as torch.cuda.get_device_name gives it."""
    for pattern, label, peaks in GPU_PEAKS:
        if re.search(pattern, device_name):
            return peaks.get(precision), f"{label} data sheet ({precision})"
    return None, f"no peak known for {device_name}"


def precision_of(args) -> str:
    if args.bf16:
        return "bf16"
    if args.fp16:
        return "fp16"
    return "tf32" if torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32 else "fp32"


def device_peak_flops(precision: str, cache_dir: str | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s, where the number came from) for the device this process trains on."""
    if torch.cuda.is_available():
        return gpu_peak_flops(torch.cuda.get_device_name(0), precision)
    return cpu_peak_flops(precision, cache_dir), f"CPU matmul probe ({precision})"


def cpu_peak_flops(precision: str, cache_dir: str | None = None) -> float:
    """The best rate of a few large matmuls this CPU has shown, kept in a cache. Each run probes again (well under
    a second) and keeps the higher of the two: a probe taken while the machine was busy would otherwise stay the
    "peak" for good and put MFU above 100%."""
    path = os.path.join(cache_dir or os.path.expanduser("~/.cache/lmzoo"), "cpu_peak_flops.json")
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        cached = {}
    key = f"{precision}-{torch.get_num_threads()}threads"
    measured = matmul_flops(torch.bfloat16 if precision == "bf16" else torch.float32)
    if measured > cached.get(key, 0):
        cached[key] = measured
        from .records import atomic_write_json

        atomic_write_json(path, cached)
    return cached[key]


def matmul_flops(dtype, n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` n x n matmuls."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


# ---------------------------------------------------------------------------------------------- model FLOPs

LOOKUP_NAMES = ("position_embeddings", "token_type_embeddings", "relative_attention_bias", ".wpe.")
# Where a masked-LM's prediction head starts (the module that runs on masked rows only with the sparse head).
MLM_HEAD_MODULES = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head",
                    "distilbert": ("vocab_transform", "vocab_layer_norm", "vocab_projector"),
                    "electra": "generator_predictions"}


def _unique(parameters) -> dict[int, torch.nn.Parameter]:
    return {id(p): p for p in parameters}


def _count(parameters: dict) -> int:
    return sum(p.numel() for p in parameters.values())


def head_parameters(model) -> dict:
    """The output layer's parameters: a masked-LM's whole prediction head, else the output embeddings."""
    names = MLM_HEAD_MODULES.get(model.config.model_type)
    if names and (model.get_output_embeddings() is not None):
        modules = [getattr(model, n) for n in ((names,) if isinstance(names, str) else names) if hasattr(model, n)]
        if modules:
            return _unique(p for m in modules for p in m.parameters())
    head = model.get_output_embeddings()
    return _unique(head.parameters()) if head is not None else {}


def lookup_parameters(model, head: dict) -> dict:
    """Parameters used as look-up tables only (not also as the output layer's weight)."""
    lookups = _unique(model.get_input_embeddings().parameters())
    lookups.update(_unique(p for name, p in model.named_parameters() if any(k in f".{name}" for k in LOOKUP_NAMES)))
    return {k: p for k, p in lookups.items() if k not in head}


def attention_width(config) -> int:
    """The width of the attention products: heads x head size (T5's inner dimension can differ from d_model)."""
    if config.model_type in ("t5", "mt5", "umt5"):
        return config.num_heads * config.d_kv
    return next(getattr(config, k) for k in ("hidden_size", "n_embd", "dim", "d_model") if hasattr(config, k))


def layer_count(config) -> int:
    for key in ("n_layer", "n_layers", "num_hidden_layers"):  # one name each: GPT-2 aliases num_hidden_layers
        value = getattr(config, key, None)
        if value:
            return value
    raise ValueError(f"no layer count in a {config.model_type} config")


def flops_per_token(model, tokens_per_sample: int, head_fraction: float = 1.0,
                    target_length: int | None = None) -> float:
    """Training FLOPs (forward + backward) per input token; see the module docstring.

    tokens_per_sample: the input length (block size); target_length: an encoder-decoder's decoder length;
    head_fraction: the share of tokens the output layer runs on (the masking rate with the sparse MLM head)."""
    if model.config.is_encoder_decoder:
        return _encoder_decoder_flops(model, tokens_per_sample, target_length or tokens_per_sample)
    head = head_parameters(model)
    lookups = lookup_parameters(model, head)
    body = _count(_unique(model.parameters())) - _count(head) - _count(lookups)
    attention = 12 * layer_count(model.config) * attention_width(model.config) * tokens_per_sample
    return 6 * body + 6 * _count(head) * head_fraction + attention


def _encoder_decoder_flops(model, input_length: int, target_length: int) -> float:
    """T5: each stack at its own length, per input token."""
    config = model.config
    head = head_parameters(model)
    lookups = lookup_parameters(model, head)
    skip = set(head) | set(lookups)

    def matmul_params(module, predicate=lambda name: True) -> int:
        return sum(p.numel() for name, p in module.named_parameters() if id(p) not in skip and predicate(name))

    def cross_kv(name: str) -> bool:  # the cross attention's keys and values read the encoder's output
        return "EncDecAttention.k." in name or "EncDecAttention.v." in name

    encoder, decoder = model.get_encoder(), model.get_decoder()
    width = attention_width(config)
    decoder_layers = config.num_decoder_layers or config.num_layers
    per_sample = 6 * (matmul_params(encoder) * input_length
                      + matmul_params(decoder, lambda n: not cross_kv(n)) * target_length
                      + matmul_params(decoder, cross_kv) * input_length
                      + _count(head) * target_length)
    per_sample += 12 * width * (config.num_layers * input_length * input_length
                                + decoder_layers * target_length * target_length
                                + decoder_layers * target_length * input_length)
    return per_sample / input_length
