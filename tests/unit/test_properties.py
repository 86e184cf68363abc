"""Properties (hypothesis) of what takes outside input: the policy loader (any TOML text or
dict loads into a valid policy or raises PolicyError, never anything else), size and
duration parsing, the command line's argument handling, and the Result (any program output,
invalid UTF-8 and NUL bytes included, survives the trip into JSON). The fuzz targets' seed
corpora are replayed here too, so they are checked on every CI run even without atheris.
The example-based tests below pin bugs these properties found (now fixed).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from stockade import Policy, PolicyError, Result, Sandbox, Status, ToolCall, cli
from stockade.kernel import uids
from stockade.policy.model import OVERRIDES, parse_count, parse_duration, parse_size

REPO = Path(__file__).parents[2]
FUZZ = REPO / "fuzz"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# --------------------------------------------------------------------------- TOML documents


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(data: dict[str, Any]) -> str:
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


KNOWN_KEYS = {
    "limits": ["timeout", "cpu_time", "memory", "pids", "open_files", "file_size", "stack",
               "output", "cgroups"],
    "filesystem": ["readonly", "python", "workspace_size", "tmp_size", "inodes"],
    "process": ["uid", "gid", "uid_range", "hostname", "env"],
    "network": ["allow", "allow_host_loopback", "max_connections", "max_bytes"],
}  # fmt: skip

sizes = st.one_of(
    st.integers(-(1 << 70), 1 << 70),
    st.builds(
        lambda n, frac, unit, suffix, space: f"{space}{n}{frac}{unit}{suffix}{space}",
        st.integers(0, 1 << 45),
        st.sampled_from(["", ".5", ".25", ".0"]),
        st.sampled_from(["", "K", "M", "G", "T", "k", "m", "X"]),
        st.sampled_from(["", "B", "iB", "b"]),
        st.sampled_from(["", " "]),
    ),
)
durations = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(1 << 40), 1 << 40),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.integers(0, 1 << 20),
        st.sampled_from(["", "s", "ms", "m", "h", "d", " s", "sec"]),
    ),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 64), 1 << 64), st.floats(), st.text(max_size=12)
)
values = st.one_of(
    scalars,
    sizes,
    durations,
    st.lists(st.text(max_size=20), max_size=3),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    st.sampled_from(["required", "best_effort", "sandbox", "a b", "127.0.0.1:80", "10.0.0.0/8"]),
)


@st.composite
def policy_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed policies (known sections and keys) with hostile values, and now
    and then an unknown section or key."""
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["name"] = draw(st.one_of(st.text(max_size=10), scalars))
    for section, keys in KNOWN_KEYS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=4))
            data[section] = {key: draw(values) for key in chosen}
    if draw(st.integers(0, 9)) == 0:
        data[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return data


def _none_free(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return all(_none_free(v) for v in value)
    if isinstance(value, dict):
        return all(_none_free(v) for v in value.values())
    return True


def assert_valid(policy: Policy) -> None:
    """What every loaded policy must satisfy, whatever it was loaded from."""
    lim, fs, proc = policy.limits, policy.filesystem, policy.process
    assert 0 < lim.timeout <= 86_400
    assert lim.cpu_time is None or 0 < lim.cpu_time <= 86_400
    assert lim.memory is None or (4 << 20) <= lim.memory <= 1 << 40
    assert lim.pids is None or lim.pids >= 1
    assert lim.open_files >= 8 and lim.file_size >= 1 and lim.stack >= 64 << 10
    assert lim.output >= 0 and lim.cgroups in ("required", "best_effort")
    assert fs.workspace_size >= 64 << 10 and fs.tmp_size >= 64 << 10 and fs.inodes >= 64
    assert all(isinstance(path, str) for path in fs.readonly)
    assert proc.uid is None or proc.uid >= 1
    assert proc.gid is None or proc.gid >= 1
    first, last = uids.parse_range(proc.uid_range)
    assert 1 <= first <= last <= uids.MAX_ID
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in proc.env.items())
    for value in (lim.memory, lim.file_size, lim.stack, lim.output, fs.tmp_size, lim.pids):
        assert value is None or isinstance(value, int)


@settings(max_examples=300, deadline=None)
@given(policy_dicts())
def test_any_policy_dict_loads_valid_or_raises_policy_error(data: dict[str, Any]) -> None:
    try:
        policy = Policy.from_dict(data)
    except PolicyError as exc:
        assert exc.field and exc.reason
        return
    assert_valid(policy)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_dicts().filter(_none_free))
def test_any_policy_toml_file_loads_valid_or_raises_policy_error(data: dict[str, Any]) -> None:
    text = toml_document(data)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        try:
            policy = Policy.load(file.name)
        except PolicyError:
            return
    assert_valid(policy)
    assert policy == Policy.from_dict(tomllib.loads(text))  # the file and the dict agree


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_toml_text_loads_valid_or_raises_policy_error(text: str) -> None:
    with tempfile.NamedTemporaryFile("wb", suffix=".toml") as file:
        file.write(text.encode("utf-8", "surrogatepass"))
        file.flush()
        with contextlib.suppress(PolicyError):
            assert_valid(Policy.load(file.name))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60).filter(lambda name: "\0" not in name))
def test_any_policy_name_loads_or_raises_policy_error(name: str) -> None:
    with contextlib.suppress(PolicyError):
        assert_valid(Policy.load(name))


def test_policy_path_with_a_nul_byte_raises_policy_error() -> None:
    with pytest.raises(PolicyError):
        Policy.load("mine\0.toml")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(set(OVERRIDES) - {"env"})),
        st.one_of(values, st.tuples(st.text(max_size=10))),
    ),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
)
def test_any_override_gives_a_valid_policy_or_policy_error(
    flags: dict[str, Any], env: dict[str, str] | None
) -> None:
    if env is not None:
        flags["env"] = env
    try:
        policy = Policy.load("default").override(**flags)
    except PolicyError:
        return
    assert_valid(policy)


@pytest.mark.parametrize("env", [None, "0", ["A"], 5])
def test_override_env_that_is_not_a_mapping_raises_policy_error(env: object) -> None:
    with pytest.raises(PolicyError):
        Policy.load("default").override(env=env)


# --------------------------------------------------------------------------- sizes, durations


@given(
    st.integers(0, 1 << 30),
    st.sampled_from(sorted(UNITS)),
    st.sampled_from(["", "iB"]),
    st.sampled_from(["", " ", "  "]),
)
def test_size_with_unit(number: int, unit: str, suffix: str, pad: str) -> None:
    if not unit and suffix:
        suffix = ""
    text = f"{pad}{number}{pad}{unit}{suffix}{pad}"
    assert parse_size(text) == number * UNITS[unit]


@given(
    st.integers(0, 1 << 30),
    st.sampled_from([u for u in UNITS if u]),
    st.sampled_from(["B", "b", "ib", "IB", "lower"]),
)
def test_a_size_in_any_other_spelling_is_refused(number: int, unit: str, spelling: str) -> None:
    """Only K/M/G/T and KiB/MiB/GiB/TiB: 256MB (decimal to some) or 1g are not guessed."""
    text = f"{number}{unit.lower()}" if spelling == "lower" else f"{number}{unit}{spelling}"
    with pytest.raises(ValueError, match="KiB, MiB, GiB, TiB"):
        parse_size(text)


@given(st.integers(0, 1 << 20), st.sampled_from(sorted(UNITS)))
def test_fractional_sizes_round_down(number: int, unit: str) -> None:
    assert parse_size(f"{number}.5{unit}") == int(number * UNITS[unit] + UNITS[unit] / 2)


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none()))
@example("1" * 290 + "T")  # near the largest a float holds: still an int, never inf
def test_size_is_an_int_or_value_error(value: object) -> None:
    try:
        size = parse_size(value)
    except ValueError:
        return
    assert isinstance(size, int) and not isinstance(size, bool)


@pytest.mark.parametrize("value", ["9" * 400, "1" * 320 + "K"])
def test_huge_sizes_are_refused_as_policy_errors(value: str) -> None:
    with pytest.raises(ValueError):
        parse_size(value)
    with pytest.raises(PolicyError):
        Policy.load("default").override(memory=value)


@given(
    st.integers(0, 1 << 20),
    st.sampled_from(["", "s", "ms", "m", "h"]),
    st.sampled_from(["", " "]),
)
def test_duration_with_unit(number: int, unit: str, pad: str) -> None:
    factor = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}[unit]
    assert parse_duration(f"{pad}{number}{pad}{unit}{pad}") == pytest.approx(number * factor)


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none()))
def test_duration_is_a_float_or_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert isinstance(seconds, float)
    assert math.isnan(seconds) or seconds >= 0 or not isinstance(value, str)


@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.booleans(), st.none()))
def test_count_is_an_int_or_value_error(value: object) -> None:
    try:
        count = parse_count(value)
    except ValueError:
        return
    assert isinstance(count, int) and not isinstance(count, bool)


# --------------------------------------------------------------------------- the command line


class _Stopped(Exception):
    """Raised by the stub run: the CLI got as far as starting a run."""


def _stub_run(captured: dict[str, Any]) -> Any:
    def run(self: Sandbox, argv: Any, **options: Any) -> Result:
        captured.update(policy=self.policy, argv=list(argv), **options)
        return Result(Status.OK, 0, None, b"", b"", False, False, 0.0, 0.0, 0)

    return run


def run_cli(argv: list[str]) -> tuple[int, str, str, dict[str, Any]]:
    """`sandbox` with `argv`, with the run itself stubbed out: (exit, stdout, stderr, what
    the run was given)."""
    captured: dict[str, Any] = {}
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(Sandbox, "run", _stub_run(captured)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's own usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 125
    return code, out.getvalue(), err.getvalue(), captured


OPTION_VALUES = {
    "--timeout": durations.map(str),
    "--cpu-time": durations.map(str),
    "--memory": sizes.map(str),
    "--pids": st.one_of(st.integers(-5, 1 << 23).map(str), st.text(max_size=6)),
    "--output-limit": sizes.map(str),
    "--policy": st.sampled_from(["default", "strict", "networked", "nope", "/nonexistent.toml"]),
    "--env": st.one_of(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
            st.text(max_size=10),
        ),
        st.text(max_size=12),
    ),
    "--file": st.sampled_from(["/etc/hostname", "/etc/hostname:../up", "/nonexistent", "/etc"]),
}
no_nul = st.text(max_size=12).filter(lambda s: "\0" not in s)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    argv = [draw(st.sampled_from(["run", "run", "run", "code", "policies", "bogus"]))]
    for _ in range(draw(st.integers(0, 5))):
        option = draw(st.sampled_from([*OPTION_VALUES, "--json", "--bogus", "-x"]))
        argv.append(option)
        if option in OPTION_VALUES:
            argv.append(draw(OPTION_VALUES[option].filter(lambda s: "\0" not in s)))
    if draw(st.booleans()):
        argv.append("--")
    argv += draw(st.lists(no_nul, max_size=3))
    return argv


@settings(max_examples=300, deadline=None)
@given(command_lines())
def test_any_command_line_runs_or_is_refused_with_exit_125(argv: list[str]) -> None:
    if (argv[0] == "code" and any(arg == "-" for arg in argv[1:])) or argv[-1:] == ["code"]:
        argv = [*argv, "/nonexistent/source.py"]  # never read the test's own stdin
    code, out, err, captured = run_cli(argv)
    assert code in (0, 125), (argv, code, out, err)
    if code == 125:
        assert err.startswith("sandbox:") or "usage:" in err, (argv, err)
        assert "Traceback" not in err
    if captured:
        assert code == 0
        assert_valid(captured["policy"])
        assert captured["argv"] and all("\0" not in arg for arg in captured["argv"])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["--timeout", "--memory", "--pids", "--output-limit", "--cpu-time"]),
    st.one_of(sizes.map(str), durations.map(str), st.text(max_size=15)),
)
def test_a_flag_value_lands_in_the_policy_or_is_refused(flag: str, value: str) -> None:
    assume("\0" not in value and not value.startswith("-"))
    code, _, err, captured = run_cli(["run", flag, value, "--", "true"])
    if code == 125:
        assert "sandbox:" in err and "Traceback" not in err, err
        return
    assert code == 0, err
    key = {"--timeout": "timeout", "--memory": "memory", "--pids": "pids",
           "--output-limit": "output", "--cpu-time": "cpu_time"}[flag]  # fmt: skip
    expected = Policy.load("default").override(**{cli_key(flag): value}).limits
    assert getattr(captured["policy"].limits, key) == getattr(expected, key)
    assert captured["argv"] == ["true"]


def cli_key(flag: str) -> str:
    return {"--output-limit": "output_limit"}.get(flag, flag.removeprefix("--").replace("-", "_"))


@given(st.lists(no_nul, min_size=1, max_size=5))
def test_the_command_after_double_dash_is_passed_verbatim(command: list[str]) -> None:
    code, _, err, captured = run_cli(["run", "--", *command])
    assert code == 0, err
    assert captured["argv"] == command


# --------------------------------------------------------------------------- the Result


results = st.builds(
    Result,
    status=st.sampled_from(list(Status)),
    exit_code=st.one_of(st.none(), st.integers(0, 255)),
    signal=st.one_of(st.none(), st.integers(1, 64)),
    stdout_bytes=st.binary(max_size=300),
    stderr_bytes=st.binary(max_size=300),
    stdout_truncated=st.booleans(),
    stderr_truncated=st.booleans(),
    wall_time=st.floats(0, 1e6),
    cpu_time=st.floats(0, 1e6),
    peak_memory=st.integers(0, 1 << 45),
    error=st.one_of(st.none(), st.text(max_size=30)),
    warnings=st.lists(st.text(max_size=20), max_size=3).map(tuple),
    tool_calls=st.lists(
        st.builds(
            ToolCall,
            tool=st.text(max_size=10),
            arguments=st.text(max_size=20),
            result=st.one_of(st.none(), st.text(max_size=20)),
            error=st.one_of(st.none(), st.text(max_size=20)),
            duration=st.floats(0, 1e6),
        ),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=300)
@given(results)
def test_any_result_round_trips_through_json(result: Result) -> None:
    text = result.to_json()
    assert "\n" not in text  # one line, as the CLI prints it
    text.encode("utf-8")  # printable as UTF-8: no lone surrogates
    data = json.loads(text)
    assert data == result.to_dict()
    assert data["stdout"] == result.stdout_bytes.decode("utf-8", "replace")
    assert data["stderr"] == result.stderr_bytes.decode("utf-8", "replace")
    assert data["status"] == result.status.value
    assert 0 <= result.exit_status() <= 255


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.integers(0, 5000))
@example(b"\xff\xfe\x00\x00nul\x00\xed\xa0\x80\xf4\x90\x80\x80\n", 1 << 20)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")
def test_any_output_round_trips_through_a_real_run(data: bytes, limit: int) -> None:
    """The program writes exactly `data` on stdout and stderr; the Result keeps exactly the
    first `limit` bytes of each, raw, and its JSON carries their decoded text."""
    box = Sandbox(Policy.load("default").override(output_limit=limit))
    result = box.run(["sh", "-c", "cat; cat /workspace/data >&2"], stdin=data, files={"data": data})
    assert result.status is Status.OK, result
    for kept, truncated in ((result.stdout_bytes, result.stdout_truncated),
                            (result.stderr_bytes, result.stderr_truncated)):  # fmt: skip
        assert kept == data[:limit]
        assert truncated == (len(data) > limit)
    decoded = json.loads(result.to_json())
    assert decoded["stdout"] == data[:limit].decode("utf-8", "replace")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
@example(b'\x00\xff\x1b]52;c;eA==\x07{"status": "ok"}\n')
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")
def test_any_output_round_trips_through_the_cli_json(data: bytes) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stockade", "run", "--json", "--", "cat"],
        input=data,
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done
    lines = done.stdout.decode("utf-8").splitlines()
    assert len(lines) == 1, done.stdout
    assert json.loads(lines[0])["stdout"] == data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- the fuzz seeds


def _fuzz_target(name: str) -> Any:
    sys.path.insert(0, str(FUZZ))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(FUZZ))
    return module


@pytest.mark.parametrize("target", ["fuzz_policy", "fuzz_cli", "fuzz_capture"])
def test_fuzz_seed_corpus_replays_cleanly(target: str) -> None:
    """Every seed of every fuzz target passes through its TestOneInput without a finding."""
    module = _fuzz_target(target)
    seeds = sorted((FUZZ / "seeds" / target.removeprefix("fuzz_")).iterdir())
    assert seeds, f"no seeds for {target}"
    for seed in seeds:
        module.TestOneInput(seed.read_bytes())
