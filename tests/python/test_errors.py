# The error mapping: Strata's ConfigError raises strata.ConfigError with the field, value and
# rule of its message (the same message `strata plan` prints), bad arguments UsageError, and a
# failed child process of simulate() the class of its exit code.
import stat

import pytest

import strata
from strata.errors import parse_message

TINY = ("gpt-tiny", "local-cpu", "tiny-dp2")


def cli_message(cli, *args, expect=1):
    """The message after `strata plan: error: ` (or usage error)."""
    stderr = cli("plan", *args, expect=expect).stderr.strip()
    return stderr.split(": error: ", 1)[-1].split(": usage error: ", 1)[-1]


def test_a_bad_override_names_field_value_and_rule(cli):
    with pytest.raises(strata.ConfigError) as e:
        strata.plan(*TINY, {"strategy.dp": -1}, gpus=2)
    assert (e.value.field, e.value.value, e.value.rule) == (
        "strategy.dp", -1, "must be a positive integer")
    assert e.value.context.endswith("tiny-dp2.json with --set strategy.dp=-1")
    assert str(e.value) == cli_message(cli, "--model", "gpt-tiny", "--cluster", "local-cpu",
                                       "--strategy", "tiny-dp2", "--set", "strategy.dp=-1",
                                       "--gpus", "2")
    assert isinstance(e.value, ValueError)


def test_a_bad_dict_is_named_as_a_dict(spec):
    model = spec("models", "gpt-tiny")
    model["hidden_size"] = "wide"
    with pytest.raises(strata.ConfigError) as e:
        strata.plan(model, "local-cpu", "tiny-dp2", gpus=2)
    assert e.value.context == "(model given as a dict)"
    assert (e.value.field, e.value.value, e.value.rule) == (
        "model.hidden_size", "wide", "must be an integer")


def test_an_unknown_key_names_the_field_without_a_value(spec):
    strategy = spec("strategies", "tiny-dp2")
    strategy["bogus"] = 1
    with pytest.raises(strata.ConfigError) as e:
        strata.plan("gpt-tiny", "local-cpu", strategy, gpus=2)
    assert (e.value.field, e.value.value) == ("strategy.bogus", None)
    assert e.value.rule.startswith("unknown key")


def test_an_unknown_name_lists_the_bundled_ones():
    with pytest.raises(strata.ConfigError) as e:
        strata.plan("no-such-model", "local-cpu", "tiny-dp2", gpus=2)
    assert (e.value.field, e.value.value) == ("--model", "no-such-model")
    assert e.value.rule.startswith("no such file, and no bundled spec of that name")
    assert "gpt-tiny" in e.value.rule


def test_a_world_size_mismatch_keeps_the_whole_message(cli):
    with pytest.raises(strata.ConfigError) as e:
        strata.plan(*TINY)
    assert e.value.field is None and e.value.value is None
    assert e.value.rule == str(e.value) == cli_message(
        cli, "--model", "gpt-tiny", "--cluster", "local-cpu", "--strategy", "tiny-dp2")
    assert "needs dp*tp*pp*cp = 2*1*1*1 = 2 GPUs" in e.value.rule


@pytest.mark.parametrize("call, field, value", [
    (lambda: strata.plan(*TINY, gpus=0), "gpus", 0),
    (lambda: strata.plan(*TINY, gpus="2"), "gpus", "2"),
    (lambda: strata.plan(*TINY, gpus=True), "gpus", True),
    (lambda: strata.plan(*TINY, nodes=-1), "nodes", -1),
    (lambda: strata.plan(*TINY, "strategy.dp=4"), "overrides", "strategy.dp=4"),
    (lambda: strata.plan(3, "local-cpu", "tiny-dp2"), "model", 3),
    (lambda: strata.simulate("gpt-tiny", None, "tiny-dp2"), "cluster", None),
])
def test_bad_arguments_raise_usage_error(call, field, value):
    with pytest.raises(strata.UsageError) as e:
        call()
    assert (e.value.field, e.value.value) == (field, value)
    assert isinstance(e.value, strata.ConfigError)


def test_a_malformed_override_is_a_config_error():
    with pytest.raises(strata.ConfigError) as e:
        strata.plan(*TINY, ["strategy.dp"], gpus=2)
    assert "expected PATH=VALUE" in str(e.value)


def test_simulate_checks_dicts_in_this_process(spec):
    cluster = spec("clusters", "local-cpu")
    cluster["gpus_per_node"] = 0
    with pytest.raises(strata.ConfigError) as e:
        strata.simulate("gpt-tiny", cluster, "tiny-dp2", gpus=2)
    assert e.value.context == "(cluster given as a dict)"
    assert (e.value.field, e.value.value) == ("cluster.gpus_per_node", 0)


def test_simulate_a_strategy_that_does_not_fit():
    small = {"cluster.gpu.memory_bytes": 1000000}
    with pytest.raises(strata.DoesNotFitError) as e:
        strata.simulate(*TINY, small, gpus=2)
    assert "needs" in str(e.value) and "--ignore-memory" in str(e.value)
    report = strata.simulate(*TINY, small, gpus=2, ignore_memory=True)
    assert report["fits"] is False


@pytest.fixture
def fake_strata(tmp_path, monkeypatch):
    """STRATA_EXECUTABLE as a script that prints `message` on stderr and exits `code`."""

    def make(code, message):
        script = tmp_path / "strata"
        script.write_text(f"#!/bin/sh\necho 'strata simulate: {message}' >&2\nexit {code}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("STRATA_EXECUTABLE", str(script))

    return make


@pytest.mark.parametrize("code, printed, cls", [
    (1, "error: strategy.tp = 3: must divide 32", strata.ConfigError),
    (2, "usage error: --bogus: unknown option", strata.UsageError),
    (3, "error: rank 0 needs 9 GiB", strata.DoesNotFitError),
    (4, "runtime failure: a rank stopped answering", strata.RuntimeFailure),
    (70, "internal error (a bug in Strata): boom", strata.RuntimeFailure),
])
def test_the_child_exit_code_chooses_the_class(fake_strata, code, printed, cls):
    fake_strata(code, printed)
    with pytest.raises(cls) as e:
        strata.simulate(*TINY, gpus=2)
    assert type(e.value) is cls
    if code != 70:
        assert str(e.value) == printed.split(": ", 1)[1]
    if code == 1:
        assert (e.value.field, e.value.value, e.value.rule) == ("strategy.tp", 3, "must divide 32")


def test_a_dict_spec_is_named_in_the_child_message(tmp_path, monkeypatch, spec):
    # The child reads a dict from a temporary file ($6: strata simulate --quiet --json -
    # --model FILE); its message names the dict instead.
    script = tmp_path / "strata"
    script.write_text('#!/bin/sh\necho "strata simulate: error: $6: model.x = 1: bad" >&2\n'
                      "exit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("STRATA_EXECUTABLE", str(script))
    with pytest.raises(strata.ConfigError) as e:
        strata.simulate(spec("models", "gpt-tiny"), "local-cpu", "tiny-dp2", gpus=2)
    assert (e.value.context, e.value.field, e.value.value) == (
        "(model given as a dict)", "model.x", 1)


def test_parse_message_reads_nested_values():
    assert parse_message('f.json: strategy.layer_overrides.0 = {"tp": 3, "a": "b: c"}: bad') == (
        "f.json", "strategy.layer_overrides.0", {"tp": 3, "a": "b: c"}, "bad")
    assert parse_message('strategy.name = "a: b": too long: really') == (
        "", "strategy.name", "a: b", "too long: really")
    assert parse_message("model.x = [1, 2, ...]: cut") == ("", "model.x", "[1, 2, ...]", "cut")
    assert parse_message("no field here") == ("", None, None, "no field here")
