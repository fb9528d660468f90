"The generated package matches its notebooks: nbdev-export in a copy changes nothing."
import filecmp, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_nbdev_export_leaves_ats_unchanged(tmp_path):
    for name in ("nbs", "ats"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    r = subprocess.run([str(Path(sys.executable).parent / "nbdev-export")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cmp = filecmp.dircmp(ROOT / "ats", tmp_path / "ats", ignore=["__pycache__"])
    def diffs(c, pre=""):
        out = [pre + f for f in c.diff_files + c.left_only + c.right_only]
        for name, sub in c.subdirs.items(): out += diffs(sub, pre + name + "/")
        return out
    assert diffs(cmp) == [], "run nbdev-export and commit ats/ together with the notebooks"
