"""What a trained causal LM says, and how well it predicts a whole text: samples and strided perplexity."""

import math

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


def strided_perplexity(model, token_ids: list[int], window: int, stride: int, batch_size: int = 8) -> dict:
    """Sliding-window perplexity over one long token sequence, as the Hugging Face perplexity guide computes it:
    windows of `window` tokens moved by `stride`; each window scores only the tokens the previous one did not,
    with up to `window - stride` tokens of context. Returns the exact token-weighted mean."""
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in (0, window={window}], got {stride}")
    model.eval()
    device = next(model.parameters()).device
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    spans, previous_end = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        spans.append((begin, end, end - previous_end))  # score the last (end - previous_end) tokens
        previous_end = end
        if end == len(ids):
            break
    nll_sum, scored = 0.0, 0
    for start in range(0, len(spans), batch_size):
        group = spans[start:start + batch_size]
        width = max(end - begin for begin, end, _ in group)
        inputs = torch.zeros((len(group), width), dtype=torch.long)
        labels = torch.full((len(group), width), -100, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, (begin, end, new) in enumerate(group):
            inputs[row, : end - begin] = ids[begin:end]
            mask[row, : end - begin] = 1
            labels[row, end - begin - new: end - begin] = ids[end - new:end]
        with torch.no_grad():
            logits = model(input_ids=inputs.to(device), attention_mask=mask.to(device)).logits.float()
        shifted, targets = logits[:, :-1], labels[:, 1:].to(device)
        keep = targets != -100
        nll_sum += torch.nn.functional.cross_entropy(shifted[keep], targets[keep], reduction="sum").item()
        scored += int(keep.sum())
    loss = nll_sum / max(scored, 1)
    return {"strided_loss": loss, "strided_perplexity": math.exp(loss), "strided_tokens": scored,
            "strided_window": window, "strided_stride": stride}
