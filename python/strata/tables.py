"""sweep() and search(): `strata sweep` and `strata search` from Python, their CSV rows as a
pandas DataFrame (a Table, a list of dicts, where pandas does not import). sweep(executor=...)
runs the points on any executor with submit() (concurrent.futures, dask.distributed) instead of
the command's local processes, with the same rows (docs/python.md "Sweeps on an executor").
"""

import csv
import itertools
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from . import (_child_argv, _child_error, _count, _inputs, _override_value, _relabel, _run,
               _show, _simulate_flags, _strata)
from .errors import RuntimeFailure, UsageError

__all__ = ["sweep", "search", "Table"]

# sweep.csv's columns after the varied paths (cli/sweep_command.cpp), and the text ones of each
# CSV: every other cell is read as a number, true/false as a bool, an empty cell as None.
_FIGURES = ["status", "exit_code", "step_time_s", "tokens_per_s", "tflops_per_gpu",
            "hardware_tflops_per_gpu", "mfu", "max_peak_memory_bytes", "capacity_bytes", "error"]
_SWEEP_TEXT = frozenset({"status", "error"})
_RANKING_TEXT = frozenset({"strategy", "schedule", "recompute", "layer_overrides", "file"})
_MAX_POINTS = 10000  # strata sweep refuses more
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?")
# The exit codes of strata simulate a sweep reads as "refused": invalid (1), does not fit (3).
_REFUSED = (1, 3)
_INTERNAL = 70


class Table(list):
    """The rows of sweep() or search() as dicts where pandas does not import: `columns` names
    the columns in order, `attrs` is a DataFrame's attrs (search(): attrs["summary"])."""

    def __init__(self, rows=(), columns=(), attrs=None):
        super().__init__(rows)
        self.columns = list(columns)
        self.attrs = dict(attrs or {})


def _cell(column, text, text_columns):
    """A CSV cell as a value: None when empty, the text in a text column, else a number (int
    where it has no fraction or exponent), a bool (true, false) or the text."""
    if text == "":
        return None
    if column in text_columns:
        return text
    number = _NUMBER.fullmatch(text)
    if number:
        return float(text) if number.group(1) or number.group(2) else int(text)
    return {"true": True, "false": False}.get(text, text)


def _table(rows, columns, attrs=None):
    """A pandas DataFrame of the rows (empty cells NaN in number columns), else a Table."""
    try:
        import pandas
    except ImportError:
        return Table(rows, columns, attrs)
    frame = pandas.DataFrame(rows, columns=columns)
    frame.attrs.update(attrs or {})
    return frame


def _read_csv(path, text_columns, files):
    """(columns, rows as dicts) of a CSV the command wrote; temporary spec files in the error
    cells named as the dicts they came from."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        columns = next(reader)
        rows = [{c: _cell(c, v, text_columns) for c, v in zip(columns, line)} for line in reader]
    for row in rows:
        if row.get("error"):
            row["error"] = _relabel(row["error"], files)
    return columns, rows


def _vary(vary):
    """[(path, [value texts])] of sweep()'s vary, each value as `--vary PATH=V1,V2,...` passes
    it (plan()'s overrides rule: JSON, but a string as it is typed)."""
    if not isinstance(vary, Mapping) or not vary:
        raise UsageError(f"vary = {_show(vary)}: must be a non-empty dict of paths and lists of "
                         "values, e.g. {'strategy.tp': [1, 2, 4]}")
    out, count = [], 1
    for path, values in vary.items():
        if not isinstance(path, str) or not path or "=" in path:
            raise UsageError(f"vary = {_show(vary)}: key {path!r} must be a field path like "
                             "'strategy.tp'")
        if not isinstance(values, (list, tuple, range)) or len(values) == 0:
            raise UsageError(f"vary = {_show(vary)}: {path}: must be a non-empty list of values")
        try:
            texts = [_override_value(path, v) for v in values]
        except UsageError as e:
            raise UsageError(f"vary = {_show(vary)}: {path}: {e.rule}") from None
        for value, text in zip(values, texts):
            if not text or "," in text:
                raise UsageError(f"vary = {_show(vary)}: {path}: the value {_show(value)} cannot "
                                 "be a --vary value (it is empty or has a comma)")
        count *= len(texts)
        out.append((path, texts))
    if count > _MAX_POINTS:
        raise UsageError(f"vary = {_show(vary)}: {count} points, more than {_MAX_POINTS}; sweep "
                         "fewer values")
    return out


def _figures(code, report=None, error=None):
    """The CSV figures of a point after its child exited `code`, as `strata sweep` writes them:
    report.json's numbers when it succeeded (the largest peak memory and capacity of any rank),
    else its message."""
    row = dict.fromkeys(_FIGURES)
    row["status"] = "ok" if code == 0 else "refused" if code in _REFUSED else "failed"
    row["exit_code"] = code
    if code != 0:
        row["error"] = error or None
        return row
    for key in ("step_time_s", "tokens_per_s", "tflops_per_gpu", "hardware_tflops_per_gpu", "mfu"):
        row[key] = float(report[key])
    ranks = report["ranks"]
    # Report::max_peak_memory_bytes and max_capacity_bytes (0 when there is no rank), written
    # by json::count: an integer where the double is one below 2^53.
    for key, field in (("max_peak_memory_bytes", "peak_memory_bytes"),
                       ("capacity_bytes", "capacity_bytes")):
        value = max([float(r[field]) for r in ranks] + [0.0])
        row[key] = int(value) if value.is_integer() and abs(value) < 2.0**53 else value
    return row


def _last_message(output, command):
    """cli/launch.cpp's child_message: the last non-empty line, without "strata COMMAND: error: "
    or "strata COMMAND: "."""
    lines = [line for line in output.splitlines() if line]
    last = lines[-1] if lines else ""
    for prefix in (f"strata {command}: error: ", f"strata {command}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def _sweep_point(task):
    """One point of sweep(executor=...), where the executor runs it: `strata simulate --json -`
    in a child process (simulate()'s command line) on the point's world: the task's gpus, else
    what its strategy fills (dp*tp*pp*cp; none when its specs do not load: the child says why).
    `task`: JSON text (no executor reads into it) of the specs as _inputs' pairs, the --set
    texts (the overrides, then the point's values), gpus, nodes and the simulate flags. Returns
    (the point's CSV figures (_figures), where and how long it ran: {"host", "started",
    "seconds"}, `started` a Unix time); a refused point is a row, not an exception."""
    started, clock = time.time(), time.monotonic()
    where = {"host": socket.gethostname(), "started": started}
    figures = _sweep_point_figures(json.loads(task))
    return figures, {**where, "seconds": time.monotonic() - clock}


def _sweep_point_figures(t):
    """_sweep_point's figures of the decoded task `t`."""
    specs = [tuple(s) for s in t["specs"]]
    gpus = t["gpus"]
    if gpus is None:
        try:
            gpus = _strata.strategy_world(*specs, t["sets"], None, t["nodes"])
        except Exception:  # noqa: BLE001  as strata sweep: the child reports the specs' error
            gpus = None
    with tempfile.TemporaryDirectory(prefix="strata-sweep-point-") as tmp:
        try:
            argv, files = _child_argv("simulate", (*specs, t["sets"], gpus, t["nodes"]), tmp)
            done = _run(argv + ["--quiet", "--json", "-"] + t["flags"])
        except (OSError, RuntimeFailure) as e:  # not started
            return _figures(_INTERNAL, error=f"cannot start strata simulate: {e}")
    code = done.returncode if done.returncode >= 0 else 128 - done.returncode
    if code != 0:
        message = _last_message(done.stdout + "\n" + done.stderr, "simulate")
        return _figures(code, error=_relabel(message, files))
    try:
        return _figures(0, json.loads(done.stdout))
    except (ValueError, KeyError, TypeError) as e:
        return _figures(_INTERNAL, error=f"report.json: {e}")


def _sweep_cli(inputs, varies, jobs, flags, out):
    """The rows of `strata sweep` run in a child process on the same inputs."""
    with tempfile.TemporaryDirectory(prefix="strata-sweep-") as tmp:
        argv, files = _child_argv("sweep", inputs, tmp)
        for path, texts in varies:
            argv += ["--vary", f"{path}={','.join(texts)}"]
        if jobs is not None:
            argv += ["--jobs", str(jobs)]
        folder = Path(os.fspath(out) if out is not None else os.path.join(tmp, "sweep"))
        started = time.time()
        done = _run(argv + flags + ["--out", str(folder)])
        table = folder / "sweep.csv"
        # Exit 4 after writing every row: a point failed (not refused); its row says so.
        written = table.exists() and table.stat().st_mtime >= started - 1
        if done.returncode != 0 and not (done.returncode == 4 and written):
            raise _child_error(done, files, "sweep")
        timing = _read_csv(folder / "timing.csv", {"job", "lost"}, files)[1]
        for n, row in enumerate(timing, 1):  # job: the point's folder name
            row["point"] = n
        return _read_csv(table, _SWEEP_TEXT, files)[1], timing


def _sweep_on(executor, inputs, varies, flags):
    """The rows of the sweep with one _sweep_point per point submitted to the executor, in
    strata sweep's order (the first path slowest). A point whose future raises (a worker
    lost) is a failed row with the exception as its error."""
    points = list(itertools.product(*(texts for _, texts in varies)))
    start = time.time()
    futures = []
    for values in points:
        sets = inputs[3] + [f"{path}={v}" for (path, _), v in zip(varies, values)]
        task = {"specs": inputs[:3], "sets": sets, "gpus": inputs[4], "nodes": inputs[5],
                "flags": flags}
        futures.append(executor.submit(_sweep_point, json.dumps(task)))
    rows, timing = [], []
    for n, (values, future) in enumerate(zip(points, futures), 1):
        try:
            figures, where = future.result()
            timing.append({"point": n, "host": where["host"],
                           "started_s": where["started"] - start, "seconds": where["seconds"]})
        except Exception as e:  # noqa: BLE001  the point failed, the sweep goes on
            figures = _figures(_INTERNAL, error=f"{type(e).__name__}: {e}")
            timing.append({"point": n, "host": None, "started_s": None, "seconds": None})
        row = {"point": n}
        row.update({path: _cell(path, v, ()) for (path, _), v in zip(varies, values)})
        row.update(figures)
        rows.append(row)
    return rows, timing


def sweep(model, cluster, strategy, vary, overrides=None, *, gpus=None, nodes=None, jobs=None,
          exact=False, ignore_memory=False, efficiencies=None, profile=None, links=None,
          executor=None, out=None):
    """sweep.csv of `strata sweep` for the same inputs: one row per combination of the varied
    values, as a pandas DataFrame (a Table of dicts without pandas) with sweep.csv's columns:
    point, the varied paths, status (ok, refused, failed), exit_code, step_time_s,
    tokens_per_s, tflops_per_gpu, hardware_tflops_per_gpu, mfu, max_peak_memory_bytes,
    capacity_bytes, error (why a point was refused or failed). Numbers are numbers, empty
    cells None (NaN in a DataFrame's number columns).

    vary: {path: [values, ...]}, the first path varying slowest (`--vary`, in order; values
    as overrides' values). The specs, overrides, gpus and nodes are simulate()'s; without gpus
    each point runs on the GPUs its strategy fills. exact, ignore_memory, efficiencies,
    profile, links: simulate()'s, passed to every simulation. Default: `strata sweep` in a child process, jobs points at a time (the
    cores), its folder kept at `out` when given. executor: anything with submit(fn, *args)
    returning futures (concurrent.futures' executors, a dask.distributed Client) runs one
    `strata simulate` per point instead, with the same rows.

    attrs["timing"]: where and how long each point ran, a list of dicts with its "point", its
    "started_s" (from the sweep's start) and "seconds": the command's timing.csv (also "job",
    "rank", "attempts", "lost"; docs/distributed.md), or with an executor the "host" that ran
    it (None for a point whose future raised)."""
    inputs = _inputs(model, cluster, strategy, overrides, gpus, nodes)
    varies = _vary(vary)
    _count("jobs", jobs)
    flags = _simulate_flags(exact, ignore_memory, efficiencies, profile, links)
    if executor is not None:
        if not callable(getattr(executor, "submit", None)):
            raise UsageError(f"executor = {_show(executor)}: must have a submit(fn, *args) "
                             "method (a concurrent.futures executor or a dask.distributed "
                             "Client)")
        for name, value in (("jobs", jobs), ("out", out)):
            if value is not None:
                raise UsageError(f"{name} = {_show(value)}: only without executor (the "
                                 "executor runs the points; nothing is written)")
    _strata.check_sweep(*inputs, [f"{path}={texts[0]}" for path, texts in varies])
    rows, timing = _sweep_cli(inputs, varies, jobs, flags, out) if executor is None else \
        _sweep_on(executor, inputs, varies, flags)
    return _table(rows, ["point", *(path for path, _ in varies), *_FIGURES], {"timing": timing})


def _budget(budget_s):
    if budget_s is None:
        return None
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or \
            not math.isfinite(budget_s) or budget_s <= 0:
        raise UsageError(f"budget_s = {_show(budget_s)}: must be a positive number of seconds")
    return str(budget_s)


def search(model, cluster, *, gpus=None, global_batch=None, strategy=None, overrides=None,
           space=None, top=None, jobs=None, budget_s=None, efficiencies=None, nodes=None,
           exact=False, out=None, timeout=None):
    """ranking.csv of `strata search --quiet` for the same inputs, run in a child process: the
    verified strategies in simulated rank order (rank, strategy, estimate_rank,
    estimated_step_s, simulated_step_s, estimator_error, tokens_per_s, ..., file), as a pandas
    DataFrame (a Table without pandas); attrs["summary"] is search.json (the space, counts,
    timings, the estimator's agreement, the best strategy).

    strategy: the base strategy (optional; the fields the search does not vary); space: a dict
    (space.json's content) or a path; top: candidates to simulate (an int, or "all");
    budget_s: seconds after which no simulation starts; global_batch, gpus, nodes, jobs,
    efficiencies, exact: the flags of the same names; out: keep the command's folder there
    (best/NN.json, the file column, are the ranked strategies); timeout: seconds for the
    whole search. Errors as simulate()'s (DoesNotFitError: no candidate fits)."""
    inputs = _inputs(model, cluster, strategy, overrides, gpus, nodes, strategy_optional=True)
    flags = []
    for flag, name, value in (("--global-batch", "global_batch", global_batch),
                              ("--jobs", "jobs", jobs)):
        if _count(name, value) is not None:
            flags += [flag, str(value)]
    if top is not None:
        flags += ["--top", "all" if top == "all" else str(_count("top", top))]
    if budget_s is not None:
        flags += ["--budget-s", _budget(budget_s)]
    if space is not None and not isinstance(space, (Mapping, str, os.PathLike)):
        raise UsageError(f"space = {_show(space)}: must be a dict (space.json's content) or a "
                         "path")
    flags += _simulate_flags(exact, False, efficiencies)
    with tempfile.TemporaryDirectory(prefix="strata-search-") as tmp:
        argv, files = _child_argv("search", inputs, tmp)
        if isinstance(space, Mapping):
            path = os.path.join(tmp, "space.json")
            try:
                Path(path).write_text(json.dumps(space, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise UsageError(f"space: the dict is not JSON ({e})") from None
            files[path] = "(space given as a dict)"
            flags += ["--space", path]
        elif space is not None:
            flags += ["--space", os.fspath(space)]
        folder = Path(os.fspath(out) if out is not None else os.path.join(tmp, "search"))
        done = _run(argv + flags + ["--quiet", "--out", str(folder)], timeout)
        if done.returncode != 0:
            raise _child_error(done, files, "search")
        summary = json.loads((folder / "search.json").read_text())
        columns, rows = _read_csv(folder / "ranking.csv", _RANKING_TEXT, files)
    return _table(rows, columns, {"summary": summary})
