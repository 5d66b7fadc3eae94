"""Run untrusted generated Python in a separate, limited process (never in the caller).

``run_python(source, limits)`` starts this file as a small launcher, ``python -I -S sandbox.py
--launch``, in a new session (its own process group), in a fresh temporary work directory that
is removed afterwards, with a minimal environment (PATH, HOME and TMPDIR = the work directory,
a UTF-8 locale, one BLAS thread; nothing inherited, so no tokens, API keys or AWS variables).
The launcher sets up the isolation below and then execs ``python -I -u sandbox.py --run
program.py``, which installs an audit hook and only then compiles and runs the program.

Layers, outermost first:

- Kernel namespaces, set with ``unshare(2)`` through ctypes in the launcher (as root; otherwise
  inside a new user namespace where the kernel allows it):
  - network namespace: only a loopback interface that is down, so every connect, including to
    127.0.0.1, fails with "network unreachable"; abstract Unix sockets are per namespace too.
  - mount namespace: every mount is remounted read-only except a bind mount of the work
    directory, so the program cannot modify files anywhere else (``/proc`` included, which also
    rules out rewriting its own memory through ``/proc/self/mem``).
  Where ``unshare`` is refused, the run goes on with the audit hook alone;
  :func:`probe_isolation` reports which layers are active on this machine.
- Resource limits (``setrlimit`` before exec; hard = soft, CPU one second above, so the program
  cannot raise them):
  address space (``memory_mb``), CPU seconds (``cpu_s``, SIGXCPU, then SIGKILL one second
  later), processes and threads (``max_processes``, RLIMIT_NPROC: counted per user and not
  enforced for root, so as root the audit hook is what stops fork bombs), file size
  (``max_file_mb``, this also caps the captured output), open files, and no core dumps.
- Wall clock: at ``timeout_s`` the whole process group gets SIGKILL; the group is killed again
  after every run (while the leader is still unreaped, so its id cannot have been reused).
- Audit hook (``sys.addaudithook``, always installed, before the program is compiled):
  refuses network events (``socket.connect``/``bind``/``sendto``/``sendmsg`` and name
  lookups), process creation (``subprocess.Popen``, ``os.system``, ``os.exec*``,
  ``os.posix_spawn``, ``os.spawn*``, ``os.fork``, ``os.forkpty``; ``_posixsubprocess.fork_exec``,
  which raises no event, is replaced by a stub and loading a fresh copy of that module is
  refused), signals to other processes, native code (every ``ctypes.*`` event: loading a
  library, looking up a symbol, reading or wrapping a raw address, making buffers; only the
  ``dlopen(NULL)`` that ``import ctypes`` does is let through, so numpy still imports;
  importing ``cffi``, ``llvmlite`` or ``numba``; new subinterpreters, which would not carry
  the hook), hook tampering (``gc.get_objects``/``get_referrers``/``get_referents``,
  ``resource.setrlimit``/``prlimit``),
  writes, deletes, renames, links and permission changes outside the work directory
  (``/dev/null`` and the standard streams excepted; paths are normalised lexically), and
  reading another process's ``/proc/<pid>`` entries (the parent's environment). The hook holds
  everything it uses in closure cells, and Python offers no way to remove an audit hook.

What this does not stop, honestly: it is not a VM or a container. Audit hooks are a tripwire,
not a security boundary (PEP 578 says so): a determined program can still reach native code
(ctypes' ready-made ``memmove``/``memset``/``cast`` raise no event in Python 3.11, and any
importable extension module may have memory bugs), corrupt the interpreter and remove the hook,
or fool the lexical path checks (``os.open`` with ``dir_fd`` is not visible to the hook). The
program runs with the caller's user id (as root, it is root: no user namespace is used then),
can read every file the caller can read (only writes are confined), sees the other processes
in ``/proc`` (no PID namespace), can use all the CPU and memory within its limits, and can
print anything (which lands in the result's output). Without the namespaces, the hook is the
only network and filesystem barrier.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

OUTPUT_TAIL_BYTES = 4096
_SCRIPT = os.path.abspath(__file__)
_LAUNCH_FAILED = 127

_NETWORK_EVENTS = (
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo", "socket.sethostname",
)
_PROCESS_EVENTS = (
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.startfile",
)
_TAMPER_EVENTS = (
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "resource.setrlimit",
    "resource.prlimit", "cpython.PyInterpreterState_New",
)
_BLOCKED_PREFIXES = ("ctypes.",)
# _posixsubprocess is loaded (and stubbed) before the hook: a later import event for it is an
# attempt to load a fresh copy with the real fork_exec
_BLOCKED_IMPORTS = ("cffi", "_cffi_backend", "llvmlite", "numba", "_posixsubprocess")
# event -> ((path argument, dir_fd argument or -1), ...): targets that must lie in the work dir
_FS_EVENTS = (
    ("os.remove", ((0, 1),)),
    ("os.rmdir", ((0, 1),)),
    ("os.rename", ((0, 2), (1, 3))),
    ("os.link", ((0, 2), (1, 3))),
    ("os.mkdir", ((0, 2),)),
    ("os.chmod", ((0, 2),)),
    ("os.chown", ((0, 3),)),
    ("os.utime", ((0, 3),)),
    ("os.truncate", ((0, -1),)),
    ("shutil.rmtree", ((0, 1),)),
    ("os.setxattr", ((0, -1),)),
    ("os.removexattr", ((0, -1),)),
    ("os.chflags", ((0, -1),)),
)
_WRITABLE_DEVICES = ("/dev/null", "/dev/stdout", "/dev/stderr")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run; ``cpu_s`` None means ``ceil(timeout_s) + 1``."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int | None = None
    max_processes: int = 16
    max_file_mb: int = 16
    max_open_files: int = 64

    def __post_init__(self) -> None:
        numbers = (self.timeout_s, self.memory_mb, self.max_processes, self.max_file_mb,
                   self.max_open_files, self.cpu_seconds())
        if min(numbers) <= 0:
            raise ValueError(f"sandbox limits must be positive: {self}")

    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1


@dataclass(frozen=True)
class SandboxResult:
    """``passed``: exit 0; ``failed``: non-zero exit or killed by a limit; ``timeout``: wall
    clock or CPU limit; ``error``: the sandbox could not start. ``output`` is the tail of
    stdout+stderr (at most ``OUTPUT_TAIL_BYTES`` bytes plus a note)."""

    status: Literal["passed", "failed", "timeout", "error"]
    returncode: int | None
    output: str
    seconds: float


def run_python(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run ``source`` as ``__main__`` in a fresh sandboxed interpreter; thread-safe."""
    return _run(source, limits)[0]


def probe_isolation(limits: SandboxLimits = SandboxLimits()) -> dict[str, str]:
    """Which kernel layers a run gets here: ``{"network": ..., "filesystem": ...}``."""
    result, notes = _run("pass\n", limits)
    if result.status == "error":
        return {"network": "unknown", "filesystem": "unknown", "error": result.output}
    return notes


def _run(
    source: str, limits: SandboxLimits, audit_hook: bool = True
) -> tuple[SandboxResult, dict[str, str]]:
    """Run once; also return the launcher's notes. ``audit_hook=False`` is for tests only."""
    start = time.monotonic()
    base = tempfile.mkdtemp(prefix="llmstack-sandbox-")
    try:
        return _run_in(base, source, limits, audit_hook, start)
    finally:
        _remove_tree(base)


def _run_in(
    base: str, source: str, limits: SandboxLimits, audit_hook: bool, start: float
) -> tuple[SandboxResult, dict[str, str]]:
    work = os.path.join(base, "work")
    os.mkdir(work, 0o700)
    program = os.path.join(base, "program.py")
    with open(program, "w", encoding="utf-8") as handle:
        handle.write(source)
    read_fd, write_fd = os.pipe()
    config = {
        "python": sys.executable, "script": _SCRIPT, "program": program, "work": work,
        "status_fd": write_fd, "hook": audit_hook, "memory_mb": limits.memory_mb,
        "cpu_s": limits.cpu_seconds(), "max_processes": limits.max_processes,
        "max_file_mb": limits.max_file_mb, "max_open_files": limits.max_open_files,
    }
    argv = [sys.executable, "-I", "-S", _SCRIPT, "--launch", json.dumps(config)]
    with open(os.path.join(base, "output.log"), "w+b") as log:
        try:
            proc = subprocess.Popen(
                argv, cwd=work, env=_minimal_env(work), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True,
            )
        except OSError as exc:
            os.close(read_fd)
            seconds = time.monotonic() - start
            return SandboxResult("error", None, f"could not start python: {exc}", seconds), {}
        finally:
            os.close(write_fd)
        deadline = start + limits.timeout_s
        try:
            messages = _read_status(read_fd, deadline)
            timed_out = messages is None or not _wait_exit(proc.pid, deadline)
        finally:  # also on an exception here: never leave the program running
            os.close(read_fd)
            _kill_group(proc.pid)
            returncode = proc.wait()
        seconds = time.monotonic() - start
        output, size = _tail(log)
    notes, failure = _parse_status(messages or "")
    if failure:
        return SandboxResult("error", returncode, f"{failure}\n{output}".strip(), seconds), notes
    status, note = _classify(returncode, timed_out, limits)
    if status == "failed" and size >= limits.max_file_mb * 1024 * 1024:
        note += f"\n[sandbox: output reached the file size limit of {limits.max_file_mb} MB]"
    return SandboxResult(status, returncode, output + note, seconds), notes


def _minimal_env(work: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work,
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def _read_status(fd: int, deadline: float) -> str | None:
    """The launcher's messages up to the exec (the pipe closes on exec); None at the deadline."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks).decode("utf-8", "replace")
        chunks.append(chunk)


def _wait_exit(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` has exited without reaping it, so its group id stays ours."""
    delay = 0.001
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.02)
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(log: Any) -> tuple[str, int]:
    """The last ``OUTPUT_TAIL_BYTES`` of the output, and its full size in bytes."""
    size = log.seek(0, os.SEEK_END)
    log.seek(max(0, size - OUTPUT_TAIL_BYTES))
    text = log.read().decode("utf-8", "replace")
    return ("[...]\n" + text) if size > OUTPUT_TAIL_BYTES else text, size


def _parse_status(messages: str) -> tuple[dict[str, str], str]:
    notes: dict[str, str] = {}
    failure = ""
    for line in messages.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "note":
            key, _, value = rest.partition(" ")
            notes[key] = value
        elif kind == "fail":
            failure = f"sandbox launch failed: {rest}"
    return notes, failure


def _classify(
    returncode: int, timed_out: bool, limits: SandboxLimits
) -> tuple[Literal["passed", "failed", "timeout"], str]:
    if timed_out:
        return "timeout", f"\n[sandbox: killed after {limits.timeout_s:g} s wall clock]"
    if returncode == 0:
        return "passed", ""
    if returncode == -signal.SIGXCPU:
        return "timeout", f"\n[sandbox: CPU time limit of {limits.cpu_seconds()} s reached]"
    if returncode == -signal.SIGKILL:
        return "failed", "\n[sandbox: killed by the kernel (CPU hard limit or out of memory)]"
    return "failed", ""


def _remove_tree(path: str) -> None:
    """Remove the run's directory, even where the program took permissions away."""

    def retry(_func: Callable[..., Any], target: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, 0o700)
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.unlink(target)

    shutil.rmtree(path, onerror=retry)


# --- launcher: runs in the child before exec (single-threaded fresh interpreter) -------------

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
_MOUNT_OPTIONS = {
    "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
    "relatime": 1 << 21, "strictatime": 1 << 24,
}


def _launch(config: dict[str, Any]) -> None:
    """Isolate, limit, then exec the runner; any failure is reported on the status pipe."""
    fd = config["status_fd"]
    try:
        for key, value in _isolate(config["work"]).items():
            os.write(fd, f"note {key} {value}\n".encode())
        _apply_limits(config)
        os.set_inheritable(fd, False)
        mode = "--run" if config["hook"] else "--run-without-hook"
        python = config["python"]
        os.execv(python, [python, "-I", "-u", config["script"], mode, config["program"]])
    except BaseException as exc:  # report anything, then exit
        os.write(fd, f"fail {type(exc).__name__}: {exc}\n".encode())
        os._exit(_LAUNCH_FAILED)


def _isolate(work: str) -> dict[str, str]:
    """Enter new network (and mount) namespaces where the kernel allows; describe the result."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    user = 0 if os.geteuid() == 0 else _CLONE_NEWUSER
    reason = ""
    for flags in (user | _CLONE_NEWNS | _CLONE_NEWNET, user | _CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            break
        reason = os.strerror(ctypes.get_errno())
    else:
        why = f"audit hook only (unshare: {reason})"
        return {"network": why, "filesystem": why}
    notes = {"network": "namespace (no interfaces up)"}
    if not flags & _CLONE_NEWNS:
        notes["filesystem"] = f"audit hook only (mount namespace: {reason})"
        return notes
    try:
        left = _read_only_except(libc, work)
    except OSError as exc:
        notes["filesystem"] = f"audit hook only ({exc})"
        return notes
    notes["filesystem"] = "read-only except the work dir"
    if left:
        notes["filesystem"] += f"; still writable: {','.join(left)}"
    return notes


def _read_only_except(libc: Any, work: str) -> list[str]:
    """Remount every mount read-only except a bind mount of ``work``; the mounts it could not."""
    import ctypes

    def mount(target: str | None, flags: int, source: str | None = None) -> None:
        encoded = [os.fsencode(p) if p is not None else None for p in (source, target)]
        if libc.mount(encoded[0], encoded[1], None, ctypes.c_ulong(flags), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mount {target}: {os.strerror(errno)}")

    mount("/", _MS_REC | _MS_PRIVATE)  # nothing below propagates back to the parent
    mount(work, _MS_BIND | _MS_REC, source=work)
    left = []
    for target, options in _mounts():
        if target == work or target.startswith(work + "/"):
            continue
        flags = sum(_MOUNT_OPTIONS.get(option, 0) for option in options)
        try:
            mount(target, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | flags)
        except OSError:
            left.append(target)
    os.chdir(work)  # the old cwd still points below the read-only mount, not the bind mount
    return left


def _mounts() -> list[tuple[str, list[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, octal escapes decoded."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            point = fields[4]
            for code in ("\\040", "\\011", "\\012", "\\134"):
                point = point.replace(code, chr(int(code[1:], 8)))
            mounts.append((point, fields[5].split(",")))
    return mounts


def _apply_limits(config: dict[str, Any]) -> None:
    import resource

    mb = 1024 * 1024
    cpu = config["cpu_s"]
    wanted = (
        (resource.RLIMIT_AS, config["memory_mb"] * mb, config["memory_mb"] * mb),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_NPROC, config["max_processes"], config["max_processes"]),
        (resource.RLIMIT_FSIZE, config["max_file_mb"] * mb, config["max_file_mb"] * mb),
        (resource.RLIMIT_NOFILE, config["max_open_files"], config["max_open_files"]),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for which, soft, hard in wanted:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))


# --- runner: the exec'd interpreter that runs the untrusted program ---------------------------


def _child_run(program: str, hook: bool) -> None:
    """Install the guards, then compile and run ``program`` as ``__main__``."""
    import _posixsubprocess
    import types

    with open(program, encoding="utf-8") as handle:
        source = handle.read()

    def fork_exec(*_args: Any, **_kwargs: Any) -> None:
        raise PermissionError("sandbox: starting processes is blocked")

    _posixsubprocess.fork_exec = fork_exec  # raises no audit event of its own
    sys.dont_write_bytecode = True
    sys.argv = [program]
    module = types.ModuleType("__main__")
    module.__file__ = program
    sys.modules["__main__"] = module
    if hook:
        sys.addaudithook(_make_hook(os.getcwd()))
    code = compile(source, program, "exec")
    exec(code, module.__dict__)


def _make_hook(work: str) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook; everything it uses is bound in closure cells, none in globals."""
    blocked = frozenset(_NETWORK_EVENTS + _PROCESS_EVENTS + _TAMPER_EVENTS)
    prefixes, imports = _BLOCKED_PREFIXES, frozenset(_BLOCKED_IMPORTS)
    fs_names = frozenset(name for name, _ in _FS_EVENTS)
    fs_specs, devices, write_flags = _FS_EVENTS, frozenset(_WRITABLE_DEVICES), _WRITE_FLAGS
    own_pid, work_prefix = os.getpid(), work.rstrip("/") + "/"
    readlink, getcwd, fspath = os.readlink, os.getcwd, os.fspath
    type_, int_, str_, bytes_, deny = type, int, str, bytes, PermissionError

    def resolve(path: Any, dir_fd: Any) -> str:
        if type_(path) is int_:
            path = readlink(f"/proc/self/fd/{path}")
        path = fspath(path)
        if type_(path) is bytes_:
            path = path.decode("utf-8", "surrogateescape")
        if type_(path) is not str_:
            raise deny("sandbox: unexpected path type")
        if not path.startswith("/"):
            use_fd = type_(dir_fd) is int_ and dir_fd >= 0
            path = (readlink(f"/proc/self/fd/{dir_fd}") if use_fd else getcwd()) + "/" + path
        parts: list[str] = []
        for part in path.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part and part != ".":
                parts.append(part)
        return "/" + "/".join(parts)

    def inside(path: str) -> bool:
        return path.startswith(work_prefix) or path + "/" == work_prefix

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "ctypes.dlopen" and args[0] is None:
            return  # `import ctypes` opens the running image; its symbols stay unreachable
        if event in blocked or event.startswith(prefixes):
            raise deny(f"sandbox: {event} is blocked")
        if event == "import":
            if args[0].partition(".")[0] in imports:
                raise deny(f"sandbox: importing {args[0]} is blocked")
        elif event == "open":
            path, mode, flags = args
            if type_(path) is int_:
                return
            target = resolve(path, -1)
            writes = (flags or 0) & write_flags or (type_(mode) is str_ and mode.strip("rbt"))
            if writes and not inside(target) and target not in devices:
                raise deny(f"sandbox: writing {target} is blocked (outside the work dir)")
            pid = target[6:].partition("/")[0] if target.startswith("/proc/") else ""
            if pid.isdigit() and int_(pid) != own_pid:
                raise deny(f"sandbox: reading {target} is blocked (another process)")
        elif event in fs_names:
            for name, specs in fs_specs:
                if name != event:
                    continue
                for path_index, fd_index in specs:
                    dir_fd = args[fd_index] if fd_index >= 0 else -1
                    target = resolve(args[path_index], dir_fd)
                    if not inside(target):
                        raise deny(f"sandbox: {event} on {target} is blocked (outside work dir)")
        elif event in ("os.kill", "os.killpg") and args[0] != own_pid:
            raise deny(f"sandbox: {event} of another process is blocked")
        elif event == "os.symlink":
            raise deny("sandbox: os.symlink is blocked")

    return hook


if __name__ == "__main__":
    if sys.argv[1:2] == ["--launch"]:
        _launch(json.loads(sys.argv[2]))
    elif sys.argv[1:2] in (["--run"], ["--run-without-hook"]):
        _child_run(sys.argv[2], hook=sys.argv[1] == "--run")
    else:
        sys.exit("internal helper of llmstack_dagster.core.evaluation.sandbox.run_python")
