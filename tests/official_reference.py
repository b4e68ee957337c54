"""The official Soft Thinking ``matheval.py`` rule judges (commit b97407c), re-typed call for call, as a script.

Run it with an interpreter that has the official pins (math-verify 0.8.0, latex2sympy2_extended 1.10.2):

    python -m venv build/official-grader
    build/official-grader/bin/pip install "math-verify[antlr4_13_2]==0.8.0" "latex2sympy2_extended==1.10.2"
    SOFTTHINK_OFFICIAL_PYTHON=build/official-grader/bin/python pytest tests/test_grading_corpus.py

Reads a JSON list of ``[dataset, gold, completion]`` on stdin and writes a JSON list of verdicts (true/false) on
stdout. It imports nothing from softthink: it is the reference the suite's official mode is compared against.
"""
import json
import sys

from latex2sympy2_extended import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify


def _answer(solution_str):
    return parse(
        solution_str,
        extraction_config=[
            LatexExtractionConfig(
                normalization_config=NormalizationConfig(
                    nits=False,
                    malformed_operators=False,
                    basic_latex=True,
                    boxed="all",
                    units=True,
                ),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            ),
            ExprExtractionConfig(),
        ],
        extraction_mode="first_match",
    )


def rule_judge(dataset, solution_str, ground_truth):
    if dataset in ("aime2024", "aime2025", "gsm8k"):          # AIMEEvaluator, GSM8KEvaluator
        gold = parse(ground_truth, extraction_config=[ExprExtractionConfig()])
        answer = _answer(solution_str)
    elif dataset in ("math500", "amc23"):                      # MATH500Evaluator, AMCEvaluator
        if not ground_truth.startswith("$"):
            ground_truth = f"${ground_truth}$"
        gold = parse(ground_truth, extraction_config=[LatexExtractionConfig()])
        answer = _answer(solution_str)
    elif dataset == "gpqa_diamond":                            # GPQAEvaluator
        gold = parse(ground_truth, extraction_config=[StringExtractionConfig()])
        answer = parse(solution_str, extraction_config=[StringExtractionConfig()])
    else:
        raise KeyError(dataset)
    if len(answer) == 0:
        return False
    return bool(verify(gold, answer))


def main():
    jobs = json.load(sys.stdin)
    out = [rule_judge(ds, text, str(gold)) for ds, gold, text in jobs]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
