"""The public surface is pinned: changing it is a decision, not an accident."""

import stockade


def test_sandbox_all() -> None:
    assert stockade.__all__ == [
        "BuildError",
        "HostTool",
        "Job",
        "JobResult",
        "Policy",
        "PolicyError",
        "Result",
        "Running",
        "Sandbox",
        "SandboxError",
        "Session",
        "SessionError",
        "SetupError",
        "Status",
        "ToolCall",
        "UnsupportedError",
    ]
    for name in stockade.__all__:
        assert getattr(stockade, name).__name__ == name


def test_error_tree() -> None:
    for name in ("BuildError", "PolicyError", "SessionError", "SetupError", "UnsupportedError"):
        assert issubclass(getattr(stockade, name), stockade.SandboxError)


def test_what_public_methods_return_is_exported() -> None:
    """`Sandbox.start` returns a Running, `Sandbox.session` a Session and `Sandbox.map`
    JobResults (of Jobs): all importable from `stockade`, for annotations and isinstance."""
    from stockade.batch import jobs
    from stockade.spawn import running
    from stockade.warm import session

    assert stockade.Sandbox.map.__annotations__["return"] == "Iterator[JobResult]"
    assert (stockade.Job, stockade.JobResult) == (jobs.Job, jobs.JobResult)
    assert stockade.Sandbox.start.__annotations__["return"] == "running.Running"
    assert stockade.Sandbox.session.__annotations__["return"] == "Session"
    assert (stockade.Running, stockade.Session) == (running.Running, session.Session)
