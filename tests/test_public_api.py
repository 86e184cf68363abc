"""The public surface is pinned: changing it is a decision, not an accident."""

import sandbox


def test_sandbox_all() -> None:
    assert sandbox.__all__ == [
        "Policy",
        "PolicyError",
        "Result",
        "Sandbox",
        "SandboxError",
        "SessionError",
        "SetupError",
        "Status",
        "UnsupportedError",
    ]
    for name in sandbox.__all__:
        assert getattr(sandbox, name).__name__ == name


def test_error_tree() -> None:
    for name in ("PolicyError", "SessionError", "SetupError", "UnsupportedError"):
        assert issubclass(getattr(sandbox, name), sandbox.SandboxError)
