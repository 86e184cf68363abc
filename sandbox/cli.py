"""The `sandbox` command: run | code | batch | doctor | policies | env.

Exit codes (the contract): the program's own; 124 wall or CPU time ran out; 137 killed for
memory; 128+N death by signal N; 126/127 the command cannot be executed / is not found; 125
the command's own failure: bad usage, an invalid policy or flag, a sandbox that could not be
set up (as `docker run` and `timeout` do, so a workload's own exit 2 is never taken for
ours). With --json: 0 whenever the sandbox ran, 125 when it could not.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import posixpath
import stat
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # imported where used: the command's start stays cheap
    from stockade.errors import PolicyError

OWN_FAILURE = 125  # bad usage, an invalid policy or flag, a sandbox that could not be set up
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class _Parser(argparse.ArgumentParser):
    commands: dict[str, argparse.ArgumentParser]  # the top level's: the parser of each command

    def error(self, message: str) -> Any:
        # argparse's own exit code is 2, which a workload may well exit with itself.
        self.print_usage(sys.stderr)
        self.exit(OWN_FAILURE, f"sandbox: {message}\n")


def _parser(argv: Sequence[str]) -> _Parser:
    from stockade import __version__

    parser = _Parser(prog="sandbox", description="Run untrusted code in a hardened sandbox.")
    parser.add_argument("--version", action="version", version=f"sandbox {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # Only the named command's parser when argv names one: argparse never looks at the others
    # then, and building them all costs every command a few ms. Help and usage errors at the
    # top level (no known command first) get them all.
    chosen = argv[0] if argv and argv[0] in _COMMANDS else None
    parser.commands = {}
    for name, (description, add_options) in _COMMANDS.items():
        if chosen in (None, name):
            parser.commands[name] = commands.add_parser(name, help=description)
            add_options(parser.commands[name])
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    """The command line, with an error about a command's options in that command's usage."""
    parser = _parser(argv)
    program_args = None
    if argv[:1] == ["code"] and "--" in argv:
        # The program's arguments, cut off here: argparse drops the `--` on some versions
        # and not others, and would take anything between FILE and it for them too.
        cut = argv.index("--")
        argv, program_args = argv[:cut], argv[cut + 1 :]
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "action", None) == "create":
        # `env create NAME -r FILE PKG`: argparse gives NAME and no PKG at once, and leaves
        # the PKG after an option over.
        args.packages += [arg for arg in unknown if not arg.startswith("-")]
        unknown = [arg for arg in unknown if arg.startswith("-")]
    command = parser.commands.get(args.command, parser) if argv[:1] == [args.command] else parser
    command = getattr(command, "commands", {}).get(getattr(args, "action", None), command)
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    for option in ("file", "env", "allow_net", "collect"):
        if any(not isinstance(value, str) for value in getattr(args, option, None) or ()):
            # argparse's `--env=--` on Python < 3.13: a list where a string belongs
            command.error(f"argument --{option.replace('_', '-')}: expected one argument")
    if args.command == "code":
        _check_program_args(command, args, program_args)
    return args


def _check_program_args(
    code: argparse.ArgumentParser, args: argparse.Namespace, program_args: list[str] | None
) -> None:
    """`sandbox code [OPTIONS] [FILE | -] [-- ARG...]`: nothing else, before the program is
    read. A flag of ours after FILE would otherwise reach the program while the run went on
    without it, and `code -- f.py` would read stdin with f.py an argument."""
    if args.args:
        code.error(
            f"{args.args[0]!r} after FILE: the sandbox's options go before FILE, the "
            "program's arguments after `--` (sandbox code [OPTIONS] FILE -- ARG...)"
        )
    if program_args and args.source is None:
        code.error("arguments after `--` need FILE, or - for stdin, before the `--`")
    args.source = args.source or "-"
    args.args = program_args or []


def _add_run_command(run: argparse.ArgumentParser) -> None:
    _add_run_options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")


def _add_code_command(code: argparse.ArgumentParser) -> None:
    _add_run_options(code)
    code.add_argument("--language", choices=("python", "bash", "sh"), default=None)
    code.add_argument("source", nargs="?", metavar="FILE | -")  # None: stdin, said by _parse
    code.add_argument("args", nargs=argparse.REMAINDER, metavar="-- ARG...")


def _add_policies_command(policies: argparse.ArgumentParser) -> None:
    policies.add_argument("--show", metavar="NAME", help="print a built-in policy's every key")


def _add_doctor_command(doctor: argparse.ArgumentParser) -> None:
    doctor.add_argument("--json", action="store_true", help="print one JSON object")


def _add_batch_command(batch: argparse.ArgumentParser) -> None:
    _add_policy_options(batch)
    add = batch.add_argument
    add("jobs", metavar="JOBS.jsonl", help="one JSON object a line: id, code or argv, ...")
    add("--out", required=True, metavar="RESULTS.jsonl", help="one result per line, appended")
    add("--resume", action="store_true", help="go on with --out: skip the ids it holds")
    add("--concurrency", metavar="N", help="jobs at once (default: the machine's cores)")
    add("--ray", metavar="ADDRESS", help="run on a Ray cluster (stockade[ray]), e.g. auto")


def _add_mcp_command(mcp: argparse.ArgumentParser) -> None:
    _add_policy_options(mcp)
    add = mcp.add_argument
    add("--env", action="append", default=[], metavar="NAME=VALUE", help="set one variable")
    add("--http", metavar="[HOST:]PORT", help="serve streamable HTTP (HOST: 127.0.0.1)")
    add("--allow-remote", action="store_true", help="let --http listen beyond loopback")
    add(
        "--max-sessions",
        type=int,
        default=4,
        metavar="N",
        help="most sessions and workspaces at once",
    )
    add("--pool", type=int, default=0, metavar="N", help="keep N warm sandboxes for run_code")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_policy_options(parser)
    add = parser.add_argument
    add("--file", action="append", default=[], metavar="SRC[:DEST]", help="copy into /workspace")
    add("--env", action="append", default=[], metavar="NAME=VALUE", help="set one variable")
    add("--output-dir", metavar="DIR", help="write the files the run left in /workspace here")
    add("--collect", action="append", metavar="GLOB", help="only these files (with --output-dir)")
    add("--json", action="store_true", help="print the Result as one JSON object")


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    """The flags that make the policy (read by `_policy`)."""
    add = parser.add_argument
    add("--policy", default="default", metavar="NAME|PATH", help="built-in name or TOML file")
    add("--timeout", metavar="SECONDS", help="wall-clock limit")
    add("--cpu-time", metavar="SECONDS", help="CPU-time limit for the whole tree")
    add("--memory", metavar="SIZE", help="memory limit for the whole tree, e.g. 256M or 1GiB")
    add("--pids", metavar="N", help="most processes/threads at once")
    add("--output-limit", metavar="SIZE", help="most bytes kept of stdout and of stderr each")
    add("--allow-net", action="append", metavar="HOST[:PORT]", help="allow one destination")
    add("--python", metavar="PATH|NAME", help="the interpreter runs get as python3")
    add("--cgroups", choices=("required", "best_effort"), help="best_effort: run on rlimits")
    add("--python-packages", action="store_true", help="show this venv's packages, read-only")
    add("--environment", metavar="NAME", help="show an environment of `sandbox env create`")


def _add_env_command(env: argparse.ArgumentParser) -> None:
    actions = env.add_subparsers(dest="action", required=True, parser_class=_Parser)
    create = actions.add_parser("create", help="build an environment and name it")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "packages", nargs="*", default=[], metavar="PKG", help="a requirement, e.g. 'pandas>=2'"
    )  # a default, or argparse calls PKG required when NAME is missing
    create.add_argument("-r", "--requirement", action="append", default=[], metavar="FILE")
    listing = actions.add_parser("list", help="the environments and what they hold")
    remove = actions.add_parser("rm", help="forget names (and remove what no name keeps)")
    remove.add_argument("names", nargs="+", metavar="NAME")
    env.commands = {"create": create, "list": listing, "rm": remove}  # type: ignore[attr-defined]


_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("run a command in the sandbox", _add_run_command),
    "code": ("run source code (a file, or - for stdin)", _add_code_command),
    "batch": ("run a file of jobs (JSON lines), results to a file", _add_batch_command),
    "doctor": ("what this machine supports", _add_doctor_command),
    "policies": ("list the built-in policies, or --show one", _add_policies_command),
    "env": ("make, list and remove Python environments for runs", _add_env_command),
    "mcp": ("serve runs and sessions as MCP tools (stdio, or --http)", _add_mcp_command),
}


def main(argv: Sequence[str] | None = None) -> int:
    """The `sandbox` command; returns its exit code. Called without `argv`, as the `sandbox`
    script and `python -m stockade` do, it reads sys.argv and ends the process itself."""
    if argv is not None:
        return _main(list(argv))
    # The command imports most of the package for one run and exits: cycles cannot pile up,
    # and the collector, triggered over and over by the imports, costs them ~3 ms.
    gc.disable()
    code = _main(sys.argv[1:])
    _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    # What is left of a command is the interpreter's teardown, which frees its ~150 modules
    # object by object: 10-25 ms, as long as Python's whole start. Nothing of ours waits for
    # it (runs and supervisors are reaped by now; atexit has nothing to do), so flush what
    # Python buffers and end. A flush that fails takes the ordinary exit, which reports it.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        return
    os._exit(code)


def _main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.command == "policies":
        return _policies(args.show)
    if args.command == "doctor":
        from stockade.doctor import main as doctor_main

        return doctor_main(json_output=args.json)
    from stockade.errors import PolicyError, SandboxError

    try:
        if args.command == "env":
            from stockade.environments.command import main as env_main

            return env_main(args)
        if args.command == "mcp":
            from stockade.mcp.command import main as mcp_main

            env = dict(_parse_env(item) for item in args.env)
            return mcp_main(args, _policy(args), env)
        if args.command == "batch":
            from stockade.batch.command import main as batch_main

            return batch_main(args, _policy(args, model=True))
        return _run(args)
    except KeyboardInterrupt:  # the run is killed and cleaned up on the way out
        print("sandbox: interrupted", file=sys.stderr)
        return INTERRUPTED
    except PolicyError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return OWN_FAILURE
    except SandboxError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"status": "setup_failed", "error": str(exc)}))
        print(f"sandbox: {exc}", file=sys.stderr)
        return OWN_FAILURE


def _policies(show: str | None) -> int:
    from stockade.errors import PolicyError
    from stockade.policy.source import builtin_policies

    if show is None:
        for name, description in builtin_policies().items():
            print(f"{name:<12} {description}")
        return 0
    if show not in builtin_policies():
        known = ", ".join(builtin_policies())
        print(f"sandbox: --show: unknown policy {show!r}; built-in: {known}", file=sys.stderr)
        return OWN_FAILURE
    from stockade.policy.model import Policy

    try:
        print(Policy.load(show).to_toml(), end="")
    except PolicyError as exc:  # a built-in policy is valid: only a broken install gets here
        print(f"sandbox: {exc}", file=sys.stderr)
        return OWN_FAILURE
    return 0


def _run(args: argparse.Namespace) -> int:
    from stockade.errors import PolicyError
    from stockade.runner import Sandbox

    collect = _collect(args)
    sandbox = Sandbox(_policy(args), prefork=False)  # one run: nothing to prepare
    most = sandbox.policy.limits.file_size  # inputs count against it inside anyway
    files: dict[str, bytes] = {}
    for spec in args.file:
        _add_file(files, *_read_file(spec, most), "another --file's name in /workspace")
    env = dict(_parse_env(item) for item in args.env)
    stdin: bytes | int = 0
    if args.command == "code":
        argv, name, code = _program(args, most)
        _add_file(files, name, code, "the program's own name in /workspace")
        stdin = b"" if args.source == "-" else 0
    else:
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise PolicyError("COMMAND", "missing: sandbox run [OPTIONS] -- COMMAND [ARG...]")
    kind = _kind_of_stdin() if stdin == 0 else None
    if kind in ("terminal", "closed", "socket"):
        # Never the caller's terminal: without it as its controlling terminal, the workload
        # would escape job control (reading keystrokes meant for the shell, in the background)
        # and could change the terminal's modes or write past the output limit. Nor a socket
        # (libuv's stdio): the workload could write to our peer or shut it down. A closed
        # fd 0 would be whatever the run's own setup opened first.
        stdin = b""
    elif kind is not None:
        stdin = _reopen_stdin()
    forward = () if args.json else (1, 2)
    try:
        result = sandbox.run(
            argv,
            stdin=stdin,
            files=files,
            env=env,
            stdout_fd=forward[0] if forward else None,
            stderr_fd=forward[1] if forward else None,
            collect=collect,
        )
    finally:
        if isinstance(stdin, int) and stdin != 0:
            os.close(stdin)
    if args.output_dir is not None:
        _write_files(args.output_dir, result.files)
    for warning in () if args.json else result.warnings:
        if warning.startswith("collect:"):  # what --output-dir did not get, said where it looks
            print(f"sandbox: {warning}", file=sys.stderr)
    if args.json:
        print(result.to_json())
        return OWN_FAILURE if result.status == "setup_failed" else 0
    if result.error:
        print(f"sandbox: {result.error}", file=sys.stderr)
    for line in _notes(result, sandbox.policy.limits, args):
        print(f"sandbox: {line}", file=sys.stderr)
    return result.exit_status()


def _collect(args: argparse.Namespace) -> bool | list[str] | None:
    """What --output-dir and --collect ask for, checked before the run."""
    from stockade.errors import PolicyError

    if args.output_dir is None:
        if args.collect:
            raise PolicyError("--collect", "needs --output-dir DIR to write the files to")
        return None
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise PolicyError("--output-dir", f"{args.output_dir!r} exists and is not a directory")
    return args.collect or True


def _write_files(directory: str, files: dict[str, bytes]) -> None:
    """Write the collected files under `directory`. Their names come from the sandbox: each
    is checked again, every directory on the way is opened without following a link (one
    planted in `directory` stays unfollowed), and each file is written under a fresh name
    and renamed into place, which replaces a link rather than writing through it."""
    from stockade.errors import PolicyError

    os.makedirs(directory, exist_ok=True)
    top = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, data in files.items():
            parts = name.split("/")
            if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
                raise PolicyError("--output-dir", f"refusing to write {name!r}: not a plain name")
            try:
                _write_file(top, parts, data)
            except OSError as exc:
                why = f"{exc.strerror} ({exc.filename!r}: links in DIR are not followed)"
                raise PolicyError("--output-dir", f"cannot write {name!r}: {why}") from None
    finally:
        os.close(top)


def _write_file(top: int, parts: list[str], data: bytes) -> None:
    nofollow = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parent = os.dup(top)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=parent)
            below = os.open(part, nofollow, dir_fd=parent)  # ENOTDIR: a link, or a file
            os.close(parent)
            parent = below
        temporary = f".stockade-{os.urandom(6).hex()}.part"  # fits whatever the name's length
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o644, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.rename(temporary, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            os.unlink(temporary, dir_fd=parent)
            raise
    finally:
        os.close(parent)


def _program(args: argparse.Namespace, most: int) -> tuple[list[str], str, bytes]:
    """`sandbox code`'s command, the program's name in /workspace and its source. A file
    keeps its own name there, so tracebacks name it; arguments after `--` are its argv."""
    from stockade.runner import LANGUAGES

    language, code = _read_source(args.source, args.language, most)
    default_name, (interpreter, _) = LANGUAGES[language]
    name = default_name if args.source == "-" else os.path.basename(args.source)
    return [interpreter, name, *args.args], name, code


def _notes(result: Any, limits: Any, args: argparse.Namespace) -> list[str]:
    """What the output alone does not say: the run's warnings, output that was cut, and which
    limit ended the run, from the policy or a flag (the JSON has these as fields)."""
    # collect's warnings are said already, where --output-dir's files are written
    notes = [f"warning: {w}" for w in result.warnings if not w.startswith("collect:")]
    for stream in ("stdout", "stderr"):
        if getattr(result, f"{stream}_truncated"):
            notes.append(
                f"{stream} truncated at the output limit, {_size_text(limits.output)} "
                f"({_source(args, 'output_limit')})"
            )
    if result.status == "timeout":
        import signal

        cpu = limits.cpu_time is not None and (
            result.signal == signal.SIGXCPU or result.cpu_time >= limits.cpu_time
        )
        if cpu and result.wall_time < limits.timeout:
            notes.append(
                f"killed: CPU-time limit {limits.cpu_time:g} s ({_source(args, 'cpu_time')})"
            )
        else:
            notes.append(
                f"killed: wall-clock limit {limits.timeout:g} s ({_source(args, 'timeout')})"
            )
    elif result.status == "memory_limit":
        notes.append(
            f"killed: memory limit {_size_text(limits.memory)} ({_source(args, 'memory')})"
        )
    return notes


def _source(args: argparse.Namespace, key: str) -> str:
    flag = "--" + key.replace("_", "-")
    if getattr(args, key) is not None:
        return f"set by {flag}"
    policy = "policy default" if args.policy == "default" else f"policy {args.policy}"
    return f"{policy}; {flag} to change"


def _size_text(size: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.4g} {unit}"
    return f"{size} bytes"


def _kind_of_stdin() -> str:
    try:
        mode = os.fstat(0).st_mode
    except OSError:  # closed (`<&-`)
        return "closed"
    if os.isatty(0):
        return "terminal"
    return "socket" if stat.S_ISSOCK(mode) else "file"


def _reopen_stdin() -> int:
    """Our stdin (a pipe, a file, /dev/null) through an open file of the run's own: what the
    workload sets on it (O_NONBLOCK, a flock) would otherwise stay on ours, and on the next
    command's that shares it. A file's reading goes on from where ours is. Where it cannot be
    opened again (a pipe another user made), ours is handed over, as it used to be."""
    try:  # O_NONBLOCK: a named FIFO whose writer is gone would wait for another one
        fd = os.open("/proc/self/fd/0", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return 0
    os.set_blocking(fd, True)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.lseek(fd, os.lseek(0, 0, os.SEEK_CUR), os.SEEK_SET)
    return fd


def _policy(args: argparse.Namespace, *, model: bool = False) -> Any:
    # Through the cache of validated policies: a policy run before needs no pydantic. A
    # batch needs the model itself (`model`): its jobs' own limits override it.
    from stockade.errors import PolicyError

    flags = {
        "timeout": args.timeout,
        "cpu_time": args.cpu_time,
        "memory": args.memory,
        "pids": args.pids,
        "output_limit": args.output_limit,
        "allow_net": tuple(args.allow_net) if args.allow_net else None,
        "interpreter": args.python,
        "cgroups": args.cgroups,
        "site_packages": args.python_packages or None,
        "environment": args.environment,
    }
    bare = (
        args.memory is not None and args.memory.strip().isascii() and args.memory.strip().isdigit()
    )
    if bare and int(args.memory) < 1 << 20:
        # A bare number is bytes, as everywhere in a policy: far too little to run in.
        raise PolicyError("--memory", f"{args.memory} is bytes; did you mean {args.memory}M?")
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        policy = _load(args.policy, given, model)
    except PolicyError as exc:
        raise _blame_the_flag(exc, args.policy, given, model) from None
    if args.memory is not None:
        _check_memory(args.memory, policy.limits.memory)
    return policy


def _load(policy: str, given: dict[str, Any], model: bool) -> Any:
    if model:
        from stockade.policy.model import Policy

        return Policy.load(policy).override(**given)
    from stockade.policy.view import load_policy

    return load_policy(policy, given)


def _blame_the_flag(
    exc: PolicyError, policy: str, given: dict[str, Any], model: bool
) -> PolicyError:
    """A limit refused because of a flag names the flag the user typed, not only the policy
    key it sets; one the policy itself gets wrong stays the policy's."""
    from stockade.errors import PolicyError

    key = _LIMIT_FLAGS.get(exc.field)
    if key not in given:
        return exc
    try:
        _load(policy, {k: v for k, v in given.items() if k != key}, model)
    except PolicyError:
        return exc
    said = exc.reason if repr(given[key]) in exc.reason else f"{given[key]}: {exc.reason}"
    return PolicyError("--" + key.replace("_", "-"), f"{said} ({exc.field})")


_LIMIT_FLAGS = {  # a policy key a flag sets: the flag's key in `_policy`
    "limits.timeout": "timeout",
    "limits.cpu_time": "cpu_time",
    "limits.memory": "memory",
    "limits.pids": "pids",
    "limits.output": "output_limit",
}


def _check_memory(flag: str, memory: int) -> None:
    from stockade.errors import PolicyError

    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if memory > machine:
        raise PolicyError(
            "--memory", f"{flag} is more than this machine's memory ({_size_text(machine)})"
        )


def _add_file(files: dict[str, bytes], name: str, content: bytes, taken: str) -> None:
    """Add a file for /workspace, refusing a name (as the run will see it: `./a` is `a`) that
    is `taken` already: one of the two would be lost without a word."""
    from stockade.errors import PolicyError

    if any(posixpath.normpath(given) == posixpath.normpath(name) for given in files):
        raise PolicyError("--file", f"{name!r} is {taken}")
    files[name] = content  # as given: the run's own checks refuse a bad one


def _read_file(spec: str, most: int) -> tuple[str, bytes]:
    from stockade.errors import PolicyError

    source, _, dest = spec.partition(":")
    try:
        with open(source, "rb") as file:
            return dest or os.path.basename(source), _read_at_most(file, most, "--file", source)
    except OSError as exc:
        raise PolicyError("--file", f"cannot read {source!r}: {exc.strerror}") from None


def _read_at_most(file: BinaryIO, most: int, field: str, name: str) -> bytes:
    from stockade.errors import PolicyError

    data = file.read(most + 1)  # bounded: a device such as /dev/zero never ends
    if len(data) > most:
        raise PolicyError(field, f"{name!r} is larger than the policy's file_size ({most} bytes)")
    return data


def _parse_env(item: str) -> tuple[str, str]:
    from stockade.errors import PolicyError

    name, sep, value = item.partition("=")
    if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise PolicyError("--env", f"expected NAME=VALUE with a valid NAME, got {item!r}")
    return name, value


def _read_source(source: str, language: str | None, most: int) -> tuple[str, bytes]:
    from stockade.errors import PolicyError

    if language is None:
        language = "sh" if source.endswith(".sh") else "python"
    try:
        if source == "-":
            if sys.stdin.isatty():  # else it looks as if the command hangs
                print(
                    "sandbox: reading the program from stdin (end it with Ctrl-D)", file=sys.stderr
                )
            return language, _read_at_most(sys.stdin.buffer, most, "FILE", "-")
        with open(source, "rb") as file:
            return language, _read_at_most(file, most, "FILE", source)
    except OSError as exc:
        raise PolicyError("FILE", f"cannot read {source!r}: {exc.strerror}") from None
