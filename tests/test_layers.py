"""The package keeps its floors: the import-layer contract of setup.cfg holds (docs/architecture.md)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "setup.cfg")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_config_imports_nothing_else_of_dflab():
    code = ("import sys, dflab.config; "
            "print(sorted(m for m in sys.modules if m.startswith('dflab.') and not m.startswith('dflab.config')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_new_circle_breaks_the_contract(tmp_path):
    """A copy of the package with one import pointing up fails the contract, naming both modules."""
    import shutil

    shutil.copytree(ROOT / "src" / "dflab", tmp_path / "dflab", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "dflab" / "video" / "write.py").write_text(
        (tmp_path / "dflab" / "video" / "write.py").read_text() + "\nfrom dflab.faces import tracks  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert out.returncode != 0
    assert "dflab.video.write -> dflab.faces.tracks" in out.stdout
