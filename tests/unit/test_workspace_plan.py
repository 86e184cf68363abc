"""The pure parts of workspaces: their policy keys, how a command is given, and how a
keeper's answer (untrusted: it comes from inside) becomes a command's report."""

from __future__ import annotations

import signal

import pytest

from stockade import Policy, PolicyError
from stockade.workspace.command import _from_done
from stockade.workspace.workspace import _argv, _seconds

ARGV = ("tool", "--flag")


def test_the_policy_keys_take_durations_and_refuse_nonsense() -> None:
    limits = Policy.from_dict({"limits": {"workspace_idle": "10m", "workspace_lifetime": "2h"}})
    assert (limits.limits.workspace_idle, limits.limits.workspace_lifetime) == (600.0, 7200.0)
    for key in ("workspace_idle", "workspace_lifetime"):
        for bad in (0, -1, "forever", 86_401):
            with pytest.raises(PolicyError) as error:
                Policy.from_dict({"limits": {key: bad}})
            assert error.value.field == f"limits.{key}"
    assert Policy.load("default").override(workspace_idle=5).limits.workspace_idle == 5.0


def test_the_call_s_own_idle_and_lifetime_are_checked() -> None:
    assert _seconds("idle", 1.5) == 1.5
    for bad in (0, -2, True, "1", 90_000):
        with pytest.raises(PolicyError, match="idle"):
            _seconds("idle", bad)


def test_a_string_is_a_shell_line_and_a_list_an_argv() -> None:
    assert _argv("ls | wc -l") == ("/bin/sh", "-c", "ls | wc -l")
    assert _argv(["ls", "-l"]) == ("ls", "-l")
    for bad in ("  ", [], ["a\0b"], [""]):
        with pytest.raises(PolicyError):
            _argv(bad)  # type: ignore[arg-type]


def test_a_keeper_s_answers_become_reports() -> None:
    ok = _from_done({"status": 3 << 8, "why": None, "cpu": 0.5, "maxrss": 4096}, ARGV, (), 1.0)
    assert (ok.exit_code, ok.signal, ok.cpu_time, ok.peak_memory) == (3, None, 0.5, 4096)
    timed = _from_done({"status": None, "why": "timeout"}, ARGV, (), 1.0)
    assert timed.timed_out and timed.signal == signal.SIGKILL and timed.exit_code is None
    killed = _from_done({"status": 0, "why": "killed"}, ARGV, (), 1.0)
    assert not killed.timed_out and killed.signal == signal.SIGKILL
    missing = _from_done(
        {"status": 127 << 8, "failed": {"step": "exec", "errno": 2}}, ARGV, (), 1.0
    )
    assert (
        missing.exit_code == 127
        and missing.exec_error == "cannot execute 'tool': No such file or directory"
    )
    nowhere = _from_done({"status": 125 << 8, "failed": {"step": "cwd", "errno": 2}}, ARGV, (), 0)
    assert nowhere.setup_error is not None and "cwd" in nowhere.setup_error
    refused = _from_done({"error": {"errno": 11, "message": "fork: no process"}}, ARGV, (), 0)
    assert refused.setup_error == "cannot start the command: fork: no process"


def test_nonsense_from_inside_is_not_believed() -> None:
    for status in ("0", -1, 1 << 20, True, None, [0]):
        report = _from_done({"status": status, "cpu": "lots", "maxrss": -5}, ARGV, (), 2.0)
        assert report.signal == signal.SIGKILL and report.exit_code is None
        assert (report.cpu_time, report.peak_memory, report.wall_time) == (0.0, 0, 2.0)
