"The download_us_stock_data job notebook, executed by papermill in a real python3 kernel."
import json, socket
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from ats.data import read_bars, load_universe
from ats.store import Store
from notebook_helpers import outputs

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "data_and_research" / "jobs" / "download_us_stock_data.ipynb"


def run(tmp_path, name, **params):
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(JOB), str(out), parameters=params, kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    return nbformat.read(out, as_version=4)


def test_sample_run_ingests_and_records_what_it_did_then_is_incremental(tmp_path):
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    nb = run(tmp_path, "first", source="sample", universe="us_equities", db_uri=uri, progress=False)
    text = outputs(nb)
    summary = json.loads(text[text.index("{\n \"source\""):text.rindex("}") + 1])
    assert summary["symbols"] == 4 and summary["bars_added"] == 3270 * 3 + 2148 and summary["errors"] == {}
    assert "SPY" in summary["skipped"] and "ACWI" in summary["skipped"]
    assert "2000-03-01" in text and "2013-03-01" in text and "stale" in text        # ingest table and quality report
    st = Store(uri)
    assert len(read_bars(st, "AAPL")) == 3270 and len(load_universe(st, "us_equities")) == 29
    nb = run(tmp_path, "second", source="sample", universe="us_equities", db_uri=uri, progress=False)
    text = outputs(nb)
    assert '"bars_added": 0' in text and len(read_bars(st, "AAPL")) == 3270


def test_random_source_with_a_symbol_list_and_dates(tmp_path):
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    nb = run(tmp_path, "random", source="random", universe="SPY,QQQ", start="2020-01-01", end="2020-12-31", db_uri=uri, seed=3)
    text = outputs(nb)
    assert '"bars_added": 524' in text and "ingest random" in text                  # 262 business days each; a tqdm bar
    assert read_bars(Store(uri), "QQQ").index[-1].strftime("%Y-%m-%d") == "2020-12-31"


def test_offline_yfinance_run_fails_clearly_and_ingests_nothing(tmp_path):
    try:
        socket.create_connection(("query2.finance.yahoo.com", 443), timeout=3).close()
        pytest.skip("this machine can reach Yahoo")
    except OSError:
        pass
    uri = f"lmdb://{tmp_path}/db?map_size=1GB"
    with pytest.raises(pm.PapermillExecutionError) as e:
        run(tmp_path, "offline", source="yfinance", universe="AAPL,MSFT", db_uri=uri)
    assert e.value.ename == "SourceUnavailable" and "no network: cannot reach query2.finance.yahoo.com" in e.value.evalue
    assert "use the bundled sample" in e.value.evalue
    assert Store(uri).library("market_data").list_symbols() == []
    assert "SourceUnavailable" in outputs(nbformat.read(tmp_path / "offline.ipynb", as_version=4))   # the record shows why


def test_declared_parameters_for_the_job_runner():
    from ats.jobs import notebook_parameters
    p = notebook_parameters(JOB)
    assert {"universe", "start", "end", "source", "db_uri"} <= set(p)
    assert p["source"]["type"] == "str" and p["stale_days"]["type"] == "int"
