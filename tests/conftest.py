"""Test set-up: offline, caches in a temporary folder, and the shared real-data folder when it is there.

The real data (GLUE TSVs, WikiText-2, tiny-shakespeare, tokenizer files) is named by LMZOO_DATA_DIR; tests that
need it skip cleanly when it is not set or absent.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_CACHE_ROOT = tempfile.mkdtemp(prefix="lmzoo-tests-")
atexit.register(shutil.rmtree, _CACHE_ROOT, ignore_errors=True)
# Set before datasets/transformers are imported anywhere in the test session.
os.environ.setdefault("HF_HOME", os.path.join(_CACHE_ROOT, "hf"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_CACHE_ROOT, "inductor"))
os.environ.setdefault("LMZOO_CACHE_DIR", os.path.join(_CACHE_ROOT, "lmzoo"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder (LMZOO_DATA_DIR), or skip."""
    value = os.environ.get("LMZOO_DATA_DIR")
    if not value or not Path(value, "README.md").is_file():
        pytest.skip("real data not available: set LMZOO_DATA_DIR to the shared data folder")
    return Path(value)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run a top-level script's main() in-process: returns (exit code, stdout, stderr)."""
    import importlib

    def run(script: str, *args: str):
        module = importlib.import_module(script.removesuffix(".py"))
        monkeypatch.setattr(sys, "argv", [script, *map(str, args)])
        code = 0
        try:
            module.main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run
