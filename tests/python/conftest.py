# Fixtures of the Python package's tests (docs/python.md): the `strata` executable the package
# runs, to compare its dicts with the command line's JSON, and the bundled specs as dicts.
# ctest runs them with PYTHONPATH=<build>/python and STRATA_EXECUTABLE=<build>/cli/strata.
import json
import subprocess
from pathlib import Path

import pytest

import strata


@pytest.fixture(scope="session")
def cli():
    """Runs `strata ARGS...`, asserts its exit code, returns the CompletedProcess."""
    exe = strata.executable()

    def run(*args, expect=0):
        done = subprocess.run([exe, *map(str, args)], capture_output=True, text=True,
                              check=False)
        assert done.returncode == expect, done.stderr
        return done

    return run


@pytest.fixture(scope="session")
def cli_json(cli):
    """The JSON `strata COMMAND ARGS... --json -` prints, as a dict."""

    def run(*args, expect=0):
        return json.loads(cli(*args, "--json", "-", expect=expect).stdout)

    return run


@pytest.fixture(scope="session")
def spec():
    """A bundled spec as a dict: spec("models", "gpt-tiny")."""
    configs = Path(strata._strata.config_dir())

    def load(kind, name):
        return json.loads((configs / kind / f"{name}.json").read_text())

    return load


@pytest.fixture(scope="session")
def repo():
    """The checkout these tests are in (its experiments/ hold measured profiles)."""
    return Path(__file__).resolve().parents[2]
