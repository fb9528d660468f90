"Yahoo Finance source: parsing of recorded chart responses, and the HTTP path (rate limit, retries, timeout, offline) against a local server."
import collections, json, socket, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest

from ats.data import (COLUMNS, DataSourceError, FakeClock, SampleSource, SourceUnavailable, YFinanceSource, get_source, ingest,
                      parse_chart, read_bars)
from ats.store import Store

FIX = Path(__file__).parent / "fixtures" / "yfinance"
ROUTES = {"AAPL": "AAPL_1d_2013-02.json", "MSFT": "MSFT_60m_2024-03-04.json"}


class Yahoo:
    "A local stand-in for Yahoo's chart endpoint serving the recorded responses; `plan` scripts failures first."
    def __init__(self):
        self.plan: collections.deque = collections.deque()     # (status, body, delay_s)
        self.seen: list[tuple[str, dict]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                u = urlsplit(self.path)
                outer.seen.append((u.path, {k: v[0] for k, v in parse_qs(u.query).items()}))
                if outer.plan:
                    status, body, delay = outer.plan.popleft()
                    time.sleep(delay)
                else:
                    sym = u.path.rsplit("/", 1)[-1]
                    name = ROUTES.get(sym)
                    status, body = (200, (FIX / name).read_text()) if name else (404, (FIX / "not_found.json").read_text())
                data = body.encode()
                try:
                    self.send_response(status); self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError): pass    # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self): self.server.shutdown(); self.server.server_close()


@pytest.fixture
def yahoo():
    y = Yahoo()
    yield y
    y.close()


@pytest.fixture
def clock(): return FakeClock(1000.0)


def test_parse_recorded_daily_response():
    b = parse_chart((FIX / "AAPL_1d_2013-02.json").read_text(), "AAPL")
    assert list(b.columns) == COLUMNS and str(b.index.tz) == "UTC" and all(b.dtypes == "float64")
    # daily bars are stamped at 09:30 New York; we keep the trading date, and drop Yahoo's all-null session
    sample = SampleSource().bars("AAPL", "2013-02-01", "2013-03-01")
    assert b.index.equals(sample.index) and pd.Timestamp("2013-02-18", tz="UTC") not in b.index
    assert np.allclose(b.close, sample.close.round(2)) and np.allclose(b.adj_close, sample.adj_close.round(2))
    assert (b.adj_close < b.close).all() and b.volume.iloc[0] == sample.volume.iloc[0]


def test_our_parser_agrees_with_yfinances_own():
    from yfinance import utils
    raw = json.loads((FIX / "AAPL_1d_2013-02.json").read_text())["chart"]["result"][0]
    theirs = utils.parse_quotes(raw).dropna(subset=["Close"])
    ours = parse_chart(json.loads((FIX / "AAPL_1d_2013-02.json").read_text()), "AAPL")
    assert len(theirs) == len(ours)
    assert np.allclose(theirs["Close"].to_numpy(), ours.close) and np.allclose(theirs["Adj Close"].to_numpy(), ours.adj_close)


def test_parse_recorded_intraday_response_keeps_utc_times():
    b = parse_chart((FIX / "MSFT_60m_2024-03-04.json").read_text(), "MSFT", bar_size="1 hour")
    assert len(b) == 14 and b.index[0] == pd.Timestamp("2024-03-04 14:30", tz="UTC")
    assert b.index[7] == pd.Timestamp("2024-03-05 14:30", tz="UTC") and (b.adj_close == b.close).all()


def test_recorded_error_responses_are_clear():
    with pytest.raises(DataSourceError, match="Yahoo has no data for ZZZZ: Not Found: No data found, symbol may be delisted"):
        parse_chart((FIX / "not_found.json").read_text(), "ZZZZ")
    with pytest.raises(DataSourceError, match="not JSON: 'Too Many Requests"):
        parse_chart((FIX / "too_many_requests.txt").read_text(), "AAPL")


def test_ingest_over_http_and_incremental_request(yahoo, tmp_path, clock):
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    src = YFinanceSource(base_url=yahoo.url, clock=clock, sleep=clock.sleep)
    rep = ingest(st, src, ["AAPL", "ZZZZ"], start="2013-02-01", progress=False)
    assert rep.results[0].added == 20 and "no data for ZZZZ" in rep.errors[0].error
    path, q = yahoo.seen[0]
    assert path == "/v8/finance/chart/AAPL" and q["interval"] == "1d" and q["includeAdjustedClose"] == "true"
    assert int(q["period1"]) == int(pd.Timestamp("2013-02-01", tz="UTC").timestamp())
    ingest(st, src, ["AAPL"], progress=False)                  # the refresh asks from the last stored bar
    assert int(yahoo.seen[-1][1]["period1"]) == int(pd.Timestamp("2013-03-01", tz="UTC").timestamp())
    assert len(read_bars(st, "AAPL")) == 20


def test_transient_errors_are_retried_with_exponential_backoff(yahoo, clock):
    yahoo.plan.extend([(503, "unavailable", 0), (429, "Too Many Requests\r\n", 0)])
    src = YFinanceSource(base_url=yahoo.url, retries=3, backoff=2.0, clock=clock, sleep=clock.sleep)
    assert len(src.bars("AAPL")) == 20
    assert len(yahoo.seen) == 3 and clock.t == 1000.0 + 2.0 + 4.0        # waited 2 s, then 4 s


def test_retries_give_up_with_a_clear_message(yahoo, clock):
    yahoo.plan.extend([(500, "boom", 0)] * 5)
    src = YFinanceSource(base_url=yahoo.url, retries=2, backoff=1.0, clock=clock, sleep=clock.sleep)
    with pytest.raises(DataSourceError, match=r"failed for AAPL after 3 attempt\(s\): HTTP 500: boom"):
        src.bars("AAPL")
    assert len(yahoo.seen) == 3
    yahoo.plan.clear(); yahoo.plan.append((401, "Unauthorized", 0))
    with pytest.raises(DataSourceError, match="refused the request for AAPL: HTTP 401"):
        src.bars("AAPL")                                    # not transient: no retry
    assert len(yahoo.seen) == 4


def test_rate_limit_really_throttles(yahoo, clock):
    src = YFinanceSource(base_url=yahoo.url, rate_limit=2, clock=clock, sleep=clock.sleep)
    t0 = clock.t
    src.bars("AAPL"); src.bars("AAPL")
    assert clock.t == t0                                   # two requests per hour go at once
    src.bars("AAPL")
    assert clock.t == t0 + 3600 and src.limiter.waited == 3600 and len(yahoo.seen) == 3
    clock.sleep(1800); src.bars("AAPL")                    # the window slides: the 2nd slot frees at t0 + 3600
    assert clock.t == t0 + 3600 + 1800 and len(yahoo.seen) == 4


def test_timeout_is_enforced(yahoo):
    yahoo.plan.extend([(200, "{}", 3.0)] * 2)
    src = YFinanceSource(base_url=yahoo.url, timeout=0.3, retries=1, backoff=0.0)
    t = time.monotonic()
    with pytest.raises(DataSourceError, match="after 2 attempt"):
        src.bars("AAPL")
    assert time.monotonic() - t < 2.0


def test_offline_fails_fast_with_a_clear_message(tmp_path):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()     # nothing listens there
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    src = YFinanceSource(base_url=f"http://127.0.0.1:{port}")
    t = time.monotonic()
    with pytest.raises(SourceUnavailable, match="no network: cannot reach 127.0.0.1.*use the bundled sample"):
        ingest(st, src, ["AAPL", "MSFT", "IBM"], progress=False)
    assert time.monotonic() - t < 2.0 and st.library("market_data").list_symbols() == []


def test_offline_against_the_real_yahoo_host():
    try:
        socket.create_connection(("query2.finance.yahoo.com", 443), timeout=3).close()
        pytest.skip("this machine can reach Yahoo; the offline path is covered by the closed-port test")
    except OSError:
        pass
    t = time.monotonic()
    with pytest.raises(SourceUnavailable, match="no network: cannot reach query2.finance.yahoo.com:443"):
        get_source("yfinance").bars("AAPL")
    assert time.monotonic() - t < 6.0


def test_settings_configure_the_source():
    from ats.config import DataSettings
    d = DataSettings()
    src = YFinanceSource.from_settings(d)
    assert src.limiter.max_requests == d.yfinance_rate_limit and src.limiter.period == 3600
    assert src.timeout == d.yfinance_timeout and src.retries == d.yfinance_retries
    import dataclasses
    with pytest.raises(DataSourceError, match="disabled in the settings"):
        YFinanceSource.from_settings(dataclasses.replace(d, yfinance_enabled=False))
    with pytest.raises(ValueError, match="max_requests=0"):
        YFinanceSource(rate_limit=0)
