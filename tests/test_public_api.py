"""The public surface is pinned: changing it is a decision, not an accident."""

import stockade


def test_sandbox_all() -> None:
    assert stockade.__all__ == [
        "BuildError",
        "Command",
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
        "Workspace",
        "WorkspaceError",
        "WorkspaceFileError",
    ]
    for name in stockade.__all__:
        assert getattr(stockade, name).__name__ == name


def test_error_tree() -> None:
    errors = ("BuildError", "PolicyError", "SessionError", "SetupError", "UnsupportedError",
              "WorkspaceError", "WorkspaceFileError")  # fmt: skip
    for name in errors:
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


def test_what_a_workspace_returns_is_exported() -> None:
    """`Sandbox.workspace` returns a Workspace, whose `start` returns a Command."""
    from stockade.workspace import command, workspace

    assert stockade.Sandbox.workspace.__annotations__["return"] == "Workspace"
    assert stockade.Workspace.start.__annotations__["return"] == "Command"
    assert (stockade.Workspace, stockade.Command) == (workspace.Workspace, command.Command)
    assert issubclass(stockade.WorkspaceFileError, OSError)
