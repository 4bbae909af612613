"""`--help` answers before any model or Trainer code loads (the issue: 35 s under load, from imports alone)."""

import subprocess
import sys
from pathlib import Path

import pytest

# What --help must not have loaded: the Trainer, datasets, scipy and sklearn (seconds together). (Model
# *configs* do load: transformers 5's config classes import the auto-model table for their docstrings.)
HEAVY_MODULES = ("transformers.trainer", "datasets", "lmzoo.glue", "lmzoo.trainer", "lmzoo.objectives", "lmzoo.distill",
                 "scipy.stats", "sklearn")

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


@pytest.mark.parametrize("command, module", [("lmzoo-mlm", "run_mlm"), ("lmzoo-clm", "run_clm"),
                                             ("lmzoo-t5", "run_t5_span"), ("lmzoo-glue", "run_glue"),
                                             ("lmzoo-sweep", "lmzoo.sweep"), ("lmzoo-zoo", "lmzoo.zoo")])
def test_console_commands_are_installed_and_run_from_anywhere(command, module, tmp_path):
    """setup.py's entry points (the scripts are installed as modules too, so they work outside the checkout)."""
    import shutil
    from importlib.metadata import entry_points

    assert {e.name: e.value for e in entry_points(group="console_scripts")}[command] == f"{module}:main"
    path = shutil.which(command) or shutil.which(command, path=str(Path(sys.executable).parent))
    assert path, f"{command} is not installed next to {sys.executable}"
    result = subprocess.run([path, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_the_sweep_runs_glue_by_module_not_by_a_path_into_the_checkout(tmp_path, monkeypatch):
    from lmzoo import sweep

    monkeypatch.chdir(tmp_path)
    settings = sweep.parse_settings(["minilm", "--tasks", "rte", "--glue_dir", str(tmp_path)])
    assert settings.runner == (sys.executable, "-m", "run_glue")


def test_the_sweeps_checks_the_zoo_and_the_glue_tables_import_no_torch(repo_root, data_dir):
    probe = ("import sys\n"
             "import lmzoo.zoo, lmzoo.glue_tasks, lmzoo.glue_data, lmzoo.glue_predictions, lmzoo.model_source\n"
             "from lmzoo import sweep_settings as sweep\n"
             f"settings = sweep.parse_settings(['minilm', '--tasks', 'rte wnli', '--glue_dir', {str(data_dir / 'glue')!r}])\n"
             "sweep.check_task_data(settings, ['rte', 'wnli'])\n"
             "print('LOADED', *sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LOADED"
