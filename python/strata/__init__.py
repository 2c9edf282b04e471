"""Strata from Python (docs/python.md): plan and simulate parallel training strategies.

Specs are dicts (a spec's JSON), JSON file paths or the names of bundled specs (configs/):

    import strata
    summary = strata.plan("gpt-tiny", "local-cpu", "tiny-dp2", gpus=2)
    report = strata.simulate("gpt-tiny", "local-cpu", "tiny-dp2", {"strategy.dp": 4}, gpus=4)

plan() lowers in this process through the extension _strata (the C++ libraries); simulate()
runs `strata simulate` in a child process (SimGrid runs one engine per process), so it may be
called many times and from many threads at once. Both return the JSON the command line
prints with --json, as dicts. sweep() and search() (tables.py) return the CSVs of
`strata sweep` and `strata search` as DataFrames; a sweep may run its points on an executor.
Errors raise strata.ConfigError (with field, value and rule), UsageError, DoesNotFitError or
RuntimeFailure (strata.errors).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError, DoesNotFitError, RuntimeFailure, UsageError

__all__ = ["plan", "simulate", "sweep", "search", "Table", "bundled", "version", "executable",
           "ConfigError", "UsageError", "DoesNotFitError", "RuntimeFailure"]

_HERE = Path(__file__).resolve().parent

# An installed package carries the bundled specs, the efficiencies table and the `strata`
# executable (python/strata_build.py); the environment points the C++ code and the child
# processes at them unless it already says otherwise. From a build tree they are the source's.
for _variable, _path in (("STRATA_CONFIG_DIR", _HERE / "data" / "configs"),
                         ("STRATA_EFFICIENCIES", _HERE / "data" / "efficiencies.json")):
    if _path.exists():
        os.environ.setdefault(_variable, str(_path))

from . import _strata  # noqa: E402  (after the environment above)

_KINDS = {"model": "models", "cluster": "clusters", "strategy": "strategies"}


def _show(value):
    """A value as Strata's messages show one: JSON where it is, else its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def version():
    """Strata's version (git describe of the build)."""
    return _strata.version()


def bundled(kind):
    """The names of the bundled specs of a kind: "models", "clusters" or "strategies"."""
    if kind not in _KINDS.values():
        raise UsageError(f"kind = {_show(kind)}: must be one of models, clusters, strategies")
    return sorted(p.stem for p in (Path(_strata.config_dir()) / kind).glob("*.json"))


def executable():
    """The `strata` executable simulate() runs: $STRATA_EXECUTABLE, the installed package's
    copy, the build tree's (<build>/cli/strata beside <build>/python/strata) or PATH's."""
    candidates = [os.environ.get("STRATA_EXECUTABLE"), _HERE / "bin" / "strata",
                  _HERE.parent.parent / "cli" / "strata", shutil.which("strata")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return str(c)
    raise RuntimeFailure("no `strata` executable: set STRATA_EXECUTABLE, install the package "
                         "with `pip install .`, or put strata on PATH")


def _spec(kind, spec):
    """(arg, JSON text or None) of a spec for the extension."""
    if isinstance(spec, Mapping):
        try:
            return (f"({kind} given as a dict)", json.dumps(spec, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise UsageError(f"{kind}: the dict is not JSON ({e})") from None
    if isinstance(spec, (str, os.PathLike)):
        return (os.fspath(spec), None)
    raise UsageError(f"{kind} = {_show(spec)}: must be a dict, a JSON file path or the name "
                     f"of a bundled {kind} spec")


def _override_value(path, value):
    """VALUE of `--set PATH=VALUE`: JSON, but a string that does not read as JSON as it is, as
    one writes it on the command line (precision=bf16), so that the Plan's provenance, which
    records the overrides, reads the same."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UsageError(f"overrides: {path}: the value is not JSON ({e})") from None


def _overrides(overrides):
    """The overrides as `--set PATH=VALUE` texts: a dict {path: value} (values as JSON) or a
    list of "PATH=VALUE" strings."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        out = []
        for path, value in overrides.items():
            if not isinstance(path, str):
                raise UsageError(f"overrides = {_show(overrides)}: key {path!r} must be a "
                                 "string like 'strategy.tp'")
            out.append(f"{path}={_override_value(path, value)}")
        return out
    if isinstance(overrides, (list, tuple)) and all(isinstance(o, str) for o in overrides):
        return list(overrides)
    raise UsageError(f"overrides = {_show(overrides)}: must be a dict {{'strategy.tp': 4}} or a "
                     "list of 'PATH=VALUE' strings")


def _count(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} = {_show(value)}: must be a positive integer")
    return value


def _inputs(model, cluster, strategy, overrides, gpus, nodes, strategy_optional=False):
    """The specs as _spec's pairs (a strategy None stays None where it is optional), the
    overrides as --set texts, gpus and nodes checked."""
    strategy = None if strategy is None and strategy_optional else _spec("strategy", strategy)
    return (_spec("model", model), _spec("cluster", cluster), strategy,
            _overrides(overrides), _count("gpus", gpus), _count("nodes", nodes))


def plan(model, cluster, strategy, overrides=None, *, gpus=None, nodes=None, programs=False):
    """The Plan summary of `strata plan --json` for the same inputs, as a dict: world, groups,
    tasks, FLOPs per step, bytes per collective, memory per stage (docs/plan.md). A strategy
    that does not fit returns its summary too, with memory["fits"] False.

    overrides: {"strategy.tp": 4, ...} or ["strategy.tp=4", ...] (`--set`, docs/specs.md);
    gpus: the world size (the first gpus GPUs of the cluster); nodes: rescale the cluster.
    programs=True: the whole plan.json `strata plan --out` writes instead (its "programs": each
    stage's tasks, ops, buffers (the tensors) and parameters, column-wise with the top-level
    "*_columns" naming the fields; the summary is its "summary"), lowered in this process too."""
    if not isinstance(programs, bool):
        raise UsageError(f"programs = {_show(programs)}: must be True or False")
    inputs = _inputs(model, cluster, strategy, overrides, gpus, nodes)
    return json.loads(_strata.plan_json(*inputs) if programs else _strata.plan_summary(*inputs))


_EXIT_ERRORS = {1: ConfigError, 2: UsageError, 3: DoesNotFitError, 4: RuntimeFailure}


def _relabel(message, files):
    """A child's message with the temporary spec files named as the dicts they came from."""
    for path, label in files.items():
        message = message.replace(path, label)
    return message


def _child_error(done, files, command="simulate"):
    """The exception for a failed `strata COMMAND`: its exit code's class, with the message it
    printed (temporary spec files named as the dicts they came from)."""
    found = re.search(rf"^strata {command}: (?:error|usage error|runtime failure): (.*)",
                      done.stderr, re.M | re.S)
    message = _relabel(found.group(1).strip() if found else done.stderr.strip(), files)
    if done.returncode < 0:
        return RuntimeFailure(f"strata {command} was killed by signal {-done.returncode}: "
                              f"{message}")
    cls = _EXIT_ERRORS.get(done.returncode, RuntimeFailure)
    return cls(message or f"strata {command} exited {done.returncode}")


def _child_argv(command, inputs, tmp):
    """(argv, files) of `strata COMMAND` with the spec flags of `inputs` (_inputs'; a strategy
    None is left out): dict specs written into the folder `tmp`, `files` maps each such file
    to its label for the messages."""
    argv = [executable(), command]
    files = {}
    for kind, spec in zip(_KINDS, inputs[:3]):
        if spec is None:
            continue
        arg, text = spec
        if text is not None:
            arg = os.path.join(tmp, f"{kind}.json")
            Path(arg).write_text(text)
            files[arg] = f"({kind} given as a dict)"
        argv += [f"--{kind}", arg]
    for text in inputs[3]:
        argv += ["--set", text]
    for flag, value in (("--gpus", inputs[4]), ("--nodes", inputs[5])):
        if value is not None:
            argv += [flag, str(value)]
    return argv, files


def _run(argv, timeout=None):
    """The finished child process of argv (its output captured)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"strata {argv[1]} ran past the timeout of {timeout} s and was "
                             "stopped") from None


def _paths(name, value):
    """A path or a list of paths as the comma-separated FILES of --profile and --links."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)) or not items or \
            not all(isinstance(p, (str, os.PathLike)) for p in items):
        raise UsageError(f"{name} = {_show(value)}: must be a path or a list of paths")
    texts = [os.fspath(p) for p in items]
    if any("," in t or not t for t in texts):
        raise UsageError(f"{name} = {_show(value)}: a path may not be empty or hold a comma")
    return ",".join(texts)


def _simulate_flags(exact, ignore_memory, efficiencies, profile=None, links=None):
    """The flags of `strata simulate` that sweep() passes to every point too."""
    flags = ["--efficiencies", os.fspath(efficiencies)] if efficiencies is not None else []
    for flag, name, value in (("--profile", "profile", profile), ("--links", "links", links)):
        if (files := _paths(name, value)) is not None:
            flags += [flag, files]
    return flags + ["--exact"] * bool(exact) + ["--ignore-memory"] * bool(ignore_memory)


def _straggler(straggler):
    """{rank: factor} as --straggler R:F,R:F."""
    if straggler is None:
        return []
    if not isinstance(straggler, Mapping) or not straggler or any(
            isinstance(r, bool) or not isinstance(r, int) or r < 0 or isinstance(f, bool) or
            not isinstance(f, (int, float)) for r, f in straggler.items()):
        raise UsageError(f"straggler = {_show(straggler)}: must be a dict {{rank: speed "
                         "factor}} like {3: 0.5}")
    return ["--straggler", ",".join(f"{r}:{f!r}" for r, f in straggler.items())]


def simulate(model, cluster, strategy, overrides=None, *, gpus=None, nodes=None, trace=None,
             trace_ranks=None, exact=False, ignore_memory=False, efficiencies=None,
             profile=None, links=None, straggler=None, failures=None, rounds=None, steps=None,
             timeout=None):
    """report.json of `strata simulate --json -` for the same inputs, as a dict: step time,
    tokens/s, TFLOP/s per GPU, MFU, the bubble, per-stage breakdown and memory
    (docs/simulator.md). Runs the `strata` executable (executable()) in a child process.

    The specs, overrides, gpus and nodes are plan()'s, checked in this process first. trace:
    a path to write trace.json to; trace_ranks: "all" or a list of ranks; exact: simulate every
    rank and ring step; ignore_memory: simulate a strategy that does not fit; efficiencies: the
    roofline's table (a path); profile, links: measured op costs and collective curves (a path
    or a list of paths: profile.json of `strata profile ops`, links.json of `strata profile
    links`, docs/profiles.md); straggler: {rank: speed factor}; failures: a failure spec's path
    (docs/failures.md); rounds: a federated strategy's rounds; steps: a parameter-server
    strategy's simulated steps; timeout: seconds before the child is stopped
    (RuntimeFailure)."""
    inputs = _inputs(model, cluster, strategy, overrides, gpus, nodes)
    extra = _straggler(straggler)
    if failures is not None:
        if not isinstance(failures, (str, os.PathLike)):
            raise UsageError(f"failures = {_show(failures)}: must be the path of a failure "
                             "spec (docs/failures.md)")
        extra += ["--failures", os.fspath(failures)]
    for flag, name, value in (("--rounds", "rounds", rounds), ("--steps", "steps", steps)):
        if _count(name, value) is not None:
            extra += [flag, str(value)]
    flags = _simulate_flags(exact, ignore_memory, efficiencies, profile, links) + extra
    _strata.check_specs(*inputs)
    with tempfile.TemporaryDirectory(prefix="strata-simulate-") as tmp:
        argv, files = _child_argv("simulate", inputs, tmp)
        argv[2:2] = ["--quiet", "--json", "-"]
        if trace is not None:
            argv += ["--trace", os.fspath(trace)]
        if trace_ranks is not None:
            ranks = trace_ranks if isinstance(trace_ranks, str) else \
                ",".join(str(r) for r in trace_ranks)
            argv += ["--trace-ranks", ranks]
        done = _run(argv + flags, timeout)
    if done.returncode != 0:
        raise _child_error(done, files)
    return json.loads(done.stdout)


from .tables import Table, search, sweep  # noqa: E402  (uses the helpers above)
