"The jobs page in a real Voila server, driven in headless Chromium: schedules, run history, alerts, and its buttons."
import dataclasses, datetime as dt
from zoneinfo import ZoneInfo
import nbformat
from playwright.sync_api import expect
from conftest import run_ats
from browser_helpers import needs_chromium, served, chromium

pytestmark = needs_chromium
UTC = dt.timezone.utc


def _job_notebook(path):
    "A tiny job: a `greeting` parameter, reported back as the run's reason."
    par = nbformat.v4.new_code_cell('greeting = "hi"'); par.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell('import time\nfrom ats.jobs import job_result\ntime.sleep(1)\njob_result("success", f"said {greeting}")')
    nbformat.write(nbformat.v4.new_notebook(cells=[par, body]), path)


def _seed(project) -> dict:
    "A project with a schedule of the tiny job, four recorded runs (one with its output notebook) and two alerts."
    from ats.alerts import Alerter
    from ats.config import load_settings
    from ats.jobs import JobRun, RUNS_DIR, record_run
    from ats.scheduler import add_schedule
    from ats.store import Store
    from ats.supervisor import free_port
    run_ats("init", cwd=project, check=True)
    s = load_settings(project / "settings.ini")
    jobs = s.path("data_and_research/jobs"); jobs.mkdir(parents=True, exist_ok=True)
    _job_notebook(jobs / "hello.ipynb")
    st = Store.from_settings(s, create=False)
    add_schedule(st, s, "hello_morning", "hello", "30 6 * * *", {"greeting": "bonjour"}, timezone="Europe/London")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    runs = [("hello", "failed", 4, "ValueError: boom"), ("report", "success", 3, "5 symbols"),
            ("report", "partial", 2, "3 of 5 symbols"), ("report", "empty", 1, "nothing new")]
    for i, (job, status, days, reason) in enumerate(runs):
        t = now - dt.timedelta(days=days)
        record_run(st, JobRun(job, f"{t:%Y%m%d-%H%M%S}-run{i}", status, t, t + dt.timedelta(seconds=12), 12.0, reason=reason,
                              output_path=str(s.path(RUNS_DIR) / job / f"{t:%Y%m%d-%H%M%S}-run{i}.ipynb")))
    partial = f"{now - dt.timedelta(days=2):%Y%m%d-%H%M%S}-run2"
    out = s.path(RUNS_DIR) / "report"; out.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Report output: 42 rows checked")]), out / f"{partial}.ipynb")
    # e-mail to a port nobody listens on: the delivery fails, and the page must say so; a WARNING is only recorded
    cfg = dataclasses.replace(s.alerts, email_alerts=True, email_to=["ann@example.com"], smtp_host="127.0.0.1", smtp_port=free_port(),
                              delivery_timeout=5.0)
    al = Alerter(cfg, store=st, source="scheduler", log=False)
    al.alert("WARNING", "disk 91 % full")
    al.alert("ERROR", "schedule report: job report failed: boom")
    assert al.flush(30); al.close()
    del st
    return dict(settings=s, partial=partial)


def _next_london_0630() -> dt.datetime:
    lon = ZoneInfo("Europe/London")
    now = dt.datetime.now(lon)
    t = dt.datetime.combine(now.date(), dt.time(6, 30), tzinfo=lon)
    return t if t > now else dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(6, 30), tzinfo=lon)


def _colour(page, selector: str) -> str:
    return page.locator(selector).first.evaluate("e => getComputedStyle(e).backgroundColor")


def test_trader_sees_jobs_pauses_resumes_and_runs_one_now(project, tmp_path):
    from ats.jobs import job_history
    from ats.scheduler import get_schedule
    from ats.store import Store
    seeded = _seed(project)
    nxt = _next_london_0630()
    with served(project, "jobs", {"ATS_USER": "trader-ann"}) as url, chromium() as page:
        page.goto(url, timeout=60000)
        row = page.locator(".ats-schedule-hello_morning")
        row.wait_for(timeout=60000)
        text = row.inner_text()
        # the schedule with its cron, zone, next run in London and UTC, and its job's last run
        assert "30 6 * * *" in text and "Europe/London" in text and "active" in text
        assert f"{nxt:%Y-%m-%d %H:%M %Z} ({nxt.astimezone(UTC):%H:%M} UTC)" in text, text
        assert "failed" in text and "ValueError: boom" in text
        # the history, newest first, each status a badge of its colour (dark theme: green, amber, grey, red)
        hist = page.locator(".ats-jobs-history")
        assert hist.locator(".ats-badge").all_inner_texts() == ["empty", "partial", "success", "failed"]
        assert "3 of 5 symbols" in hist.inner_text() and "12.0 s" in hist.inner_text()
        assert _colour(page, ".ats-jobs-history .ats-st-success") == "rgb(63, 185, 80)"
        assert _colour(page, ".ats-jobs-history .ats-st-partial") == "rgb(210, 153, 34)"
        assert _colour(page, ".ats-jobs-history .ats-st-empty") == "rgb(145, 152, 161)"
        assert _colour(page, ".ats-jobs-history .ats-st-failed") == "rgb(248, 81, 73)"
        # the alerts: level, source, message, and where each went
        alerts = page.locator(".ats-jobs-alerts").inner_text()
        assert "job report failed: boom" in alerts and "scheduler" in alerts and "ERROR" in alerts
        assert "email ann@example.com: FAILED" in alerts and "recorded only" in alerts
        # the one run with an archived output notebook links to it; the link opens its content, read-only
        links = hist.locator("a.ats-run-link")
        assert links.count() == 1 and f"run=report/{seeded['partial']}" in links.get_attribute("href")
        with page.context.expect_page() as opened:
            links.click()
        view = opened.value
        view.wait_for_selector("iframe.ats-run-frame", timeout=60000)
        assert "Report output: 42 rows checked" in view.frame_locator("iframe.ats-run-frame").locator("body").inner_text(timeout=30000)
        assert "3 of 5 symbols" in view.locator(".ats-page").inner_text()
        view.screenshot(path=str(tmp_path / "jobs-run.png"))
        view.close()

        st = Store.from_settings(seeded["settings"], create=False)
        # Pause, then Resume: the stored schedule changes (the scheduler reads it), the button says what it will do
        page.click(".ats-pause-hello_morning")
        expect(page.locator(".ats-pause-hello_morning")).to_have_text("Resume", timeout=30000)
        assert get_schedule(st, "hello_morning").paused and "paused" in row.inner_text()
        page.click(".ats-pause-hello_morning")
        expect(page.locator(".ats-pause-hello_morning")).to_have_text("Pause", timeout=30000)
        s = get_schedule(st, "hello_morning")
        assert not s.paused and s.resumed_at is not None

        # Run now: a real `ats jobs run hello -p greeting bonjour`; a second press while it runs is refused
        page.click(".ats-run-now-hello_morning")
        expect(page.locator(".ats-jobs-message")).to_contain_text("started hello", timeout=30000)
        page.click(".ats-run-now-hello_morning")
        expect(page.locator(".ats-jobs-message")).to_contain_text("still running", timeout=30000)
        # the page refreshes by itself: the run appears in the history with its success, and as the schedule's last run
        done = hist.locator("tr", has_text="said bonjour")
        expect(done).to_have_count(1, timeout=90000)
        assert done.locator(".ats-badge").inner_text() == "success" and "hello" in done.inner_text()
        assert "trader-ann" in done.inner_text()                          # run as the dashboard's user
        expect(row).to_contain_text("said bonjour", timeout=30000)
        expect(page.locator(".ats-jobs-message")).to_contain_text("has finished", timeout=30000)
        assert "success" in row.inner_text()
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)     # what a trader sees
    h = job_history(st, "hello")
    assert h.iloc[0]["status"] == "success" and h.iloc[0]["parameters"] == {"greeting": "bonjour"} and h.iloc[0]["by"] == "trader-ann"
    assert "job hello: success" in (project / "logs" / "jobs-run-now.log").read_text()
