"The job scheduler: cron in the exchange's time zone, one run at a time, coalesced catch-up, real papermill kernels."
import datetime as dt, json, os, shutil, signal, subprocess, time, uuid
from pathlib import Path

import nbformat
import pytest

from ats.config import load_settings, render_ini
from ats.jobs import JobRun, job_history
from ats.scheduler import (Scheduler, ScheduleError, add_schedule, list_schedules, next_runs, pause_schedule, read_state,
                           remove_schedule, resume_schedule)
from ats.store import Store
from conftest import ATS, ROOT, run_ats

UTC = dt.timezone.utc


def make_job(folder: Path, name: str, params: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture
def proj(project):
    "Settings, store and two job notebooks in a project folder: `sleepy` (sleeps, can fail) and `daily` (instant)."
    (project / "settings.ini").write_text(render_ini())
    s = load_settings(project / "settings.ini")
    jobs = s.path("data_and_research/jobs")
    make_job(jobs, "sleepy", "seconds = 0.0\nfail = False", "import time\ntime.sleep(seconds)\nassert not fail, 'asked to fail'\nprint('slept', seconds)")
    make_job(jobs, "daily", "universe = 'us_equities'\ncount = 1", "print(universe, count)")
    return s, Store.from_settings(s, create=True)


class Instant:
    "A runner that finishes at once (no kernel) and notes the scheduler's clock and the parameters of each run."
    def __init__(self): self.calls, self.now = [], None

    def __call__(self, s, params, timeout):
        self.calls.append((self.now, params))
        t = dt.datetime.now(UTC)
        return JobRun(job=s.job, run_id=uuid.uuid4().hex[:8], status="success", started_at=t, finished_at=t, parameters=params)


def drive(sch: Scheduler, runner: Instant, start: dt.datetime, hours: float, step_min: int = 15) -> None:
    for k in range(int(hours * 60 / step_min) + 1):
        runner.now = start + dt.timedelta(minutes=k * step_min)
        sch.run_pending(runner.now); sch.wait()


def test_fire_times_are_new_york_weekdays_across_both_dst_changes(proj):
    s, st = proj
    spring = dt.datetime(2026, 3, 5, 12, tzinfo=UTC)               # Thursday; New York moves to EDT on Sunday 8 March
    add_schedule(st, s, "daily", "daily", "0 6 * * 1-5", now=spring)
    r = Instant()
    sch = Scheduler(st, s, runner=r, reload_every=0)
    drive(sch, r, spring, 24 * 5)
    # 06:00 New York on weekdays only: 11:00 UTC in winter (Friday), 10:00 UTC in summer (Monday on), nothing at the weekend
    assert [t.strftime("%a %d %H:%M") for t, _ in r.calls] == ["Fri 06 11:00", "Mon 09 10:00", "Tue 10 10:00"]
    autumn = dt.datetime(2026, 10, 30, 9, tzinfo=UTC)              # Friday; back to EST on Sunday 1 November
    assert next_runs(st, autumn)[0]["next_utc"] == "2026-10-30T10:00:00+00:00"
    assert next_runs(st, dt.datetime(2026, 10, 30, 12, tzinfo=UTC))[0]["next_utc"] == "2026-11-02T11:00:00+00:00"
    assert next_runs(st, autumn)[0]["next_local"] == "2026-10-30T06:00:00-04:00"
    sch.stop("test")


def test_a_schedule_runs_its_notebook_in_a_kernel_and_an_overlapping_time_is_skipped_not_queued(proj):
    s, st = proj
    t0 = dt.datetime(2026, 6, 1, 13, 59, 30, tzinfo=UTC)
    add_schedule(st, s, "nap", "sleepy", "* * * * *", {"seconds": "3"}, now=t0)
    alerts, events = [], []
    sch = Scheduler(st, s, on_alert=lambda lvl, msg: alerts.append((lvl, msg)), on_event=events.append, reload_every=0)
    assert sch.run_pending(t0) == []                               # 13:59:30: nothing due yet
    started = sch.run_pending(dt.datetime(2026, 6, 1, 14, 0, 1, tzinfo=UTC))
    assert [r.schedule for r in started] == ["nap"]
    assert sch.run_pending(dt.datetime(2026, 6, 1, 14, 1, 1, tzinfo=UTC)) == []   # the 14:00 run is still sleeping in its kernel
    runs = sch.wait(timeout=120)
    assert [r.status for r in runs] == ["success"] and runs[0].parameters == {"seconds": 3.0}
    out = Path(runs[0].output_path)
    assert out.parent == s.path("data_and_research/runs/sleepy") and "slept 3.0" in out.read_text()
    h = job_history(st, "sleepy")
    assert list(h["status"]) == ["skipped", "success"]            # recorded, not queued: one run only
    assert "nap at 2026-06-01 10:01 EDT: the run of 2026-06-01 10:00 EDT is still going" in h["reason"][0]
    assert [lvl for lvl, _ in alerts] == ["WARNING"] and "still going" in alerts[0][1]
    assert [e["event"] for e in events] == ["start", "skip", "finish"]
    assert read_state(st)["nap"]["status"] == "success"
    sch.stop("test")


def test_a_failing_notebook_is_recorded_failed_and_raises_an_error_alert(proj):
    s, st = proj
    t0 = dt.datetime(2026, 1, 5, 10, tzinfo=UTC)
    add_schedule(st, s, "broken", "sleepy", "30 5 * * *", {"fail": "true"}, now=t0)   # 05:30 New York = 10:30 UTC in winter
    alerts = []
    sch = Scheduler(st, s, on_alert=lambda lvl, msg: alerts.append((lvl, msg)), reload_every=0)
    assert sch.run_pending(dt.datetime(2026, 1, 5, 10, 29, tzinfo=UTC)) == []
    sch.run_pending(dt.datetime(2026, 1, 5, 10, 30, 2, tzinfo=UTC))
    [run] = sch.wait(timeout=120)
    assert run.status == "failed" and run.reason == "AssertionError: asked to fail"
    h = job_history(st, "sleepy")
    assert list(h["status"]) == ["failed"] and h["by"][0] == "scheduler (broken)" and Path(h["output_path"][0]).is_file()
    assert alerts == [("ERROR", f"schedule broken: job sleepy failed: AssertionError: asked to fail ({run.output_path})")]
    sch.stop("test")


def test_downtime_gives_one_catch_up_run_within_the_grace_time_and_a_recorded_skip_beyond(proj):
    s, st = proj
    assert s.jobs.misfire_grace_time == 3600
    add_schedule(st, s, "daily", "daily", "0 6 * * 1-5", now=dt.datetime(2026, 1, 5, 9, tzinfo=UTC))   # Monday 04:00 EST
    r, alerts = Instant(), []
    r.now = dt.datetime(2026, 1, 7, 11, 40, tzinfo=UTC)         # first start Wednesday 06:40 EST: Mon, Tue, Wed missed
    sch = Scheduler(st, s, runner=r, on_alert=lambda lvl, msg: alerts.append((lvl, msg)), reload_every=0)
    sch.run_pending(r.now); sch.wait()
    assert len(r.calls) == 1 and alerts == []                     # coalesced: Wednesday's 06:00 run, once
    assert read_state(st)["daily"]["last_fire"] == "2026-01-07T06:00:00-05:00"
    sch.stop("test")
    r.now = dt.datetime(2026, 1, 7, 11, 50, tzinfo=UTC)         # restarted 10 minutes later: it knows Wednesday ran
    sch = Scheduler(st, s, runner=r, on_alert=lambda lvl, msg: alerts.append((lvl, msg)), reload_every=0)
    sch.run_pending(r.now); sch.wait()
    assert len(r.calls) == 1
    r.now = dt.datetime(2026, 1, 9, 13, 0, tzinfo=UTC)          # Friday 08:00 EST: Thursday's and Friday's 06:00 missed
    sch.run_pending(r.now); sch.wait()
    assert len(r.calls) == 1                                     # Friday 06:00 is 2 h ago: beyond the hour of grace
    h = job_history(st, "daily")
    assert list(h["status"]) == ["skipped", "success"]
    assert "daily at 2026-01-09 06:00 EST: missed the run" in h["reason"][0] and "misfire_grace_time (3600 s)" in h["reason"][0]
    assert [lvl for lvl, _ in alerts] == ["WARNING"] and "missed the run of 2026-01-09 06:00 EST" in alerts[0][1]
    r.now = dt.datetime(2026, 1, 12, 11, 0, 30, tzinfo=UTC)     # and Monday 06:00 runs as usual
    sch.run_pending(r.now); sch.wait()
    assert len(r.calls) == 2
    pause_schedule(st, "daily")                                   # paused over Tuesday's run: not run, not "missed"
    sch.run_pending(dt.datetime(2026, 1, 13, 11, 0, 30, tzinfo=UTC)); sch.wait()
    resume_schedule(st, "daily", now=dt.datetime(2026, 1, 13, 11, 20, tzinfo=UTC))
    sch.run_pending(dt.datetime(2026, 1, 13, 11, 21, tzinfo=UTC)); sch.wait()
    assert len(r.calls) == 2 and len(alerts) == 1 and len(job_history(st, "daily")) == 3
    sch.stop("test")


def test_a_session_gets_minutes_to_its_end_and_is_never_started_while_a_runner_runs(proj):
    from ats.status import write_status
    s, st = proj
    shutil.copy(ROOT / "data_and_research" / "jobs" / "live_runner.ipynb", s.path("data_and_research/jobs"))
    add_schedule(st, s, "session", "live_runner", "25 9 * * 1-5", {"port": "4002"}, end="16:05", now=dt.datetime(2026, 7, 1, 12, tzinfo=UTC))
    r, alerts = Instant(), []
    sch = Scheduler(st, s, runner=r, on_alert=lambda lvl, msg: alerts.append((lvl, msg)), reload_every=0)
    write_status(st, dict(as_of=dt.datetime.now(UTC).isoformat(), running=True))      # a runner (`ats up`) is trading now
    r.now = dt.datetime(2026, 7, 1, 13, 25, 30, tzinfo=UTC)      # 09:25:30 EDT
    sch.run_pending(r.now); sch.wait()
    assert r.calls == [] and "a trading session is already running" in alerts[0][1]
    assert job_history(st, "live_runner")["status"].tolist() == ["skipped"]
    write_status(st, dict(as_of=dt.datetime.now(UTC).isoformat(), running=False))     # it stopped
    r.now = dt.datetime(2026, 7, 2, 13, 25, 30, tzinfo=UTC)
    sch.run_pending(r.now); sch.wait()
    assert r.calls == [(r.now, {"port": 4002, "minutes": 399.5})]   # 09:25:30 to 16:05 New York time
    sch.stop("test")


def test_bad_schedules_are_refused_with_what_to_fix_and_nothing_is_stored(proj):
    s, st = proj
    bad = [(dict(job="daily", cron="0 25 * * 1-5"), "cron '0 25 * * 1-5': hour field '25'"),
           (dict(job="daily", cron="0 6 * *"), "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
           (dict(job="daly", cron="0 6 * * 1-5"), "data_and_research/jobs; jobs: daily, sleepy"),
           (dict(job="daily", cron="0 6 * * 1-5", parameters={"univers": "SPY"}), "job 'daily' has no parameter 'univers'; its parameters: universe, count"),
           (dict(job="daily", cron="0 6 * * 1-5", parameters={"count": "many"}), "parameter count = 'many' is not a valid int"),
           (dict(job="daily", cron="0 6 * * 1-5", timezone="New York"), "unknown time zone 'New York'; use an IANA name"),
           (dict(job="daily", cron="0 6 * * 1-5", end="16:05"), "job 'daily' has no `minutes` parameter")]
    for kw, msg in bad:
        with pytest.raises(ScheduleError) as e:
            add_schedule(st, s, "x", **kw)
        assert msg in str(e.value)
        if "cron" in msg or "fields" in msg: assert "e.g. '0 6 * * 1-5' (06:00 Monday to Friday)" in str(e.value)
    assert list_schedules(st) == []
    add_schedule(st, s, "x", "daily", "0 6 * * 1-5")
    with pytest.raises(ScheduleError, match="a schedule named 'x' exists"):
        add_schedule(st, s, "x", "daily", "0 7 * * 1-5")
    pause_schedule(st, "x"); assert list_schedules(st)[0].paused
    resume_schedule(st, "x"); assert not list_schedules(st)[0].paused
    remove_schedule(st, "x")
    with pytest.raises(ScheduleError, match="no schedule named 'x'; schedules: none"):
        pause_schedule(st, "x")


def test_cli_manages_schedules_and_init_seeds_the_daily_download_once(project):
    r = run_ats("init", cwd=project, check=True)
    assert "schedule: us_stock_data_download added (download_us_stock_data, '0 6 * * 1-5' America/New_York" in r.stdout
    r = run_ats("jobs", "schedule", "add", "session", "--job", "live_runner", "--cron", "25 9 * * 1-5", "--until", "16:05",
                "-p", "strategies", "ma_crossover", cwd=project, check=True)
    assert "schedule session: live_runner at '25 9 * * 1-5' America/New_York until 16:05; next run" in r.stdout
    r = run_ats("jobs", "schedule", "add", "bad", "--job", "live_runner", "--cron", "25 9 * * 1-8", cwd=project)
    assert r.returncode == 2 and "error: cron '25 9 * * 1-8': day-of-week '1-8'" in r.stderr
    r = run_ats("jobs", "schedule", "add", "live_runner", "--cron", "0 12 * * 6", cwd=project, check=True)   # the job defaults to the name
    assert "schedule live_runner: live_runner at '0 12 * * 6'" in r.stdout, r.stdout
    run_ats("jobs", "schedule", "remove", "live_runner", cwd=project, check=True)
    run_ats("jobs", "schedule", "pause", "session", cwd=project, check=True)
    rows = {x["name"]: x for x in json.loads(run_ats("jobs", "schedule", "list", "--json", cwd=project, check=True).stdout)}
    assert set(rows) == {"session", "us_stock_data_download", "options_data_collection"} and rows["session"]["paused"] and rows["session"]["end"] == "16:05"
    seed = rows["us_stock_data_download"]
    assert (seed["job"], seed["cron"], seed["timezone"], seed["parameters"]) == (
        "download_us_stock_data", "0 6 * * 1-5", "America/New_York", {"universe": "us_equities", "progress": False, "source": "sample"})
    assert seed["next_local"].endswith(("T06:00:00-05:00", "T06:00:00-04:00"))
    run_ats("jobs", "schedule", "resume", "session", cwd=project, check=True)
    text = run_ats("jobs", "schedule", "list", cwd=project, check=True).stdout
    session_line = next(x for x in text.splitlines() if x.startswith("session "))     # (the seeded options collection stays paused)
    assert "25 9 * * 1-5 until 16:05" in session_line and "paused" not in session_line and ("06:00 EST" in text or "06:00 EDT" in text)
    run_ats("jobs", "schedule", "remove", "us_stock_data_download", cwd=project, check=True)
    r = run_ats("init", cwd=project, check=True)                 # a removed seed is the user's choice: not added again
    assert "us_stock_data_download was removed, not added again" in r.stdout
    assert [x["name"] for x in json.loads(run_ats("jobs", "schedule", "list", "--json", cwd=project, check=True).stdout)] == ["options_data_collection", "session"]


def test_scheduler_command_stops_on_sigterm_and_records_the_job_it_stopped(project):
    run_ats("init", cwd=project, check=True)
    s = load_settings(project / "settings.ini")
    make_job(s.path("data_and_research/jobs"), "sleepy", "seconds = 0.0", "open('started', 'w').close()\nimport time\ntime.sleep(seconds)")
    st = Store.from_settings(s)
    add_schedule(st, s, "nap", "sleepy", "* * * * *", {"seconds": "300"}, now=dt.datetime.now(UTC) - dt.timedelta(minutes=5))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))}
    p = subprocess.Popen([ATS, "scheduler"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline(), p.stdout.readline(), p.stdout.readline()]
        assert "schedule backup: added, daily ('30 2 * * *' America/New_York)" in lines[0], (lines, p.poll())   # [backup] auto_backup
        assert "scheduler started: 4 schedule(s), 4 at once" in lines[1], (lines, p.poll())   # with the seeded options_data_collection (paused)
        assert "start   nap (sleepy)" in lines[2]              # the latest missed minute, due when the scheduler came up
        for _ in range(600):                                           # the job's kernel is running its cell
            if (project / "started").exists() or p.poll() is not None: break
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=90)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 0, err
    assert "stopping (SIGTERM); stopping the running job(s), recorded as stopped: nap" in out and out.rstrip().endswith("scheduler stopped")
    h = job_history(st, "sleepy").query("status != 'skipped'")      # skipped: a minute that began while it slept
    assert list(h["status"]) == ["failed"] and h["reason"].iloc[0].startswith("stopped: the scheduler shut down (SIGTERM); ")
