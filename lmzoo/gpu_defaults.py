"""What a pretraining run gets on a CUDA GPU without asking, so that one command runs near the GPU's speed.

bf16 (fp16 where bf16 is missing) comes from `--mixed_precision auto`; the rest is set here, each only when its
own Trainer flag was not given on the command line or in the arguments file: TF32 matmuls, `torch.compile`,
fused AdamW, and data-loader workers that stay alive between epochs and copy into pinned memory. `--gpu_defaults
False` turns them all off (the plain Trainer's settings). On a CPU nothing changes. The run record lists what was
applied (`gpu_defaults`).
"""

import contextvars

from .cpus import available_cpus

# TrainingArguments field -> the value a CUDA run gets unless the flag was given.
GPU_DEFAULTS = {
    "tf32": True,
    "torch_compile": True,
    "optim": "adamw_torch_fused",
    "dataloader_persistent_workers": True,
    "dataloader_pin_memory": True,
}
MAX_LOADER_WORKERS = 4  # tokenized blocks are memory-mapped: a few workers keep up with any GPU

# The flags given explicitly to the parse in progress (set by lmzoo.args.parse_args).
explicit_flags: contextvars.ContextVar[frozenset] = contextvars.ContextVar("explicit_flags", default=frozenset())


def flags_given(argv: list[str]) -> frozenset:
    """The flag names (without dashes) on a command line: `--bf16`, `--tf32 False`, `--optim=adamw_torch`."""
    return frozenset(arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--"))


def loader_workers() -> int:
    return max(1, min(MAX_LOADER_WORKERS, available_cpus() // 2))


# What each default needs of the GPU (compute capability): TF32 arrived with Ampere (8.0), and torch.compile's
# Triton kernels need Volta (7.0); transformers refuses --tf32 below Ampere, so it is never set there.
MINIMUM_CAPABILITY = {"tf32": (8, 0), "torch_compile": (7, 0)}


def device_capability() -> tuple[int, int]:
    import torch

    return torch.cuda.get_device_capability(0)


def apply_gpu_defaults(args, given: frozenset, capability: tuple[int, int] | None = None) -> dict:
    """Set each GPU default whose flag is not in `given`, and that the GPU (its compute `capability`, measured when
    not given) supports, on the TrainingArguments `args`; returns what was set."""
    capability = capability or device_capability()
    applied = {}
    for name, value in GPU_DEFAULTS.items():
        if capability < MINIMUM_CAPABILITY.get(name, (0, 0)):
            continue
        if name not in given and getattr(args, name) != value:
            setattr(args, name, value)
            applied[name] = value
    if "dataloader_num_workers" not in given and args.dataloader_num_workers == 0:
        args.dataloader_num_workers = applied["dataloader_num_workers"] = loader_workers()
    if args.dataloader_num_workers == 0 and "dataloader_persistent_workers" in applied:
        args.dataloader_persistent_workers = False  # persistent workers need workers (torch refuses otherwise)
        del applied["dataloader_persistent_workers"]
    return applied
