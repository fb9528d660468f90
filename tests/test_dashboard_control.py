"""The trader's control dashboard in a real browser: `ats up` on the paper gateway serves it (Voila), headless Chromium
drives it. What a trader relies on: the five widgets show the account's real data, a row's stop stops that strategy in
the runner (and the audit log says who), the kill switch asks first and then halts and flattens, resume re-opens, the
dark theme applies, two browsers see the same state, and a runner that stops refreshing is shown as STALE."""
import datetime as dt, json, os, re, shutil, signal, subprocess, time
import pandas as pd
from decimal import Decimal
import psutil, pytest
from ib_async import IB
from ats.store import Store
from ats.supervisor import free_port, port_open
from conftest import ATS, ROOT, run_ats
from runtime_helpers import wait_for
from browser_helpers import CHROMIUM, ARGS, needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(420)]
USER = "trader-ann"
# the browser's Notification API, recorded: a headless browser shows nothing, the test reads what would have been shown
NOTIFY = ("window.__shown = []; window.Notification = function (t, o) { window.__shown.push(t + ': ' + ((o || {}).body || '')); };"
          "window.Notification.permission = 'granted'; window.Notification.requestPermission = () => Promise.resolve('granted');")


HOLDER = """from ats.strategy import Strategy
class Holder(Strategy):
    params = dict(symbols=["MSFT"], qty=1)
    def on_bar(self, bar):
        if not self.position[self.symbols[0]]: self.buy(self.symbols[0], self.p["qty"])
"""


def _status(project):
    from ats.status import read_status
    return read_status(Store(f"lmdb://{project}/data_and_research/db"))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    "`ats up` with the dashboard on a free port, the shipped strategies trading on the paper gateway."
    project = tmp_path_factory.mktemp("dash")
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    run_ats("init", cwd=project, check=True)
    # a holder keeps a position from its first bars (the shipped strategies hold one only now and then): the kill switch
    # always has something to flatten
    (project / "strategies" / "holder.py").write_text(HOLDER)
    run_ats("strategies", "add", "holder", 'symbols=["MSFT"]', "qty=3", "--active", cwd=project, check=True)
    ib_port, gui = free_port(), free_port()
    with open(project / "settings.ini", "a") as f:
        f.write("\n[gui]\ntheme = dark\nupdate_frequency = 300\nnotifications = true\nsound_alerts = true\n"
                "[dashboard]\nrefresh_intervals = portfolio: 1, strategies: 1, trades: 1, system: 1, market: 2\nmarket_symbols = SPY, AAPL\n")
    text = (project / "settings.ini").read_text()
    # the appended sections repeat [gui] / [dashboard]: fold them into the existing ones (a real user edits the lines in place)
    import configparser
    cp = configparser.ConfigParser(interpolation=None, strict=False); cp.optionxform = str; cp.read_string(text)
    with open(project / "settings.ini", "w") as f: cp.write(f)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {
        "IB_PORT": str(ib_port), "ATS_GUI__PORT": str(gui), "ATS_USER": USER, "ATS_JOBS__START_SCHEDULER": "false"}
    up = subprocess.Popen([ATS, "up", "--no-notebook", "--speed", "86400", "--every", "2"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_for(lambda: (d := _status(project)) and d.get("running") and any(s["fills"] for s in d["strategies"]), 180, every=0.5), \
            "the shipped strategies never traded"
        assert wait_for(lambda: port_open("127.0.0.1", gui), 60, every=0.5), "the dashboard never listened"
        yield dict(project=project, url=f"http://127.0.0.1:{gui}/voila/render/control.ipynb", ib_port=ib_port, up=up)
    finally:
        up.send_signal(signal.SIGTERM)
        try: out, _ = up.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL); out, _ = up.communicate()
        print(out[-3000:])


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1600, "height": 1400})
    page.add_init_script(NOTIFY)
    page.goto(url, timeout=90000)
    page.wait_for_selector(".ats-row-ma_crossover", timeout=90000)
    return page


def kernels(proc) -> list:
    "The notebook kernels under a process (Voila's pages and its waiting pool)."
    out = []
    for c in psutil.Process(proc.pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE: out.append(c)
        except psutil.Error: pass
    return out


def broker_positions(port) -> dict:
    "The positions the gateway reports to a separate API client (in a thread: Playwright's sync API holds this thread's loop)."
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    async def ask():
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=91, timeout=10)
        try: return {p.contract.symbol: p.position for p in await ib.reqPositionsAsync() if p.position}
        finally: ib.disconnect()
    with ThreadPoolExecutor(1) as ex: return ex.submit(asyncio.run, ask()).result()


def test_the_five_widgets_show_the_accounts_real_data_in_the_dark_theme(session, browser, tmp_path):
    page = open_page(browser, session["url"])
    doc = _status(session["project"])
    # portfolio_summary: the runner's NAV, and the account state
    page.wait_for_selector(".ats-kpi-nav b", timeout=30000)
    nav_txt = page.inner_text(".ats-kpi-nav b").split()[0].replace(",", "")
    assert abs(float(nav_txt) - doc["account"]["nav"]) / doc["account"]["nav"] < 0.05, (nav_txt, doc["account"]["nav"])
    assert page.inner_text(".ats-kpi-account b") == "ACTIVE"
    page.wait_for_selector(".ats-w-portfolio_summary .bk-Canvas, .ats-w-portfolio_summary canvas", timeout=30000)   # the equity chart
    # active_strategies: one row per strategy, running, with its client id
    for s in doc["strategies"]:
        row = page.inner_text(f".ats-row-{s['strategy']}")
        assert "running" in row and str(s["client_id"]) in row, row
    # recent_trades: the newest fill in the ledger is the first row
    from ats.ui.control import read_fills_tail
    store = Store(f"lmdb://{session['project']}/data_and_research/db")
    page.wait_for_selector(".ats-trades tr:nth-child(2)", timeout=30000)
    # the runner keeps trading: the ledger's newest fill (time and symbol) shows within a refresh or two
    def newest_shown():
        f = read_fills_tail(store, 1).iloc[0]
        return f"{pd.Timestamp(f['time']):%Y-%m-%d %H:%M}" in (text := page.inner_text(".ats-trades")) and f["symbol"] in text
    assert wait_for(newest_shown, 30, every=1.0), (read_fills_tail(store, 3), page.inner_text(".ats-trades"))
    # system_status: paper badge, the paper account, the broker's port
    sysw = page.inner_text(".ats-w-system_status")
    assert "PAPER" in sysw and "DU0000001" in sysw and str(session["ib_port"]) in sysw, sysw
    # market_overview: a price for each market symbol, as of the runner's trading day
    page.wait_for_selector(".ats-market td:has-text('SPY')", timeout=30000)
    market = page.inner_text(".ats-market")
    assert "AAPL" in market and "SPY" in market and "no bars" not in market, market
    # the dark theme is applied to the page
    bg = page.evaluate("getComputedStyle(document.querySelector('.ats-page')).backgroundColor")
    assert bg == "rgb(13, 17, 23)", bg
    page.screenshot(path=str(tmp_path / "control.png"), full_page=True)
    # a strategy's details: its positions with their stops, and the way to its parameters
    page.click(".ats-details-long_term_momentum")
    page.wait_for_selector(".ats-detail :text('positions and stops')", timeout=30000)
    assert page.get_attribute(".ats-detail a.ats-edit-params", "href") == "settings.ipynb?strategy=long_term_momentum"
    assert "lookback" in page.inner_text(".ats-detail") or "symbols" in page.inner_text(".ats-detail")     # its parameters
    page.close()
    # the status document the page reads carries the stop of every position held (default_stop_pct applies to all)
    def stops_cover_positions():
        d = _status(session["project"])
        held = {(p["strategy"], p["symbol"]) for p in d["positions"] if p["quantity"] and p["strategy"] != "_unassigned"}
        return held and held <= {(s["strategy"], s["symbol"]) for s in d["stops"]}
    assert wait_for(stops_cover_positions, 60, every=0.5), (_status(session["project"])["positions"], _status(session["project"])["stops"])


def test_stop_from_a_row_stops_the_strategy_and_the_audit_log_records_who(session, browser):
    a, b = open_page(browser, session["url"]), open_page(browser, session["url"])      # two traders at once
    a.click(".ats-stop-ma_crossover")
    t0 = time.monotonic()
    assert wait_for(lambda: {s["strategy"]: s["state"] for s in _status(session["project"])["strategies"]}["ma_crossover"] == "stopped", 10, every=0.05)
    took = time.monotonic() - t0
    a.wait_for_selector(".ats-message:has-text('stop ma_crossover: done')", timeout=20000)
    # the other browser sees the same state without doing anything
    b.wait_for_selector(".ats-row-ma_crossover:has-text('stopped')", timeout=20000)
    assert "running" in b.inner_text(".ats-row-long_term_momentum")
    from ats.control import command_log
    log = command_log(Store(f"lmdb://{session['project']}/data_and_research/db"))
    last = log[(log["action"] == "stop") & (log["target"] == "ma_crossover")].iloc[0]
    assert last["by"] == USER and last["source"] == "dashboard" and last["status"] == "done"
    print(f"row stop reached the runner in {took:.2f} s")
    # start it again from the same row
    a.click(".ats-start-ma_crossover")
    assert wait_for(lambda: {s["strategy"]: s["state"] for s in _status(session["project"])["strategies"]}["ma_crossover"] == "running", 20, every=0.1)
    a.close(); b.close()


def test_kill_switch_asks_then_halts_and_flattens_and_resume_reopens(session, browser):
    page = open_page(browser, session["url"])
    assert wait_for(lambda: broker_positions(session["ib_port"]), 60, every=1.0), "nothing held to flatten"
    page.check(".ats-kill-flatten input")
    page.click(".ats-kill-switch")
    # nothing happens before the confirmation
    page.wait_for_selector(".ats-confirm-yes", timeout=10000)
    assert "whole account" in page.inner_text(".ats-confirm") and "flatten" in page.inner_text(".ats-confirm")
    time.sleep(1.0)
    assert _status(session["project"])["risk"]["account"] == "ACTIVE"
    page.click(".ats-confirm-yes")
    t0 = time.monotonic()
    assert wait_for(lambda: _status(session["project"])["risk"]["account"] == "HALTED", 10, every=0.05)
    assert wait_for(lambda: not broker_positions(session["ib_port"]), 20, every=0.2), broker_positions(session["ib_port"])
    print(f"kill switch: the gateway was flat {time.monotonic() - t0:.2f} s after the confirmation")
    page.wait_for_selector(".ats-kpi-account b:has-text('HALTED')", timeout=20000)
    # the halt is an alert: shown in the panel, and as a browser notification (the tone is on in this project's settings)
    page.wait_for_selector(".ats-alerts:has-text('HALTED')", timeout=20000)
    assert wait_for(lambda: page.evaluate("window.__shown.length") > 0, 20, every=0.2)
    assert any("HALTED" in x or "halt" in x.lower() for x in page.evaluate("window.__shown")), page.evaluate("window.__shown")
    assert page.evaluate("window.__atsTones || 0") > 0
    # resume re-opens trading
    page.click(".ats-resume-all")
    assert wait_for(lambda: _status(session["project"])["risk"]["account"] == "ACTIVE", 10, every=0.05)
    page.wait_for_selector(".ats-kpi-account b:has-text('ACTIVE')", timeout=20000)
    page.close()


def test_a_runner_that_stops_refreshing_is_shown_stale(session, browser):
    "A runner hung (here: stopped with SIGSTOP) publishes nothing: the page says STALE instead of showing old numbers as live."
    page = open_page(browser, session["url"])
    pid = _status(session["project"])["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        page.wait_for_selector(".ats-banner.stale", timeout=30000)
        assert "STALE" in page.inner_text(".ats-banner")
        page.click(".ats-stop-long_term_momentum")               # a command to a runner that cannot answer is not pretended done
        page.wait_for_selector(".ats-message:has-text('no runner is running')", timeout=10000)
    finally:
        os.kill(pid, signal.SIGCONT)
    page.wait_for_selector(".ats-banner.stale", state="detached", timeout=30000)
    page.close()


def test_ats_dashboard_alone_shows_the_stored_state_as_not_running(project, browser):
    "Without a runner, `ats dashboard` serves the last stored state, labelled 'not running' with its age."
    from ats.status import write_status
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    run_ats("init", cwd=project, check=True)
    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=7)
    write_status(Store(f"lmdb://{project}/data_and_research/db"),
                 dict(as_of=t.isoformat(), running=False, stop_reason="the session length of 5 min was reached", host="127.0.0.1", port=7497,
                      account=dict(nav=1000123.0, base_currency="USD", day="2004-02-02", paper=True, id="DU0000001"), latency_ms={},
                      connections=[{"state": "disconnected"}], strategies=[dict(strategy="ma_crossover", state="stopped", client_id=3)],
                      positions=[], pnl=[], alerts=[], risk={"account": "ACTIVE"}))
    gui = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {"ATS_GUI__PORT": str(gui)}
    proc = subprocess.Popen([ATS, "dashboard"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: port_open("127.0.0.1", gui), 60, every=0.3), "ats dashboard did not serve"
        # the pre-started kernel waiting for the first visitor (its notebook executed), and nothing else
        assert wait_for(lambda: len(kernels(proc)) == 1, 60, every=0.5), kernels(proc)
        page = open_page(browser, f"http://127.0.0.1:{gui}/voila/render/control.ipynb")
        banner = page.inner_text(".ats-banner.stopped")
        # 7 min when written; a loaded machine can take a minute or two to get this far
        assert "not running" in banner and re.search(r"stopped [789] min ago", banner) and "session length" in banner, banner
        assert "1,000,123.00" in page.inner_text(".ats-kpi-nav")
        page.click(".ats-stop-ma_crossover")
        page.wait_for_selector(".ats-message:has-text('no runner is running')", timeout=10000)
        assert wait_for(lambda: len(kernels(proc)) == 2, 60, every=0.5)        # the page's kernel, and a fresh one waiting
        page.goto("about:blank")                                                   # the trader closes the tab or goes elsewhere
        page.close()
        # a closed page's kernel is shut down (it would otherwise refresh the dashboard for nobody until the server stops)
        assert wait_for(lambda: len(kernels(proc)) == 1, 30, every=0.5), [k.cmdline()[-1] for k in kernels(proc)]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "dashboard: http://127.0.0.1:" in out and re.search(r"runner: stopped [789] min ago", out), out
    assert not port_open("127.0.0.1", gui)
