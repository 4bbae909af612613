"""What the default log shows: our progress lines and the warnings that ask something of the user.

transformers 5 (checked against 5.24) logs, at warning level, a colour-coded "LOAD REPORT" table whenever a
checkpoint's keys differ from the model's (every GLUE run: the classifier head is new, as it should be) and a
"`loss_type=None` was set in the config" notice on the first loss of most models. Neither asks anything of the
user, so both are kept out of the default log (`LMZOO_DEBUG=1` shows them); what the load report means for the run
is said in our own words where the model is loaded. In a log file (stderr not a terminal), the progress bars of
sub-second library steps (loading weights, writing shards, training a tokenizer) would each
leave a line of carriage returns and cursor codes: they are turned off there, and the training bar stays.
"""

import logging
import sys

from .errors import debug_enabled

CHATTER = ("LOAD REPORT", "`loss_type=")  # transformers.modeling_utils warnings that ask nothing of the user


def _not_chatter(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(marker in message for marker in CHATTER)


def is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def quiet_library_logs() -> None:
    """Keep library chatter out of the default log (idempotent)."""
    if debug_enabled():
        return
    library_logger = logging.getLogger("transformers.modeling_utils")
    if _not_chatter not in library_logger.filters:
        library_logger.addFilter(_not_chatter)
    if not is_terminal():
        import transformers

        transformers.utils.logging.disable_progress_bar()


def new_weights_note(loading_info: dict, within: str = "") -> str | None:
    """One line on the weights (under the module prefix `within`) that `from_pretrained` did not find in the
    checkpoint and initialised at random, or None when there are none. Fine-tuning passes its base model's prefix:
    a new task head is what it expects, new weights in the body are not."""
    missing = sorted(key for key in loading_info.get("missing_keys") or () if key.startswith(within))
    if not missing:
        return None
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return f"{len(missing)} weights are not in the checkpoint and start from random values: {shown}"
