# strata.simulate: report.json's dict equals `strata simulate --json -` for the same inputs
# (names, dicts, overrides, a strategy schedule), the trace is written where asked, and calls
# from several threads at once (each a child process) give what one call at a time gives.
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import strata

TINY = ("gpt-tiny", "local-cpu", "tiny-dp2")


def test_simulate_equals_the_cli_json(cli_json):
    report = strata.simulate(*TINY, gpus=2)
    assert report == cli_json("simulate", "--quiet", "--model", "gpt-tiny", "--cluster",
                              "local-cpu", "--strategy", "tiny-dp2", "--gpus", "2")
    assert report["kind"] == "strata.report"
    assert report["step_time_s"] > 0
    assert len(report["ranks"]) == 2


def test_dicts_and_overrides_equal_the_cli(cli_json, spec):
    cli = cli_json("simulate", "--quiet", "--model", "gpt-tiny", "--cluster", "local-cpu",
                   "--strategy", "tiny-dp2", "--set", "strategy.dp=4", "--gpus", "4",
                   "--exact")
    dicts = (spec("models", "gpt-tiny"), spec("clusters", "local-cpu"),
             spec("strategies", "tiny-dp2"))
    assert strata.simulate(*dicts, {"strategy.dp": 4}, gpus=4, exact=True) == cli
    assert strata.simulate(*TINY, ["strategy.dp=4"], gpus=4, exact=True) == cli
    assert cli["ranks"][0]["stage"] == 0 and len(cli["ranks"]) == 4


def test_trace_is_written_where_asked(tmp_path, cli):
    path = tmp_path / "trace.json"
    report = strata.simulate(*TINY, gpus=2, trace=path, trace_ranks=[0, 1])
    trace = json.loads(path.read_text())
    assert {e["pid"] for e in trace["traceEvents"] if e.get("ph") == "X"} == {0, 1}
    cli_path = tmp_path / "cli-trace.json"
    cli("simulate", "--quiet", "--model", "gpt-tiny", "--cluster", "local-cpu", "--strategy",
        "tiny-dp2", "--gpus", "2", "--trace", cli_path, "--trace-ranks", "0,1")
    assert json.loads(cli_path.read_text()) == trace
    assert report["step_time_s"] > 0


def test_parallel_calls_equal_sequential_ones():
    dps = [1, 2, 4, 1, 2, 4]

    def one(dp):
        return strata.simulate(*TINY, {"strategy.dp": dp}, gpus=dp)

    sequential = [one(dp) for dp in dps]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(one, dps))
    assert parallel == sequential
    # Each call got its own inputs back.
    assert [len(r["ranks"]) for r in parallel] == dps


VALIDATE = "experiments/validate-cpu"


def test_profile_links_and_straggler_reach_the_cli(cli_json, repo):
    """Measured costs (a profile and links of experiments/validate-cpu) and a straggler are
    passed as the command line's flags: the dicts equal, and each changes the prediction."""
    model, strategy = "gpt-10m", str(repo / VALIDATE / "specs" / "v10m-dp2.json")
    runs = repo / VALIDATE / "results" / "runs" / "v10m-dp2"
    profile, links = runs / "profile.json", runs / "links.json"
    measured = strata.simulate(model, "local-cpu", strategy, gpus=2, profile=profile,
                               links=[links])
    assert measured == cli_json("simulate", "--quiet", "--model", model, "--cluster",
                                "local-cpu", "--strategy", strategy, "--gpus", "2",
                                "--profile", str(profile), "--links", str(links))
    roofline = strata.simulate(model, "local-cpu", strategy, gpus=2)
    assert measured["step_time_s"] != roofline["step_time_s"]
    slow = strata.simulate(model, "local-cpu", strategy, gpus=2, straggler={1: 0.5})
    assert slow == cli_json("simulate", "--quiet", "--model", model, "--cluster", "local-cpu",
                            "--strategy", strategy, "--gpus", "2", "--straggler", "1:0.5")
    assert slow["step_time_s"] > 1.5 * roofline["step_time_s"]


def test_bad_flag_values_are_usage_errors():
    for kwargs, name in (({"profile": 3}, "profile"), ({"links": []}, "links"),
                         ({"profile": ["a,b.json"]}, "profile"),
                         ({"straggler": {"1": 0.5}}, "straggler"),
                         ({"straggler": [1, 0.5]}, "straggler"), ({"failures": 2}, "failures"),
                         ({"rounds": 0}, "rounds"), ({"steps": -1}, "steps")):
        try:
            strata.simulate(*TINY, gpus=2, **kwargs)
        except strata.UsageError as e:
            assert str(e).startswith(f"{name} = "), e
        else:
            raise AssertionError(f"{kwargs} was accepted")


def test_a_schedule_equals_the_cli_json(cli_json, tmp_path):
    """switch=: the bundled schedule's path, and a 2-phase schedule given as a dict, simulate
    as `strata simulate --switch FILE` does."""
    bundled = strata._strata.config_dir() + "/schedules/tiny-tp2-then-dp2.json"
    report = strata.simulate("gpt-tiny", "local-cpu", None, gpus=2, switch=bundled)
    assert report == cli_json("simulate", "--quiet", "--model", "gpt-tiny", "--cluster",
                              "local-cpu", "--switch", bundled, "--gpus", "2")
    assert [p["strategy"] for p in report["switching"]["phases"]] == \
        ["tiny-tp2", "tiny-dp2", "tiny-zero1"]
    assert len(report["switching"]["switches"]) == 2
    schedule = {"name": "dp2-then-tp2", "phases": [{"strategy": "tiny-dp2", "steps": 3},
                                                   {"strategy": "tiny-tp2", "steps": 2}]}
    path = tmp_path / "dp2-then-tp2.json"
    path.write_text(json.dumps(schedule))
    from_dict = strata.simulate("gpt-tiny", "local-cpu", None, {"strategy.micro_batch_size": 1},
                                gpus=2, switch=schedule)
    assert from_dict == strata.simulate("gpt-tiny", "local-cpu", None,
                                        ["strategy.micro_batch_size=1"], gpus=2, switch=path)
    assert from_dict == cli_json("simulate", "--quiet", "--model", "gpt-tiny", "--cluster",
                                 "local-cpu", "--switch", path, "--gpus", "2", "--set",
                                 "strategy.micro_batch_size=1")
    assert [p["steps"] for p in from_dict["switching"]["phases"]] == [3, 2]


def test_schedule_errors():
    schedule = {"name": "s", "phases": [{"strategy": "tiny-dp2", "steps": 0}]}
    with pytest.raises(strata.ConfigError) as e:
        strata.simulate("gpt-tiny", "local-cpu", None, gpus=2, switch=schedule)
    assert (e.value.field, e.value.value, e.value.rule) == (
        "switch.phases.0.steps", 0, "must be a whole number of steps >= 1")
    # A message naming the schedule names the dict, not its temporary file.
    two = {"name": "s", "phases": [{"strategy": "tiny-dp2", "steps": 1},
                                   {"strategy": "tiny-tp2", "steps": 1}]}
    with pytest.raises(strata.ConfigError) as e:
        strata.simulate("gpt-tiny", "local-cpu", None, {"strategy.dp": 2}, gpus=2, switch=two)
    assert str(e.value).startswith("(switch given as a dict): switch.phases.1 (strategy "
                                   "'tiny-tp2'): strategy 'tiny-tp2' needs dp*tp*pp*cp = "
                                   "2*2*1*1 = 4 GPUs")
    for kwargs, name in (({"strategy": "tiny-dp2"}, "strategy"),
                         ({"strategy": {"dp": 2}}, "strategy"), ({"switch": 3}, "switch"),
                         ({"trace": "t.json"}, "trace"), ({"failures": "f.json"}, "failures")):
        kwargs = {"strategy": None, "switch": schedule, **kwargs}
        with pytest.raises(strata.UsageError) as e:
            strata.simulate("gpt-tiny", "local-cpu", gpus=2, **kwargs)
        assert e.value.field == name, e.value
