"""The CUDA defaults of the pretraining scripts: applied unless the user gave the flag, absent on CPU."""

from types import SimpleNamespace

from lmzoo.args import PretrainingArguments, parse_args
from lmzoo.gpu_defaults import GPU_DEFAULTS, apply_gpu_defaults, flags_given


def plain_trainer_settings(**changes):
    values = dict(tf32=None, torch_compile=False, optim="adamw_torch", dataloader_persistent_workers=False,
                  dataloader_pin_memory=True, dataloader_num_workers=0)
    return SimpleNamespace(**{**values, **changes})


def test_every_default_is_applied_when_no_flag_was_given():
    args = plain_trainer_settings()
    applied = apply_gpu_defaults(args, frozenset(), capability=(9, 0))
    assert args.tf32 is True and args.torch_compile is True and args.optim == "adamw_torch_fused"
    assert args.dataloader_persistent_workers is True and args.dataloader_num_workers >= 1
    assert applied == {"tf32": True, "torch_compile": True, "optim": "adamw_torch_fused",
                       "dataloader_persistent_workers": True, "dataloader_num_workers": args.dataloader_num_workers}


def test_a_flag_the_user_typed_wins_over_its_default():
    given = flags_given(["--torch_compile", "False", "--optim=adamw_torch", "--dataloader_num_workers", "0",
                         "--output_dir", "x"])
    assert given == {"torch_compile", "optim", "dataloader_num_workers", "output_dir"}
    args = plain_trainer_settings()
    applied = apply_gpu_defaults(args, given, capability=(9, 0))
    assert args.torch_compile is False and args.optim == "adamw_torch" and args.dataloader_num_workers == 0
    # no workers: persistent workers would be refused by torch, so that default is not applied either
    assert args.dataloader_persistent_workers is False and set(applied) == {"tf32"}


def test_cpu_runs_keep_the_trainers_settings(tmp_path):
    (args,) = parse_args(PretrainingArguments, argv=["--output_dir", str(tmp_path / "out")])
    assert args.gpu_defaults_applied == {} and args.torch_compile is False and args.tf32 is None
    assert set(GPU_DEFAULTS) <= set(vars(args))  # every default names a real TrainingArguments field


def test_an_older_gpu_gets_only_what_it_supports():
    volta = plain_trainer_settings()
    assert "tf32" not in apply_gpu_defaults(volta, frozenset(), capability=(7, 0))  # transformers would refuse it
    assert volta.tf32 is None and volta.torch_compile is True
    pascal = plain_trainer_settings()
    applied = apply_gpu_defaults(pascal, frozenset(), capability=(6, 0))
    assert "torch_compile" not in applied and "tf32" not in applied and pascal.optim == "adamw_torch_fused"
