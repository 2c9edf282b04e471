# strata.plan, bundled, version: the dicts equal `strata plan --json -` for the same inputs,
# given as bundled names, files or dicts, with overrides, --gpus and --nodes.
import json

import pytest

import strata

TINY = ("gpt-tiny", "local-cpu", "tiny-dp2")


def test_plan_equals_the_cli_json(cli_json):
    summary = strata.plan(*TINY, gpus=2)
    assert summary == cli_json("plan", "--model", "gpt-tiny", "--cluster", "local-cpu",
                               "--strategy", "tiny-dp2", "--gpus", "2")
    assert summary["kind"] == "strata.plan_summary"
    assert summary["world_size"] == 2
    assert summary["degrees"]["dp"] == 2


def test_dicts_and_files_give_the_same_summary_as_names(spec, tmp_path):
    by_name = strata.plan(*TINY, gpus=2)
    dicts = (spec("models", "gpt-tiny"), spec("clusters", "local-cpu"),
             spec("strategies", "tiny-dp2"))
    # The provenance hashes the parsed specs, so even it is the same.
    assert strata.plan(*dicts, gpus=2) == by_name
    model_file = tmp_path / "model.json"
    model_file.write_text(__import__("json").dumps(dicts[0]))
    assert strata.plan(model_file, "local-cpu", "tiny-dp2", gpus=2) == by_name
    assert strata.plan(str(model_file), "local-cpu", "tiny-dp2", gpus=2) == by_name


def test_overrides_as_dict_or_list_equal_set_flags(cli_json):
    cli = cli_json("plan", "--model", "gpt-tiny", "--cluster", "local-cpu", "--strategy",
                   "tiny-dp2", "--set", "strategy.dp=4", "--set", "strategy.precision=bf16",
                   "--gpus", "4")
    assert strata.plan(*TINY, {"strategy.dp": 4, "strategy.precision": "bf16"}, gpus=4) == cli
    assert strata.plan(*TINY, ["strategy.dp=4", "strategy.precision=bf16"], gpus=4) == cli
    assert cli["degrees"]["dp"] == 4
    assert cli["precision"] == "bf16"


def test_nodes_rescale_the_cluster(cli_json):
    # dgx-a100-128n rescaled to one node: its 8 GPUs hold dp 8.
    dp8 = {"strategy.dp": 8, "strategy.global_batch_size": 16}
    summary = strata.plan("gpt-tiny", "dgx-a100-128n", "tiny-dp2", dp8, nodes=1)
    assert summary["world_size"] == 8
    assert summary == cli_json("plan", "--model", "gpt-tiny", "--cluster", "dgx-a100-128n",
                               "--strategy", "tiny-dp2", "--set", "strategy.dp=8", "--set",
                               "strategy.global_batch_size=16", "--nodes", "1")


def test_string_overrides_are_read_as_strings():
    # "4" reads as JSON (the number), so it is passed as "\"4\"", a string, as given.
    with pytest.raises(strata.ConfigError) as e:
        strata.plan(*TINY, {"strategy.dp": "4"}, gpus=2)
    assert (e.value.field, e.value.value) == ("strategy.dp", "4")
    summary = strata.plan(*TINY, {"strategy.schedule": "gpipe"}, gpus=2)
    assert summary["schedule"] == "gpipe"
    assert summary["provenance"]["overrides"] == ["strategy.schedule=gpipe"]


def test_a_strategy_that_does_not_fit_returns_its_summary(cli_json):
    # 1 MB per rank is less than the 4.9 MB peak of gpt-tiny's dp 2; the CLI exits 3.
    small = {"cluster.gpu.memory_bytes": 1000000}
    summary = strata.plan(*TINY, small, gpus=2)
    assert summary["memory"]["fits"] is False
    assert summary["memory"]["first_rank_over_capacity"] == 0
    assert summary == cli_json("plan", "--model", "gpt-tiny", "--cluster", "local-cpu",
                               "--strategy", "tiny-dp2", "--set",
                               "cluster.gpu.memory_bytes=1000000", "--gpus", "2", expect=3)


def test_parameter_server_summary_equals_the_cli(cli_json):
    summary = strata.plan("ctr-tiny", "local-cpu", "ctr-tiny-ps2", gpus=2)
    assert summary == cli_json("plan", "--model", "ctr-tiny", "--cluster", "local-cpu",
                               "--strategy", "ctr-tiny-ps2", "--gpus", "2")
    assert summary["kind"] == "strata.ps_plan"
    assert summary["workers"] == 2


def test_bundled_lists_the_configs_folder():
    assert "gpt-tiny" in strata.bundled("models")
    assert "local-cpu" in strata.bundled("clusters")
    assert "tiny-dp2" in strata.bundled("strategies")
    assert strata.bundled("models") == sorted(strata.bundled("models"))
    with pytest.raises(strata.UsageError) as e:
        strata.bundled("model")
    assert (e.value.field, e.value.value) == ("kind", "model")


def test_version_is_the_cli_version(cli):
    assert cli("version").stdout.strip() == f"strata {strata.version()}"


def buffer(plan, stage, name):
    """The buffer (a tensor) `name` of a stage's program as a dict of plan.json's columns."""
    program = plan["programs"][stage]
    for row in program["buffers"]:
        if row[0] == name:
            return dict(zip(plan["buffer_columns"], row))
    raise KeyError(name)


def test_programs_equal_the_cli_plan_json(cli, tmp_path):
    full = strata.plan("gpt-tiny", "local-cpu", "tiny-pp2-1f1b", gpus=2, programs=True)
    cli("plan", "--model", "gpt-tiny", "--cluster", "local-cpu", "--strategy", "tiny-pp2-1f1b",
        "--gpus", "2", "--quiet", "--out", tmp_path / "plan.json")
    assert full == json.loads((tmp_path / "plan.json").read_text())
    assert full["kind"] == "strata.plan"
    assert full["summary"] == strata.plan("gpt-tiny", "local-cpu", "tiny-pp2-1f1b", gpus=2)
    # Two stages, one program each: the final norm (hidden_size 64) lives on the last one.
    assert [p["stage"] for p in full["programs"]] == [0, 1]
    norm = buffer(full, 1, "final_norm.weight")
    assert (norm["shape"], norm["dtype"], norm["role"]) == ([64], "fp32", "param")
    assert "final_norm.weight" not in [row[0] for row in full["programs"][0]["buffers"]]


def test_programs_of_a_strategy_that_does_not_fit(cli, tmp_path):
    # The command writes plan.json of a strategy that does not fit only with --ignore-memory.
    small = {"cluster.gpu.memory_bytes": 1000000}
    full = strata.plan(*TINY, small, gpus=2, programs=True)
    assert full["summary"]["memory"]["fits"] is False
    cli("plan", "--model", "gpt-tiny", "--cluster", "local-cpu", "--strategy", "tiny-dp2",
        "--set", "cluster.gpu.memory_bytes=1000000", "--gpus", "2", "--ignore-memory",
        "--quiet", "--out", tmp_path / "plan.json")
    assert full == json.loads((tmp_path / "plan.json").read_text())


def test_programs_of_a_parameter_server_strategy_is_a_usage_error():
    with pytest.raises(strata.UsageError) as e:
        strata.plan("ctr-tiny", "local-cpu", "ctr-tiny-ps2", gpus=2, programs=True)
    assert "parameter-server strategy 'ctr-tiny-ps2' has none" in str(e.value)
    with pytest.raises(strata.UsageError) as e:
        strata.plan(*TINY, gpus=2, programs="yes")
    assert (e.value.field, e.value.value) == ("programs", "yes")
