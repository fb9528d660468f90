"Shared fixtures: a temporary project folder with its own settings and database."
import os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ATS = str(Path(sys.executable).parent / "ats")


@pytest.fixture
def project(tmp_path, monkeypatch):
    "An empty project folder as cwd, with no ATS_/IB_ variables leaking in from the caller."
    for k in list(os.environ):
        if k.startswith(("ATS_", "IB_")) or k in ("ARCTIC_DB_PATH", "LOG_LEVEL", "ENVIRONMENT", "ALPHA_VANTAGE_API_KEY", "QUANDL_API_KEY"):
            monkeypatch.delenv(k, raising=False)
    (tmp_path / "strategies").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_ats(*args, cwd, env=None, check=False, timeout=120):
    "Run the real `ats` console script in a subprocess."
    e = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))}
    e["ATS_GUI__START_DASHBOARD"] = "false"      # `ats up` serves the dashboard only in the tests that ask for it (its port is shared)
    e["ATS_JOBS__START_SCHEDULER"] = "false"     # and runs the scheduler only where it is under test (3 s of CPU per `ats up`)
    e.update(env or {})
    r = subprocess.run([ATS, *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"ats {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r
