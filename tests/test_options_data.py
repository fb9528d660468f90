"""Option chains: yfinance parsing on a recorded chain, snapshots in a real LMDB ArcticDB (same-day rerun replaces, the
next day adds), the quality report, the collect_options_data job under papermill, the seeded schedule, the errors; the
IB path end to end once the paper gateway serves options."""
import json, math, shutil, socket
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from ats.data import DataSourceError, SourceUnavailable
from ats.options_data import (CHAIN_COLUMNS, PacingViolation, RecordedOptionsSource, RecordedTicker, YFinanceOptionsSource,
                              connect_ib, gateway_has_options, options_quality_report, parse_yf_chain, read_chain, snapshot_days,
                              store_snapshot, with_pacing_retries)
from ats.store import Store

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "yfinance_options"
JOB = ROOT / "data_and_research" / "jobs" / "collect_options_data.ipynb"
RECORDED_AT = pd.Timestamp("2024-03-15 20:00", tz="UTC")           # SPY.json: the 15 March 2024 close, SPY at 509.83


def recorded(path=FIX / "SPY.json"):
    return json.loads(Path(path).read_text())


def spy(as_of=None):
    "SPY within 45 days and ±5 %: expirations 03-18, 03-22, 04-19 (06-21 is beyond), strikes 490-530 (480 and 540 are outside)."
    return RecordedOptionsSource(FIX).chain("SPY", horizon_days=45, moneyness=0.05, as_of=as_of)


@pytest.fixture
def store(tmp_path):
    return Store(f"lmdb://{tmp_path}/db?map_size=200MB")


# --- parsing what yfinance returns ---

def test_yfinance_frames_become_one_row_per_contract():
    doc = recorded()
    ch = RecordedTicker(FIX / "SPY.json").option_chain("2024-03-22")           # calls/puts DataFrames as yfinance returns them
    assert str(ch.calls["lastTradeDate"].dtype) == "datetime64[ns, UTC]" and len(ch.calls) == len(ch.puts) == 7
    rows = parse_yf_chain(ch.calls, ch.puts, "2024-03-22", "SPY", 509.83)
    assert len(rows) == 14 and [r["right"] for r in rows] == ["C"] * 7 + ["P"] * 7
    put500 = next(r for r in rows if r["right"] == "P" and r["strike"] == 500.0)
    raw = next(x for x in doc["chains"]["2024-03-22"]["puts"] if x["strike"] == 500.0)
    assert (put500["bid"], put500["ask"], put500["last"], put500["open_interest"], put500["implied_vol"]) == (
        raw["bid"], raw["ask"], raw["lastPrice"], raw["openInterest"], raw["impliedVolatility"])
    with pytest.raises(DataSourceError, match=r"lacks columns \['bid'\]; has yfinance changed its format"):
        parse_yf_chain(ch.calls.drop(columns="bid"), None, "2024-03-22", "SPY", 509.83)


def test_a_recorded_chain_gives_the_snapshot_within_horizon_and_moneyness():
    snap = spy()
    f = snap.frame
    assert list(f.columns) == CHAIN_COLUMNS and f.index.name == "as_of" and (f.index == RECORDED_AT).all()
    assert snap.as_of == RECORDED_AT and snap.underlying_price == 509.83 and snap.source == "recorded"
    assert snap.expirations == ["2024-03-18", "2024-03-22", "2024-04-19"] and snap.contracts == 3 * 5 * 2
    assert sorted(f.strike.unique()) == [490, 500, 510, 520, 530] and set(f.right) == {"C", "P"}
    assert f.groupby("expiry").size().tolist() == [10, 10, 10]
    c = f[(f.expiry == "2024-04-19") & (f.right == "C") & (f.strike == 520)].iloc[0]
    raw = next(x for x in recorded()["chains"]["2024-04-19"]["calls"] if x["strike"] == 520.0)
    assert tuple(c[["bid", "ask", "last", "volume", "open_interest", "implied_vol"]]) == (
        raw["bid"], raw["ask"], raw["lastPrice"], raw["volume"], raw["openInterest"], raw["impliedVolatility"])
    assert c.underlying == "SPY" and c.underlying_price == 509.83 and c.last_trade == pd.Timestamp(raw["lastTradeDate"])
    assert f[["delta", "gamma", "vega", "theta"]].isna().all().all()            # Yahoo sends no greeks
    p = f[(f.expiry == "2024-03-18") & (f.right == "P") & (f.strike == 490)].iloc[0]
    assert math.isnan(p.implied_vol)                                            # Yahoo's 1e-05 placeholder is no IV


def test_an_unknown_underlying_says_so():
    with pytest.raises(DataSourceError, match=r"recorded: no options listed for 'ZZZZ': not an optionable symbol \(a typo\?\)"):
        RecordedOptionsSource(FIX).chain("ZZZZ")
    with pytest.raises(DataSourceError, match=r"no recording of 'QQQ' in .*yfinance_options \(recorded: SPY, ZZZZ\)"):
        RecordedOptionsSource(FIX).chain("QQQ")
    with pytest.raises(DataSourceError, match=r"SPY has no expiration within 1 days of 2024-04-20 \(first listed: 2024-03-18\); raise horizon_days"):
        RecordedOptionsSource(FIX).chain("SPY", horizon_days=1, as_of="2024-04-20T20:00Z")


def test_yfinance_without_internet_fails_at_once_with_what_to_do():
    try:
        socket.create_connection(("query2.finance.yahoo.com", 443), timeout=3).close()
        pytest.skip("this machine can reach Yahoo")
    except OSError:
        pass
    with pytest.raises(SourceUnavailable) as e:
        YFinanceOptionsSource(timeout=5).chain("SPY")
    assert "no network: cannot reach query2.finance.yahoo.com:443" in str(e.value)
    assert "collect them from IB instead (-p source ib" in str(e.value) and "-p source recorded" in str(e.value)


def test_ib_not_reachable_says_what_to_start():
    with socket.socket() as s:                                                  # a port nothing listens on
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    with pytest.raises(SourceUnavailable) as e:
        connect_ib("127.0.0.1", port, 99, timeout=3)
    assert f"IB is not reachable at 127.0.0.1:{port} (ConnectionRefusedError)" in str(e.value)
    assert "start TWS / IB Gateway with the API enabled, or the paper gateway (`ats gateway`)" in str(e.value)
    from ib_async import IB
    from ats.options_data import IBOptionsSource
    with pytest.raises(SourceUnavailable, match="IB is not connected: start TWS / IB Gateway"):
        IBOptionsSource(IB(), progress=False).chain("SPY")
    with pytest.raises(ValueError, match="max_lines=120: IB allows 100 simultaneous market-data lines by default; use 1-100"):
        IBOptionsSource(IB(), max_lines=120)


def test_pacing_violations_are_retried_with_a_doubling_backoff_then_explained():
    calls, waits = [], []
    def flaky():
        calls.append(1)
        if len(calls) <= 3: raise PacingViolation("IB error 420: pacing violation")
        return "chain"
    assert with_pacing_retries(flaky, "the chain of SPY", retries=4, backoff=2.0, sleep=waits.append) == "chain"
    assert waits == [2.0, 4.0, 8.0]
    def always(): raise PacingViolation("IB error 100: Max rate of messages per second has been exceeded")
    waits.clear()
    with pytest.raises(DataSourceError) as e:
        with_pacing_retries(always, "market data of 90 SPY options", retries=2, backoff=1.0, sleep=waits.append)
    assert waits == [1.0, 2.0] and not isinstance(e.value, PacingViolation)
    assert str(e.value).startswith("IB kept refusing market data of 90 SPY options for pacing (IB error 100: Max rate of messages")
    assert "after 3 attempts over 3 s; lower max_lines" in str(e.value)


# --- storage and quality ---

def test_snapshots_are_stored_per_underlying_and_a_same_day_rerun_replaces(store):
    first = store_snapshot(store, spy())
    assert (first.underlying, first.day.isoformat(), first.contracts, first.replaced, first.total, first.days) == ("SPY", "2024-03-15", 30, 0, 30, 1)
    lib = store.library("options_data")
    assert lib.list_symbols() == ["SPY"]
    meta = lib.read_metadata("SPY").metadata
    assert meta["last_as_of"] == "2024-03-15T20:00:00+00:00" and meta["contracts"] == 30 and meta["underlying_price"] == 509.83
    assert meta["expirations"] == ["2024-03-18", "2024-03-22", "2024-04-19"] and meta["last_source"] == "recorded"
    # 23:30 UTC is still the 15th in New York: the same trading day, so it replaces the first snapshot
    again = store_snapshot(store, spy(as_of="2024-03-15T23:30Z"))
    assert (again.replaced, again.total, again.days) == (30, 30, 1)
    got = read_chain(store, "SPY")
    assert len(got) == 30 and (got.index == pd.Timestamp("2024-03-15 23:30", tz="UTC")).all()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), spy().frame.reset_index(drop=True), check_dtype=False)
    nxt = store_snapshot(store, spy(as_of="2024-03-18T20:00Z"))                # Monday: a day of its own
    assert (nxt.replaced, nxt.total, nxt.days) == (0, 60, 2) and snapshot_days(store, "SPY") == ["2024-03-15", "2024-03-18"]
    everything = lib.read("SPY").data
    assert sorted(set(everything.index)) == [pd.Timestamp("2024-03-15 23:30", tz="UTC"), pd.Timestamp("2024-03-18 20:00", tz="UTC")]
    assert len(read_chain(store, "SPY", as_of="2024-03-15T12:00Z")) == 30 and len(read_chain(store, "SPY", start="2024-03-01")) == 60
    with pytest.raises(KeyError, match="no option chains of QQQ in options_data; stored: SPY"):
        read_chain(store, "QQQ")


def test_quality_report_counts_per_expiry(store):
    store_snapshot(store, spy())
    q = options_quality_report(store, as_of="2024-03-15T21:00Z").set_index("expiry")
    assert [str(e) for e in q.index] == ["2024-03-18", "2024-03-22", "2024-04-19"]
    assert q.contracts.tolist() == [10, 10, 10] and q.calls.tolist() == [5, 5, 5] and q.puts.tolist() == [5, 5, 5]
    assert q.crossed.tolist() == [0, 0, 1]                  # 04-19 C 510: bid above ask
    assert q.zero_quotes.tolist() == [0, 1, 0]              # 03-22 C 530: no bid, no ask
    assert q.missing_iv.tolist() == [1, 0, 0]               # 03-18 P 490: Yahoo's placeholder
    assert q.stale.tolist() == [0, 0, 1]                    # 04-19 C 530: last traded 1 March
    assert q.missing_greeks.tolist() == [10, 10, 10] and q.snapshot_age_days.tolist() == [0, 0, 0]
    assert q.problems.tolist() == ["1 missing iv", "1 zero quotes", "1 crossed, 1 stale (no trade in 3 business days)"]
    later = options_quality_report(store, ["SPY", "QQQ"], as_of="2024-03-21T21:00Z")
    assert later.problems.iloc[0].endswith("snapshot 4 business days old") and later.iloc[-1].problems == "no snapshot stored"


# --- the job notebook and its schedule ---

def run_job(tmp_path, name, **params):
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(JOB), str(out), parameters=params, kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    return nbformat.read(out, as_version=4)


def test_job_collects_a_recorded_chain_and_a_rerun_replaces_the_day(tmp_path):
    from ats.jobs import read_job_result
    uri = f"lmdb://{tmp_path}/db?map_size=200MB"
    p = dict(source="recorded", recorded_dir=str(FIX), universe="SPY,ZZZZ", horizon_days=45, moneyness=0.05, db_uri=uri, progress=False)
    r = read_job_result(run_job(tmp_path, "first", **p))
    assert r.status == "partial" and r.counts == dict(underlyings=2, stored=1, failed=1, contracts=30, replaced=0)
    assert r.reason.startswith("1 of 2 underlyings failed: ZZZZ (recorded: no options listed for 'ZZZZ'") and r.reason.endswith("stored 30 contracts")
    nb = run_job(tmp_path, "second", **(p | dict(universe="SPY")))
    r = read_job_result(nb)
    assert r.status == "success" and r.reason == "1 underlying, 30 contracts stored, 30 rows of today's earlier snapshot replaced"
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "1 crossed, 1 stale" in text                                      # the quality report is in the record
    assert len(read_chain(Store(uri), "SPY")) == 30 and Store(uri).library("options_data").list_symbols() == ["SPY"]


def test_declared_parameters_for_the_job_runner():
    from ats.jobs import notebook_parameters
    p = notebook_parameters(JOB)
    assert {"universe", "source", "horizon_days", "moneyness", "max_lines", "recorded_dir", "as_of", "db_uri"} <= set(p)
    assert (p["horizon_days"]["type"], p["moneyness"]["type"], p["max_lines"]["type"]) == ("int", "float", "int")


def test_init_seeds_the_options_collection_at_four_pm_new_york_on_weekdays(project):
    from conftest import run_ats
    r = run_ats("init", cwd=project, check=True)
    assert "collect_options_data.ipynb" in r.stdout                            # the job notebook is copied into the project
    assert ("schedule: options_data_collection added paused (collect_options_data, '0 16 * * 1-5' America/New_York): "
            "[data] default_source = sample has no option chains; `ats jobs schedule resume options_data_collection` "
            "collects them from yfinance") in r.stdout
    rows = {x["name"]: x for x in json.loads(run_ats("jobs", "schedule", "list", "--json", cwd=project, check=True).stdout)}
    o = rows["options_data_collection"]
    assert (o["job"], o["cron"], o["timezone"], o["paused"]) == ("collect_options_data", "0 16 * * 1-5", "America/New_York", True)
    assert o["parameters"] == {"universe": "SPY,QQQ", "progress": False, "source": "yfinance"}
    assert o["next_local"].endswith(("T16:00:00-05:00", "T16:00:00-04:00")) and not rows["us_stock_data_download"]["paused"]
    assert pd.Timestamp(o["next_local"]).dayofweek < 5


def test_init_seeds_it_active_when_the_default_source_has_option_chains(tmp_path):
    from ats.config import load_settings
    from ats.scheduler import list_schedules, seed_schedules
    (tmp_path / "settings.ini").write_text("[data]\ndefault_source = ib\n")
    jobs = tmp_path / "data_and_research" / "jobs"
    jobs.mkdir(parents=True)
    shutil.copy(JOB, jobs / JOB.name)
    s = load_settings(tmp_path / "settings.ini")
    st = Store.from_settings(s, create=True)
    assert seed_schedules(st, s) == ["schedule: options_data_collection added (collect_options_data, '0 16 * * 1-5' America/New_York; "
                                     "`ats scheduler` runs it)"]
    (o,) = list_schedules(st)
    assert (o.name, o.paused, o.parameters["source"]) == ("options_data_collection", False, "ib")


# --- IB, end to end: needs option chains in the paper gateway (ats.gateway.options) ---

@pytest.mark.skipif(not gateway_has_options(), reason="the paper gateway does not serve option chains yet (no ats.gateway.options)")
def test_ib_chain_through_the_paper_gateway(tmp_path):
    from ib_async import IB
    from ats.gateway.service import GatewayThread
    from ats.options_data import IBOptionsSource
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path / "state.json", start="2005-01-03").start()
    ib = IB()
    try:
        ib.connect("127.0.0.1", g.port, clientId=17, timeout=5)
        src = IBOptionsSource(ib, max_lines=8, wait=10, progress=False)
        snap = src.chain("IBM", horizon_days=60, moneyness=0.10)
        f = snap.frame
        assert snap.source == "ib" and snap.contracts > 0 and snap.underlying_price > 0 and 0 < src.max_open <= 8
        assert set(f.right) == {"C", "P"} and (abs(f.strike / snap.underlying_price - 1) <= 0.10 + 1e-9).all()
        assert f[["bid", "ask", "implied_vol", "delta", "gamma", "vega", "theta"]].notna().all().all()
        assert f.loc[f.right == "C", "delta"].between(0, 1).all() and f.loc[f.right == "P", "delta"].between(-1, 0).all()
        st = Store(f"lmdb://{tmp_path}/db?map_size=200MB")
        assert store_snapshot(st, snap).contracts == snap.contracts
        assert (options_quality_report(st).missing_greeks == 0).all()
        with pytest.raises(DataSourceError, match="IB does not know the underlying 'NOSUCH'"):
            src.chain("NOSUCH")
    finally:
        ib.disconnect()
        g.stop()


def test_job_without_a_reachable_ib_fails_with_the_reason(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    uri = f"lmdb://{tmp_path}/db?map_size=200MB"
    with pytest.raises(pm.PapermillExecutionError) as e:
        run_job(tmp_path, "no_ib", source="ib", universe="SPY", ib_host="127.0.0.1", ib_port=port, db_uri=uri, progress=False)
    assert e.value.ename == "SourceUnavailable" and f"IB is not reachable at 127.0.0.1:{port}" in e.value.evalue
    assert Store(uri).library("options_data").list_symbols() == []
