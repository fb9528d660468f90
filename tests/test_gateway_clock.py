"""The paper account's clock never runs backwards: it is kept with the account, a restarted gateway continues after it,
`--fresh` starts a new account at [gateway] start_date, and fills carry the simulated time they happened at."""
import datetime as dt, signal, subprocess, time
import pandas as pd
from ib_async import IB, Stock, MarketOrder, Order
from ats.store import StrategyConfig
from ats.ledger import LedgerStore
from ats.gateway.service import GatewayThread
from ats.supervisor import free_port
from conftest import ATS, run_ats
from runtime_helpers import Session, make_project, PROBE

FAR_STOPS = "ATS_STOP_LOSS__DEFAULT_STOP_PCT=0.9\nATS_STOP_LOSS__PROFIT_TARGET_RATIO=0\nATS_STOP_LOSS__TIME_BASED_STOP=0\n"
NY = "America/New_York"


def executions(port, cid=90) -> list:
    "The account's executions as reqExecutions reports them to a separate API client, in the order they were booked."
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=cid, timeout=10)
    try: return sorted(ib.reqExecutions(), key=lambda f: f.execution.execId)
    finally: ib.disconnect()


def test_three_runtime_sessions_on_one_account_keep_fills_and_equity_in_time_order(project):
    s, st = make_project(project, env=FAR_STOPS, strategies=dict(probe=PROBE),
                         configs=[StrategyConfig("probe.py", "probe", True, dict(symbols=["IBM"], qty=5), {}, 0.5)])
    state = project / "data_and_research" / "db" / "gateway_state.json"
    fills, samples = [], []                     # per session: the new execution times, the new equity sample times
    seen_fills, seen_samples = 0, 0
    for k in range(3):
        # like `ats up`: the first session starts a new account at the start date, the next ones pass no start
        gw = GatewayThread(data="sample", speed=0, state_path=state, **(dict(start="2006-01-03") if k == 0 else {})).start()
        try:
            sess = Session(s, st, gw).start()
            try: sess.step(4)
            finally: sess.stop()
            ex = executions(gw.port)
        finally:
            gw.stop()
        fills.append([f.execution.time for f in ex[seen_fills:]]); seen_fills = len(ex)
        eq = LedgerStore(st).equity("probe").index
        samples.append(list(eq[seen_samples:])); seen_samples = len(eq)
    assert all(len(f) >= 2 for f in fills) and all(len(x) >= 2 for x in samples), (fills, samples)   # every session traded
    every = [t for f in fills for t in f]
    assert every == sorted(every) and len(set(every)) == len(every), fills                  # strictly increasing, across sessions
    for a, b in zip(fills, fills[1:]):
        assert max(a) < min(b) and not {t.date() for t in a} & {t.date() for t in b}, fills   # no day played twice
    for a, b in zip(samples, samples[1:]):
        assert max(a) < min(b) and not {t.date() for t in a} & {t.date() for t in b}, samples
    assert fills[0][0].date() >= dt.date(2006, 1, 3)


def start(project, port, *args):
    p = subprocess.Popen([ATS, "gateway", "--port", str(port), *args], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    while "listening" not in seen:                        # printed once it serves; Ctrl-C is handled right after
        line = p.stdout.readline()
        assert line, seen                                 # it exited
        seen += line
    time.sleep(0.3)
    p.banner = seen
    return p


def stop(p) -> str:
    p.send_signal(signal.SIGINT); p.wait(20)
    return p.stdout.read()


def refused(project, port, *args) -> subprocess.CompletedProcess:
    "A gateway start that must fail at once (a gateway that serves instead would run until the timeout)."
    r = run_ats("gateway", "--port", str(port), *args, cwd=project, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    return r


def test_a_restart_continues_an_earlier_start_is_refused_and_fresh_starts_a_new_account_at_start_date(project):
    run_ats("init", cwd=project, check=True)                 # [gateway] start_date = 2004-01-02
    port = free_port()
    gw = start(project, port, "--speed", "432000")         # a day every 0.2 s
    ib = IB(); ib.connect("127.0.0.1", port, clientId=7, timeout=10)
    c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
    ib.placeOrder(c, MarketOrder("BUY", 10)); ib.sleep(1.5)
    ib.disconnect()
    stop(gw)
    gw = start(project, port, "--speed", "0")                # a kept account: its clock continues
    ex = executions(port)
    ib = IB(); ib.connect("127.0.0.1", port, clientId=8, timeout=10)
    now = ib.reqCurrentTime(); ib.disconnect()
    stop(gw)
    assert len(ex) == 1 and now > ex[0].execution.time and now.date() > dt.date(2004, 1, 6)
    r = refused(project, port, "--speed", "0", "--start", "2004-01-02")
    assert f"--start 2004-01-02 is before the paper account's clock ({now.date()}" in r.stdout and "--fresh" in r.stdout
    gw = start(project, port, "--speed", "0", "--fresh")
    ib = IB(); ib.connect("127.0.0.1", port, clientId=9, timeout=10)
    assert ib.reqCurrentTime().date() == dt.date(2004, 1, 2) and ib.positions() == [] and ib.reqExecutions() == []
    ib.disconnect()
    stop(gw)
    assert "clock 2004-01-02" in gw.banner


def test_a_clock_at_the_end_of_the_data_says_so_and_what_to_do(project):
    run_ats("init", cwd=project, check=True)
    port = free_port()
    stop(start(project, port, "--speed", "0", "--start", "2013-12-31"))     # the sample's last day
    r = refused(project, port, "--speed", "0")
    assert "clock is at 2013-12-31" in r.stdout and "ends on 2013-12-31" in r.stdout, r.stdout
    assert "--fresh" in r.stdout and "load data that goes past 2013-12-31" in r.stdout


def test_an_order_placed_while_the_market_is_shut_fills_at_the_next_open_stamped_with_the_open(tmp_path):
    with GatewayThread(data="sample", speed=0, state_path=tmp_path / "s.json", start="2006-01-03") as g:
        g.call(g.gw.step, 1)                                 # after this session's close the market is shut
        ib = IB(); ib.connect("127.0.0.1", g.port, clientId=1, timeout=10)
        c = Stock("IBM", "SMART", "USD"); ib.qualifyContracts(c)
        moc = Order(action="SELL", totalQuantity=40, orderType="MOC")
        mkt, close = ib.placeOrder(c, MarketOrder("BUY", 100)), ib.placeOrder(c, moc)
        ib.sleep(0.3)
        assert mkt.orderStatus.status == close.orderStatus.status == "Submitted"          # waiting for the open
        g.call(g.gw.step, 1)
        ib.sleep(0.3)
        day = g.gw.days[g.gw.day]
        bar = g.gw.bars[c.conId].loc[day]
        ex = {f.execution.side: f.execution for f in ib.reqExecutions()}
        ib.disconnect()
    assert abs(ex["BOT"].price - bar.open * 1.0001) < 1e-3 and abs(ex["SLD"].price - bar.close) < 1e-3
    open_ = pd.Timestamp(f"{day.date()} 09:30", tz=NY).tz_convert("UTC")
    assert pd.Timestamp(ex["BOT"].time) == open_                                  # 14:30 UTC in January, not 21:00
    assert pd.Timestamp(ex["SLD"].time) == pd.Timestamp(f"{day.date()} 16:00", tz=NY).tz_convert("UTC")


def test_ats_up_says_why_the_gateway_would_not_start_and_fresh_starts_a_new_account(project):
    "The gateway's refusal reaches the user of `ats up` as one clear message (no traceback); `ats up --fresh` is the way out."
    import shutil
    from conftest import ROOT
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    run_ats("init", cwd=project, check=True)
    port = free_port()
    stop(start(project, port, "--speed", "0", "--start", "2013-12-31"))     # the account's clock at the sample's last day
    r = run_ats("up", "--minutes", "0.1", cwd=project, env={"IB_PORT": str(port)}, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "paper gateway exited with code 2 before it was ready" in r.stderr and "clock is at 2013-12-31" in r.stderr and "--fresh" in r.stderr
    r = run_ats("up", "--minutes", "0.15", "--fresh", "--every", "5", cwd=project, env={"IB_PORT": str(port)}, timeout=180)
    assert r.returncode == 0 and "summary:" in r.stdout, r.stdout + r.stderr
