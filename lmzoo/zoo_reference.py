"""The published pretraining figures the zoo sets its rows beside (the reference model-zoo tables), and the one
line per row that compares them: at equal tokens seen where the reference publishes a curve, otherwise with the
reference's final figure and the ratio of tokens seen, always naming both corpora.
"""

from dataclasses import dataclass

from .zoo_grid import is_usable


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
