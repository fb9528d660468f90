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


# --- `ats jobs run download_us_stock_data` from a project: the exit status and the run history say what happened ---

def _job(project, *params):
    from conftest import run_ats
    args = [x for k, v in params for x in ("-p", k, v)]
    return run_ats("jobs", "run", "download_us_stock_data", "-p", "progress", "false", *args, cwd=project, timeout=300)


def _last_run(project):
    from conftest import run_ats
    return json.loads(run_ats("jobs", "history", "--json", "--limit", "1", cwd=project, check=True).stdout)[0]


@pytest.fixture
def data_project(project):
    from conftest import run_ats
    run_ats("init", cwd=project, check=True)                   # copies the shipped job notebooks into the project
    return project


def test_a_run_that_ingests_nothing_is_not_a_success(data_project):
    r = _job(data_project, ("universe", "ZZZZ"))
    assert r.returncode == 4, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("empty: ") and "ZZZZ (unknown symbol in source sample)" in lines[0], r.stderr
    h = _last_run(data_project)
    assert h["status"] == "empty" and "ZZZZ (unknown symbol in source sample)" in h["reason"]
    assert "without encryption" not in r.stderr


def test_some_symbols_failing_is_partial_and_the_others_are_ingested(data_project):
    from ats.config import load_settings
    r = _job(data_project, ("universe", "AAPL,ZZZZ"))
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stderr.strip() == "partial: 1 of 2 symbols failed: ZZZZ (unknown symbol in source sample)"
    h = _last_run(data_project)
    assert h["status"] == "partial" and h["reason"] == "1 of 2 symbols failed: ZZZZ (unknown symbol in source sample)"
    assert h["counts"]["ingested"] == 1 and h["counts"]["failed"] == 1
    assert len(read_bars(Store.from_settings(load_settings(data_project / "settings.ini")), "AAPL")) == 3270


def test_a_normal_run_succeeds_and_a_rerun_is_up_to_date(data_project):
    r = _job(data_project, ("universe", "AAPL,IBM"))
    assert r.returncode == 0 and r.stderr == "", (r.stdout, r.stderr)
    assert "success" in r.stdout and "2 symbols, 6540 bars added" in r.stdout
    r = _job(data_project, ("universe", "AAPL,IBM"))
    assert r.returncode == 0 and "already up to date" in r.stdout, (r.stdout, r.stderr)
    h = _last_run(data_project)
    assert h["status"] == "success" and h["reason"].startswith("already up to date")
