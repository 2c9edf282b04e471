# strata.run: training through `strata run` returns the dict of its --json: one rank's losses
# equal the command line's for the same seed, two data-parallel ranks under mpirun match one
# rank (the executor's equivalence), a strategy schedule switches in memory, and bad inputs
# raise the package's errors (a bad override names its field; a rank count that is not the
# strategy's world is refused by the command).
import json
import shutil

import pytest

import strata

MPIRUN = shutil.which("mpirun")
needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (Open MPI)")


def losses(result):
    return [s["loss"] for s in result["steps"]]


def test_one_rank_equals_the_cli_json(cli):
    result = strata.run("gpt-tiny", "tiny-1rank", steps=3, seed=7)
    # `--json -` prints the JSON after the step lines (run() reads a temporary file instead).
    stdout = cli("run", "--model", "gpt-tiny", "--strategy", "tiny-1rank", "--steps", "3",
                 "--seed", "7", "--json", "-").stdout
    expected = json.loads(stdout[stdout.index("\n{\n") + 1:])
    assert [s["step"] for s in result["steps"]] == [1, 2, 3]
    assert losses(result) == losses(expected)
    # Everything but the measurements (times, memory) and the date is the same.
    measured = {"steps", "median_tokens_per_s", "memory", "date"}
    assert {k: v for k, v in result.items() if k not in measured} == \
        {k: v for k, v in expected.items() if k not in measured}
    assert (result["world_size"], result["seed"], result["strategy"]) == (1, 7, "tiny-1rank")
    assert all(s["seconds"] > 0 for s in result["steps"])
    # Another seed, another initialisation: the losses differ.
    assert losses(strata.run("gpt-tiny", "tiny-1rank", steps=1, seed=8))[0] != \
        losses(result)[0]


def test_dicts_overrides_and_flags_reach_the_cli(spec, tmp_path):
    trace = tmp_path / "trace.json"
    by_name = strata.run("gpt-tiny", "tiny-1rank", {"strategy.micro_batch_size": 4}, steps=2,
                         lr=0.01, trace=trace)
    by_dict = strata.run(spec("models", "gpt-tiny"), spec("strategies", "tiny-1rank"),
                         ["strategy.micro_batch_size=4"], steps=2, lr=0.01,
                         cluster=spec("clusters", "local-cpu"))
    assert losses(by_name) == losses(by_dict)
    assert by_name["lr"] == pytest.approx(0.01)
    assert json.loads(trace.read_text())["traceEvents"]
    # The learning rate reaches the optimizer: step 2's loss moves with it.
    default_lr = strata.run("gpt-tiny", "tiny-1rank", {"strategy.micro_batch_size": 4},
                            steps=2)
    assert losses(default_lr)[0] == losses(by_name)[0]
    assert losses(default_lr)[1] != losses(by_name)[1]


@needs_mpirun
def test_two_data_parallel_ranks_match_one_rank():
    one = strata.run("gpt-tiny", "tiny-1rank", steps=3)
    two = strata.run("gpt-tiny", "tiny-dp2", np=2, steps=3)
    assert two["world_size"] == 2 and two["strategy"] == "tiny-dp2"
    assert [m["rank"] for m in two["memory"]] == [0, 1]
    assert losses(two) == pytest.approx(losses(one), abs=1e-4)


@needs_mpirun
def test_a_schedule_switches_strategies_in_memory():
    schedule = {"name": "tp2-then-dp2", "phases": [{"strategy": "tiny-tp2", "steps": 1},
                                                   {"strategy": "tiny-dp2", "steps": 2}]}
    result = strata.run("gpt-tiny", np=2, switch=schedule)
    assert [s["strategy"] for s in result["steps"]] == ["tiny-tp2", "tiny-dp2", "tiny-dp2"]
    assert result["strategy"] == "tiny-tp2 -> tiny-dp2"
    assert len(result["switches"]) == 1
    one = strata.run("gpt-tiny", "tiny-1rank", steps=3)
    assert losses(result) == pytest.approx(losses(one), abs=1e-4)


def test_a_bad_override_names_the_field(cli):
    with pytest.raises(strata.ConfigError) as e:
        strata.run("gpt-tiny", "tiny-1rank", {"strategy.micro_batch_size": 0}, steps=2)
    assert (e.value.field, e.value.value) == ("strategy.micro_batch_size", 0)
    assert e.value.rule == "must be a positive integer"
    stderr = cli("run", "--model", "gpt-tiny", "--strategy", "tiny-1rank", "--set",
                 "strategy.micro_batch_size=0", "--steps", "2", expect=1).stderr
    assert stderr.strip() == f"strata run: error: {e.value}"


def test_a_bad_dict_is_named_as_a_dict(spec):
    model = spec("models", "gpt-tiny")
    model["hidden_size"] = "wide"
    with pytest.raises(strata.ConfigError) as e:
        strata.run(model, "tiny-1rank", steps=2)
    assert e.value.context == "(model given as a dict)"
    assert (e.value.field, e.value.value) == ("model.hidden_size", "wide")


def test_ranks_that_are_not_the_world_are_refused():
    with pytest.raises(strata.ConfigError) as e:
        strata.run("gpt-tiny", "tiny-dp2", steps=2)
    assert str(e.value) == "world size = 1 (mpirun -np): strategy 'tiny-dp2' needs dp * tp * " \
        "pp * cp = 2 ranks"
    assert e.value.field is None and e.value.rule == str(e.value)


@needs_mpirun
def test_two_ranks_of_a_one_rank_strategy_are_refused():
    with pytest.raises(strata.ConfigError) as e:
        strata.run("gpt-tiny", "tiny-1rank", np=2, steps=2)
    # Strata's message only, without mpirun's notes on the failed job.
    assert str(e.value) == "world size = 2 (mpirun -np): strategy 'tiny-1rank' needs dp * tp * " \
        "pp * cp = 1 ranks"
    with pytest.raises(strata.ConfigError) as e:
        strata.run("gpt-tiny", "tiny-dp2", {"strategy.dp": -1}, np=2, steps=2)
    assert (e.value.field, e.value.value, e.value.rule) == (
        "strategy.dp", -1, "must be a positive integer")


def test_bad_arguments_are_usage_errors(monkeypatch):
    for kwargs, name in (({"np": 0}, "np"), ({"steps": 0}, "steps"), ({"seed": -1}, "seed"),
                         ({"lr": 0}, "lr"), ({"lr": "big"}, "lr"), ({"data": 3}, "data"),
                         ({"device": 0}, "device"), ({"trace": 1}, "trace"),
                         ({"switch": {"phases": []}}, "strategy"),
                         ({"switch": "s.json", "strategy": None, "steps": 2}, "steps"),
                         ({"switch": 3, "strategy": None}, "switch"),
                         ({"np": 2, "mpirun": "/no/such/mpirun"}, "np"),
                         ({"strategy": None}, "strategy")):
        kwargs = {"strategy": "tiny-1rank", **kwargs}
        with pytest.raises(strata.UsageError) as e:
            strata.run("gpt-tiny", **kwargs)
        assert str(e.value).startswith(f"{name} = "), e.value
        assert e.value.field == name
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(strata.UsageError, match="no mpirun on PATH"):
        strata.run("gpt-tiny", "tiny-dp2", np=2)


def test_a_timeout_stops_the_run():
    with pytest.raises(strata.RuntimeFailure, match="strata run ran past the timeout of 1 s"):
        strata.run("gpt-tiny", "tiny-1rank", steps=100000, timeout=1)
