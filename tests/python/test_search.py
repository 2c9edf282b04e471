# strata.search: the rows equal ranking.csv of `strata search` run here on the same inputs, cell
# for cell, and attrs["summary"] its search.json (less the wall-clock timings); a space given as a
# dict narrows the search as the same space.json does; errors as the command's exit codes.
import csv
import json
import math
import sys

import pytest

import strata

ARGS = ("--model", "gpt-tiny", "--cluster", "local-cpu", "--gpus", "2", "--global-batch", "8")
TEXT = {"strategy", "schedule", "recompute", "layer_overrides", "file"}
TIMINGS = {"seconds", "explore_seconds"}  # wall clock: differ between two runs


def cli_search(cli, folder, *args):
    """(columns, rows of cells, search.json) of `strata search` into folder."""
    cli("search", *ARGS, *args, "--quiet", "--out", folder)
    with open(folder / "ranking.csv", newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:], json.loads((folder / "search.json").read_text())


def assert_equals_cli(table, expected):
    columns, lines, summary = expected
    assert list(table.columns) == columns
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    assert len(rows) == len(lines) > 0
    for row, line in zip(rows, lines):
        for column, cell in zip(columns, line):
            value = row[column]
            if cell == "":
                assert value is None or (isinstance(value, float) and math.isnan(value))
            elif column in TEXT:
                assert value == cell, column
            elif cell in ("true", "false"):
                assert value is (cell == "true"), column
            else:
                assert float(value) == float(cell), column
    got = table.attrs["summary"]
    assert {k: v for k, v in got.items() if k not in TIMINGS} == \
        {k: v for k, v in summary.items() if k not in TIMINGS}


def test_search_equals_the_cli_ranking(cli, tmp_path):
    expected = cli_search(cli, tmp_path / "cli", "--top", "2")
    table = strata.search("gpt-tiny", "local-cpu", gpus=2, global_batch=8, top=2)
    assert_equals_cli(table, expected)
    assert list(table["rank"]) == [1, 2]
    assert list(table["dp"]) == [2, 2] and list(table["tp"]) == [1, 1]
    assert table["simulated_step_s"].is_monotonic_increasing
    summary = table.attrs["summary"]
    assert (summary["verified"], summary["world_size"], summary["model"]) == (2, 2, "gpt-tiny")
    assert summary["best"] == table["strategy"][0]


def test_a_space_dict_narrows_the_search(cli, tmp_path):
    space = {"zero_stage": [0], "micro_batch_size": [2], "recompute": ["none", "full"]}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    expected = cli_search(cli, tmp_path / "cli", "--space", path, "--top", "all")
    table = strata.search("gpt-tiny", "local-cpu", gpus=2, global_batch=8, space=space,
                          top="all")
    assert_equals_cli(table, expected)
    assert set(table["zero_stage"]) == {0} and set(table["micro_batch_size"]) == {2}
    assert table.attrs["summary"]["space"]["zero_stage"] == [0]


def test_without_pandas_a_table_with_the_summary(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    expected = cli_search(cli, tmp_path / "cli", "--top", "1", "--strategy", "tiny-dp2")
    out = tmp_path / "kept"
    table = strata.search("gpt-tiny", "local-cpu", gpus=2, strategy="tiny-dp2", top=1, out=out)
    assert type(table) is strata.Table and len(table) == 1
    assert_equals_cli(table, expected)
    assert table[0]["sequence_parallel"] is False
    # out keeps the command's folder: the file column names the ranked strategy there.
    best = json.loads((out / table[0]["file"]).read_text())
    assert (best["dp"], best["micro_batch_size"]) == (table[0]["dp"], table[0]["micro_batch_size"])


def test_errors_are_the_cli_exit_codes(cli, tmp_path):
    with pytest.raises(strata.DoesNotFitError) as e:
        strata.search("gpt-tiny", "local-cpu", gpus=2, global_batch=8,
                      overrides={"cluster.gpu.memory_bytes": 1000000})
    assert str(e.value).startswith("no strategy of the space fits gpt-tiny on 2 GPUs")
    with pytest.raises(strata.UsageError) as e:
        strata.search("gpt-tiny", "local-cpu", gpus=2)
    assert "--global-batch B is required without --strategy" in str(e.value)
    with pytest.raises(strata.ConfigError) as e:
        strata.search("gpt-tiny", "local-cpu", gpus=2, global_batch=8,
                      space={"schedule": ["dualpipe"]})
    assert e.value.context == "(space given as a dict)"
    assert (e.value.field, e.value.value) == ("space.schedule[0]", "dualpipe")


@pytest.mark.parametrize("kwargs, field, value", [
    ({"top": 0}, "top", 0),
    ({"top": "best"}, "top", "best"),
    ({"budget_s": -1}, "budget_s", -1),
    ({"space": 3}, "space", 3),
    ({"global_batch": 2.5}, "global_batch", 2.5),
])
def test_bad_arguments_raise_usage_error(kwargs, field, value):
    with pytest.raises(strata.UsageError) as e:
        strata.search("gpt-tiny", "local-cpu", gpus=2, **kwargs)
    assert (e.value.field, e.value.value) == (field, value)
