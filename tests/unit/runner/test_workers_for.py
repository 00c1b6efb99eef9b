"""How many test workers a run gets."""

from __future__ import annotations

import pytest

from faultbox.engine.isolation import IsolationError
from faultbox.runner import run
from faultbox.runner.run import RunOptions, WorkersUnavailable, workers_for


@pytest.fixture
def no_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise IsolationError("unshare(network, mount namespaces): Operation not permitted")

    monkeypatch.setattr(run, "check_available", refuse)


@pytest.fixture
def namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "check_available", lambda: None)


def test_one_per_core_by_default_and_one_per_four_tests(namespaces: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "_cores", lambda: 8)
    assert workers_for(RunOptions(seed=1, jobs=None), 40) == 8
    assert workers_for(RunOptions(seed=1, jobs=None), 20) == 5
    assert workers_for(RunOptions(seed=1, jobs=None), 7) == 1  # a worker costs more than a few short tests save
    assert workers_for(RunOptions(seed=1, jobs=None), 1) == 1
    assert workers_for(RunOptions(seed=1, jobs=4), 20) == 4
    assert workers_for(RunOptions(seed=1, jobs=4), 3) == 3
    assert workers_for(RunOptions(seed=1, jobs=1), 20) == 1
    assert workers_for(RunOptions(seed=1, jobs=4, keep_workdir=True), 20) == 1


def test_the_api_runs_serially_unless_asked(namespaces: None) -> None:
    assert workers_for(RunOptions(seed=1), 40) == 1


def test_without_namespaces_default_is_serial_and_an_explicit_jobs_says_why(no_namespaces: None) -> None:
    assert workers_for(RunOptions(seed=1, jobs=None), 40) == 1
    assert workers_for(RunOptions(seed=1, jobs=1), 20) == 1
    with pytest.raises(WorkersUnavailable, match=r"Operation not permitted") as refused:
        workers_for(RunOptions(seed=1, jobs=2), 20)
    assert "run as root (or with CAP_SYS_ADMIN), or pass --jobs 1" in refused.value.render()
