"""The sandbox for generated code: exit statuses, limits, no leftovers, no network, no
processes, no secrets, writes confined to the work directory."""

from __future__ import annotations

import os
import resource
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llmstack_dagster.core.evaluation import sandbox
from llmstack_dagster.core.evaluation.sandbox import SandboxLimits, probe_isolation, run_python

LIMITS = SandboxLimits(timeout_s=10.0)


@pytest.fixture(scope="module")
def isolation() -> dict[str, str]:
    return probe_isolation()


def _process_gone(pid: int) -> bool:
    """No such process, or only a zombie left for init to reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _group_gone(pgid: int, wait_s: float = 3.0) -> bool:
    """No live member left in the process group. SIGKILL is delivered asynchronously, so a
    killed child may take a moment to die; killed children may linger as zombies until init
    reaps them, which counts as gone."""
    deadline = time.monotonic() + wait_s
    while not _group_members_dead(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_members_dead(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return False
    return True


def test_passing_code_exits_zero_with_its_output() -> None:
    result = run_python("print('hello from the sandbox')\n", LIMITS)
    assert result.status == "passed", result.output
    assert result.returncode == 0
    assert result.output.strip() == "hello from the sandbox"


def test_failing_assertion_is_failed() -> None:
    result = run_python("assert 1 + 1 == 3, 'arithmetic'\n", LIMITS)
    assert result.status == "failed"
    assert result.returncode == 1
    assert "AssertionError: arithmetic" in result.output


def test_code_runs_in_another_process() -> None:
    result = run_python("import os\nprint(os.getpid())\n", LIMITS)
    assert result.status == "passed", result.output
    assert int(result.output) != os.getpid()


@pytest.mark.parametrize("hang", ["while True:\n    pass\n", "import time\ntime.sleep(1000)\n"])
def test_hanging_code_times_out_and_leaves_no_process(hang: str) -> None:
    limits = SandboxLimits(timeout_s=1.5)
    result = run_python("import os\nprint(os.getpid(), flush=True)\n" + hang, limits)
    assert result.status == "timeout", result.output
    assert 1.5 <= result.seconds < 1.5 + 3.0
    pid = int(result.output.split()[0])
    assert _group_gone(pid)
    assert _process_gone(pid)


def test_forked_children_die_with_the_group() -> None:
    """Without the audit hook a fork succeeds; the group kill still takes the child."""
    source = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(1000)\n"
        "print(os.getpid(), pid, flush=True)\n"
        "time.sleep(1000)\n"
    )
    result, _ = sandbox._run(source, SandboxLimits(timeout_s=2.0), audit_hook=False)
    assert result.status == "timeout", result.output
    leader, child = (int(value) for value in result.output.split()[:2])
    assert _group_gone(leader)
    assert _process_gone(leader) and _process_gone(child)


def test_cpu_limit_ends_a_busy_loop() -> None:
    result = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=20.0, cpu_s=1))
    assert result.status == "timeout"
    assert "CPU time limit" in result.output


def test_memory_bomb_fails_without_harming_the_parent() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    result = run_python("x = bytearray(4 * 1024 ** 3)\n", SandboxLimits(memory_mb=256))
    assert result.status == "failed"
    assert "MemoryError" in result.output
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert run_python("print(sum(range(10)))\n", LIMITS).output.strip() == "45"


def test_network_is_blocked_and_the_server_sees_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        source = (
            "import socket\n"
            "for attempt in ('create_connection', 'raw connect'):\n"
            "    try:\n"
            "        if attempt == 'create_connection':\n"
            f"            socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "        else:\n"
            f"            socket.socket().connect(('127.0.0.1', {port}))\n"
            "        print(attempt, 'CONNECTED')\n"
            "    except OSError as exc:\n"
            "        print(attempt, 'refused', type(exc).__name__, exc)\n"
        )
        result = run_python(source, LIMITS)
        assert result.status == "passed", result.output
        assert "CONNECTED" not in result.output
        assert result.output.count("refused PermissionError") == 2
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.accept()


def test_network_namespace_alone_blocks_loopback(isolation: dict[str, str]) -> None:
    if not isolation["network"].startswith("namespace"):
        pytest.skip(f"no network namespace here: {isolation['network']}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        source = (
            "import os, socket\n"
            "print(os.readlink('/proc/self/ns/net'))\n"
            f"socket.socket().connect(('127.0.0.1', {port}))\n"
        )
        result, _ = sandbox._run(source, LIMITS, audit_hook=False)
        assert result.status == "failed"
        assert "Network is unreachable" in result.output
        assert result.output.split()[0] != os.readlink("/proc/self/ns/net")
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.accept()


def attempts_program(imports: str, attempts: dict[str, str]) -> str:
    """A program that tries each attempt (a Python expression that calls something) and
    prints ``<name> blocked`` when the sandbox refuses it with PermissionError."""
    lines = [f"import {imports}", "attempts = {"]
    lines += [f"    {name!r}: lambda: {call}," for name, call in attempts.items()]
    lines += [
        "}",
        "for name, attempt in attempts.items():",
        "    try:",
        "        attempt()",
        "        print(name, 'ALLOWED')",
        "    except PermissionError:",
        "        print(name, 'blocked')",
    ]
    return "\n".join(lines) + "\n"


def test_starting_processes_is_blocked() -> None:
    attempts = {
        "subprocess": "subprocess.run(['true'])",
        "system": "os.system('true')",
        "fork": "os.fork()",
        "execv": "os.execv('/bin/true', ['true'])",
        "posix_spawn": "os.posix_spawn('/bin/true', ['true'], {})",
        "fork_exec": "_posixsubprocess.fork_exec(*([None] * 23))",
        "multiprocessing": "multiprocessing.Process(target=print).start()",
        "fresh fork_exec": "importlib.util.module_from_spec("
        "importlib.util.find_spec('_posixsubprocess'))",
    }
    imports = "importlib.util, os, subprocess, _posixsubprocess, multiprocessing"
    result = run_python(attempts_program(imports, attempts), LIMITS)
    assert result.status == "passed", result.output
    assert result.output.count("blocked") == len(attempts), result.output


def test_native_code_and_hook_tampering_are_blocked() -> None:
    attempts = {
        "load library": "ctypes.CDLL('libc.so.6')",
        "symbol": "ctypes.CDLL(None).fork",
        "raw memory": "ctypes.string_at(id(0), 8)",
        "cffi": "__import__('cffi')",
        "gc": "gc.get_objects()",
        "rlimit": "resource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))",
    }
    result = run_python(attempts_program("ctypes, gc, resource", attempts), LIMITS)
    assert result.status == "passed", result.output
    assert result.output.count("blocked") == len(attempts), result.output


def test_common_libraries_still_work() -> None:
    source = (
        "import asyncio, numpy, threading\n"
        "thread = threading.Thread(target=print, args=('thread',))\n"
        "thread.start()\n"
        "thread.join()\n"
        "print(int(numpy.arange(5).sum()), asyncio.run(asyncio.sleep(0, result='async')))\n"
    )
    result = run_python(source, LIMITS)
    assert result.status == "passed", result.output
    assert result.output.split() == ["thread", "10", "async"]


def test_secrets_of_the_parent_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_parent_secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-parent-secret")
    source = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "print(dict(os.environ))\n"
        "try:\n"
        "    print(open(f'/proc/{os.getppid()}/environ').read())\n"
        "except PermissionError as exc:\n"
        "    print('parent environ:', exc)\n"
    )
    result = run_python(source, LIMITS)
    assert result.status == "passed", result.output
    assert "secret" not in result.output
    assert "HF_TOKEN" not in result.output and "AWS_" not in result.output
    assert "parent environ: sandbox: reading" in result.output


def test_writes_are_confined_to_a_removed_work_dir(tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    source = (
        "import os, tempfile\n"
        "print(os.getcwd())\n"
        "with open('inside.txt', 'w') as handle:\n"
        "    handle.write('ok')\n"
        "tempfile.NamedTemporaryFile().close()\n"
        "try:\n"
        f"    open({str(target)!r}, 'w')\n"
        "except OSError as exc:\n"
        "    print('outside:', type(exc).__name__)\n"
        "try:\n"
        f"    os.remove({__file__!r})\n"
        "except OSError as exc:\n"
        "    print('remove:', type(exc).__name__)\n"
    )
    result = run_python(source, LIMITS)
    assert result.status == "passed", result.output
    work, outside, remove = result.output.splitlines()[:3]
    assert outside == "outside: PermissionError" and remove == "remove: PermissionError"
    assert not target.exists() and Path(__file__).exists()
    assert not Path(work).exists()  # the temporary work directory is removed afterwards


def test_read_only_filesystem_without_the_hook(
    tmp_path: Path, isolation: dict[str, str]
) -> None:
    if not isolation["filesystem"].startswith("read-only"):
        pytest.skip(f"no read-only mount namespace here: {isolation['filesystem']}")
    target = tmp_path / "outside.txt"
    source = f"open('inside.txt', 'w').write('ok')\nopen({str(target)!r}, 'w')\n"
    result, _ = sandbox._run(source, LIMITS, audit_hook=False)
    assert result.status == "failed"
    assert "Read-only file system" in result.output
    assert not target.exists()


def test_large_output_neither_deadlocks_nor_is_kept_whole() -> None:
    source = "for i in range(50_000):\n    print('line', i)\n"
    result = run_python(source, LIMITS)
    assert result.status == "passed"
    assert result.output.rstrip().endswith("line 49999")
    assert len(result.output) <= sandbox.OUTPUT_TAIL_BYTES + 100


def test_output_beyond_the_file_size_limit_is_failed() -> None:
    source = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    result = run_python(source, SandboxLimits(timeout_s=10.0, max_file_mb=1))
    assert result.status == "failed"
    assert "file size limit" in result.output


def test_concurrent_runs_from_threads_stay_apart() -> None:
    sources = [f"import os\nprint({i}, os.getcwd())\n" for i in range(6)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda source: run_python(source, LIMITS), sources))
    assert [r.status for r in results] == ["passed"] * 6
    assert [int(r.output.split()[0]) for r in results] == list(range(6))
    assert len({r.output.split()[1] for r in results}) == 6


def test_an_interpreter_that_cannot_start_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    result = run_python("print(1)\n", LIMITS)
    assert result.status == "error"
    assert result.returncode is None
