"ats.data against a real ArcticDB on LMDB: incremental ingest, never-shortening refreshes, batch reads, universes, quality."
import multiprocessing as mp, time
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from ats.data import (COLUMNS, ArcticSource, DataSourceError, RandomWalkSource, SampleSource, SourceUnavailable, bar_symbol,
                      get_source, ingest, load_prices, list_universes, load_universe, quality_report, read_bars, read_prices,
                      read_universe_csv, resolve_universe, save_universe, symbol_lock, UNIVERSES_DIR)
from ats.store import Store


@pytest.fixture
def store(tmp_path):
    return Store(f"lmdb://{tmp_path}/db?map_size=1GB")


class Recording:
    "A real source that remembers which ranges it was asked for (the ranges are what users pay for with external sources)."
    def __init__(self, inner, shift: float = 0.0):
        self.inner, self.shift, self.asked, self.name = inner, shift, [], "recording"
    def symbols(self): return self.inner.symbols()
    def bars(self, symbol, start=None, end=None, bar_size="1 day"):
        self.asked.append((symbol, start, end))
        b = self.inner.bars(symbol, start, end, bar_size)
        return b + self.shift if self.shift else b          # "fresh" values differ from the stored ones


def test_bars_have_the_standard_format(store):
    for src in (SampleSource(), RandomWalkSource(seed=3, end="2012-12-31")):
        b = src.bars("IBM", "2011-01-01", "2011-12-31")
        assert list(b.columns) == COLUMNS and all(b.dtypes == "float64")
        assert str(b.index.tz) == "UTC" and b.index.name == "time" and b.index.is_monotonic_increasing and b.index.is_unique
        assert b.index[0] >= pd.Timestamp("2011-01-01", tz="UTC") and b.index[-1] <= pd.Timestamp("2011-12-31", tz="UTC")
    aapl = SampleSource().bars("AAPL")
    assert (aapl.adj_close != aapl.close).any()              # adjusted close is kept beside the raw close
    ingest(store, SampleSource(), ["AAPL"], progress=False)
    assert store.library("market_data").has_symbol("AAPL.1d")
    pd.testing.assert_frame_equal(read_bars(store, "AAPL"), aapl, check_freq=False)


def test_a_short_refresh_never_shortens_ten_years(store):
    src = RandomWalkSource(seed=7, start="2014-01-01", end="2023-12-29")
    rep = ingest(store, src, ["SPY"], progress=False)
    full = read_bars(store, "SPY")
    assert rep.results[0].added == len(full) > 2500
    # a refresh of only the last week, with fresh values that differ from the stored ones
    fresh = Recording(src, shift=1.0)
    rep = ingest(store, fresh, ["SPY"], start="2023-12-22", progress=False)
    after = read_bars(store, "SPY")
    assert len(after) == len(full) and after.index[0] == full.index[0]                      # ten years remain
    assert rep.results[0].added == 0 and rep.results[0].updated == 1 and rep.results[0].total == len(full)
    # only the last stored bar was asked for again, and it took the fresh value (replaced, not duplicated)
    assert fresh.asked == [("SPY", pd.Timestamp("2023-12-29", tz="UTC"), None)]
    assert after.close.iloc[-1] == full.close.iloc[-1] + 1.0
    pd.testing.assert_frame_equal(after.iloc[:-1], full.iloc[:-1])


def test_incremental_ingest_asks_only_for_missing_bars_and_replaces_overlap(store):
    long = RandomWalkSource(seed=1, start="2020-01-01", end="2020-12-31")
    ingest(store, RandomWalkSource(seed=1, start="2020-01-01", end="2020-06-30"), ["XYZ"], progress=False)
    n_before = len(read_bars(store, "XYZ"))
    rec = Recording(long, shift=0.5)
    rep = ingest(store, rec, ["XYZ"], progress=False)
    assert rec.asked == [("XYZ", pd.Timestamp("2020-06-30", tz="UTC"), None)]
    r = rep.results[0]
    after = read_bars(store, "XYZ")
    assert after.index.is_unique and len(after) == len(long.bars("XYZ"))
    assert r.added == len(after) - n_before and r.updated == 1 and r.requested_from == pd.Timestamp("2020-06-30", tz="UTC")
    # bars before the overlap are untouched; from the overlap on they carry the fresh values
    assert after.loc[:"2020-06-29"].close.equals(long.bars("XYZ", end="2020-06-29").close)
    assert np.allclose(after.loc["2020-06-30":].close, long.bars("XYZ", "2020-06-30").close + 0.5)
    # nothing new: the source is asked for the last bar only, and nothing is added
    rep = ingest(store, long, ["XYZ"], progress=False)
    assert rep.results[0].added == 0 and rep.results[0].total == len(after)


def test_backfill_before_the_stored_history(store):
    src = RandomWalkSource(seed=2, start="2015-01-01", end="2020-12-31")
    ingest(store, src, ["QQQ"], start="2018-01-01", progress=False)
    assert read_bars(store, "QQQ").index[0] == pd.Timestamp("2018-01-01", tz="UTC")
    rec = Recording(src)
    rep = ingest(store, rec, ["QQQ"], start="2016-01-01", progress=False)
    b = read_bars(store, "QQQ")
    assert b.index[0] == pd.Timestamp("2016-01-01", tz="UTC") and b.index.is_unique
    pd.testing.assert_frame_equal(b, src.bars("QQQ", "2016-01-01"), check_freq=False)
    assert rec.asked[0] == ("QQQ", pd.Timestamp("2016-01-01", tz="UTC"), pd.Timestamp("2018-01-01", tz="UTC"))
    assert rep.results[0].added == len(src.bars("QQQ", "2016-01-01", "2017-12-31"))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 500), min_size=1, max_size=4), refresh=st.integers(0, 520))
def test_any_sequence_of_partial_ingests_equals_one_full_ingest(tmp_path_factory, cuts, refresh):
    "Ingesting in pieces (any order of end dates, any short refresh) stores exactly what one full ingest stores."
    store = Store(f"lmdb://{tmp_path_factory.mktemp('h')}/db?map_size=1GB")
    src = RandomWalkSource(seed=5, start="2019-01-01", end="2020-12-31")
    days = src.bars("ABC").index
    for c in cuts:
        ingest(store, src, ["ABC"], end=days[c], progress=False)
    ingest(store, src, ["ABC"], start=days[min(refresh, len(days) - 1)], progress=False)
    ingest(store, src, ["ABC"], start=days[0], progress=False)
    pd.testing.assert_frame_equal(read_bars(store, "ABC"), src.bars("ABC"), check_freq=False)


def test_failures_are_collected_per_symbol_and_progress_can_be_disabled(store, capsys):
    rep = ingest(store, SampleSource(), ["AAPL", "NOPE", "MSFT"], progress=False)
    assert [r.symbol for r in rep.results] == ["AAPL", "NOPE", "MSFT"]
    assert [r.symbol for r in rep.errors] == ["NOPE"] and "bundled sample has no 'NOPE'" in rep.errors[0].error
    assert rep.results[2].added == 3270 and capsys.readouterr().err == ""
    f = rep.frame
    assert list(f.columns)[:6] == ["symbol", "added", "updated", "first", "last", "total"] and f.loc[1, "error"]
    ingest(store, RandomWalkSource(seed=1, end="2010-03-01"), ["A", "B"], progress=True)
    assert "ingest random" in capsys.readouterr().err        # a tqdm bar for multi-symbol work


def test_an_unreachable_source_stops_the_run_and_writes_nothing(store):
    class Offline:
        name = "offline"
        def symbols(self): return []
        def bars(self, symbol, start=None, end=None, bar_size="1 day"):
            raise SourceUnavailable("no network: test")
    with pytest.raises(SourceUnavailable, match="no network"):
        ingest(store, Offline(), ["AAPL", "MSFT"], progress=False)
    assert store.library("market_data").list_symbols() == []


def _ingest_in_process(uri, seed, q):
    try:
        from ats.data import ingest, RandomWalkSource
        from ats.store import Store
        st = Store(uri)
        for k in range(6):    # six overlapping refreshes each: many chances to collide on the same symbol
            ingest(st, RandomWalkSource(seed=seed, start="2015-01-01", end=f"2015-0{k + 2}-28"), ["SAME"], progress=False)
        q.put("ok")
    except Exception as e:
        q.put(f"{type(e).__name__}: {e}")


def test_one_writer_per_symbol_across_processes(tmp_path):
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    Store(uri)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_ingest_in_process, args=(uri, s, q)) for s in (1, 2)]
    for p in ps: p.start()
    res = [q.get(timeout=50) for _ in ps]
    for p in ps: p.join(10)
    assert res == ["ok", "ok"]
    b = read_bars(Store(uri), "SAME")
    assert b.index.is_unique and b.index[-1] == pd.Timestamp("2015-07-28", tz="UTC")


def _ingest_after_ready(uri, q):
    from ats.data import ingest, SampleSource
    from ats.store import Store
    st = Store(uri)
    q.put("ready")
    ingest(st, SampleSource(), ["IBM"], progress=False)
    q.put(("done", time.time()))


def test_a_writer_waits_while_another_process_holds_the_symbol(tmp_path):
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    st = Store(uri)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_ingest_after_ready, args=(uri, q))
    with symbol_lock(st, bar_symbol("IBM")):
        p.start()
        assert q.get(timeout=30) == "ready"
        time.sleep(1.0)
        assert q.empty() and not st.library("market_data").has_symbol("IBM.1d")   # blocked on our lock
        released = time.time()
    done, t = q.get(timeout=30)
    p.join(10)
    assert done == "done" and t >= released and len(read_bars(st, "IBM")) == 3270


def test_read_prices_is_one_batch_and_errors_name_the_missing(store):
    ingest(store, SampleSource(), ["AAPL", "GOOG", "IBM"], progress=False)
    px = read_prices(store, ["GOOG", "AAPL"], start="2005-01-01", end="2005-12-31")
    assert list(px.columns) == ["GOOG", "AAPL"] and px.index.name == "time" and str(px.index.tz) == "UTC"
    assert px.index[0] == pd.Timestamp("2005-01-03", tz="UTC") and not px.isna().any().any()
    adj = read_prices(store, ["AAPL"], field="adj_close")
    assert (adj.AAPL != read_prices(store, ["AAPL"], adjusted=False).AAPL).any()
    with pytest.raises(DataSourceError, match="for MSFT, SPY; ingest them first"):
        read_prices(store, ["AAPL", "MSFT", "SPY"])
    with pytest.raises(ValueError, match="field 'price'"):
        read_prices(store, ["AAPL"], field="price")
    with pytest.raises(DataSourceError, match="no 1 day bars of TSLA"):
        read_bars(store, "TSLA")
    # GOOG starts in 2004: a batch over symbols with different histories is outer-joined
    allpx = read_prices(store, ["AAPL", "GOOG"])
    assert allpx.GOOG.first_valid_index() == pd.Timestamp("2004-08-19", tz="UTC") and allpx.AAPL.notna().all()
    assert ArcticSource(store).symbols() == ["AAPL", "GOOG", "IBM"]


def test_sources_by_name_and_bad_arguments():
    assert get_source("sample").name == "sample" and get_source("random", seed=4).seed == 4
    with pytest.raises(DataSourceError, match="valid sources: sample, random, arctic, yfinance, alpha_vantage, quandl, ib"):
        get_source("bloomberg")
    with pytest.raises(DataSourceError, match="needs a connected ib_async IB"):
        get_source("ib")
    with pytest.raises(DataSourceError, match="arctic source reads the database"):
        get_source("arctic")
    with pytest.raises(DataSourceError, match="daily bars only"):
        SampleSource().bars("AAPL", bar_size="5 mins")
    with pytest.raises(ValueError, match="bar size '2 days'"):
        bar_symbol("AAPL", "2 days")
    with pytest.raises(ValueError, match="date 'yesterday-ish'"):
        ingest("lmdb:///tmp/unused-never-created", SampleSource(), ["AAPL"], start="yesterday-ish", progress=False)
    assert bar_symbol(" msft ", "1 hour") == "MSFT.1h"


def test_universes_are_versioned_and_the_bundled_csv_is_valid(store):
    us = read_universe_csv(UNIVERSES_DIR / "us_equities.csv")
    assert list(us.columns) == ["symbol", "name", "exchange", "sector", "bundled_data"]
    bundled = us[us.bundled_data == "yes"].symbol.tolist()
    assert sorted(bundled) == SampleSource().symbols()
    for etf in ("SPY", "QQQ", "ACWI", "TLT"): assert etf in us.symbol.tolist()
    v0 = save_universe(store, "us_equities", us)
    v1 = save_universe(store, "us_equities", us[us.bundled_data == "yes"])
    assert v1 == v0 + 1 and list_universes(store) == ["us_equities"]
    assert save_universe(store, "us_equities", us[us.bundled_data == "yes"]) == v1            # unchanged: no new version
    assert len(load_universe(store, "us_equities")) == 4
    assert len(load_universe(store, "us_equities", as_of_version=v0)) == len(us)
    assert resolve_universe("us_equities").symbol.tolist() == us.symbol.tolist()     # bundled CSV by name
    assert resolve_universe(["aapl", "ibm"]).symbol.tolist() == ["AAPL", "IBM"]
    with pytest.raises(KeyError, match="no universe 'nasdaq100'.*stored universes: us_equities"):
        load_universe(store, "nasdaq100")
    with pytest.raises(ValueError, match="listed twice: AAPL"):
        save_universe(store, "dup", pd.DataFrame({"symbol": ["AAPL", "aapl"]}))
    with pytest.raises(ValueError, match="needs a 'symbol' column; it has ticker"):
        save_universe(store, "bad", pd.DataFrame({"ticker": ["AAPL"]}))
    with pytest.raises(ValueError, match="neither a CSV file, a bundled universe \\(us_equities"):
        resolve_universe("no such thing")
    # universes live beside the bars without being mistaken for bars
    ingest(store, SampleSource(), ["IBM"], progress=False)
    assert ArcticSource(store).symbols() == ["IBM"] and quality_report(store).symbol.tolist() == ["IBM"]


def test_quality_report_finds_gaps_duplicates_bad_prices_and_stale_symbols(store):
    lib = store.library("market_data")
    good = RandomWalkSource(seed=9, start="2024-01-01", end="2024-03-29").bars("GOOD")
    lib.write("GOOD.1d", good)
    bad = good.drop(good.index[20:23]).copy()              # three business days missing in a row
    bad.iloc[5, bad.columns.get_loc("close")] = 0.0        # a zero price
    bad.iloc[6, bad.columns.get_loc("high")] = bad.iloc[6].low - 1   # high below low
    bad = pd.concat([bad, bad.iloc[[10]]]).sort_index()    # a duplicated bar
    lib.write("BAD.1d", bad)
    lib.write("OLD.1d", good.loc[:"2024-02-29"])
    q = quality_report(store, as_of="2024-03-29").set_index("symbol")
    assert q.loc["GOOD", "problems"] == "" and not q.loc["GOOD", "stale"]
    b = q.loc["BAD"]
    assert (b.gaps, b.max_gap_days, b.duplicates, b.non_positive, b.bad_ohlc) == (1, 3, 1, 1, 2)
    assert "1 gaps" in b.problems and "1 duplicates" in b.problems and "1 non positive" in b.problems
    assert q.loc["OLD", "stale"] and "stale (21 business days old)" in q.loc["OLD", "problems"]
    missing = quality_report(store, ["NOPE"]).iloc[0]
    assert missing.bars == 0 and missing.stale and "no bars" in missing.problems
    # the bundled sample: real market closures (9/11, hurricane Sandy) show up as gaps
    ingest(store, SampleSource(), ["IBM"], progress=False)
    ibm = quality_report(store, ["IBM"], as_of="2013-03-01").iloc[0]
    assert ibm.gaps >= 2 and ibm.max_gap_days == 4 and not ibm.stale and ibm.non_positive == 0


def test_the_research_api_reads_adjusted_prices_by_default_and_raw_ones_by_name(store):
    """One price basis for signals: AAPL's 2:1 split on 2005-02-28 is no -50 % day in what `read_prices` and
    `load_prices` give by default (what the research notebook and `ats backtest` read); the raw closes keep it."""
    ingest(store, SampleSource(), ["AAPL"], progress=False)
    days = dict(start="2005-02-22", end="2005-03-04")
    for get in (lambda **k: read_prices(store, ["AAPL"], **days, **k), lambda **k: load_prices("sample", ["AAPL"], **days, **k),
                lambda **k: load_prices("arctic", ["AAPL"], **days, store=store, **k)):
        adj, raw = get().AAPL, get(adjusted=False).AAPL
        assert adj.pct_change().abs().max() < 0.1                               # AAPL moved at most 5.3 % a day that week
        assert raw.pct_change().min() == pytest.approx(44.86 / 88.99 - 1)      # the split, as traded
        assert raw.pct_change().idxmin() == pd.Timestamp("2005-02-28", tz="UTC")
        # opens are on the same basis as closes: the overnight gap into the split day is no -50 % either
        o = get(field="open").AAPL
        assert (o / adj.shift(1) - 1).abs().max() < 0.1
    assert (read_prices(store, ["AAPL"], field="adj_close").AAPL == read_prices(store, ["AAPL"]).AAPL).all()
