"""The restart policy alone: what an exit leads to, from the manifest's typed values."""

from __future__ import annotations

from collections import deque

from gdos.agent.restart_policy import backoff_delay, judge

from gdos.model import InstanceState
from gdos.pkg.manifest import Manifest, RestartPolicy


def test_on_failure_stops_after_a_clean_exit_and_restarts_after_a_crash() -> None:
    policy, recent = RestartPolicy(), deque[float]()
    clean = judge(policy, 0, "exited with code 0", recent, now=100.0)
    assert (clean.state, clean.error, clean.delay) == (
        InstanceState.STOPPED,
        "exited with code 0",
        None,
    )
    crash = judge(policy, None, "process exited", recent, now=100.0)  # unknown status: a failure
    assert crash.state == InstanceState.BACKOFF and crash.delay == policy.backoff
    assert crash.error == f"process exited; restarting in {policy.backoff:g}s"
    assert list(recent) == [100.0]


def test_policy_no_is_an_error_on_failure_and_always_restarts_clean_exits() -> None:
    never = judge(RestartPolicy(policy="no"), 3, "exited with code 3", deque(), now=0.0)
    assert never.state == InstanceState.ERROR and never.delay is None
    always = judge(RestartPolicy(policy="always"), 0, "exited with code 0", deque(), now=0.0)
    assert always.state == InstanceState.BACKOFF


def test_backoff_doubles_up_to_its_cap_and_flapping_gives_up() -> None:
    policy = RestartPolicy(max_retries=4, backoff=1.0, backoff_max=3.0, window=60.0)
    assert [backoff_delay(policy, n) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(policy, 10_000) == 3.0
    recent = deque[float]()
    delays = [judge(policy, 1, "crash", recent, now=float(t)).delay for t in range(4)]
    assert delays == [1.0, 2.0, 3.0, 3.0]
    given_up = judge(policy, 1, "crash", recent, now=4.0)
    assert given_up.state == InstanceState.FAILED
    assert given_up.error == "restarted 4 times in 60s; giving up (crash)"


def test_restarts_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(max_retries=1, window=10.0)
    recent = deque([0.0])
    assert judge(policy, 1, "crash", recent, now=5.0).state == InstanceState.FAILED
    again = judge(policy, 1, "crash", recent, now=20.0)
    assert again.state == InstanceState.BACKOFF and list(recent) == [20.0]


def test_a_manifest_without_restart_gets_the_one_set_of_defaults() -> None:
    manifest = Manifest.from_dict({"name": "web", "version": "1", "entrypoint": "run"})
    assert manifest.restart == RestartPolicy()
    partial = Manifest.from_dict(
        {"name": "web", "version": "1", "entrypoint": "run", "restart": {"backoff": 2}}
    )
    assert partial.restart == RestartPolicy(backoff=2)
