"""Published numbers (softthink.paper) against the consistency oracles of docs/design/paper.md §6."""
import math

import pytest

from softthink import paper


def test_every_oracle_holds():
    results = paper.check_consistency()
    assert len(results) > 100
    bad = [r for r in results if not r.ok]
    assert not bad, "\n".join(f"{r.name}: {r.detail}" for r in bad)


@pytest.mark.parametrize("table", [paper.TABLE1, paper.TABLE2])
def test_averages_recompute(table):
    for (model, method), (accs, avg_acc, lens, avg_len, _da, _dl) in table.items():
        assert paper.matches_printed(sum(accs) / len(accs), avg_acc, 2), (model, method)
        assert paper.matches_printed(sum(lens) / len(lens), avg_len, 0), (model, method)


def test_truncated_averages_are_the_documented_ones():
    # docs/design/paper.md §6: these print truncated, not rounded
    assert paper.matches_printed(83.845, 83.84, 2) and paper.matches_printed(4995.75, 4995, 0)
    assert paper.matches_printed(6471.75, 6472, 0) and paper.matches_printed(2899.67, 2900, 0)
    assert not paper.matches_printed(83.845, 83.86, 2)


def test_implied_counts_examples():
    assert paper.implied_counts(76.66, 30) == [23]          # only by truncation
    assert paper.implied_counts(64.64, 198) == [128]
    assert paper.implied_counts(76.88, 30, 16) == [369]      # only by rounding
    assert paper.implied_counts(96.57, 1319) == []           # non-integral single run
    assert paper.implied_counts(70.40, 30, 16) == []


def test_long_frames_shapes():
    cells = paper.published_cells()
    assert len(cells[cells.table == "table1"]) == 3 * 3 * 4
    assert len(cells[cells.table == "table2"]) == 3 * 3 * 3
    assert len(cells[cells.table == "table3"]) == 4 * 2
    avgs = paper.published_averages()
    assert len(avgs) == 18
    fig = paper.published_figure1()
    assert len(fig) == 12
    row = fig[(fig.model == "DeepSeek-R1-Distill-Qwen-32B") & (fig.domain == "math") & (fig.method == "soft")]
    assert row.reduction_pct.item() == 22.4


def test_abstract_claims():
    # "+2.48 points" = QwQ math average; "22.4 %" = DS-Qwen math length
    avgs = paper.published_averages().set_index(["domain", "model", "method"])
    assert avgs.loc[("math", "QwQ-32B", "soft"), "delta_acc"] == 2.48
    assert avgs.loc[("math", "DeepSeek-R1-Distill-Qwen-32B", "soft"), "delta_len_pct"] == -22.4
    assert max(avgs.delta_acc.dropna()) == 2.48
    # largest printed math/code length reduction for Soft Thinking
    soft = avgs.xs("soft", level="method")
    assert min(soft.delta_len_pct) == -22.4


def test_table3_cold_stop_row_equals_table1_2():
    cells = paper.published_cells().set_index(["table", "model", "method", "dataset"])
    t3 = cells.loc[("table3", "QwQ-32B", "soft", "aime2024")]
    t1 = cells.loc[("table1", "QwQ-32B", "soft", "aime2024")]
    assert (t3.acc, t3.len_correct) == (t1.acc, t1.len_correct)
    assert math.isnan(cells.loc[("table3", "QwQ-32B", "coconut_tf", "aime2024")].len_correct)
