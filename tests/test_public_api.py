"""The public surface is pinned: changing it is a decision, not an accident."""

import stockade


def test_sandbox_all() -> None:
    assert stockade.__all__ == [
        "BuildError",
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
    for name in stockade.__all__:
        assert getattr(stockade, name).__name__ == name


def test_error_tree() -> None:
    for name in ("BuildError", "PolicyError", "SessionError", "SetupError", "UnsupportedError"):
        assert issubclass(getattr(stockade, name), stockade.SandboxError)
