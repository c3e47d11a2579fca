"""`make test` installs what the tests need besides Python (.ci/setup-system.sh), and .ci/run is just `make test`.

The set-up script runs here against a PATH of fakes: chromium, chromedriver, apt-get,
sudo and id are small scripts that record how they were called, so every branch (present,
root, sudo, no sudo, no apt-get, apt-get failing) runs without installing anything.
"""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / ".ci" / "setup-system.sh"
INSTALL = "install -y -qq --no-install-recommends chromium chromium-driver"


def fake(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_setup(tmp_path: Path, tools: dict[str, str], uid: int = 0):
    """(exit status, stderr, the calls logged) of the set-up script with only ``tools`` (name -> sh body) as fakes."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("bash", "env"):                                  # what the script itself runs on
        os.symlink(shutil.which(name), bin_dir / name)
    fake(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    for name, body in tools.items():
        fake(bin_dir, name, body.replace("LOG", str(log)))
    result = subprocess.run([str(SETUP)], env={"PATH": str(bin_dir)}, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr, calls


APT = 'echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> LOG'
SUDO = 'echo "sudo $*" >> LOG; [ "$1" = -n ] && shift; exec "$@"'


def test_nothing_is_installed_when_chromium_and_chromedriver_are_there(tmp_path):
    code, err, calls = run_setup(tmp_path, {"chromium": "", "chromedriver": "", "apt-get": APT, "sudo": SUDO})
    assert (code, err, calls) == (0, "", [])


def test_as_root_apt_get_installs_them(tmp_path):
    code, err, calls = run_setup(tmp_path, {"apt-get": APT})
    assert code == 0 and "installing chromium and chromium-driver" in err
    assert calls == ["apt-get update -qq DEBIAN_FRONTEND=", f"apt-get {INSTALL} DEBIAN_FRONTEND=noninteractive"]


def test_not_root_it_goes_through_sudo_without_waiting_for_a_password(tmp_path):
    code, err, calls = run_setup(tmp_path, {"apt-get": APT, "sudo": SUDO, "chromedriver": ""}, uid=1000)
    assert code == 0
    assert calls == ["sudo -n apt-get update -qq", "apt-get update -qq DEBIAN_FRONTEND=",
                     f"sudo -n env DEBIAN_FRONTEND=noninteractive apt-get {INSTALL}",
                     f"apt-get {INSTALL} DEBIAN_FRONTEND=noninteractive"]


@pytest.mark.parametrize("tools, uid, words", [
    ({"apt-get": APT}, 1000, "needs root (there is no sudo)"),
    ({"sudo": SUDO}, 1000, "there is no apt-get here"),
    ({}, 0, "there is no apt-get here"),
    ({"apt-get": APT + "; exit 100"}, 0, "apt-get could not install chromium and chromium-driver"),
])
def test_where_it_cannot_install_it_says_so_in_one_line_and_lets_the_tests_run(tmp_path, tools, uid, words):
    code, err, calls = run_setup(tmp_path, tools, uid)
    assert code == 0
    said = [line for line in err.splitlines() if line.startswith("setup:") and not line.startswith("setup: installing")]
    assert len(said) == 1 and words in said[0] and "apt-get install chromium chromium-driver" in said[0]
    assert all("install" not in c for c in calls) or "exit 100" in tools.get("apt-get", "")


def test_make_test_runs_the_set_up_before_the_tests_and_ci_is_just_make_test():
    if shutil.which("make") is None:
        pytest.fail("make is needed (the README's commands are make targets); install it (Debian: apt-get install make)")
    dry = subprocess.run(["make", "-n", "test", "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    setup = dry.index(".ci/setup-system.sh")
    assert any("pytest" in line for line in dry[setup + 1:])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci and "chromium" not in ci.split("\n", 3)[-1].replace(
        "(.ci/setup-system.sh: chromium, chromedriver)", "")
    assert os.access(SETUP, os.X_OK) and os.access(ROOT / ".ci" / "run", os.X_OK)
