"""The published prompts (official ``run_sglang_softthinking.py`` l. 131-174; docs/design/evaluation.md §2.2) and GPQA option order.

Rules:

* Which builder a dataset gets is its registry entry's ``prompt`` style (``softthink.data.DATASETS``; :data:`BUILDERS`).
* One user turn, no system message; the text below is rendered with the model's chat template by
  :func:`softthink.chat.render_chat` (``add_generation_prompt=True`` plus an opened think block).
* The official templates are triple-quoted strings ``.strip()``-ed *before* ``.format``, so the question is inserted verbatim
  (its own leading/trailing whitespace kept); the LiveCodeBench prompt is built by concatenation and ends in
  ``"\\n\\n"``.
* GPQA option order (§3.2): ``official_fixed`` keeps the file's frozen order; ``per_sample`` strips the trailing
  ``A. … D. …`` block and re-renders it in the order drawn from
  ``random.Random(int.from_bytes(sha256(f"{base_seed}|gpqa|{item_index}|{sample_index}").digest()[:8], "big"))``.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Callable

from softthink.data import DATASETS, names

PROMPT_VERSION = "official-b97407c/1"

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GPQA_INSTRUCTION = ("Please solve the following multiple-choice question. Please show your choice in the answer field "
                    'with only the choice letter, e.g.,"answer": "C".')
HUMANEVAL_INSTRUCTION = "Please solve the programming task below in Python. Code should be wrapped in a markdown code block."
MBPP_INSTRUCTION = (
    "Please solve the programming task with test cases below in Python. Make sure your code satisfies the following "
    "requirements:\n"
    "1. The function name and signature must match exactly as specified in the test cases.\n"
    "2. Your code should be wrapped in a markdown code block without including any test cases."
)
LCB_INSTRUCTION = ("You will be given a question (problem specification) and will generate a correct Python program "
                   "that matches the specification and passes all tests.")
LCB_STARTER_INSTRUCTION = ("You will use the following starter code to write the solution to the problem and enclose "
                           "your code within delimiters.")
LCB_STDIN_INSTRUCTION = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample "
    "inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the "
    "inputs, runs the algorithm and writes output to STDOUT."
)

# official run_sglang_nothinking.py l. 240: appended to the rendered prompt
NOTHINKING_SUFFIX = "Okay, I think I have finished thinking.\n</think>"

GPQA_LETTERS = "ABCD"
GPQA_OPTION_MODES = ("official_fixed", "per_sample")


def math_prompt(question: str) -> str:
    return f"{MATH_INSTRUCTION}\n\n{question}"


def gpqa_prompt(question: str) -> str:
    return f"{GPQA_INSTRUCTION}\n\n{question}"


def humaneval_prompt(prompt: str) -> str:
    return f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{prompt}\n```"


def mbpp_prompt(task: str, test_list: list[str]) -> str:
    tests = "\n".join(test_list)
    return f"{MBPP_INSTRUCTION}\n\nTask:\n{task}\n\nTest Cases:\n```python\n{tests}\n```"


def lcb_prompt(question: str, starter_code: str) -> str:
    text = f"{LCB_INSTRUCTION}\n\nQuestion: {question}\n\n"
    if starter_code:
        text += f"{LCB_STARTER_INSTRUCTION}\n```python\n{starter_code}\n```\n\n"
    else:
        text += f"{LCB_STDIN_INSTRUCTION}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text


# prompt style (``DatasetSpec.prompt`` in softthink.data) -> builder(question text, item)
BUILDERS: dict[str, Callable[[str, Any], str]] = {
    "math": lambda q, item: math_prompt(q),
    "gpqa": lambda q, item: gpqa_prompt(q),
    "humaneval": lambda q, item: humaneval_prompt(q),
    "mbpp": lambda q, item: mbpp_prompt(q, item.meta["test_list"]),
    "livecodebench": lambda q, item: lcb_prompt(q, item.meta.get("starter_code") or ""),
}


def build_user_prompt(dataset: str, item: Any, *, question: str | None = None) -> str:
    """The user-turn text for ``item`` of ``dataset``. ``question`` overrides the item's text (GPQA per-sample order)."""
    q = item.question if question is None else question
    spec = DATASETS.get(dataset)
    if spec is None or spec.prompt not in BUILDERS:
        raise KeyError(f"no prompt for dataset {dataset!r}")
    return BUILDERS[spec.prompt](q, item)


def __getattr__(name: str) -> Any:
    # deprecated (one release): the math datasets, now read from the registry (softthink.data.names("math"))
    if name == "MATH_DATASETS":
        return names("math")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render_prompt(tokenizer: Any, dataset: str, item: Any, *, nothinking: bool = False,
                  question: str | None = None) -> str:
    """Chat-rendered prompt text; with ``nothinking`` the NoThinking suffix closes the think block."""
    from softthink.chat import render_chat

    text = render_chat(tokenizer, build_user_prompt(dataset, item, question=question))
    return text + NOTHINKING_SUFFIX if nothinking else text


# ------------------------------------------------------------------------------------------------ GPQA order

def gpqa_option_block(choices: dict[str, str], order: list[int] | None = None) -> str:
    """``"A. …\\nB. …\\nC. …\\nD. …"``, optionally with position k showing original option ``order[k]``."""
    order = list(range(4)) if order is None else order
    return "\n".join(f"{GPQA_LETTERS[k]}. {choices[GPQA_LETTERS[o]]}" for k, o in enumerate(order))


def gpqa_permutation(base_seed: int, item_index: int, sample_index: int) -> list[int]:
    """π for one sample: position k shows original option π[k] (sha256-seeded, independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{base_seed}|gpqa|{item_index}|{sample_index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).sample(range(4), 4)


def gpqa_options(item: Any, mode: str = "official_fixed", base_seed: int = 0,
                 sample_index: int = 0) -> tuple[str, str, list[int]]:
    """(question text, gold letter, π) for one GPQA sample.

    ``official_fixed`` returns the file's text, its gold letter and the identity. ``per_sample`` requires the
    question to end with the ``choices`` block (true for all 198 items) and raises ``ValueError`` otherwise.
    """
    gold = str(item.answer).strip()
    if mode == "official_fixed":
        return item.question, gold, [0, 1, 2, 3]
    if mode != "per_sample":
        raise ValueError(f"GPQA option mode must be one of {GPQA_OPTION_MODES}, not {mode!r}")
    choices = item.meta["choices"]
    block = "\n\n" + gpqa_option_block(choices)
    if not item.question.endswith(block):
        raise ValueError(f"GPQA item {item.index}: question does not end with its choices block")
    stem = item.question[: -len(block)]
    perm = gpqa_permutation(base_seed, item.index, sample_index)
    new_gold = GPQA_LETTERS[perm.index(GPQA_LETTERS.index(gold))]
    return stem + "\n\n" + gpqa_option_block(choices, perm), new_gold, perm
