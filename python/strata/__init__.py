"""Strata from Python (docs/python.md): plan, simulate and run parallel training strategies.

Specs are dicts (a spec's JSON), JSON file paths or the names of bundled specs (configs/):

    import strata
    summary = strata.plan("gpt-tiny", "local-cpu", "tiny-dp2", gpus=2)
    report = strata.simulate("gpt-tiny", "local-cpu", "tiny-dp2", {"strategy.dp": 4}, gpus=4)

plan() lowers in this process through the extension _strata (the C++ libraries); simulate()
runs `strata simulate` in a child process (SimGrid runs one engine per process), so it may be
called many times and from many threads at once. Both return the JSON the command line
prints with --json, as dicts; run() trains through `strata run` (under mpirun for several
ranks) and returns its --json's dict. sweep() and search() (tables.py) return the CSVs of
`strata sweep` and `strata search` as DataFrames; a sweep may run its points on an executor.
Errors raise strata.ConfigError (with field, value and rule), UsageError, DoesNotFitError or
RuntimeFailure (strata.errors).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError, DoesNotFitError, RuntimeFailure, UsageError

__all__ = ["plan", "simulate", "run", "sweep", "search", "Table", "bundled", "version",
           "executable", "ConfigError", "UsageError", "DoesNotFitError", "RuntimeFailure"]

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
    """A value as Strata's messages show one: JSON where it is (a path as its text), else its
    repr."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
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


def _dict_json(name, value):
    """(label, JSON text) of a dict argument, written to a file for a child process (the
    label names it in the messages instead of the file)."""
    try:
        return (f"({name} given as a dict)", json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise UsageError(f"{name}: the dict is not JSON ({e})") from None


def _spec(kind, spec):
    """(arg, JSON text or None) of a spec for the extension."""
    if isinstance(spec, Mapping):
        return _dict_json(kind, spec)
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
    kind = r"(?:rank \d+: )?(?:error|usage error|runtime failure)"  # a rank's: strata run's
    found = re.search(rf"^strata {command}: {kind}: (.*)", done.stderr, re.M | re.S)
    message = _relabel(found.group(1).strip() if found else done.stderr.strip(), files)
    if done.returncode < 0:
        return RuntimeFailure(f"strata {command} was killed by signal {-done.returncode}: "
                              f"{message}")
    cls = _EXIT_ERRORS.get(done.returncode, RuntimeFailure)
    return cls(message or f"strata {command} exited {done.returncode}")


def _child_argv(command, inputs, tmp, schedule=None):
    """(argv, files) of `strata COMMAND` with the spec flags of `inputs` (_inputs'; a spec
    None is left out) and --switch of `schedule` (_schedule's): dict specs written into the
    folder `tmp`, `files` maps each such file to its label for the messages."""
    argv = [executable(), command]
    files = {}
    for kind, spec in zip(_KINDS, inputs[:3]):
        if spec is not None:
            argv += [f"--{kind}", _file_arg(spec, kind, tmp, files)]
    for text in inputs[3]:
        argv += ["--set", text]
    for flag, value in (("--gpus", inputs[4]), ("--nodes", inputs[5])):
        if value is not None:
            argv += [flag, str(value)]
    if schedule is not None:
        argv += ["--switch", _file_arg(schedule, "switch", tmp, files)]
    return argv, files


def _schedule(switch, strategy):
    """switch= (a strategy schedule: a path or a dict, docs/switching.md) as _spec's pair, or
    None; with a schedule the strategy must be None, as --strategy and --switch exclude each
    other on the command line."""
    if switch is None:
        return None
    if strategy is not None:
        shown = "(a dict)" if isinstance(strategy, Mapping) else _show(strategy)
        raise UsageError(f"strategy = {shown}: not with switch, give one (the schedule names "
                         "the strategies of its phases; pass strategy=None)")
    if isinstance(switch, Mapping):
        return _dict_json("switch", switch)
    if isinstance(switch, (str, os.PathLike)):
        return (os.fspath(switch), None)
    raise UsageError(f"switch = {_show(switch)}: must be a strategy schedule: a JSON file path "
                     "or a dict (docs/switching.md)")


def _file_arg(spec, name, tmp, files):
    """The path to pass for a (arg, JSON text or None) pair: arg itself, or the dict's JSON
    written to tmp/NAME.json, which `files` maps to its label for the messages."""
    arg, text = spec
    if text is None:
        return arg
    path = os.path.join(tmp, f"{name}.json")
    Path(path).write_text(text)
    files[path] = arg
    return path


def _stop(child, grace_s=5):
    """Stops a child and everything it started (its session: mpirun's ranks, simulate's and
    sweep's children): SIGTERM, which strata and mpirun pass on, then SIGKILL after grace_s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            child.communicate(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _run(argv, timeout=None, env=None, command=None):
    """The finished child process of argv (its output captured; env: its environment, else
    this process's). The child runs in a session of its own, stopped with all its processes
    on a timeout (RuntimeFailure naming `strata COMMAND`, by default argv[1]) or an
    interrupt."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(child)
            raise RuntimeFailure(f"strata {command or argv[1]} ran past the timeout of "
                                 f"{timeout} s and was stopped") from None
        except BaseException:
            _stop(child)
            raise
    return subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)


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
             switch=None, timeout=None):
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
    strategy's simulated steps; switch: a strategy schedule (a path, or a dict: the schedule
    file's content, docs/switching.md) instead of the strategy, which must then be None: each
    phase's step and each switch's resharding are simulated, and report.json is the first
    phase's report with its "switching" section (not with trace, trace_ranks or failures);
    timeout: seconds before the child is stopped (RuntimeFailure)."""
    schedule = _schedule(switch, strategy)
    if schedule is not None:
        for name, value in (("trace", trace), ("trace_ranks", trace_ranks),
                            ("failures", failures)):
            if value is not None:
                raise UsageError(f"{name} = {_show(value)}: not with switch ({name} is for one "
                                 "strategy: simulate each phase's strategy on its own)")
    inputs = _inputs(model, cluster, strategy, overrides, gpus, nodes,
                     strategy_optional=schedule is not None)
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
    if schedule is None:  # (the schedule's strategies are loaded by the child)
        _strata.check_specs(*inputs)
    with tempfile.TemporaryDirectory(prefix="strata-simulate-") as tmp:
        argv, files = _child_argv("simulate", inputs, tmp, schedule)
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


def _number(name, value):
    """A positive finite number (lr) as the command line's text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not \
            0 < value < float("inf"):
        raise UsageError(f"{name} = {_show(value)}: must be a positive number")
    return repr(value)


def _text(name, value, what):
    """A string argument (device, comm, data), or a path where `what` says so."""
    if value is None or isinstance(value, str) or \
            (isinstance(value, os.PathLike) and "path" in what):
        return None if value is None else os.fspath(value)
    raise UsageError(f"{name} = {_show(value)}: must be {what}")


# Open MPI's notes on stderr, each between two lines of dashes ("mpirun detected that one or
# more processes exited with non-zero status, ..."): not part of Strata's message.
_MPIRUN_NOTE = re.compile(r"^-{20,}\n.*?^-{20,}(?:\n|\Z)", re.M | re.S)


def _launcher(np, mpirun):
    """(the argv before `strata run`, the child's environment) for np ranks: nothing for one
    rank (the executable runs alone, without MPI), else `MPIRUN -np N --oversubscribe` (Open
    MPI's mpirun: the `mpirun` argument or PATH's), allowed to run as root when this process
    is root."""
    if _count("np", np) == 1:
        return [], None
    if mpirun is None:
        found = shutil.which("mpirun")
    else:
        found = shutil.which(os.fspath(mpirun)) if isinstance(mpirun, (str, os.PathLike)) \
            else None
    if found is None:
        where = "no mpirun on PATH" if mpirun is None else \
            f"mpirun = {_show(mpirun)} is not an executable"
        raise UsageError(f"np = {np}: {np} ranks need Open MPI's mpirun, and {where} (pass "
                         "mpirun=PATH, or np=1)")
    env = None
    if os.geteuid() == 0:
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return [found, "-np", str(np), "--oversubscribe"], env


def run(model, strategy=None, overrides=None, *, np=1, switch=None, cluster=None, steps=None,
        seed=None, lr=None, data=None, device=None, comm=None, trace=None, timeout=None,
        mpirun=None):
    """Trains for real: the JSON of `strata run --json FILE` (docs/executor.md), as a dict:
    "losses", each step's loss, seconds and tokens/s ("steps"), the median tokens/s, each rank's
    measured and planned memory, the provenance; with switch, each step's strategy and the
    "switches".

    np: ranks; 1 runs the `strata` executable (executable()) alone, more run it under
    `mpirun -np NP --oversubscribe` (mpirun: its path, else PATH's; Open MPI). np must equal
    the strategy's dp*tp*pp*cp (ConfigError otherwise, from the command). model, strategy,
    overrides and cluster (default: local-cpu) are plan()'s specs; switch: a strategy schedule
    (a path or a dict, as simulate()'s) instead of the strategy, which must then be None, and
    its phases give the steps. steps (default 10), seed (default 1234), lr (AdamW's, default
    0.001), data (a text file's path, or "random"), device ("cpu", "cuda", "cuda:N"), comm
    ("mpi", "nccl"), trace (a path for the last step's measured trace.json): the flags of the
    same names. timeout: seconds before the run (every rank) is stopped (RuntimeFailure).
    Errors as simulate()'s: ConfigError with field, value and rule; RuntimeFailure for a
    non-finite loss (exit 4) or a rank that failed."""
    schedule = _schedule(switch, strategy)
    if schedule is not None and steps is not None:
        raise UsageError(f"steps = {_show(steps)}: not with switch (the schedule gives each "
                         "phase's steps)")
    if schedule is None and strategy is None:
        raise UsageError("strategy = null: give a strategy, or switch= a strategy schedule")
    inputs = (_spec("model", model), None if cluster is None else _spec("cluster", cluster),
              None if strategy is None else _spec("strategy", strategy), _overrides(overrides),
              None, None)
    flags = []
    for flag, value in (("--steps", _count("steps", steps)), ("--seed", _count("seed", seed)),
                        ("--lr", _number("lr", lr)),
                        ("--data", _text("data", data, "a path or 'random'")),
                        ("--device", _text("device", device, "'cpu', 'cuda' or 'cuda:N'")),
                        ("--comm", _text("comm", comm, "'mpi' or 'nccl'")),
                        ("--trace", _text("trace", trace, "a path"))):
        if value is not None:
            flags += [flag, str(value)]
    launcher, env = _launcher(np, mpirun)
    with tempfile.TemporaryDirectory(prefix="strata-run-") as tmp:
        argv, files = _child_argv("run", inputs, tmp, schedule)
        out = os.path.join(tmp, "run.json")
        done = _run(launcher + argv + flags + ["--json", out], timeout, env, "run")
        if done.returncode != 0:
            done.stderr = _MPIRUN_NOTE.sub("", done.stderr)
            raise _child_error(done, files, "run")
        return json.loads(Path(out).read_text())


from .tables import Table, search, sweep  # noqa: E402  (uses the helpers above)
