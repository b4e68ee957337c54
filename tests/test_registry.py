"""The methods registry (softthink/methods.py) drives every method list: a toy method added through the registry
alone runs in the engine, reads in tables and figures, and is refused where it is not supported; and no library
module restates a list of method names (docs/architecture.md, "How to add a method")."""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

import fixtures
from softthink import comparison, figures, methods, tables
from softthink.config import ConfigError, GenerationConfig
from softthink.engine import HFEngine

LIBRARY = Path(methods.__file__).parent


@pytest.fixture
def toy():
    """A soft-input method that reuses Soft Thinking's core code, with its own name, label, colour and parameters."""
    m = methods.register(methods.Method("toy_soft", "Toy Thinking", ("dark", 0), "*", (("K", "think.max_topk"),),
                                        code=methods.METHODS["soft"].code, cold_stop=True))
    v = methods.register(methods.Method("toy_soft_gumbel", "Toy Thinking + Gumbel", ("dark", 1), "+",
                                        (("τ_g", "noise.gumbel_tau"),), base="toy_soft",
                                        when=(("noise.kind", "gumbel"),)))
    yield m, v
    methods.unregister(v.name)
    methods.unregister(m.name)


def test_toy_method_through_the_registry_alone(toy, tiny_qwen):
    model, tok = tiny_qwen
    cfg = {"max_new_tokens": 12, "think": {"max_topk": 3}, "cold_stop": {"threshold": 0.01, "length": 2}, "seed": 3}
    toy_cfg = GenerationConfig.from_dict({"method": "toy_soft", **cfg})
    assert toy_cfg.is_soft and toy_cfg.think.filter_order == "sequential"
    engine = HFEngine(model, tok, progress=False)
    prompts = [[5, 6, 7, 8], [9, 10]]
    got = engine.generate(prompts, toy_cfg)
    want = engine.generate(prompts, GenerationConfig.from_dict({"method": "soft", **cfg}))
    assert [g.token_ids for g in got] == [g.token_ids for g in want]  # the same core code, the same tokens

    gen = toy_cfg.to_dict()
    assert methods.row_of(gen) == "toy_soft"
    assert methods.row_of({**gen, "noise": {**gen["noise"], "kind": "gumbel"}}) == "toy_soft_gumbel"
    rows = [fixtures.summary_row("r-toy", "smollm2-135m", "gsm8k", {"method": "toy_soft", **cfg}, n=1, n_items=2,
                                 **{"pass@1": 50.0, "pass@1_std": 1.0}, len_correct=10.0, len_all=12.0),
            fixtures.summary_row("r-soft", "smollm2-135m", "gsm8k", {"method": "soft", **cfg}, n=1, n_items=2,
                                 **{"pass@1": 25.0, "pass@1_std": 1.0}, len_correct=10.0, len_all=12.0)]
    tab = comparison.comparison_table(pd.DataFrame(rows))
    assert list(tab.index.get_level_values("method")) == ["soft", "toy_soft"]  # registry order
    md = comparison.comparison_markdown(tab)
    assert "Toy Thinking (K 3)" in md
    assert figures.method_label("toy_soft") == "Toy Thinking" and figures.method_marker("toy_soft") == "*"
    assert figures.method_color("toy_soft") not in [figures.method_color(m) for m in methods.ROWS if m != "toy_soft"]
    assert methods.get("toy_soft").engines == ("hf",)


def test_toy_method_is_refused_by_sglang_and_unknown_after_removal(toy):
    from softthink.sglang_glue.driver import PluginRequestError, check_config

    with pytest.raises(PluginRequestError, match="toy_soft.*transformers engine"):
        check_config(GenerationConfig.from_dict({"method": "toy_soft"}))
    methods.unregister("toy_soft_gumbel")
    methods.unregister("toy_soft")
    with pytest.raises(ConfigError, match="method: 'toy_soft' is not allowed"):
        GenerationConfig.from_dict({"method": "toy_soft"})


def test_register_refuses_bad_records():
    with pytest.raises(ValueError, match="already registered"):
        methods.register(methods.Method("soft", "x", ("dark", 0), "o", code=0))
    with pytest.raises(ValueError, match="code"):
        methods.register(methods.Method("nocode", "x", ("dark", 0), "o"))
    with pytest.raises(ValueError, match="base"):
        methods.register(methods.Method("orphan", "x", ("dark", 0), "o", base="nope"))


def test_variant_rows_exclude_each_other():
    """Every combination of the settings that select soft's variants maps to exactly one row."""
    for tau in (0.0, 0.01):
        for noise in ("none", "gumbel", "dirichlet"):
            gen = {"method": "soft", "cold_stop": {"threshold": tau}, "noise": {"kind": noise}}
            matching = [n for n, v in methods.ROWS.items() if v.base == "soft"
                        and all(methods.setting(gen, k) == w for k, w in v.when)]
            assert len(matching) <= 1, (tau, noise, matching)
    assert tables.row_key("soft", 0.0, "gumbel") == "soft_gumbel"  # the deprecated name still answers


def _string_lists(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            yield node, [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def test_no_library_module_restates_method_names():
    """Only methods.py names the methods; paper.py names the rows of the published tables (a fact of the paper)."""
    names = set(methods.ROWS)
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        if path.name in ("methods.py", "paper.py"):
            continue
        for node, strings in _string_lists(ast.parse(path.read_text())):
            if len(names.intersection(strings)) >= 2:
                offenders.append(f"{path.relative_to(LIBRARY)}:{node.lineno}")
    assert not offenders, f"method names restated outside softthink/methods.py: {offenders}"
