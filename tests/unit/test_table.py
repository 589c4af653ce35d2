"""enqueue.table: one aligned-table renderer for every command."""

from __future__ import annotations

import pytest

from enqueue import table


def test_columns_line_up_and_lines_end_without_spaces():
    lines = table.render(["NAME", "ROLES"], [["alpha", "enqueue_site"], ["a-much-longer-name", "-"]])
    assert lines == [
        "NAME                ROLES",
        "alpha               enqueue_site",
        "a-much-longer-name  -",
    ]
    assert {line.rindex(word) for line, word in zip(lines, ["ROLES", "enqueue_site", "-"])} == {20}


def test_a_short_row_gets_empty_cells_and_a_long_one_is_refused():
    assert table.render(["A", "B", "C"], [["x"]]) == ["A  B  C", "x"]
    with pytest.raises(ValueError):
        table.render(["A"], [["x", "y"]])


def test_only_a_header():
    assert table.render(["SITE", "STATE"], []) == ["SITE  STATE"]
