# strata.sweep: the rows equal sweep.csv of `strata sweep` run here on the same inputs, cell for
# cell (numbers compared as floats, exactly: both are report.json's doubles written shortest),
# by the default path (the command in a child) and by executors (threads, processes, Dask),
# a refused point included; a DataFrame with pandas, a Table of dicts without; usage errors.
import csv
import json
import math
import socket
import stat
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import strata

TINY = ("gpt-tiny", "local-cpu", "tiny-dp2")
# dp slowest; tp 3 does not divide gpt-tiny's 4 heads: points 2 and 5 are refused (exit 1).
VARY = {"strategy.dp": [1, 2], "strategy.tp": [1, 3, 2]}
COLUMNS = ["point", "strategy.dp", "strategy.tp", "status", "exit_code", "step_time_s",
           "tokens_per_s", "tflops_per_gpu", "hardware_tflops_per_gpu", "mfu",
           "max_peak_memory_bytes", "capacity_bytes", "error"]
TEXT = {"status", "error"}


@pytest.fixture(scope="module")
def cli_csv(cli, tmp_path_factory):
    """(columns, rows as lists of cells) of the command's own sweep.csv for VARY."""
    out = tmp_path_factory.mktemp("cli") / "sweep"
    cli("sweep", "--model", TINY[0], "--cluster", TINY[1], "--strategy", TINY[2], "--vary",
        "strategy.dp=1,2", "--vary", "strategy.tp=1,3,2", "--jobs", "2", "--out", out)
    with open(out / "sweep.csv", newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def records(table):
    """The rows as dicts, a DataFrame's NaN as None."""
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in rows]


def assert_equals_csv(table, cli_csv):
    columns, lines = cli_csv
    assert list(table.columns) == columns == COLUMNS
    rows = records(table)
    assert len(rows) == len(lines) == 6
    for row, line in zip(rows, lines):
        for column, cell in zip(columns, line):
            value = row[column]
            if cell == "":
                assert value is None, (column, row)
            elif column in TEXT:
                assert value == cell, (column, row)
            else:
                assert float(value) == float(cell), (column, row)


def test_the_default_path_is_the_cli_csv(cli_csv):
    pandas = pytest.importorskip("pandas")
    table = strata.sweep(*TINY, VARY, jobs=2)
    assert isinstance(table, pandas.DataFrame)
    assert_equals_csv(table, cli_csv)
    assert list(table["status"]) == ["ok", "refused", "ok", "ok", "refused", "ok"]
    assert list(table["strategy.dp"]) == [1, 1, 1, 2, 2, 2]
    assert list(table["strategy.tp"]) == [1, 3, 2, 1, 3, 2]
    assert list(table["exit_code"]) == [0, 1, 0, 0, 1, 0]
    assert "strategy.tp = 3" in table["error"][1]
    assert (table["step_time_s"][[0, 2, 3, 5]] > 0).all()
    assert (table["capacity_bytes"][[0, 2]] == 2684354560).all()


@pytest.mark.parametrize("make", [lambda: ThreadPoolExecutor(max_workers=2),
                                  lambda: ProcessPoolExecutor(max_workers=2)],
                         ids=["threads", "processes"])
def test_an_executor_gives_the_cli_csv(cli_csv, make):
    with make() as pool:
        table = strata.sweep(*TINY, VARY, executor=pool)
    assert_equals_csv(table, cli_csv)
    assert records(table)[1]["error"].startswith(cli_csv[1][1][-1][:40])


def test_timing_says_where_and_how_long_each_point_ran():
    """attrs["timing"]: the command's timing.csv, or with an executor the host per point."""
    by_cli = strata.sweep(*TINY, VARY, jobs=2).attrs["timing"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        by_pool = strata.sweep(*TINY, VARY, executor=pool).attrs["timing"]
    assert [t["point"] for t in by_cli] == [t["point"] for t in by_pool] == [1, 2, 3, 4, 5, 6]
    for t in by_cli:
        assert t["rank"] == 0 and t["attempts"] == 1 and t["lost"] is None
        assert t["job"] == f"{t['point']:03d}"  # the point's folder
        assert t["seconds"] > 0 and t["started_s"] >= 0
    for t in by_pool:
        assert t["host"] == socket.gethostname()
        assert t["seconds"] > 0 and t["started_s"] >= 0


def test_without_pandas_a_table_of_dicts(cli_csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with ThreadPoolExecutor(max_workers=2) as pool:
        for table in (strata.sweep(*TINY, VARY, jobs=2), strata.sweep(*TINY, VARY, executor=pool)):
            assert type(table) is strata.Table and isinstance(table, list)
            assert all(type(row) is dict for row in table)
            assert_equals_csv(table, cli_csv)
            assert table[1]["step_time_s"] is None and table[1]["exit_code"] == 1
            assert table[0]["error"] is None and table[0]["strategy.tp"] == 1


def test_dask_distributed_gives_the_cli_csv(cli_csv):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                      "(Debian: python3-distributed)")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        by_client = strata.sweep(*TINY, VARY, executor=client)
        by_executor = strata.sweep(*TINY, VARY, executor=client.get_executor())
    assert_equals_csv(by_client, cli_csv)
    assert_equals_csv(by_executor, cli_csv)


def test_gpus_fix_every_point_world(cli):
    # With gpus=2 only dp*tp = 2 fits: dp 2 tp 1 and dp 1 tp 2 run, the others are refused.
    with ThreadPoolExecutor(max_workers=2) as pool:
        table = records(strata.sweep(*TINY, {"strategy.dp": [1, 2], "strategy.tp": [1, 2]},
                                     gpus=2, executor=pool))
    assert [r["status"] for r in table] == ["refused", "ok", "ok", "refused"]
    assert "needs dp*tp*pp*cp = 1*1*1*1 = 1 GPUs" in table[0]["error"]
    same = records(strata.sweep(*TINY, {"strategy.dp": [1, 2], "strategy.tp": [1, 2]}, gpus=2))
    assert same == table


def test_a_crashed_point_is_a_failed_row(tmp_path, monkeypatch):
    script = tmp_path / "strata"
    script.write_text("#!/bin/sh\necho 'strata simulate: internal error: boom' >&2\nexit 70\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("STRATA_EXECUTABLE", str(script))
    with ThreadPoolExecutor(max_workers=2) as pool:
        table = records(strata.sweep(*TINY, {"strategy.dp": [1, 2]}, executor=pool))
    assert [(r["point"], r["strategy.dp"], r["status"], r["exit_code"], r["error"])
            for r in table] == [(1, 1, "failed", 70, "internal error: boom"),
                                (2, 2, "failed", 70, "internal error: boom")]
    assert table[0]["step_time_s"] is None


def test_a_dict_spec_is_named_in_the_refused_rows(spec):
    # The child reads the dict from a temporary file; the error cell names the dict.
    strategy = spec("strategies", "tiny-dp2")
    rows = records(strata.sweep(TINY[0], TINY[1], strategy, {"strategy.dp": [2, -1]}, jobs=1))
    assert [r["status"] for r in rows] == ["ok", "refused"]
    assert rows[1]["error"] == ("(strategy given as a dict) with --set strategy.dp=-1: "
                                "strategy.dp = -1: must be a positive integer")
    with ThreadPoolExecutor(1) as pool:
        assert records(strata.sweep(TINY[0], TINY[1], strategy, {"strategy.dp": [2, -1]},
                                    executor=pool)) == rows


def test_an_unknown_vary_path_is_the_cli_error(cli):
    stderr = cli("sweep", "--model", TINY[0], "--cluster", TINY[1], "--strategy", TINY[2],
                 "--vary", "strategy.bogus=1,2", "--out", "/tmp/strata-unused", expect=1).stderr
    for executor in (None, ThreadPoolExecutor(1)):
        with pytest.raises(strata.ConfigError) as e:
            strata.sweep(*TINY, {"strategy.bogus": [1, 2]}, executor=executor)
        assert str(e.value) == stderr.strip().split(": error: ", 1)[1]
        assert str(e.value).startswith("--vary strategy.bogus: ")


@pytest.mark.parametrize("kwargs, field, value", [
    ({"vary": ["strategy.tp"]}, "vary", ["strategy.tp"]),
    ({"vary": {}}, "vary", {}),
    ({"vary": {"strategy.tp": []}}, "vary", {"strategy.tp": []}),
    ({"vary": {"strategy.tp": 2}}, "vary", {"strategy.tp": 2}),
    ({"vary": {"strategy.layer_overrides": [[1, 2]]}}, "vary",
     {"strategy.layer_overrides": [[1, 2]]}),
    ({"vary": {"strategy.tp": list(range(101)), "strategy.dp": list(range(1, 101))}}, "vary",
     None),
    ({"executor": 4}, "executor", 4),
    ({"executor": ThreadPoolExecutor(1), "jobs": 2}, "jobs", 2),
    ({"jobs": 0}, "jobs", 0),
])
def test_bad_arguments_raise_usage_error(kwargs, field, value):
    kwargs = {"vary": {"strategy.tp": [1]}, **kwargs}
    with pytest.raises(strata.UsageError) as e:
        strata.sweep(*TINY, **kwargs)
    assert e.value.field == field
    if value is not None:
        assert e.value.value == value
    else:
        assert "10100 points, more than 10000" in e.value.rule


def test_out_keeps_the_command_folder(cli_csv, tmp_path):
    out = tmp_path / "kept"
    table = strata.sweep(*TINY, VARY, jobs=2, out=out)
    assert_equals_csv(table, cli_csv)
    assert sorted(p.name for p in out.iterdir()) == ["points", "sweep.csv", "sweep.svg", "timing.csv"]
    report = json.loads((out / "points" / "004" / "report.json").read_text())
    assert report["step_time_s"] == records(table)[3]["step_time_s"]
