"""The shipped worker pool's ways to stop runs: a cold shutdown hands every run back (tested
end to end with a real worker in `test_hand_back.py`); a single task's terminate outside a
shutdown (`celery control revoke --terminate`) is refused as Celery's threads pool refuses
it, and hands nothing back — it used to put the whole live worker into its shutdown."""

from __future__ import annotations

import pytest

from config.celery import RunConsumer, RunThreadPool, _pool_on_command_line, _worker_defaults
from orchestrator.runners import worker_pool


def test_terminating_one_task_outside_a_shutdown_is_refused_and_hands_nothing_back():
    pool = RunThreadPool(limit=1)
    try:
        with pytest.raises(NotImplementedError):
            pool.terminate_job(1234)
        assert not worker_pool.shutting_down()
    finally:
        pool.on_stop()


def test_the_shipped_defaults_name_the_pool_and_the_consumer(monkeypatch):
    monkeypatch.setattr("sys.argv", ["celery", "-A", "config", "worker"])
    defaults = _worker_defaults()
    assert defaults["worker_pool"] == "config.celery:RunThreadPool"
    assert defaults["worker_consumer"] == "config.celery:RunConsumer"
    assert issubclass(RunConsumer, __import__("celery.worker.consumer", fromlist=["Consumer"]).Consumer)
    monkeypatch.setattr("sys.argv", ["celery", "-A", "config", "worker", "--pool=prefork"])
    assert _worker_defaults() == {} and _pool_on_command_line(["worker", "-Psolo"]) == "solo"
