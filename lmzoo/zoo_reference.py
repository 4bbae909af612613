"""The published figures the zoo sets its rows beside (the reference model-zoo tables), and the one line per row
that compares them. Pretraining: at equal tokens seen where the reference publishes a curve, otherwise with the
reference's final figure and the ratio of tokens seen, always naming both corpora. GLUE: a row tuned over the
reference's own grid, task by task beside the reference's best of that grid.
"""

from dataclasses import dataclass

from .glue_tasks import TASKS
from .zoo_costs import describe_values
from .zoo_grid import GLUE_TABLE_TASKS, GridCell, format_lr, format_number, is_usable


@dataclass(frozen=True)
class ReferencePretraining:
    perplexity: float  # the final validation perplexity published
    corpus: str
    budget: str  # how long it trained, as published
    tokens: float | None  # tokens seen, estimated where the reference does not say; None when not estimable
    tokens_basis: str  # how `tokens` was arrived at
    curve: tuple[tuple[float, float], ...] = ()  # (tokens seen, perplexity), when the reference publishes one


# English Wikipedia 20220301.en is 20.3 GB of text; bert-base-uncased's WordPiece takes 4.2 bytes of the book corpus
# per token (measured here), so an epoch is about 4.8B tokens and 40 epochs about 190B.
WIKIPEDIA_40_EPOCHS = 190e9
REFERENCE_PRETRAINING = {
    "bert-tiny": ReferencePretraining(26.211, "English Wikipedia", "40 epochs", WIKIPEDIA_40_EPOCHS,
                                      "estimated: 20.3 GB of text at 4.2 bytes per token, x 40 epochs"),
    "bert-mini": ReferencePretraining(8.057, "English Wikipedia", "40 epochs", WIKIPEDIA_40_EPOCHS,
                                      "estimated: 20.3 GB of text at 4.2 bytes per token, x 40 epochs"),
    "gpt2": ReferencePretraining(127.966, "OpenAI's GPT-2 output dataset (webtext)", "40 epochs", None,
                                 "not published"),
}


def perplexity_at(curve: tuple[tuple[float, float], ...], tokens: float) -> float | None:
    """The reference curve's perplexity at `tokens`, interpolated on log-log axes (where loss curves are close to
    straight); None outside the curve."""
    import math

    points = sorted(curve)
    for (t0, p0), (t1, p1) in zip(points, points[1:]):
        if t0 <= tokens <= t1:
            share = 0.0 if t1 == t0 else math.log(tokens / t0) / math.log(t1 / t0)
            return math.exp(math.log(p0) + share * (math.log(p1) - math.log(p0)))
    return None


def format_tokens(count: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return f"{count:.0f}"


def reference_line(record: dict) -> str | None:
    """'- row: perplexity X (corpus) after T tokens; the reference's <preset>: ...' or None without a reference."""
    reference = REFERENCE_PRETRAINING.get(record.get("config_name"))
    if reference is None or not is_usable(record) or record.get("config_overrides"):
        return None  # an overridden preset is not the reference's model
    tokens = record.get("tokens_seen") or 0
    ours = (f"- {record['model']}: perplexity {record['perplexity']:.2f} on its validation text "
            f"({record.get('corpus', 'corpus not recorded')}) after {format_tokens(tokens)} tokens")
    at_equal = perplexity_at(reference.curve, tokens) if reference.curve else None
    if at_equal is not None:
        return (f"{ours}; the reference's {record['config_name']} at the same tokens seen: {at_equal:.2f} "
                f"({reference.corpus}, from its published curve)")
    theirs = (f"the reference's {record['config_name']}: {reference.perplexity:.2f} after {reference.budget} of "
              f"{reference.corpus} (final figure; no curve published)")
    if reference.tokens:
        ratio = reference.tokens / max(tokens, 1)
        theirs += (f", about {format_tokens(reference.tokens)} tokens ({reference.tokens_basis}): this row saw "
                   f"1/{ratio:,.0f} of them")
    else:
        theirs += f", tokens seen {reference.tokens_basis}"
    return f"{ours}; {theirs}. Different corpora and budgets: an order-of-magnitude comparison, not a ranking."


def reference_lines(runs: list[dict]) -> str | None:
    lines = [line for line in map(reference_line, runs) if line]
    return "\n".join(lines) or None


# The reference's GLUE table: the best dev score of its grid per task, as it prints each cell (x100).
REFERENCE_GLUE = {
    "bert-tiny": {"cola": "17.39", "sst2": "83.03", "mrpc": "82.83/73.77", "qqp": "65.71/77.47",
                  "stsb": "40.85/40.28", "mnli": "57.31", "qnli": "64.29", "wnli": "59.15", "rte": "58.84"},
    "bert-mini": {"cola": "26.97", "sst2": "87.27", "mrpc": "87.92/83.09", "qqp": "81.00/85.74",
                  "stsb": "84.19/84.44", "mnli": "69.06", "qnli": "84.26", "wnli": "57.75", "rte": "62.09"},
}
REFERENCE_GLUE_GRID = ({8, 16, 32, 64, 128}, {1e-4, 3e-4, 3e-5, 5e-5}, {4.0})  # batch sizes, learning rates, epochs


def glue_grid_differences(cells: list[GridCell], tasks) -> list[str]:
    """How a row's fine-tuning departs from the reference's (every point of its grid on each task, whole
    training and dev sets); [] when it does not. Fewer points, fewer epochs or less data give other best scores,
    so such a row is never set beside the reference."""
    batch_sizes, rates, epochs = REFERENCE_GLUE_GRID
    tried = ({c.batch_size for c in cells}, {c.learning_rate for c in cells}, {c.epochs for c in cells})
    differences = [f"{name} {describe_values(ours, show)}"
                   for name, ours, theirs, show in zip(("batch sizes", "learning rates", "epochs"), tried,
                                                       (batch_sizes, rates, epochs), (str, format_lr, format_number))
                   if ours != theirs]
    if not differences:  # every value of each axis was tried: was every point, on every task?
        points = len(batch_sizes) * len(rates) * len(epochs)
        short = [TASKS[t].folder for t in GLUE_TABLE_TASKS if t in tasks
                 and len({(c.batch_size, c.learning_rate, c.epochs) for c in cells if c.task == t}) < points]
        differences += [f"{', '.join(short)}: fewer than its {points} points"] if short else []
    for key, what in (("max_train_samples", "training"), ("max_eval_samples", "dev")):
        capped = sorted({r[key] for c in cells for r in c.runs if r.get(key)})
        differences += [f"the first {', '.join(map(str, capped))} {what} examples"] if capped else []
    return differences


def describe_reference_grid() -> str:
    batch_sizes, rates, epochs = REFERENCE_GLUE_GRID
    return " x ".join(describe_values(values, show)
                      for values, show in ((batch_sizes, str), (rates, format_lr), (epochs, format_number)))


def glue_reference_line(model: str, pretraining: dict, cells: list[GridCell], best: dict[str, GridCell],
                        score_text) -> str | None:
    """'- row beside the reference's <preset>, ...: CoLA ours vs theirs, ...' for a row pretrained here from a
    preset the reference table has; None otherwise. `best` maps task -> winning cell; `score_text` prints one."""
    preset = pretraining.get("config_name")
    if preset not in REFERENCE_GLUE or pretraining.get("config_overrides") or not best:
        return None
    differences = glue_grid_differences(cells, best)
    if differences:
        return (f"- {model}: tuned over a different grid from the reference's ({describe_reference_grid()}, every "
                f"point on each task, whole training and dev sets): here {'; '.join(differences)}. Its GLUE scores "
                f"are therefore not set beside the reference's {preset}.")
    seeds = {task: len(cell.usable_runs) for task, cell in best.items()}
    usual = max(set(seeds.values()), key=lambda n: (list(seeds.values()).count(n), n))  # the most tasks', then more
    others = ", ".join(f"{TASKS[t].folder}: {seeds[t]}" for t in GLUE_TABLE_TASKS if t in seeds and seeds[t] != usual)
    seeds_text = "the best of the same grid, " + (f"each point here the mean of {usual} seeds" if usual > 1 else
                                                   "one seed per point here") + (f" ({others})" if others else "")
    scores = ", ".join(f"{TASKS[task].folder} {score_text(best[task])} vs {REFERENCE_GLUE[preset][task]}"
                       for task in GLUE_TABLE_TASKS if task in best)
    pretrained = REFERENCE_PRETRAINING[preset]
    tokens = pretraining.get("tokens_seen") or 0
    corpus = (pretraining.get("corpus") or "its corpus").split(" (validation")[0]  # the training text alone
    budget = f"pretrained on {format_tokens(tokens)} tokens of {corpus}"
    if pretrained.tokens:
        budget += (f", 1/{pretrained.tokens / max(tokens, 1):,.0f} of the reference's ~{format_tokens(pretrained.tokens)}"
                   f" tokens of {pretrained.corpus}")
    else:
        budget += f", the reference on {pretrained.corpus}"
    return (f"- {model} beside the reference's {preset}, {seeds_text}: {scores}. This row was {budget}: different "
            "corpora and pretraining budgets, so this says how far the row is from the reference, not which recipe "
            "is better.")


def glue_reference_lines(models: list[str], pretrained: list[dict], cells: dict[tuple, GridCell],
                         best: dict[tuple, GridCell], score_text) -> str | None:
    by_model = {r["model"]: r for r in pretrained if is_usable(r)}
    lines = [glue_reference_line(model, by_model[model], [c for c in cells.values() if c.model == model],
                                 {task: cell for (m, task), cell in best.items() if m == model}, score_text)
             for model in models if model in by_model]
    return "\n".join(line for line in lines if line) or None
