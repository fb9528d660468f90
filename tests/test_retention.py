"Retention: old detailed data goes, fills and daily bars stay; old versions are pruned; the runner's caches stay bounded."
import json, time
from pathlib import Path
import pandas as pd
import pytest
from ats.config import load_settings
from ats.store import Store, StrategyConfig
from ats.ledger import LedgerStore, FILLS, EQUITY
from ats.retention import cleanup, MEMORY_CHECK_INTERVAL
from conftest import run_ats

NOW = pd.Timestamp("2025-06-30", tz="UTC")


def _frame(idx, **cols):
    return pd.DataFrame({k: v for k, v in cols.items()} or {"close": 1.0}, index=pd.DatetimeIndex(idx, name="time"))


def _days(start, end, freq="D"):
    return pd.date_range(start, end, freq=freq, tz="UTC")


def seed(project):
    "A project database with two years of everything: intraday and daily bars, fills, equity, alerts, job runs and their notebooks."
    s = load_settings(None)                               # the defaults, the database in the project folder
    st = Store.from_settings(s)
    md, pf, jobs = st.library("market_data"), st.library("portfolios"), st.library("jobs")
    md.write("AAPL.1h", _frame(_days("2023-07-01", "2025-06-29", "h"), close=1.0))
    md.write("AAPL.1d", _frame(_days("2023-07-01", "2025-06-29"), close=1.0))
    for i in range(3):                                   # versions pile up: the same daily bars rewritten
        md.write("MSFT.1d", _frame(_days("2023-07-01", "2025-06-29"), close=float(i)))
    old_fill = dict(exec_id="e1", strategy="s", con_id=1, symbol="AAPL", quantity="1", price="1", time=pd.Timestamp("2023-07-03"),
                    currency="USD", multiplier="1", commission="0", order_id=1, perm_id=1, order_ref="s:1", account="DU1")
    pf.write(FILLS, pd.DataFrame([old_fill], index=pd.DatetimeIndex([pd.Timestamp("2023-07-03", tz="UTC")], name="written_at")))
    pf.write(EQUITY, pd.DataFrame({"strategy": "s", "net": "1"}, index=pd.DatetimeIndex(_days("2023-07-01", "2025-06-29"), name="written_at")))
    jobs.write("alerts.runner", pd.DataFrame({"level": "WARNING", "message": "m"}, index=pd.DatetimeIndex(_days("2024-01-01", "2025-06-01", "MS"), name="time")))
    runs_dir = project / "data_and_research" / "runs" / "ingest"
    runs_dir.mkdir(parents=True, exist_ok=True)
    starts = [pd.Timestamp("2023-08-01 06:00", tz="UTC"), pd.Timestamp("2025-06-01 06:00", tz="UTC")]
    ids = [f"{t:%Y%m%d-%H%M%S}-abc{i}" for i, t in enumerate(starts)]
    for rid in ids: (runs_dir / f"{rid}.ipynb").write_text("{}")
    jobs.write("runs.ingest", pd.DataFrame({"run_id": ids, "status": "success", "output_path": [str(runs_dir / f"{r}.ipynb") for r in ids]},
                                           index=pd.DatetimeIndex(starts, name="started_at")))
    return s, st, runs_dir, ids


def counts(st):
    md, pf, jobs = st.library("market_data"), st.library("portfolios"), st.library("jobs")
    return {"AAPL.1h": len(md.read("AAPL.1h").data), "AAPL.1d": len(md.read("AAPL.1d").data), "fills": len(pf.read(FILLS).data),
            "equity": len(pf.read(EQUITY).data), "alerts": len(jobs.read("alerts.runner").data), "runs": len(jobs.read("runs.ingest").data),
            "MSFT versions": len(md.list_versions("MSFT.1d"))}


def test_cleanup_deletes_old_detail_keeps_fills_daily_bars_and_recent_rows(project):
    s, st, runs_dir, ids = seed(project)
    before = counts(st)
    assert before["MSFT versions"] == 3
    rep = cleanup(st, s, now=NOW)
    after = counts(st)
    cutoff = NOW - pd.Timedelta(days=365)
    md, pf, jobs = st.library("market_data"), st.library("portfolios"), st.library("jobs")
    # old intraday bars, equity samples, alerts and job runs are gone; the last 365 days are all there
    for sym, lib, name in (("AAPL.1h", md, "AAPL.1h"), (EQUITY, pf, "equity"), ("alerts.runner", jobs, "alerts"), ("runs.ingest", jobs, "runs")):
        idx = lib.read(sym).data.index
        assert idx.min() >= cutoff, sym
        assert after[name] == before[name] - next(r.rows_deleted for r in rep.symbols if r.symbol == sym) > 0
    assert after["AAPL.1h"] == len(_days(cutoff.tz_localize(None), "2025-06-29", "h"))
    assert list(jobs.read("runs.ingest").data["run_id"]) == [ids[1]]
    # the old run's archived notebook is deleted, the recent one kept
    assert not (runs_dir / f"{ids[0]}.ipynb").exists() and (runs_dir / f"{ids[1]}.ipynb").exists()
    assert rep.files_deleted == [str(runs_dir / f"{ids[0]}.ipynb")]
    # fills and daily bars untouched however old; strategy configs keep their history
    assert after["fills"] == before["fills"] == 1 and after["AAPL.1d"] == before["AAPL.1d"]
    assert md.read("AAPL.1d").data.index.min() == pd.Timestamp("2023-07-01", tz="UTC")
    # old versions pruned: MSFT's daily bars had 3, keep 1 (the newest)
    assert after["MSFT versions"] == 1 and md.read("MSFT.1d").data["close"].iloc[0] == 2.0
    assert next(r for r in rep.symbols if r.symbol == "MSFT.1d").versions_pruned == 2
    assert rep.stored_bytes_after < rep.stored_bytes_before and rep.disk_bytes_before > 0
    # a second run finds nothing more to do
    again = cleanup(st, s, now=NOW)
    assert again.rows_deleted == 0 and again.versions_pruned == 0 and not again.files_deleted


def test_dry_run_changes_nothing(project):
    s, st, runs_dir, ids = seed(project)
    before = counts(st)
    rep = cleanup(st, s, now=NOW, dry_run=True)
    assert rep.rows_deleted > 0 and rep.versions_pruned == 2 and len(rep.files_deleted) == 1
    assert counts(st) == before
    assert (runs_dir / f"{ids[0]}.ipynb").exists()


def test_ats_cleanup_json_reports_and_deletes(project):
    s, st, runs_dir, ids = seed(project)
    (project / ".env").write_text("ATS_MEMORY__DATA_RETENTION_DAYS=30\n")     # the seeded data is all older than 30 days from now
    dry = run_ats("cleanup", "--dry-run", "--json", cwd=project, check=True)
    d = json.loads(dry.stdout)
    assert d["dry_run"] is True and d["rows_deleted"] > 0 and d["stored_bytes_before"] > 0
    assert {r["symbol"] for r in d["symbols"] if r["rows_deleted"]} >= {"AAPL.1h", "ledger.equity", "alerts.runner", "runs.ingest"}
    assert not {r["symbol"] for r in d["symbols"] if r["rows_deleted"]} & {"AAPL.1d", "ledger.fills"}
    # while a runner runs, only it may change the symbols it writes: `ats cleanup` refuses (a dry run is fine)
    from ats.status import write_status
    import threading
    beating = threading.Event()
    def heartbeat():                       # a live runner refreshes its status every second (a stale one counts as dead)
        while not beating.wait(0.5): write_status(st, dict(as_of=pd.Timestamp.now(tz="UTC").isoformat(), running=True))
    write_status(st, dict(as_of=pd.Timestamp.now(tz="UTC").isoformat(), running=True))
    beat = threading.Thread(target=heartbeat); beat.start()
    try: busy = run_ats("cleanup", cwd=project)
    finally: beating.set(); beat.join()
    assert busy.returncode == 2 and "a runner is running" in busy.stderr and "--dry-run" in busy.stderr
    write_status(st, dict(as_of=pd.Timestamp.now(tz="UTC").isoformat(), running=False, stop_reason="test"))
    r = run_ats("cleanup", "--json", cwd=project, check=True)
    done = json.loads(r.stdout)
    assert done["dry_run"] is False and done["rows_deleted"] == d["rows_deleted"] and done["versions_pruned"] >= 2
    assert "disk_bytes_before" in done and "disk_bytes_after" in done
    assert len(st.library("market_data").read("AAPL.1h").data) == 0 and len(st.library("market_data").read("AAPL.1d").data) > 700
    assert len(st.library("portfolios").read(FILLS).data) == 1
    text = run_ats("cleanup", "--dry-run", cwd=project, check=True).stdout
    assert "would delete 0 row(s)" in text and "stored" in text and "on disk" in text


@pytest.fixture
def gateway(project):
    from ats.gateway.service import GatewayThread
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    yield gw
    gw.stop()


def test_runner_bounds_its_bar_cache_and_sheds_caches_above_the_memory_threshold(project, gateway, monkeypatch):
    from runtime_helpers import Session, make_project, wait_for, PROBE
    import ats.retention as retention
    monkeypatch.setattr(retention, "MEMORY_CHECK_INTERVAL", 0.1)
    s, st = make_project(project, strategies=dict(probe=PROBE), configs=[StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.2)])
    s.performance.data_cache_size = 0.1           # MB: 233 bars at 450 bytes a bar (the settings allow ≥ 1 MB; a test needs less)
    sess = Session(s, st, gateway).start()
    try:
        h = sess.rt.history["MSFT"]
        cap = int(0.1 * 2**20 / retention.BYTES_PER_BAR)
        assert wait_for(lambda: len(h) == cap and h.keep == cap), (len(h), h.keep)     # two years were loaded: ~500 bars
        last = h.last
        sess.step(3)
        assert len(h) <= cap * 1.1 and h.last > last
        assert not [a for a in sess.rt.alerts if "cache_cleanup_threshold" in a["message"]]
        # memory is now 'short': 10 % of 64 MB is far below any Python process
        s.memory.max_memory_usage, s.memory.cache_cleanup_threshold = 64.0, 0.1
        need = retention.bars_needed(sess.rt)["MSFT"]
        assert need < cap
        assert wait_for(lambda: len(h) == need), len(h)
        assert wait_for(lambda: any("cache_cleanup_threshold" in a["message"] for a in sess.rt.alerts), 10)   # said (a busy box: later)
        time.sleep(0.5)                               # several more checks above the threshold: still one alert
        warn = [a for a in sess.rt.alerts if "cache_cleanup_threshold" in a["message"]]
        assert len(warn) == 1 and warn[0]["level"] == "WARNING" and "64 MB" in warn[0]["message"]
        last, fills = h.last, len(sess.rt.ledger.fills)
        sess.step(2)                                  # the strategy still trades on the trimmed history
        assert h.last > last and len(h) <= need * 1.1 + 1
        assert wait_for(lambda: len(sess.rt.ledger.fills) > fills)
    finally:
        sess.stop()


def test_the_broker_clients_memory_of_done_orders_is_bounded_and_no_fill_is_lost(project, gateway, monkeypatch):
    "ib_async remembers every order of the session: the runner keeps the newest max_trades_in_memory done ones per connection."
    from runtime_helpers import Session, make_project, wait_for, PROBE
    import ats.retention as retention
    monkeypatch.setattr(retention, "MEMORY_CHECK_INTERVAL", 0.1)
    s, st = make_project(project, strategies=dict(probe=PROBE), configs=[StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.2)])
    s.memory.max_trades_in_memory = 10
    sess = Session(s, st, gateway).start()
    try:
        sess.step(16)                                  # the probe buys every day: a parent and its stop (and target) each time
        w = sess.rt.slots["probe"].conn.ib.wrapper
        assert wait_for(lambda: sum(t.isDone() for t in w.trades.values()) <= 10), sum(t.isDone() for t in w.trades.values())
        assert len(sess.rt.ledger.fills) >= 14                                         # every fill is still in the ledger
        assert all(not t.isDone() for t in sess.rt.slots["probe"].conn.ib.openTrades())  # working orders (the stops) are kept
        assert len(sess.rt.slots["probe"].conn.ib.openTrades()) >= 1
        fills = len(sess.rt.ledger.fills)
        sess.step(2)
        assert wait_for(lambda: len(sess.rt.ledger.fills) > fills)                      # and trading goes on
    finally:
        sess.stop()
