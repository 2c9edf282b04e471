# strata.simulate: report.json's dict equals `strata simulate --json -` for the same inputs
# (names, dicts, overrides), the trace is written where asked, and calls from several threads
# at once (each a child process) give what one call at a time gives.
import json
from concurrent.futures import ThreadPoolExecutor

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
