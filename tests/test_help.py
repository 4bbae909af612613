"""`--help` answers before any model or Trainer code loads (the issue: 35 s under load, from imports alone)."""

import subprocess
import sys

import pytest

# What --help must not have loaded: the Trainer, datasets, scipy and sklearn (seconds together). (Model
# *configs* do load: transformers 5's config classes import the auto-model table for their docstrings.)
HEAVY_MODULES = ("transformers.trainer", "datasets", "lmzoo.glue", "lmzoo.trainer", "lmzoo.distill", "scipy.stats",
                 "sklearn")

PROBE = """
import runpy, sys
sys.argv = [{script!r}, "--help"]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("LOADED", *sorted(name for name in {heavy!r} if name in sys.modules))
"""


@pytest.mark.parametrize("script", ["run_mlm.py", "run_clm.py", "run_t5_span.py", "run_glue.py"])
def test_help_prints_every_flag_without_loading_model_code(repo_root, script):
    result = subprocess.run([sys.executable, "-c", PROBE.format(script=script, heavy=HEAVY_MODULES)],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--output_dir" in result.stdout and "--learning_rate" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "LOADED"


@pytest.mark.parametrize("module", ["lmzoo.sweep", "lmzoo.zoo"])
def test_sweep_and_zoo_help_load_neither_torch_nor_transformers(repo_root, module):
    probe = (f"import runpy, sys; sys.argv = ['{module}', '--help']\n"
             f"try:\n    runpy.run_module('{module}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('LOADED', *sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LOADED"
