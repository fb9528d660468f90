"IB historical bars through unmodified ib_async against the paper gateway on 127.0.0.1, with IB's pacing rules."
import numpy as np
import pandas as pd
import pytest
from ib_async import IB

from ats.data import DataSourceError, FakeClock, IBSource, SampleSource, SourceUnavailable, get_source, ingest, read_bars
from ats.gateway.service import GatewayThread
from ats.store import Store


@pytest.fixture(scope="module")
def ib(tmp_path_factory):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path_factory.mktemp("gw") / "state.json", start="2005-01-03").start()
    ib = IB()
    ib.connect("127.0.0.1", g.port, clientId=7, timeout=5)
    yield ib
    ib.disconnect()
    g.stop()


def test_daily_bars_match_the_data_the_gateway_serves(ib):
    src = IBSource(ib)
    b = src.bars("IBM", "2004-06-01", "2004-12-31")
    s = SampleSource().bars("IBM", "2004-06-01", "2004-12-31")
    assert b.index.equals(s.index) and str(b.index.tz) == "UTC"
    assert np.allclose(b.close, s.close) and np.allclose(b.volume, s.volume)
    assert (b.adj_close == b.close).all()                 # TRADES only: adj_close is the close


def test_adjusted_close_from_a_second_request(ib):
    src = IBSource(ib, adjusted=True)
    b = src.bars("IBM", "2004-10-01", "2004-12-31")
    s = SampleSource().bars("IBM", "2004-10-01", "2004-12-31")
    assert src.requests == 2 and np.allclose(b.close, s.close)
    assert (b.adj_close < b.close).all()                  # dividends after 2004 adjust IBM's history down


def test_ingest_through_ib(ib, tmp_path):
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    rep = ingest(st, get_source("ib", ib=ib), ["IBM", "MSFT", "NOSUCH"], start="2004-01-01", progress=False)
    assert [r.symbol for r in rep.errors] == ["NOSUCH"] and "IB does not know the stock 'NOSUCH'" in rep.errors[0].error
    assert rep.results[0].first == pd.Timestamp("2004-01-02", tz="UTC") and rep.results[0].last == pd.Timestamp("2005-01-03", tz="UTC")
    again = ingest(st, IBSource(ib), ["IBM"], progress=False)
    assert again.results[0].added == 0 and again.results[0].total == rep.results[0].total
    assert len(read_bars(st, "MSFT", start="2004-01-01")) == rep.results[1].total


def test_pacing_limits_requests_per_ten_minutes(ib):
    clock = FakeClock(0.0)
    src = IBSource(ib, max_requests=2, period=600, clock=clock, sleep=clock.asleep)
    src.bars("IBM", "2004-12-01", "2004-12-31")
    src.bars("MSFT", "2004-12-01", "2004-12-31")
    assert clock.t == 0
    src.bars("AAPL", "2004-12-01", "2004-12-31")          # the third in ten minutes waits for the window
    assert clock.t == 600 and src.requests == 3


def test_identical_request_waits_fifteen_seconds(ib):
    clock = FakeClock(0.0)
    src = IBSource(ib, clock=clock, sleep=clock.asleep)
    a = src.bars("IBM", "2004-12-01", "2004-12-31")
    clock.sleep(4.0)
    b = src.bars("IBM", "2004-12-01", "2004-12-31")
    assert clock.t == 15.0 and a.equals(b)               # waited the remaining 11 s
    src.bars("IBM", "2004-11-01", "2004-12-31")           # a different request need not wait
    assert clock.t == 15.0


def test_not_connected_is_a_clear_source_error():
    with pytest.raises(SourceUnavailable, match="IB is not connected"):
        IBSource(IB()).bars("IBM")
    with pytest.raises(DataSourceError, match="needs a connected ib_async IB"):
        get_source("ib")
