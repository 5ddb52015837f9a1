"""``.ci/run`` with stand-in commands: where apt-get runs as root, no Chromium fails CI (the browser test
must not become a quiet skip); otherwise it runs README's test command and nothing else."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORD = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'


def _readme_test_command() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return blocks[1].split(" && ")  # e.g. ["pip install -r requirements-dev.txt", "python -m pytest -q"]


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _run_ci(tmp_path: Path, *, uid: int, apt: str | None, env: dict | None = None, suite_exit: int = 0):
    """Run ``.ci/run`` on a PATH of stand-ins: ``id -u`` prints ``uid``; ``apt-get`` is absent (``apt=None``),
    fails (``"fail"``), succeeds without a browser (``"empty"``) or installs ``chromium`` (``"ok"``); the
    virtual environment's ``pip`` and ``python`` only record their arguments (``python`` then exits with
    ``suite_exit``). -> (process, recorded calls)."""
    bin_, venv = tmp_path / "bin", tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    bin_.mkdir()
    for tool in ("basename", "chmod", "dirname", "mktemp", "rm", "tail"):
        (bin_ / tool).symlink_to(shutil.which(tool))
    _script(bin_ / "id", f"#!/bin/sh\necho {uid}\n")
    if apt is not None:
        outcome = {"fail": 'echo "E: Unable to locate package chromium"; exit 100',
                   "empty": "exit 0",
                   "ok": f'[ "$1" = install ] && printf "#!/bin/sh\\n" > {bin_}/chromium && chmod +x {bin_}/chromium'}
        _script(bin_ / "apt-get", RECORD + outcome[apt] + "\n")
    _script(venv / "bin" / "pip", RECORD)
    _script(venv / "bin" / "python", RECORD + f"exit {suite_exit}\n")
    (venv / "bin" / "activate").write_text(f'PATH="{venv / "bin"}:$PATH"\n')
    calls = tmp_path / "calls"
    calls.touch()
    env = {"PATH": str(bin_), "HOME": str(tmp_path), "HDM_VENV": str(venv), "CALLS": str(calls), **(env or {})}
    proc = subprocess.run([shutil.which("bash"), str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)
    return proc, calls.read_text().splitlines()


@pytest.mark.parametrize("apt", ["fail", "empty"])
def test_no_chromium_as_root_with_apt_fails_ci_before_the_tests(tmp_path, apt):
    proc, calls = _run_ci(tmp_path, uid=0, apt=apt)
    assert proc.returncode == 1, proc.stderr
    assert "could not install chromium" in proc.stderr and "tests/test_app_e2e.py" in proc.stderr
    assert "apt-get install -y -q chromium" in calls
    assert not any(c.startswith(("pip", "python")) for c in calls), calls  # the suite never ran
    if apt == "fail":
        assert "apt-get update -q" in calls and "Unable to locate package chromium" in proc.stderr  # apt's own words


def test_chromium_installed_as_root_then_readme_command_runs(tmp_path):
    proc, calls = _run_ci(tmp_path, uid=0, apt="ok")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["apt-get install -y -q chromium", *_readme_test_command()]


@pytest.mark.parametrize("uid,apt", [(1000, "fail"), (0, None)], ids=["not-root", "no-apt-get"])
def test_where_chromium_cannot_be_installed_the_tests_run_with_a_note(tmp_path, uid, apt):
    proc, calls = _run_ci(tmp_path, uid=uid, apt=apt)
    assert proc.returncode == 0, proc.stderr
    assert "tests/test_app_e2e.py will be skipped" in proc.stderr
    assert calls == _readme_test_command()  # apt-get was not tried


def test_a_given_chromium_is_used_as_is(tmp_path):
    proc, calls = _run_ci(tmp_path, uid=0, apt="fail", env={"HDM_CHROMIUM": "/opt/chromium/chrome"})
    assert proc.returncode == 0, proc.stderr
    assert calls == _readme_test_command() and proc.stderr == ""


def test_a_failing_suite_fails_ci(tmp_path):
    proc, calls = _run_ci(tmp_path, uid=0, apt="ok", suite_exit=3)
    assert proc.returncode == 3 and calls[-1] == _readme_test_command()[-1]
