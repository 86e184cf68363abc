"""The exception tree of the sandbox. This module imports nothing from the package.

    SandboxError                 the root: catch this to catch everything the sandbox raises
    ├── PolicyError              a policy or a flag is invalid; names the field and the reason
    ├── UnsupportedError         this machine lacks a protection the policy asks for; has a hint
    ├── SetupError               the sandbox could not be set up; carries the step and the errno
    ├── BuildError               a Python environment could not be built; names the requirements
                                 and carries the installer's message
    ├── SessionError             a session's interpreter is gone (or never started); its state
    │                            is lost; carries the last call's Result when there is one
    ├── WorkspaceError           a workspace cannot take requests any more (closed, idle, its
    │                            lifetime over, its guest gone, or it never started); says why
    └── WorkspaceFileError       a file operation in a workspace failed (also an OSError, with
                                 the errno and the path: ENOENT, EISDIR, EEXIST, ELOOP...)

What the *program* did (timeout, out of memory, a signal, a non-zero exit) is not an
exception: it is the `status` of the `Result`. Only what the sandbox could not do raises.
"""

from __future__ import annotations

import errno as errno_module
import os


class SandboxError(Exception):
    """Root of every error the sandbox raises."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled as its message and attributes, not through __init__, whose arguments differ
        # from class to class: an error raised in another process (a Ray actor) reaches its
        # caller as itself.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(kind: type[SandboxError], args: tuple[object, ...], attributes: dict) -> SandboxError:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(attributes)
    return error


class PolicyError(SandboxError, ValueError):
    """A policy file, an override or a command-line flag is invalid."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UnsupportedError(SandboxError):
    """This machine cannot provide a protection that the policy asks for."""

    def __init__(self, missing: str, hint: str = "") -> None:
        self.missing = missing
        self.hint = hint
        super().__init__(f"{missing}" + (f" (hint: {hint})" if hint else ""))


class SetupError(SandboxError):
    """A step of the sandbox's setup failed; `step` names it, `errno` says why."""

    def __init__(self, step: str, errno: int, detail: str = "") -> None:
        self.step = step
        self.errno = errno
        self.detail = detail
        name = errno_module.errorcode.get(errno, str(errno))
        cause = f"{name}: {os.strerror(errno)}" if errno else "failed"
        super().__init__(
            f"setup step {step!r} failed: {cause}" + (f" ({detail})" if detail else "")
        )


class BuildError(SandboxError):
    """An environment for the sandbox could not be built (a requirement that does not resolve
    or fails to build); `requirements` names the ones the installer failed on, `output` is
    what it said. Nothing of the attempt is left in the cache."""

    def __init__(self, requirements: tuple[str, ...], output: str) -> None:
        self.requirements = requirements
        self.output = output
        named = ", ".join(repr(r) for r in requirements)
        super().__init__(f"cannot build the environment: could not install {named}\n{output}")


class SessionError(SandboxError):
    """A session cannot take calls any more: it was closed, or its interpreter is gone (killed
    at a call's hard deadline, out of memory, ended by its own code). Its state is lost.
    `result` is the Result of the call that ended it, when one did."""

    def __init__(self, reason: str, result: object | None = None) -> None:
        self.reason = reason
        self.result = result
        super().__init__(reason)


class WorkspaceError(SandboxError):
    """A workspace cannot take requests any more: `reason` says why (closed, idle for its
    `limits.workspace_idle`, its `limits.workspace_lifetime` over, its guest program gone,
    or it could not start). Its files and processes are gone with it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class WorkspaceFileError(SandboxError, OSError):
    """A file operation inside a workspace failed: `errno` says why (ENOENT, EISDIR, ENOTDIR,
    EEXIST, ELOOP for a link, which is never followed, EFBIG over a cap), `filename` is the
    path as given."""

    def __init__(self, errno: int, message: str, path: str) -> None:
        super().__init__(errno, message, path)
