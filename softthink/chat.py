"""Chat rendering: one user turn through the model's chat template, with the thinking block opened.

QwQ-32B, the DeepSeek-R1 distills and Qwen3 templates end the generation prompt inside an open `<think>` block;
models whose template does not (the bundled SmolLM2) get an explicit opening appended (docs/design/evaluation.md §2.1).
"""
from __future__ import annotations

THINK_OPEN = "<think>\n"


def template_opens_think(tokenizer, open_str: str = "<think>") -> bool:
    probe = "softthink-probe-question"
    text = tokenizer.apply_chat_template([{"role": "user", "content": probe}], add_generation_prompt=True,
                                         tokenize=False)
    return open_str in text[text.rindex(probe) + len(probe):]


def render_chat(tokenizer, user_text: str, open_think: str | bool = "auto", suffix: str = "") -> str:
    """Rendered prompt text: template(user turn, generation prompt) + thinking opening (if needed) + suffix.

    open_think: "auto" appends "<think>\\n" unless the template already opened the block; True always appends;
    False never; any other string is appended as the opening.
    """
    text = tokenizer.apply_chat_template([{"role": "user", "content": user_text}], add_generation_prompt=True,
                                         tokenize=False)
    if open_think == "auto":
        if not template_opens_think(tokenizer):
            text += THINK_OPEN
    elif open_think is True:
        text += THINK_OPEN
    elif isinstance(open_think, str) and open_think:
        text += open_think
    return text + suffix


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of rendered prompt text. Templates already contain BOS where the model wants one, so no special
    tokens are added here (adding them would duplicate BOS)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]
