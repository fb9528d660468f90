"Jobs: papermill runs real kernels; outputs archived; history recorded; failures keep their message."
import json
import nbformat
import pytest
from ats.jobs import run_job, job_history, JobError
from ats.store import Store
from conftest import run_ats


def make_job(folder, name="squares"):
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("n = 2\nlabel = 'x'\nsymbols = ['A']", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("assert n > 0, f'n must be positive, got {n}'\n"
                                          "print('squares', label, symbols, [i * i for i in range(n)])")]
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_run_success_failure_and_history(project):
    make_job(project / "jobs")
    st = Store(f"lmdb://{project}/db")
    ok = run_job("squares", {"n": "3", "symbols": "AAPL,MSFT"}, jobs_dir=project / "jobs", runs_dir=project / "runs", store=st)
    assert ok.status == "success" and ok.parameters == {"n": 3, "symbols": ["AAPL", "MSFT"]}
    out = nbformat.read(ok.output_path, as_version=4)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "squares x ['AAPL', 'MSFT'] [0, 1, 4]" in text
    bad = run_job("squares", {"n": "-5"}, jobs_dir=project / "jobs", runs_dir=project / "runs", store=st)
    assert bad.status == "failed" and bad.error == "AssertionError: n must be positive, got -5"
    h = job_history(st, "squares")
    assert list(h["status"]) == ["failed", "success"] and h["parameters"][1] == {"n": 3, "symbols": ["AAPL", "MSFT"]}


def test_unknown_job_and_parameter(project):
    make_job(project / "jobs")
    with pytest.raises(JobError, match="no job named 'sqares' in .*; jobs: squares"):
        run_job("sqares", jobs_dir=project / "jobs")
    with pytest.raises(JobError, match="job 'squares' has no parameter 'm'; its parameters: n, label, symbols"):
        run_job("squares", {"m": 1}, jobs_dir=project / "jobs")
    with pytest.raises(JobError, match="parameter n = 'three' is not a valid int"):
        run_job("squares", {"n": "three"}, jobs_dir=project / "jobs")


def test_cli_runs_job(project):
    run_ats("init", cwd=project, check=True)
    make_job(project / "data_and_research" / "jobs")
    r = run_ats("jobs", "run", "squares", "-p", "n", "2", "--json", cwd=project, check=True)
    assert json.loads(r.stdout)["status"] == "success"
    r = run_ats("jobs", "run", "squares", "-p", "n", "0", cwd=project)
    assert r.returncode == 1 and r.stderr.strip() == "failed: AssertionError: n must be positive, got 0"
    assert "without encryption" not in r.stderr       # ipykernel's warning about an unencrypted kernel socket
    h = json.loads(run_ats("jobs", "history", "--json", cwd=project, check=True).stdout)
    assert [x["status"] for x in h] == ["failed", "success"] and h[0]["reason"] == "AssertionError: n must be positive, got 0"
    assert "squares" in run_ats("jobs", "list", cwd=project, check=True).stdout


def make_reporting_job(folder, name="sync"):
    "A job that reports its outcome with job_result, then optionally raises."
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("outcome = 'success'\nreason = ''\ncrash = False", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from ats.jobs import job_result\njob_result(outcome, reason, items=3, failed=['X'])"),
                nbformat.v4.new_code_cell("assert not crash, 'crashed after reporting'")]
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_a_notebook_reports_its_outcome_to_run_job_and_history(project):
    make_reporting_job(project / "jobs")
    st = Store(f"lmdb://{project}/db")
    kw = dict(jobs_dir=project / "jobs", runs_dir=project / "runs", store=st)
    r = run_job("sync", {"outcome": "partial", "reason": "1 of 3 items failed: X (not found)"}, **kw)
    assert (r.status, r.reason, r.counts) == ("partial", "1 of 3 items failed: X (not found)", {"items": 3, "failed": ["X"]})
    assert run_job("sync", {"outcome": "empty", "reason": "nothing to do"}, **kw).status == "empty"
    crashed = run_job("sync", {"outcome": "success", "crash": "true"}, **kw)       # raising wins over what was reported
    assert crashed.status == "failed" and crashed.reason == "AssertionError: crashed after reporting"
    bad = run_job("sync", {"outcome": "ok"}, **kw)
    assert bad.status == "failed" and "status must be success, partial or empty, not 'ok'" in bad.reason
    h = job_history(st, "sync")
    assert list(h["status"]) == ["failed", "failed", "empty", "partial"] and h["reason"][3] == "1 of 3 items failed: X (not found)"
    assert h["counts"][3] == {"items": 3, "failed": ["X"]}


def test_history_written_before_reasons_keeps_its_runs(project):
    import pandas as pd
    make_reporting_job(project / "jobs")
    st = Store(f"lmdb://{project}/db")
    t = pd.Timestamp("2026-11-30 22:00", tz="UTC")
    old = pd.DataFrame([dict(run_id="old-1", status="failed", finished_at=t, duration_s=1.0, parameters="{}", output_path="x.ipynb",
                             error="ValueError: boom", by="cron")], index=pd.DatetimeIndex([t], name="started_at"))
    st.library("jobs").write("runs.sync", old)                                  # the columns of the first release
    run_job("sync", {"reason": "fine"}, jobs_dir=project / "jobs", runs_dir=project / "runs", store=st)
    h = job_history(st, "sync")
    assert list(h["run_id"])[1] == "old-1" and list(h["status"]) == ["success", "failed"]
    assert list(h["reason"]) == ["fine", "ValueError: boom"]


@pytest.mark.parametrize("outcome,code", [("success", 0), ("partial", 3), ("empty", 4)])
def test_cli_exit_code_and_one_line_reason_follow_the_reported_status(project, outcome, code):
    run_ats("init", cwd=project, check=True)
    make_reporting_job(project / "data_and_research" / "jobs")
    r = run_ats("jobs", "run", "sync", "-p", "outcome", outcome, "-p", "reason", "2 of 2 items failed: X (gone); Y (gone)", cwd=project)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert r.stderr == ("" if outcome == "success" else f"{outcome}: 2 of 2 items failed: X (gone); Y (gone)\n")
    h = json.loads(run_ats("jobs", "history", "--json", cwd=project, check=True).stdout)[0]
    assert h["status"] == outcome and h["reason"] == "2 of 2 items failed: X (gone); Y (gone)"


def test_what_the_kernel_process_prints_goes_to_its_log_not_to_the_user(project):
    """ipykernel writes its own log lines (and, on a busy machine, a shutdown race's traceback) to the kernel process's
    stderr, which used to be the terminal of whoever ran the job: the one-line reason drowned in 20 lines of zmq."""
    run_ats("init", cwd=project, check=True)
    folder = project / "data_and_research" / "jobs"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("import os\nos.write(2, b'kernel noise on fd 2\\n')\nprint('cell output')")]
    nbformat.write(nb, folder / "noisy.ipynb")
    r = run_ats("jobs", "run", "noisy", cwd=project)
    assert r.returncode == 0 and "kernel noise" not in r.stderr + r.stdout, r.stderr
    logs = list((project / "data_and_research" / "runs" / "noisy").glob("*.kernel.log"))
    assert len(logs) == 1 and "kernel noise on fd 2" in logs[0].read_text()


def test_one_run_of_a_job_at_a_time_across_processes(project):
    "A job run by hand while its scheduled run is going (another process) is refused with who holds it, then runs again after."
    import subprocess, sys, time
    from ats.jobs import JobBusy
    make_job(project / "jobs")
    nb = nbformat.read(project / "jobs" / "squares.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(n)"))
    nbformat.write(nb, project / "jobs" / "squares.ipynb")
    other = subprocess.Popen([sys.executable, "-c", "import sys; from ats.jobs import run_job; "
                              f"run_job('squares', {{'n': 20}}, jobs_dir={str(project / 'jobs')!r}, runs_dir={str(project / 'runs')!r}, by='scheduler')"])
    try:
        lock = project / "runs" / "squares" / ".running"
        end = time.monotonic() + 60
        while not (lock.exists() and "by scheduler" in lock.read_text()) and time.monotonic() < end: time.sleep(0.1)
        with pytest.raises(JobBusy, match=r"job 'squares' is already running \(pid \d+ since .* UTC, by scheduler\); one run of a job at a time"):
            run_job("squares", {"n": 1}, jobs_dir=project / "jobs", runs_dir=project / "runs")
    finally:
        other.kill(); other.wait(10)
    assert run_job("squares", {"n": 1}, jobs_dir=project / "jobs", runs_dir=project / "runs").status == "success"   # a killed holder frees it
