"""Static checks of the Ansible code: ansible-lint (production profile, .ansible-lint) and
`ansible-playbook --syntax-check` of every playbook. Fast, no hosts needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOKS = ["site.yml", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "playbooks").glob("*.yml"))]


def ansible_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp_path / "ansible-tmp")
    env["POLYMM_VAULT_PASSWORD_DIR"] = str(tmp_path / "no-vault")  # no real vault is needed here
    env["ANSIBLE_DEPRECATION_WARNINGS"] = "False"
    return env


def test_every_playbook_is_listed():
    assert {"site.yml", "playbooks/deploy.yml", "playbooks/rotate-certs.yml", "playbooks/verify.yml"} <= set(
        PLAYBOOKS
    )


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook: str, tmp_path: Path):
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", playbook],
        cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(300)
def test_ansible_lint_production_profile(tmp_path: Path):
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--nocolor", "--profile", "production"],
        cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Profile 'production' was required, and it passed" in out


def test_lint_catches_a_bad_task(tmp_path: Path):
    """Guards the check above: the same lint setup must reject a task the production profile forbids."""
    bad = tmp_path / "probe.yml"
    bad.write_text("---\n- hosts: all\n  tasks:\n    - shell: echo hi\n")
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--nocolor", "--profile", "production", str(bad)],
        cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "fqcn" in proc.stdout + proc.stderr
