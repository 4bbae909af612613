"""What a trained causal LM says, and how well it predicts a whole text: samples and strided perplexity."""

import math
from collections.abc import Iterable, Iterator

import torch


def sample_continuations(model, tokenizer, prompts, max_new_tokens: int = 40, seed: int = 0) -> list[dict]:
    """A short sampled continuation per prompt (top-k 50, temperature 1), seeded so a rerun shows the same text."""
    model.eval()
    device = next(model.parameters()).device
    samples = []
    for prompt in prompts:
        torch.manual_seed(seed)
        encoded = tokenizer(prompt, return_tensors="pt").to(device)
        if encoded["input_ids"].shape[1] == 0:  # an empty prompt starts from the end-of-text token
            encoded = {"input_ids": torch.tensor([[tokenizer.eos_token_id]], device=device)}
        with torch.no_grad():
            output = model.generate(**encoded, do_sample=True, top_k=50, max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.eos_token_id)
        continuation = tokenizer.decode(output[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        samples.append({"prompt": prompt, "continuation": continuation})
    return samples


def joined_token_ids(texts: Iterable[str], tokenizer, separator: str = "\n\n",
                     piece_chars: int = 1 << 18) -> Iterator[list[int]]:
    """The ids of `separator.join(texts)` without special tokens, in chunks, exactly as one call on the joined text
    would give them, but never holding more than a few pieces of `piece_chars` characters of text.

    A piece is cut where tokenizing its two halves apart gives the same ids as tokenizing it whole, at a token
    boundary well inside it. For the regex pre-tokenizers of BPE and WordPiece tokenizers such a boundary is one
    in the whole text too, and the ids after it depend on the text after it only. A tokenizer for which no cut
    checks out (one that marks the start of the text, say) is tokenized whole at the end: never different ids."""
    pending, length, threshold = [], 0, 2 * piece_chars
    for number, text in enumerate(texts):
        pending.append(text if number == 0 else separator + text)
        length += len(pending[-1])
        if length >= threshold:
            joined = "".join(pending)
            ids, cut = _stable_prefix(joined, tokenizer, length - piece_chars)
            if ids:
                yield ids
                joined, threshold = joined[cut:], 2 * piece_chars
            else:
                threshold *= 2  # try again with more text, not at every document
            pending, length = [joined], len(joined)
    if pending:
        yield _ids(tokenizer, "".join(pending))


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _stable_prefix(text: str, tokenizer, around: int, tries: int = 8) -> tuple[list[int], int]:
    """(ids of text[:cut], cut) for a cut near `around` characters that tokenizes the same apart as whole; ([], 0)
    when none of the tried cuts does."""
    whole = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, starts = whole["input_ids"], [start for start, _ in whole["offset_mapping"]]
    index = next((i for i, start in enumerate(starts) if start >= around), None)
    if index is None:
        return [], 0
    for j in range(index, min(len(ids), index + tries)):
        cut = starts[j]  # before token j
        if _ids(tokenizer, text[:cut]) == ids[:j] and _ids(tokenizer, text[cut:]) == ids[j:]:
            return ids[:j], cut
    return [], 0


def strided_perplexity(model, token_ids, window: int, stride: int, batch_size: int = 8) -> dict:
    """Sliding-window perplexity over one long token sequence, as the Hugging Face perplexity guide computes it:
    windows of `window` tokens moved by `stride`; each window scores only the tokens the previous one did not,
    with up to `window - stride` tokens of context. Returns the exact token-weighted mean.

    `token_ids`: the ids, or an iterable of lists of ids (joined_token_ids): only the tokens of the next
    `batch_size` windows are held, so the text may be of any length."""
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in (0, window={window}], got {stride}")
    model.eval()
    device = next(model.parameters()).device
    if isinstance(token_ids, list) and (not token_ids or isinstance(token_ids[0], int)):
        chunks = iter([token_ids])  # one list of ids
    else:
        chunks = iter(token_ids)  # lists of ids, one after the other
    buffer, buffer_start, exhausted = [], 0, False  # buffer holds ids from absolute position buffer_start on
    nll_sum, scored, group = 0.0, 0, []
    begin, previous_end = 0, 0
    while True:
        while not exhausted and buffer_start + len(buffer) <= begin + window:  # one more id: is there a next window?
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
            else:
                buffer.extend(chunk)
        available = buffer_start + len(buffer)
        if begin >= available:
            break
        end = min(begin + window, available)
        group.append((buffer[begin - buffer_start:end - buffer_start], end - previous_end))
        previous_end = end
        last = exhausted and end == available
        if len(group) == batch_size or last:
            loss_sum, count = _score_windows(model, group, device)
            nll_sum, scored, group = nll_sum + loss_sum, scored + count, []
        if last:
            break
        begin += stride
        del buffer[:begin - buffer_start]  # nothing before the next window is needed again
        buffer_start = begin
    if scored == 0:
        raise ValueError("the text gave no token to score (it needs at least two tokens)")
    loss = nll_sum / scored
    return {"strided_loss": loss, "strided_perplexity": math.exp(loss), "strided_tokens": scored,
            "strided_window": window, "strided_stride": stride}


def _score_windows(model, group, device) -> tuple[float, int]:
    """(summed next-token loss, tokens scored) of windows [(ids, how many of its last tokens to score)]."""
    width = max(len(ids) for ids, _ in group)
    inputs = torch.zeros((len(group), width), dtype=torch.long)
    labels = torch.full((len(group), width), -100, dtype=torch.long)
    mask = torch.zeros((len(group), width), dtype=torch.long)
    for row, (ids, new) in enumerate(group):
        inputs[row, :len(ids)] = torch.as_tensor(ids)
        mask[row, :len(ids)] = 1
        labels[row, len(ids) - new:len(ids)] = torch.as_tensor(ids[len(ids) - new:])
    with torch.no_grad():
        logits = model(input_ids=inputs.to(device), attention_mask=mask.to(device)).logits.float()
    shifted, targets = logits[:, :-1], labels[:, 1:].to(device)
    keep = targets != -100
    loss = torch.nn.functional.cross_entropy(shifted[keep], targets[keep], reduction="sum").item()
    return loss, int(keep.sum())
