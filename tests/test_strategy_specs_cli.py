"""A strategy configured for futures or FX from the command line: `ats strategies add` checks its instrument specs
against what the paper gateway lists (futures roots, FX pairs), with the same clear refusals as for stock symbols."""
import shutil
from conftest import ROOT, run_ats


def test_strategies_add_takes_futures_and_fx_specs_and_refuses_unknown_ones(project):
    shutil.copy(ROOT / "strategies" / "futures_trend.py", project / "strategies")
    run_ats("init", cwd=project, check=True)
    r = run_ats("strategies", "add", "es_trend", "symbols=ES.FUT:roll=3", "--file", "futures_trend.py", cwd=project)
    assert r.returncode == 0 and "added es_trend (inactive)" in r.stdout, r.stderr
    r = run_ats("strategies", "add", "zz_trend", "symbols=ZZ.FUT", "--file", "futures_trend.py", cwd=project)
    assert r.returncode == 2 and "'ZZ.FUT' is not known to the broker" in r.stderr and "futures CL.FUT, ES.FUT" in r.stderr, r.stderr
    assert "EURUSD.CASH" in r.stderr and "Traceback" not in r.stderr
    r = run_ats("strategies", "add", "late_roll", "symbols=ES.FUT:roll=99", "--file", "futures_trend.py", cwd=project)
    assert r.returncode == 2 and "roll=99 business days is not between 0 and 30" in r.stderr, r.stderr
    listed = run_ats("strategies", "list", "--json", cwd=project, check=True).stdout
    assert "es_trend" in listed and "zz_trend" not in listed and "late_roll" not in listed     # nothing stored for a refusal
