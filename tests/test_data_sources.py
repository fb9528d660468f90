"Alpha Vantage and Nasdaq Data Link (Quandl) sources: recorded answers served by a local HTTP server, ingest into ArcticDB, error messages, shared rate limits."
import json, socket, subprocess, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from ats.data import (COLUMNS, AlphaVantageSource, DataSourceError, FakeClock, QuandlSource, RateLimitReached, SharedRateLimiter,
                      SourceUnavailable, get_source, ingest, read_bars)
from ats.store import Store

FIX = Path(__file__).parent / "fixtures"


class Server:
    "A local stand-in for the API: `answer(path, query)` gives (status, JSON text); `until` hides bars after a day (time passing)."
    def __init__(self, answer):
        self.seen: list[tuple[str, dict]] = []
        self.answer, outer = answer, self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                u = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                outer.seen.append((u.path, q))
                status, body = outer.answer(u.path, q)
                data = body.encode()
                self.send_response(status); self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self): self.server.shutdown(); self.server.server_close()


def av_answer(until: list):
    "Alpha Vantage: IBM daily bars up to until[0]; ZZZZ is unknown; the key 'bad' is rejected."
    def answer(path, q):
        if q.get("apikey") == "bad": return 200, (FIX / "alpha_vantage/invalid_key.json").read_text()
        if q.get("symbol") != "IBM": return 200, (FIX / "alpha_vantage/invalid_symbol.json").read_text()
        name = "IBM_daily_adjusted.json" if q["function"] == "TIME_SERIES_DAILY_ADJUSTED" else "IBM_daily_compact.json"
        p = json.loads((FIX / "alpha_vantage" / name).read_text())
        p["Time Series (Daily)"] = {d: v for d, v in p["Time Series (Daily)"].items() if d <= until[0]}
        return 200, json.dumps(p)
    return answer


def quandl_answer(until: list):
    "Nasdaq Data Link: WIKI/AAPL up to until[0], within start_date..end_date; other codes are unknown."
    def answer(path, q):
        if q.get("api_key") == "bad": return 400, (FIX / "quandl/bad_key.json").read_text()
        if path != "/api/v3/datasets/WIKI/AAPL/data.json": return 404, (FIX / "quandl/unknown_dataset.json").read_text()
        p = json.loads((FIX / "quandl/WIKI_AAPL.json").read_text())
        s, e = q.get("start_date", "0000"), min(q.get("end_date", "9999"), until[0])
        p["dataset_data"]["data"] = [r for r in p["dataset_data"]["data"] if s <= r[0] <= e]
        return 200, json.dumps(p)
    return answer


@pytest.fixture
def clock(): return FakeClock(1_700_000_000.0)


@pytest.fixture
def av():
    until = ["2024-03-06"]
    s = Server(av_answer(until)); s.until = until
    yield s
    s.close()


@pytest.fixture
def ndl():
    until = ["2018-03-23"]
    s = Server(quandl_answer(until)); s.until = until
    yield s
    s.close()


def _av(server, tmp_path, clock, **kw):
    return AlphaVantageSource(**({"api_key": "demo", "base_url": server.url, "state_dir": tmp_path / "rl", "clock": clock, "sleep": clock.sleep} | kw))


def _ndl(server, tmp_path, clock, **kw):
    return QuandlSource(**({"api_key": "demo", "base_url": server.url + "/api/v3", "database": "WIKI", "state_dir": tmp_path / "rl",
                            "clock": clock, "sleep": clock.sleep} | kw))


def _answering(body: str):
    "A server that gives the same recorded answer to every request."
    return Server(lambda path, q: (200, body))


def test_alpha_vantage_bars_and_incremental_ingest(av, tmp_path, clock):
    src = _av(av, tmp_path, clock)
    b = src.bars("IBM", start="2024-03-01")
    assert list(b.columns) == COLUMNS and str(b.index.tz) == "UTC" and all(b.dtypes == "float64")
    assert b.index[0] == pd.Timestamp("2024-03-01", tz="UTC") and b.close.iloc[-1] == 198.13 and b.volume.iloc[-1] == 6945311
    assert (b.adj_close == b.close).all()                         # TIME_SERIES_DAILY is unadjusted
    path, q = av.seen[0]
    assert path == "/query" and q["function"] == "TIME_SERIES_DAILY" and q["apikey"] == "demo" and q["outputsize"] == "full"
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    rep = ingest(st, src, ["IBM", "ZZZZ"], start="2024-03-01", progress=False)
    assert rep.results[0].added == 4 and "no daily prices for 'ZZZZ'" in rep.errors[0].error
    av.until[0] = "2024-03-08"                                    # two trading days later
    rep = ingest(st, src, ["IBM"], progress=False)
    assert rep.results[0].added == 2 and rep.results[0].updated == 1 and rep.results[0].total == 6
    assert read_bars(st, "IBM").index[-1] == pd.Timestamp("2024-03-08", tz="UTC")


def test_alpha_vantage_adjusted_endpoint(av, tmp_path, clock):
    b = _av(av, tmp_path, clock, adjusted=True).bars("IBM")
    assert av.seen[-1][1]["function"] == "TIME_SERIES_DAILY_ADJUSTED"
    assert b.adj_close.iloc[-1] == 186.8712 and b.close.iloc[-1] == 191.95


def test_alpha_vantage_asks_for_the_compact_answer_for_recent_bars(av, tmp_path, clock):
    _av(av, tmp_path, clock).bars("IBM", start=pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=10))
    assert av.seen[-1][1]["outputsize"] == "compact"


@pytest.mark.parametrize("fixture, error, text", [
    ("invalid_key.json", SourceUnavailable, "rejected the API key.*set a valid ALPHA_VANTAGE_API_KEY in .env"),
    ("invalid_symbol.json", DataSourceError, "no daily prices for 'IBM'.*check the ticker"),
    ("rate_limit_day.json", RateLimitReached, "rate limit is used up.*25 requests per day.*lower \\[data\\] alpha_vantage_rate_limit"),
    ("rate_limit_note.json", RateLimitReached, "rate limit is used up.*5 calls per minute"),
    ("premium_endpoint.json", SourceUnavailable, "TIME_SERIES_DAILY_ADJUSTED is an Alpha Vantage premium endpoint.*use adjusted=False"),
    ("premium_outputsize.json", SourceUnavailable, "full history only to premium keys.*-p start \\d{4}-\\d\\d-\\d\\d"),
])
def test_alpha_vantage_error_answers_say_what_to_do(tmp_path, clock, fixture, error, text):
    s = _answering((FIX / "alpha_vantage" / fixture).read_text())
    try:
        with pytest.raises(error, match=text):
            _av(s, tmp_path, clock, adjusted=fixture == "premium_endpoint.json").bars("IBM")
    finally: s.close()


def test_alpha_vantage_bad_key_stops_the_ingest(av, tmp_path, clock):
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    with pytest.raises(SourceUnavailable, match="ALPHA_VANTAGE_API_KEY"):
        ingest(st, _av(av, tmp_path, clock, api_key="bad"), ["IBM", "MSFT", "GOOG"], progress=False)
    assert len(av.seen) == 1                                      # not one request per symbol


def test_quandl_bars_and_incremental_ingest(ndl, tmp_path, clock):
    src = _ndl(ndl, tmp_path, clock)
    b = src.bars("AAPL", start="2018-03-19")
    assert list(b.columns) == COLUMNS and str(b.index.tz) == "UTC" and len(b) == 5
    assert b.index[-1] == pd.Timestamp("2018-03-23", tz="UTC") and b.close.iloc[-1] == 164.94 and b.adj_close.iloc[-1] == 164.94
    path, q = ndl.seen[0]
    assert path == "/api/v3/datasets/WIKI/AAPL/data.json" and q["api_key"] == "demo" and q["start_date"] == "2018-03-19"
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    rep = ingest(st, src, ["AAPL", "ZZZZ"], start="2018-03-19", progress=False)
    assert rep.results[0].added == 5 and "no dataset WIKI/ZZZZ" in rep.errors[0].error
    ndl.until[0] = "2018-03-27"
    rep = ingest(st, src, ["AAPL"], progress=False)
    assert ndl.seen[-1][1]["start_date"] == "2018-03-23"          # asked only from the last stored bar
    assert rep.results[0].added == 2 and rep.results[0].total == 7


@pytest.mark.parametrize("fixture, error, text", [
    ("bad_key.json", SourceUnavailable, "does not accept the API key \\(QEAx01.*set a valid QUANDL_API_KEY in .env"),
    ("unknown_dataset.json", DataSourceError, "no dataset WIKI/AAPL \\(QECx02.*check the ticker"),
    ("premium.json", SourceUnavailable, "database WIKI needs a subscription \\(QEPx04.*subscribe at https://data.nasdaq.com/databases/WIKI"),
    ("limit.json", RateLimitReached, "call limit is exceeded \\(QELx04.*lower \\[data\\] quandl_rate_limit"),
])
def test_quandl_error_answers_say_what_to_do(tmp_path, clock, fixture, error, text):
    body = (FIX / "quandl" / fixture).read_text()
    s = Server(lambda path, q: (403, body))
    try:
        with pytest.raises(error, match=text):
            _ndl(s, tmp_path, clock).bars("AAPL")
    finally: s.close()


def test_disabled_source_and_missing_key_name_the_setting(tmp_path):
    from ats.config import load_settings
    ini = tmp_path / "settings.ini"; ini.write_text("[data]\n")
    s = load_settings(ini, env={}, dotenv=tmp_path / "none.env")
    with pytest.raises(DataSourceError, match=r"Alpha Vantage is disabled.*\[data\] alpha_vantage_enabled = false.*ALPHA_VANTAGE_API_KEY in .env"):
        get_source("alpha_vantage", settings=s)
    with pytest.raises(DataSourceError, match=r"quandl_enabled = false.*QUANDL_API_KEY"):
        get_source("quandl", settings=s)
    ini.write_text("[data]\nalpha_vantage_enabled = true\nquandl_enabled = true\n")
    s = load_settings(ini, env={}, dotenv=tmp_path / "none.env")
    with pytest.raises(DataSourceError, match="no Alpha Vantage API key: put ALPHA_VANTAGE_API_KEY=<your key> in .env"):
        get_source("alpha_vantage", settings=s)
    with pytest.raises(DataSourceError, match="no Nasdaq Data Link \\(Quandl\\) API key: put QUANDL_API_KEY=<your key> in .env"):
        get_source("quandl", settings=s)
    s = load_settings(ini, env={"ALPHA_VANTAGE_API_KEY": "k1", "QUANDL_API_KEY": "k2"}, dotenv=tmp_path / "none.env")
    a, q = get_source("alpha_vantage", settings=s, state_dir=tmp_path), get_source("quandl", settings=s, state_dir=tmp_path)
    assert a.api_key == "k1" and a.limiter.max_requests == 500 and a.limiter.period == 86400
    assert q.api_key == "k2" and q.limiter.max_requests == 300 and q.limiter.period == 10


def test_offline_fails_fast_with_a_clear_message(tmp_path):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()     # nothing listens there
    st = Store(f"lmdb://{tmp_path}/db?map_size=1GB")
    for src in (AlphaVantageSource(api_key="k", base_url=f"http://127.0.0.1:{port}", state_dir=tmp_path),
                QuandlSource(api_key="k", base_url=f"http://127.0.0.1:{port}/api/v3", state_dir=tmp_path)):
        with pytest.raises(SourceUnavailable, match=f"no network: cannot reach 127.0.0.1:{port}.*{src.title[:5]}.*needs the internet.*-p source sample"):
            ingest(st, src, ["AAPL", "MSFT"], progress=False)
    assert st.library("market_data").list_symbols() == []


def test_quandl_rate_limit_is_shared_by_two_sources(ndl, tmp_path, clock):
    a, b = _ndl(ndl, tmp_path, clock, rate_limit=2), _ndl(ndl, tmp_path, clock, rate_limit=2)
    t0 = clock.t
    a.bars("AAPL"); b.bars("AAPL")
    assert clock.t == t0                                          # two requests per 10 s go at once
    b.bars("AAPL")                                                # the third waits, although b itself sent only one
    assert clock.t == t0 + 10 and b.limiter.waited == 10 and len(ndl.seen) == 3


def test_alpha_vantage_daily_budget_is_shared_across_processes(av, tmp_path):
    "Another process spends the day's budget through the shared log; this one stops with a clear message instead of asking."
    code = ("import sys; from ats.data import SharedRateLimiter\n"
            "l = SharedRateLimiter(3, 86400, sys.argv[1])\n"
            "for _ in range(3): l.acquire()\n")
    log = tmp_path / "rl" / "alpha_vantage.json"
    subprocess.run([sys.executable, "-c", code, str(log)], check=True, timeout=60, env={"PYTHONPATH": str(Path(__file__).parents[1])})
    src = AlphaVantageSource(api_key="demo", base_url=av.url, rate_limit=3, state_dir=tmp_path / "rl")
    with pytest.raises(RateLimitReached, match=r"all 3 requests per day are used \(counted across all ats processes.*next is allowed at"):
        src.bars("IBM")
    assert av.seen == []
    assert len(json.loads(log.read_text())) == 3                  # the refused attempt is not counted


def test_shared_limiter_survives_a_damaged_log(tmp_path, clock):
    p = tmp_path / "x.json"; p.write_text("{not json")
    l = SharedRateLimiter(1, 10, p, clock=clock, sleep=clock.sleep)
    assert l.acquire() == 0 and json.loads(p.read_text()) == [clock.t]


def test_download_job_takes_the_alpha_vantage_source(tmp_path, monkeypatch):
    "`ats jobs run download_us_stock_data -p source alpha_vantage` reaches AlphaVantageSource with the key from .env."
    import nbformat, papermill as pm
    from notebook_helpers import outputs
    job = Path(__file__).resolve().parents[1] / "data_and_research" / "jobs" / "download_us_stock_data.ipynb"
    for k in ("ALPHA_VANTAGE_API_KEY", "ATS_DATA__ALPHA_VANTAGE_ENABLED"): monkeypatch.delenv(k, raising=False)
    (tmp_path / "settings.ini").write_text("[data]\nalpha_vantage_enabled = true\n")
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(job), str(tmp_path / "out.ipynb"), parameters=dict(source="alpha_vantage", universe="IBM", db_uri=uri),
                            kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    assert e.value.ename == "DataSourceError" and "no Alpha Vantage API key: put ALPHA_VANTAGE_API_KEY" in e.value.evalue
    assert "ALPHA_VANTAGE_API_KEY" in outputs(nbformat.read(tmp_path / "out.ipynb", as_version=4))   # the record shows why
