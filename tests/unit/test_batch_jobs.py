"""A batch's jobs checked field by field (pure: nothing runs), and errors that cross a
process boundary as themselves (a Ray actor's reach its caller pickled)."""

from __future__ import annotations

import pickle

import pytest

from stockade.batch.jobs import Job, as_job, id_of, rejected
from stockade.errors import (
    BuildError,
    PolicyError,
    SessionError,
    SetupError,
    UnsupportedError,
)


def test_a_mapping_becomes_a_job() -> None:
    job = as_job({"id": "a", "argv": ["sh", "-c", "cat"], "stdin": "in", "timeout": 2}, 7)
    assert job == Job(id="a", argv=("sh", "-c", "cat"), stdin=b"in", timeout=2)
    assert job.limits() == {"timeout": 2}
    assert as_job("print(1)", 7) == Job(id=7, code="print(1)")


@pytest.mark.parametrize(
    ("item", "field", "reason"),
    [
        ({"code": "1"}, "id", "missing"),
        ({"id": True, "code": "1"}, "id", "expected a string or an integer"),
        ({"id": 1.5, "code": "1"}, "id", "expected a string or an integer"),
        ({"id": 1}, "code", "either code or argv"),
        ({"id": 1, "code": "1", "argv": ["x"]}, "code", "either code or argv"),
        ({"id": 1, "code": 5}, "code", "expected a string"),
        ({"id": 1, "argv": []}, "argv", "non-empty list of strings"),
        ({"id": 1, "argv": ["a", 1]}, "argv", "non-empty list of strings"),
        ({"id": 1, "code": "1", "stdin": 3}, "stdin", "expected a string"),
        ({"id": 1, "code": "1", "files": {"a": 1}}, "files", "names to strings"),
        ({"id": 1, "code": "1", "env": ["A=1"]}, "env", "names to strings"),
        ({"id": 1, "code": "1", "language": 3}, "language", "expected a string"),
        ({"id": 1, "code": "1", "colour": "red"}, "colour", "unknown field"),
        (3.5, "job", "expected a Job"),
    ],
)
def test_a_bad_field_is_named(item: object, field: str, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        as_job(item, 0)  # type: ignore[arg-type]
    assert caught.value.field == field and reason in caught.value.reason


def test_a_refused_job_keeps_what_id_it_has() -> None:
    assert id_of({"id": "x", "colour": 1}, 3) == "x"
    assert id_of({"id": [1]}, 3) is None
    assert id_of("code", 3) == 3
    refused = rejected("timeout: too long")
    assert refused.status == "setup_failed" and refused.error == "timeout: too long"
    assert refused.exit_code is None and refused.stdout == ""


@pytest.mark.parametrize(
    "error",
    [
        PolicyError("timeout", "bad"),
        UnsupportedError("cgroup memory controller", "mount it"),
        SetupError("mounts.pivot_root", 1, "detail"),
        SessionError("gone", rejected("x")),
        BuildError(("numpy",), "no wheel"),
    ],
)
def test_errors_pickle_as_themselves(error: Exception) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert again.__dict__ == error.__dict__
