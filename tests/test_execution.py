"""Sandbox, code extraction and LiveCodeBench graders (docs/design/evaluation.md §4), on synthetic programs.

The hostile-program suite runs programs that attack the machine or the grader; each must be graded not-passed
(failed / runtime_error / timeout) and leave no trace: no stray processes, no files outside the working directory,
the grader alive.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import uuid

import pytest

from softthink import sandbox as ex
from softthink.data import Item
from softthink.grading.code import extract_code, grade_code, lcb_compare_stdout, lcb_extract
from softthink.sandbox import run_many, run_program, sandbox_info

INFO = sandbox_info()
ISOLATED = INFO.isolation == "namespaces"
UID_RANGE = range(ex.SANDBOX_UID_BASE, ex.SANDBOX_UID_BASE + ex.UID_POOL_SIZE)


def fence(code: str, tag: str = "python") -> str:
    return f"Here is the solution.\n```{tag}\n{code}\n```\n"


# A HumanEval-shaped synthetic item: f(x) must return 2 * x.
DOUBLE = Item(id="Synthetic/0", index=0, question="def f(x):\n    \"\"\"Return 2 * x.\"\"\"\n",
              answer={}, meta={"prompt": "def f(x):\n    \"\"\"Return 2 * x.\"\"\"\n",
                               "test": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(5) == 10\n",
                               "entry_point": "f"})
GOOD_DOUBLE = "def f(x):\n    return 2 * x\n"


# ------------------------------------------------------------------------------------------------ helpers

def _proc_entries() -> list[tuple[int, int, int]]:
    """(pid, ppid, real uid) of every process visible here."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                st = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in st.splitlines() if ":" in line)
        try:
            out.append((int(d), int(fields["PPid"]), int(fields["Uid"].split()[0])))
        except (KeyError, ValueError):
            continue
    return out


def stray_processes() -> list[tuple[int, int, int]]:
    """Processes left behind by this test process's sandboxes: any descendant of this process, or a sandbox-uid
    process orphaned to the host's init. (Other graders on the machine may be running sandboxes right now, under
    other uids of the same range but not descended from us, so a plain uid filter would be wrong.)"""
    me = os.getpid()
    procs = _proc_entries()
    parent = {pid: ppid for pid, ppid, _ in procs}

    def descends_from_me(pid: int) -> bool:
        seen = set()
        while pid > 1 and pid not in seen:
            seen.add(pid)
            pid = parent.get(pid, 0)
            if pid == me:
                return True
        return False
    return [p for p in procs if descends_from_me(p[0]) or (p[1] == 1 and p[2] in UID_RANGE)]


def wait_no_strays(limit: float = 5.0) -> list:
    t0 = time.monotonic()
    while True:
        s = stray_processes()
        if not s or time.monotonic() - t0 > limit:
            return s
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ detection

def test_isolation_is_detected_and_recorded():
    assert INFO.isolation in ("namespaces", "uid", "none")
    assert INFO.network_isolation in ("unshare-net", "none")
    assert INFO.numpy, INFO.notes   # MBPP's official header imports numpy
    r = run_program("print('ok')")
    assert (r.isolation, r.network_isolation) == (INFO.isolation, INFO.network_isolation)
    if os.geteuid() == 0 and INFO.tools.get("unshare"):
        # On the project machines (root, util-linux present) the full level must work; a silent fallback
        # would lose the fork-bomb guard and network isolation.
        assert ISOLATED, INFO.notes


# ------------------------------------------------------------------------------------------------ basics

def test_run_program_outcomes():
    assert run_program("print('hi')").status == "passed"
    r = run_program("assert 1 == 2, 'nope'")
    assert (r.status, r.returncode) == ("failed", 1)
    assert "AssertionError: nope" in r.stderr
    r = run_program("raise ValueError('x')")
    assert r.status == "runtime_error" and "ValueError" in r.stderr
    assert run_program("import sys; sys.exit(3)").status == "runtime_error"
    assert run_program("def f(:\n pass").status == "runtime_error"   # SyntaxError


def test_interpreter_and_numpy_available():
    r = run_program("import sys, numpy; print(sys.version); print(sys.flags.isolated)")
    assert r.status == "passed", r.stderr
    version, isolated = r.stdout.strip().split("\n")
    assert version == sys.version and isolated == "1"


def test_stdin_and_large_unread_stdin():
    r = run_program("import sys; print(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3\n4\n")
    assert r.status == "passed" and r.stdout.strip() == "10"
    # 8 MiB of input that the program never reads must not deadlock the launcher
    r = run_program("print('done')", stdin="x" * (8 << 20))
    assert r.status == "passed" and r.stdout.strip() == "done"
    # no stdin given: DEVNULL, reads return EOF at once
    r = run_program("import sys; print(repr(sys.stdin.read()))")
    assert r.stdout.strip() == "''"


def test_timeout_is_enforced_on_wall_clock():
    t0 = time.monotonic()
    r = run_program("import time\ntime.sleep(60)", timeout=1.0)
    assert r.status == "timeout" and r.timed_out
    assert time.monotonic() - t0 < 4
    assert wait_no_strays() == []


def test_cpu_limit_ends_busy_loop_even_with_long_wall_timeout():
    r = run_program("while True:\n    pass", timeout=20.0, cpu_seconds=1)
    assert r.status == "timeout" and r.duration < 10


def test_working_directory_is_fresh_writable_and_deleted(monkeypatch):
    made = []
    real = ex.tempfile.mkdtemp

    def spy(*a, **k):
        made.append(real(*a, **k))
        return made[-1]
    monkeypatch.setattr(ex.tempfile, "mkdtemp", spy)
    r = run_program("import os\nopen('out.txt', 'w').write('x')\nprint(sorted(os.listdir('.')))\n"
                    "print(os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd())")
    assert r.status == "passed", r.stderr
    listing, same = r.stdout.strip().split("\n")
    # an interpreter prefix under /tmp (a checkout there) is bound back at its own path, inside the private /tmp
    bound = {p.split("/")[2] for p in INFO.reexpose if p.startswith("/tmp/")}
    assert listing == str(sorted({"out.txt", "prog.py"} | bound)) and same == "True"
    assert made and not os.path.exists(made[0])


def test_collect_reads_files_back_but_not_through_symlinks():
    r = run_program("open('a.txt', 'w').write('hello')\nimport os\nos.symlink('/etc/passwd', 'b.txt')",
                    collect=("a.txt", "b.txt", "missing.txt"))
    assert r.files == {"a.txt": b"hello"}


def test_launcher_failure_is_a_sandbox_error_not_a_wrong_answer():
    import dataclasses
    broken = dataclasses.replace(INFO, tools={**INFO.tools, "prlimit": "/nonexistent/prlimit"})
    r = ex._run(broken, "print(1)", stdin=None, timeout=3.0, memory_mb=512, cpu_seconds=None, files=None,
                collect=(), output_cap=ex.OUTPUT_CAP)
    assert r.status == "sandbox_error" and r.error, r
    # a program that prints something tool-like to stderr is still judged as a program
    r = run_program("import sys\nsys.stderr.write('Traceback: prlimit: x\\n')\nsys.exit(1)")
    assert r.status == "runtime_error"


def test_run_many_keeps_order():
    rs = run_many([f"print({i})" for i in range(12)] + [{"source": "print('kw')", "timeout": 2.0}], workers=2)
    assert [r.stdout.strip() for r in rs] == [str(i) for i in range(12)] + ["kw"]


# ------------------------------------------------------------------------------------------------ extraction

def test_extraction_suite_takes_last_fence_any_tag_after_think():
    think = "<think>\n```python\nTHINKING = 1\n```\n</think>\n"
    for tag in ("python", "Python", "py", "PY", ""):
        e = extract_code(think + fence("x = 1") + fence("y = 2", tag))
        assert (e.code.strip(), e.path, e.no_think_end) == ("y = 2", "fence", False)
    # no </think>: full text, flagged
    e = extract_code(fence("z = 3"))
    assert (e.code.strip(), e.no_think_end) == ("z = 3", True)
    # code only inside the thinking: the answer section has none -> no_code in suite mode ...
    e = extract_code(think + "The answer is above.")
    assert (e.code, e.path) == (None, "none")
    # ... while the official rule reads the full text and finds it
    assert extract_code(think + "The answer is above.", "official").code.strip() == "THINKING = 1"


def test_extraction_official_needs_exact_python_tag():
    assert extract_code(fence("a = 1", "Python"), "official").code is None
    assert extract_code(fence("a = 1", "py"), "official").code is None
    assert extract_code(fence("a = 1") + fence("b = 2"), "official").code.strip() == "b = 2"
    assert extract_code("no code at all", "official").path == "none"


def test_extraction_lcb_fallback_and_no_code():
    # an inline backtick on the opening line defeats the fence pattern; LCB's line rule still finds the code
    text = "```python  # run with `python3`\nprint(1)\n```\n"
    e = extract_code(text)
    assert (e.code, e.path) == ("print(1)", "lcb_fallback")
    assert extract_code("I cannot solve this.").path == "none"
    assert extract_code("```python\n\n```").code is None        # empty block is no code
    assert lcb_extract("a\n```\nb\nc\n```\nd") == "b\nc"


# ------------------------------------------------------------------------------------------------ HumanEval harness

def test_synthetic_humaneval_pass_and_fail():
    g = grade_code("humaneval", DOUBLE, fence(GOOD_DOUBLE))
    assert (g.correct, g.status) == (True, "passed"), g.detail
    g = grade_code("humaneval", DOUBLE, fence("def f(x):\n    return x + 2\n"))   # right for 2, wrong for 5
    assert (g.correct, g.status) == (False, "failed")
    g = grade_code("humaneval", DOUBLE, fence("def f(x):\n    return x / 0\n"))
    assert (g.correct, g.status) == (False, "runtime_error")
    g = grade_code("humaneval", DOUBLE, "I don't know.")
    assert (g.correct, g.status) == (False, "no_code")


@pytest.mark.parametrize("mode", ["suite", "official"])
@pytest.mark.parametrize("code", [
    "import sys\ndef f(x):\n    return 2 * x\nsys.exit(0)\n",                       # module-level exit
    "import os\ndef f(x):\n    return 2 * x\nos._exit(0)\n",                        # hard exit
    "import sys\ndef f(x):\n    sys.exit(0)\n",                                     # exit inside the checks
    "def f(x):\n    return 2 * x\nif __name__ == '__main__':\n    raise SystemExit\n",  # typical chat tail
])
def test_early_exit_zero_is_not_a_pass(code, mode):
    g = grade_code("humaneval", DOUBLE, fence(code), mode=mode)
    assert (g.correct, g.status) == (False, "failed"), g.detail
    assert g.detail["returncode"] == 0 and g.detail["exit0_without_checks"] is True


# ------------------------------------------------------------------------------------------------ hostile programs

def _hostile(code: str, timeout: float = 3.0, **kw):
    """Grade a hostile HumanEval completion; it must not pass, and the grader must carry on."""
    g = grade_code("humaneval", DOUBLE, fence(code), timeout=timeout, **kw)
    assert g.status in ("failed", "runtime_error", "timeout"), (g.status, g.detail)
    assert g.correct is False
    return g


def test_hostile_infinite_loop():
    t0 = time.monotonic()
    g = _hostile("def f(x):\n    while True:\n        pass\n")
    assert g.status == "timeout" and time.monotonic() - t0 < 8


def test_hostile_fork_bomb_is_bounded():
    # Every process forks forever. Bounded by RLIMIT_NPROC (as the sandbox uid) and killed with its whole
    # process group / pid namespace at the deadline.
    code = ("import os\n"
            "def f(x):\n"
            "    while True:\n"
            "        try:\n"
            "            os.fork()\n"
            "        except OSError:\n"
            "            pass\n")
    t0 = time.monotonic()
    g = _hostile(code, timeout=2.0)
    assert g.status == "timeout"
    assert time.monotonic() - t0 < 10
    assert wait_no_strays() == []


def test_hostile_escaped_daemon_is_killed():
    # A grandchild that leaves the process group (setsid) and sleeps: killed with the namespace.
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    time.sleep(300)\n"
            "    os._exit(0)\n"
            "def f(x):\n    return x\n")
    _hostile(code)
    strays = wait_no_strays()
    if not ISOLATED:
        pytest.skip(f"without a pid namespace a setsid daemon can outlive the run (isolation={INFO.isolation})")
    assert strays == []


@pytest.mark.parametrize("code", [
    "x = bytearray(16 << 30)\ndef f(x):\n    return 2 * x\n",                                     # one huge block
    "hog = []\nwhile True:\n    hog.append(bytearray(50 << 20))\n",                                # gradual
])
def test_hostile_memory_hog(code):
    # 1 GiB address-space limit instead of the default 4 GiB: filling 4 GiB takes ~6 s on the 2-core test VM
    g = _hostile(code, timeout=10.0, memory_mb=1024)
    assert g.status == "runtime_error" and "MemoryError" in g.detail["stderr"]


def test_hostile_huge_output_is_capped():
    r = run_program("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", timeout=2.0)
    assert r.status == "timeout" and r.stdout_truncated
    assert len(r.stdout) == ex.OUTPUT_CAP
    g = _hostile("import sys\ndef f(x):\n    while True:\n        print('y' * 10000)\n", timeout=2.0)
    assert g.status == "timeout"


def test_hostile_writes_outside_its_directory():
    marker = f"softthink-marker-{uuid.uuid4().hex}"
    targets = [f"/tmp/{marker}", f"/var/tmp/{marker}", f"/dev/shm/{marker}",
               os.path.join(os.path.dirname(os.path.abspath(__file__)), marker)]
    code = ("def f(x):\n"
            f"    for p in {targets!r}:\n"
            "        try:\n"
            "            open(p, 'w').write('pwned')\n"
            "        except OSError:\n"
            "            pass\n"
            "    return None\n")
    _hostile(code)
    if INFO.isolation == "none":
        for p in targets:
            if os.path.exists(p):
                os.unlink(p)
        pytest.skip("no uid drop or mount namespace here: the program can write as the grader's user")
    assert [p for p in targets if os.path.exists(p)] == []


def test_hostile_kills_its_parent():
    code = ("import os, signal\n"
            "os.kill(os.getppid(), signal.SIGKILL)\n"
            "def f(x):\n    return None\n")
    _hostile(code)
    if INFO.drop_uid:
        # as an unprivileged uid in its own pid namespace, "every process I may signal" is only itself
        _hostile("import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                 "def f(x):\n    return None\n")
    os.kill(os.getpid(), 0)   # the grader (this test process) is alive
    assert grade_code("humaneval", DOUBLE, fence(GOOD_DOUBLE)).status == "passed"   # and still grading


def test_hostile_cannot_read_secrets(monkeypatch):
    secret = "sk-softthink-test-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("HF_TOKEN", secret)
    probe = ("import os, glob\n"
             "found = [k + '=' + v for k, v in os.environ.items()]\n"
             "for p in glob.glob('/proc/*/environ'):\n"
             "    try:\n"
             "        found.append(open(p, 'rb').read().decode('latin-1'))\n"
             "    except OSError:\n"
             "        pass\n"
             "print('\\n'.join(found))\n")
    r = run_program(probe)
    assert r.status == "passed"
    assert secret not in r.stdout
    assert "OPENAI_API_KEY" not in r.stdout and "HF_TOKEN" not in r.stdout
    assert "PATH=/usr/local/bin:/usr/bin:/bin" in r.stdout   # the probe did read its own environment
    g = _hostile("import os\ndef f(x):\n    return os.environ.get('OPENAI_API_KEY') or os.environ['HF_TOKEN']\n")
    assert "KeyError" in g.detail["stderr"]


def test_hostile_network():
    code = ("import socket\n"
            "s = socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
            "print('connected')\n")
    r = run_program(code, timeout=5.0)
    assert r.network_isolation == INFO.network_isolation
    if INFO.network_isolation == "none":
        pytest.skip("network isolation unavailable here (recorded as network_isolation=none)")
    assert r.status == "runtime_error" and "connected" not in r.stdout
    assert "Network is unreachable" in r.stderr or "OSError" in r.stderr


def test_after_hostile_suite_grader_alive_and_no_strays():
    # runs after the hostile tests above (pytest keeps file order)
    assert wait_no_strays() == []
    assert run_program("print(1)").status == "passed"


# ------------------------------------------------------------------------------------------------ LiveCodeBench

def lcb_item(tests, func_name=None, qid="9999"):
    public = [dict(t, testtype="functional" if func_name else "stdin") for t in tests]
    return Item(id=qid, index=0, question="synthetic", answer={"question_id": qid},
                meta={"question_id": qid, "starter_code": "", "tests": {"public": public[:1], "private": public[1:],
                                                                         "func_name": func_name}})


def test_lcb_compare_stdout_rules():
    assert lcb_compare_stdout("1 2 3\n", "1 2 3")
    assert lcb_compare_stdout("  1 2 3   \n\n", "1 2 3")              # surrounding / trailing whitespace
    assert lcb_compare_stdout("a  \nb\t\n", "a\nb")                   # per-line strip
    assert lcb_compare_stdout("0.50 2\n", "0.5 2.000")                # Decimal equality of tokens
    assert lcb_compare_stdout("1e2\n", "100")
    big = str(10 ** 40 + 1)
    assert not lcb_compare_stdout(str(10 ** 40) + "\n", big)          # exact for big integers (no isclose)
    assert not lcb_compare_stdout("1\n2\n", "1 2")                    # line count must match
    assert not lcb_compare_stdout("1\n", "1\n2")
    assert not lcb_compare_stdout("Yes\n", "YES")
    assert not lcb_compare_stdout("0.3333\n", "0.33333")


STDIN_TESTS = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"},
               {"input": "100000000000000000000 1\n", "output": "100000000000000000001\n"}]


@pytest.mark.parametrize("code,status", [
    ("a, b = map(int, input().split())\nprint(a + b)", "passed"),
    ("import sys\ndef main():\n    a, b = map(int, sys.stdin.read().split())\n    print(a + b, '  ')\n"
     "if __name__ == '__main__':\n    main()\n", "passed"),                                   # __main__ tail, spaces
    ("a, b = map(int, input().split())\nprint(a + b)\nexit(1)", "passed"),                     # SystemExit not an error
    ("a, b = map(int, input().split())\nprint(float(a + b))", "failed"),                       # see below
    ("a, b = map(int, input().split())\nprint(a + b)\nprint()\nprint(0)", "failed"),          # extra line
    ("a, b = map(int, input().split())\nprint(a - b)", "failed"),
    ("a, b = map(int, input().split())\nprint(a + b + c)", "runtime_error"),
    ("import time\ntime.sleep(100)", "timeout"),
])
def test_lcb_stdin_grading(code, status):
    g = grade_code("livecodebench", lcb_item(STDIN_TESTS), fence(code), timeout=2.0)
    if code.endswith("print(float(a + b))"):
        # 3.0 vs 3: Decimal('3.0') == Decimal('3') is True, so LCB accepts it; the third test (big ints) fails
        # because float loses digits.
        assert g.detail["codes"] == [1, 1, -2]
    assert g.status == status, g.detail
    assert g.correct is (status == "passed")
    assert g.detail["testtype"] == "stdin" and g.detail["n_tests"] == 3
    if status != "passed":
        assert g.detail["codes"][-1] != 1 and all(c == 1 for c in g.detail["codes"][:-1])


def test_lcb_stdin_decimal_and_big_int_output():
    item = lcb_item([{"input": "3\n", "output": "0.3333333333\n"}, {"input": "1\n", "output": "1.0\n"}])
    g = grade_code("livecodebench", item, fence("n = int(input())\nprint(f'{1/n:.10f}')"))
    assert g.status == "passed", g.detail
    item = lcb_item([{"input": "6000\n", "output": "1" + "0" * 6000 + "\n"}])
    g = grade_code("livecodebench", item, fence("print(10 ** int(input()))"))   # needs set_int_max_str_digits
    assert g.status == "passed", g.detail


FUNC_TESTS = [{"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]"},
              {"input": "[3, 2, 4]\n6", "output": "[1, 2]"},
              {"input": "[3, 3]\n6", "output": "[0, 1]"}]
TWO_SUM = ("class Solution:\n"
           "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
           "        seen = {}\n"
           "        for i, x in enumerate(nums):\n"
           "            if target - x in seen:\n"
           "                return %s\n"
           "            seen[x] = i\n")


@pytest.mark.parametrize("ret,status", [
    ("[seen[target - x], i]", "passed"),
    ("(seen[target - x], i)", "passed"),                  # a returned tuple is converted to a list
    ("[i, seen[target - x]]", "failed"),
    ("[seen[target - x], i][5]", "runtime_error"),
])
def test_lcb_functional_class_solution(ret, status):
    g = grade_code("livecodebench", lcb_item(FUNC_TESTS, "twoSum"), fence(TWO_SUM % ret))
    assert g.status == status, g.detail
    assert g.detail["testtype"] == "functional"
    if status == "passed":
        assert g.detail["codes"] == [1, 1, 1]
    else:
        assert g.detail["codes"] == [-2 if status == "failed" else -4]   # stops at the first failure


def test_lcb_functional_plain_function_nested_tuple_and_timeout():
    tests = [{"input": "3", "output": "[[0, 1], [1, 2]]"}]
    # only the top-level tuple is converted: a list of tuples != a list of lists (as in LCB's in-process ==)
    g = grade_code("livecodebench", lcb_item(tests, "pairs"), fence("def pairs(n):\n    return [(0, 1), (1, 2)]\n"))
    assert g.status == "failed"
    g = grade_code("livecodebench", lcb_item(tests, "pairs"), fence("def pairs(n):\n    return ([0, 1], [1, 2])\n"))
    assert g.status == "passed", g.detail
    slow = ("class Solution:\n    def f(self, n):\n        if n == 2:\n            while True:\n                pass\n"
            "        return n\n")
    item = lcb_item([{"input": "1", "output": "1"}, {"input": "2", "output": "2"}, {"input": "3", "output": "3"}], "f")
    t0 = time.monotonic()
    g = grade_code("livecodebench", item, fence(slow), timeout=2.0)
    assert g.status == "timeout" and g.detail["codes"] == [1, -3]
    assert time.monotonic() - t0 < 10   # the per-test alarm fired, long before the global bound (2+1)*3+5 s
    g = grade_code("livecodebench", item, fence("class Solution:\n    def g(self, n):\n        return n\n"))
    assert g.status == "runtime_error" and g.detail["codes"] == [-1]        # method missing: load error
    g = grade_code("livecodebench", item, fence("import os\nos._exit(0)\n"))
    assert g.status == "runtime_error"                                        # died before reporting


def test_lcb_without_tests_is_ungraded_never_wrong():
    item = Item(id="abc999_a", index=0, question="q", answer={"question_id": "abc999_a"},
                meta={"question_id": "abc999_a", "starter_code": ""})
    for completion in (fence("print(1)"), "no code"):
        g = grade_code("livecodebench", item, completion)
        assert (g.correct, g.status) == (None, "ungraded")
    g = grade_code("livecodebench", lcb_item(STDIN_TESTS), "no code here")
    assert (g.correct, g.status) == (False, "no_code")
    # functional tests but no function name to call: cannot be graded, so not wrong either
    broken = lcb_item(FUNC_TESTS, "twoSum")
    broken.meta["tests"]["func_name"] = None
    g = grade_code("livecodebench", broken, fence(TWO_SUM % "[seen[target - x], i]"))
    assert (g.correct, g.status, g.detail["reason"]) == (None, "ungraded", "functional tests without func_name")


def test_grade_code_rejects_unknown_dataset_and_mode():
    with pytest.raises(ValueError):
        grade_code("gsm8k", DOUBLE, "x")
    with pytest.raises(ValueError):
        grade_code("humaneval", DOUBLE, "x", mode="lenient")
