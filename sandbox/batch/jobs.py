"""A batch's jobs and results: what one job asks for, checked, and what came of it.

A job is code (with its language) or an argv, with optional files, stdin, environment and
its own limits, and an id that its result carries back. `as_job` takes a `Job`, a mapping of
the same fields (a line of `sandbox batch`'s JOBS.jsonl), or a string of Python code; a bad
field is a `PolicyError` naming it, which `run_job` turns into that job's `setup_failed`
result, so one bad job never ends a batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from stockade.errors import PolicyError
from stockade.result import Result, make_result

JobId = str | int
LIMITS = ("timeout", "cpu_time", "memory", "pids", "output_limit")
FIELDS = frozenset({"id", "code", "language", "argv", "files", "stdin", "env", *LIMITS})


class Job(NamedTuple):
    """One run of a batch: `code` (in `language`) or `argv`, not both."""

    id: JobId
    code: str | None = None
    language: str = "python"
    argv: tuple[str, ...] | None = None
    files: Mapping[str, bytes | str] | None = None
    stdin: bytes = b""
    env: Mapping[str, str] | None = None
    timeout: float | str | None = None
    cpu_time: float | str | None = None
    memory: int | str | None = None
    pids: int | None = None
    output_limit: int | str | None = None

    def limits(self) -> dict[str, Any]:
        """The job's own limits, by the names `Sandbox.run` takes."""
        return {name: getattr(self, name) for name in LIMITS if getattr(self, name) is not None}


class JobResult(NamedTuple):
    """What a job did: its id (None for a job whose id was missing or bad) and its Result."""

    id: JobId | None
    result: Result

    def to_dict(self) -> dict[str, Any]:
        """One line of `sandbox batch`'s output: the id, then the Result's JSON object."""
        return {"id": self.id, **self.result.to_dict()}


class Runner(Protocol):
    """What runs a job: `Sandbox` (and `stockade.ray`'s node actors, through one)."""

    def run(self, argv: Sequence[str], **options: Any) -> Result: ...

    def run_code(self, code: str, language: str = "python", **options: Any) -> Result: ...


def as_job(item: Job | Mapping[str, Any] | str, index: int) -> Job:
    """`item` as a Job: a Job as it is, a string as Python code with its index as id, a
    mapping checked field by field (a `PolicyError` names the first bad one)."""
    if isinstance(item, Job):
        return _checked(item)
    if isinstance(item, str):
        return Job(id=index, code=item)
    if not isinstance(item, Mapping):
        raise PolicyError("job", f"expected a Job, a mapping or a string of code, got {item!r}")
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise PolicyError(str(unknown[0]), f"unknown field; known: {', '.join(sorted(FIELDS))}")
    if "id" not in item:
        raise PolicyError("id", "missing: every job needs an id (a string or an integer)")
    data = dict(item)
    if isinstance(data.get("argv"), list):
        data["argv"] = tuple(data["argv"])
    if isinstance(data.get("stdin"), str):
        data["stdin"] = data["stdin"].encode()
    return _checked(Job(**data))


def _checked(job: Job) -> Job:
    if isinstance(job.id, bool) or not isinstance(job.id, str | int):
        raise PolicyError("id", f"expected a string or an integer, got {job.id!r}")
    if (job.code is None) == (job.argv is None):
        raise PolicyError("code", "a job has either code or argv (not both, not neither)")
    if job.code is not None and not isinstance(job.code, str):
        raise PolicyError("code", f"expected a string, got {type(job.code).__name__}")
    if job.argv is not None and (not job.argv or not all(isinstance(arg, str) for arg in job.argv)):
        raise PolicyError("argv", "expected a non-empty list of strings")
    if not isinstance(job.language, str):
        raise PolicyError("language", f"expected a string, got {job.language!r}")
    if not isinstance(job.stdin, bytes):
        raise PolicyError("stdin", f"expected a string, got {type(job.stdin).__name__}")
    for name in ("files", "env"):
        value = getattr(job, name)
        if value is not None and not (
            isinstance(value, Mapping)
            and all(isinstance(k, str) and isinstance(v, str | bytes) for k, v in value.items())
        ):
            raise PolicyError(name, "expected an object of names to strings")
    return job


def run_job(runner: Runner, job: Job) -> Result:
    """Run one job; its own bad input (a `PolicyError`) is its `setup_failed` Result."""
    try:
        common = {"stdin": job.stdin, "files": job.files, "env": job.env, **job.limits()}
        if job.code is not None:
            return runner.run_code(job.code, job.language, **common)
        return runner.run(list(job.argv or ()), **common)
    except PolicyError as exc:
        return rejected(str(exc))


def id_of(item: object, index: int) -> JobId | None:
    """The id a job's result carries, also when the job is refused: its own when it has a
    good one, its index for a string of code, else None."""
    if isinstance(item, str):
        return index
    found = item.get("id") if isinstance(item, Mapping) else getattr(item, "id", None)
    return found if isinstance(found, str | int) and not isinstance(found, bool) else None


class _Nothing(NamedTuple):  # the output of a job that never ran
    truncated: bool = False

    def value(self) -> bytes:
        return b""


def rejected(error: str) -> Result:
    """The Result of a job that did not run: its input was refused (`error` says why)."""
    none = _Nothing()
    return make_result(
        none,
        none,
        setup_failed=True,
        exit_code=None,
        signal=None,
        timed_out=False,
        oom_killed=False,
        wall_time=0.0,
        cpu_time=0.0,
        peak_memory=0,
        error=error,
    )
