"Batch ingest of a universe (ats.data.ingest_batch, chosen by ingest from BATCH_MIN_SYMBOLS symbols) on a real ArcticDB on LMDB."
import multiprocessing as mp, threading, time
import pandas as pd
import pytest

import ats.data as data
from ats.data import (DataSourceError, RandomWalkSource, RecordedSource, bar_symbol, ingest, ingest_batch, ingest_symbol,
                      read_bars, symbol_lock)
from ats.store import Store

SYMS = [f"U{i:02d}" for i in range(21)]           # at least BATCH_MIN_SYMBOLS: ingest() takes the batch path


@pytest.fixture
def recorded(tmp_path):
    "The universe's bars recorded as Parquet files (2016-2020), and the RecordedSource that reads them."
    src, d = RandomWalkSource(seed=4, start="2016-01-01", end="2020-12-31"), tmp_path / "recorded"
    d.mkdir()
    for s in SYMS: src.bars(s).to_parquet(d / f"{s}.parquet")
    return RecordedSource(d)


@pytest.fixture
def two_stores(tmp_path):
    return Store(f"lmdb://{tmp_path}/a?map_size=1GB"), Store(f"lmdb://{tmp_path}/b?map_size=1GB")


class Recording:
    "A real source that remembers the ranges it was asked for; `shift` makes fresh values differ from stored ones."
    def __init__(self, inner, shift=0.0, fail=()):
        self.inner, self.shift, self.fail, self.asked, self.name = inner, shift, set(fail), [], "recording"
    def bars(self, symbol, start=None, end=None, bar_size="1 day"):
        self.asked.append((symbol, start, end))
        if symbol in self.fail: raise DataSourceError(f"recorded failure for {symbol}")
        b = self.inner.bars(symbol, start, end, bar_size)
        return b + self.shift if self.shift else b


def _serial(store, src, syms, **kw):
    "Today's per-symbol path, as the reference."
    return pd.DataFrame([ingest_symbol(store, src, s, **kw).__dict__ for s in syms])


def _same(a, b, syms):
    for s in syms: pd.testing.assert_frame_equal(read_bars(a, s), read_bars(b, s))


def test_batch_ingest_equals_per_symbol_ingest_bar_for_bar(two_stores, recorded, monkeypatch):
    "First load, incremental refresh (appends), backfill and a refresh with changed values (updates), in chunks of 4."
    monkeypatch.setattr(data, "BATCH_MIN_SYMBOLS", 5); monkeypatch.setattr(data, "BATCH_CHUNK", 4)
    syms, a, b = SYMS[:10], *two_stores
    src = recorded
    steps = [(src, dict(start="2018-01-01", end="2019-06-30")),                     # first load
             (src, dict()),                                                         # only the missing bars
             (src, dict(start="2016-06-01")),                                       # backfill before the history
             (Recording(src, shift=0.25), dict(start="2020-12-01"))]                 # fresh values replace the overlap
    for source, kw in steps:
        ref = _serial(a, source, syms, **kw)
        rep = ingest(b, source, syms, progress=False, **kw)
        pd.testing.assert_frame_equal(rep.frame, ref)
        _same(a, b, syms)
    assert rep.frame.updated.eq(1).all() and not rep.errors
    full = src.bars("U03", "2016-06-01")
    pd.testing.assert_frame_equal(read_bars(b, "U03").iloc[:-1], full.iloc[:-1])
    assert read_bars(b, "U03").close.iloc[-1] == full.close.iloc[-1] + 0.25


def test_a_second_batch_run_asks_only_for_missing_bars(tmp_path, recorded):
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    long = recorded
    first = ingest(st, long, SYMS, end="2019-12-31", progress=False)
    assert first.frame.added.eq(len(long.bars("U00", end="2019-12-31"))).all()
    rec = Recording(long)
    rep = ingest(st, rec, SYMS, progress=False)
    last = pd.Timestamp("2019-12-31", tz="UTC")
    assert rec.asked == [(s, last, None) for s in SYMS]                       # one request per symbol, from the last bar
    assert rep.frame.added.eq(len(long.bars("U00", "2020-01-01"))).all() and rep.frame.updated.eq(1).all()
    for s in SYMS[:3]: pd.testing.assert_frame_equal(read_bars(st, s), long.bars(s))
    # stored history unchanged and later than the asked start: only the backfill and the tail are asked for
    rec = Recording(long)
    rep = ingest(st, rec, SYMS, start="2015-06-01", progress=False)
    assert rec.asked[:2] == [("U00", pd.Timestamp("2015-06-01", tz="UTC"), pd.Timestamp("2016-01-01", tz="UTC")),
                             ("U00", pd.Timestamp("2020-12-31", tz="UTC"), None)]
    assert rep.frame.added.eq(0).all() and rep.frame.total.eq(len(long.bars("U00"))).all()   # the recording starts in 2016


def test_failing_symbols_are_reported_and_the_others_stored(tmp_path, recorded):
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    src = recorded
    # a symbol stored with another layout: ArcticDB refuses the update of that one symbol inside the batch call
    st.library("market_data").write(bar_symbol("U05"), pd.DataFrame({"x": [1.0]}, index=pd.DatetimeIndex(["2020-06-01"], tz="UTC", name="time")))
    ingest(st, src, SYMS[:10], end="2020-06-30", progress=False)  # U00..U09 stored
    rep = ingest(st, Recording(src, fail={"U02", "U20"}), SYMS + ["BAD SYMBOL"], progress=False)
    errs = {r.symbol: r.error for r in rep.errors}
    assert set(errs) == {"U02", "U05", "U20", "BAD SYMBOL"} and "expected a ticker" in errs["BAD SYMBOL"]
    assert "recorded failure for U02" in errs["U02"] and "recorded failure for U20" in errs["U20"]
    assert errs["U05"].startswith("DataError:")
    assert [r.symbol for r in rep.results] == SYMS + ["BAD SYMBOL"]                               # report order is the asked order
    for r in rep.results:
        if r.symbol not in errs: pd.testing.assert_frame_equal(read_bars(st, r.symbol), src.bars(r.symbol))
    assert read_bars(st, "U02").index[-1] == pd.Timestamp("2020-06-30", tz="UTC")   # the failed refresh left it as it was
    assert not st.library("market_data").has_symbol(bar_symbol("U20"))


def _batch_writer(uri, folder, syms, chunk, q):
    try:
        from ats.data import ingest_batch, RecordedSource
        from ats.store import Store
        st = Store(uri)
        q.put("ready")
        src = RecordedSource(folder)
        for end in ("2020-03-31", None):                # a first load, then a refresh: both collide with the other writer
            rep = ingest_batch(st, src, syms, end=end, progress=False, chunk=chunk)
            assert not rep.errors, rep.errors
        q.put("ok")
    except Exception as e:
        q.put(f"{type(e).__name__}: {e}")


def test_batch_writers_wait_on_the_symbol_locks(tmp_path, recorded):
    "Two batch writers in other processes, same symbols in opposite orders and other chunks: they wait, never deadlock or corrupt."
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    st = Store(uri)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_batch_writer, args=(uri, recorded.folder, syms, chunk, q)) for syms, chunk in ((SYMS, 10), (SYMS[::-1], 7))]
    with symbol_lock(st, bar_symbol("U00")):            # every chunk holding U00 waits for us
        for p in ps: p.start()
        assert [q.get(timeout=60) for _ in ps] == ["ready", "ready"]
        time.sleep(1.5)
        assert q.empty() and not st.library("market_data").has_symbol(bar_symbol("U00"))
        released = time.time()
    res = [q.get(timeout=90) for _ in ps]
    for p in ps: p.join(10)
    assert res == ["ok", "ok"] and time.time() >= released
    for s in SYMS: pd.testing.assert_frame_equal(read_bars(st, s), recorded.bars(s))


def test_an_unreachable_source_stops_the_batch_and_releases_every_lock(tmp_path, recorded):
    "Chunks written before the source went away stay; the chunk being fetched is not written; no lock is left held."
    from ats.data import SourceUnavailable
    class GoesAway(Recording):
        def bars(self, symbol, *a, **k):
            if symbol == "U07": raise SourceUnavailable("no network: test")
            return super().bars(symbol, *a, **k)
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    with pytest.raises(SourceUnavailable, match="no network"):
        ingest_batch(st, GoesAway(recorded), SYMS, progress=False, chunk=5)
    assert sorted(st.library("market_data").list_symbols()) == [bar_symbol(s) for s in SYMS[:5]]
    done = []
    t = threading.Thread(target=lambda: done.append(ingest_batch(st, recorded, SYMS, progress=False, chunk=5)), daemon=True)
    t.start(); t.join(60)
    assert done and not done[0].errors, "a lock of the failed run is still held"
    assert done[0].frame.added.iloc[5:].gt(0).all()


def test_symbol_lock_still_locks_after_its_folder_was_removed(tmp_path):
    "The lock folder is made once per process (ingest takes thousands of locks); a temp cleaner removing it does not break writers."
    import fcntl, os, shutil
    from ats.store import _lock_dir
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    key = bar_symbol("U00")
    with symbol_lock(st, key): pass
    d = _lock_dir(os.path.abspath(tmp_path / "db"))
    shutil.rmtree(d)
    with symbol_lock(st, key):
        with open(os.path.join(d, f"{key}.lock")) as other:     # another writer finds the lock taken
            with pytest.raises(BlockingIOError): fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_recorded_folder_is_a_source_by_name_for_jobs_and_backtests(recorded, tmp_path):
    "`recorded:FOLDER` names the folder of recorded bars wherever a source is named: the download job, `ats backtest`."
    import json, shutil
    from conftest import ROOT, run_ats
    from ats.data import get_source
    src = get_source(f"recorded:{recorded.folder}")
    assert isinstance(src, RecordedSource) and src.symbols() == SYMS
    pd.testing.assert_frame_equal(src.bars("U03"), recorded.bars("U03"))
    with pytest.raises(DataSourceError, match=r"recorded source: no folder .*nowhere; point it at the folder"):
        get_source(f"recorded:{tmp_path / 'nowhere'}")
    shutil.copytree(ROOT / "strategies", tmp_path / "p" / "strategies")
    run_ats("init", cwd=tmp_path / "p", check=True)
    r = run_ats("backtest", "ma_crossover", "--source", f"recorded:{recorded.folder}", "--symbols", "U03", "--json", cwd=tmp_path / "p")
    assert r.returncode == 0 and json.loads(r.stdout)["stats"]["trades"] > 0, r.stdout + r.stderr
