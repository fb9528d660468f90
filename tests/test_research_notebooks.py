"""The research walk-through notebooks (data_and_research/research/), executed by papermill in a real python3 kernel
on a fresh temporary project: the promoted strategy, the saved backtest and the paper gateway's fills are read back."""
import json, os, shutil
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from ats.config import load_settings
from ats.store import Store
from ats.ledger import load_ledger
from notebook_helpers import outputs

ROOT = Path(__file__).resolve().parents[1]
RESEARCH = ROOT / "data_and_research" / "research"
IDEA_TO_PAPER = RESEARCH / "01_idea_to_paper.ipynb"
SYMBOLS = ["AAPL", "MSFT", "IBM", "GOOG"]
PARAMS = dict(symbols=",".join(SYMBOLS), start="2005-01-01", split="2011-01-01", end="2012-05-31", paper_start="2012-06-01", days=60, progress=False,
              dask_workers=0)   # the Dask section: tests/test_sweep_dask.py checks sweep_on equals the in-process sweep


def execute(nb_path: Path, out_dir: Path, **params):
    "Run a notebook in its own working folder with no ATS_/IB_ settings leaking in from the caller; the executed copy."
    out = out_dir / nb_path.name
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith(("ATS_", "IB_")) or k in ("ARCTIC_DB_PATH", "LOG_LEVEL", "ENVIRONMENT"): mp.delenv(k)
        pm.execute_notebook(str(nb_path), str(out), parameters=params, kernel_name="python3", progress_bar=False, cwd=str(out_dir))
    return nbformat.read(out, as_version=4)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    "01_idea_to_paper run once on a new project: (executed notebook, project folder, its store, the summary it printed)."
    work = tmp_path_factory.mktemp("research")
    project = work / "project"
    nb = execute(IDEA_TO_PAPER, work, project_dir=str(project), **PARAMS)
    text = outputs(nb)
    summary = json.loads(text[text.rindex('{"project"'):].splitlines()[0])
    st = Store.from_settings(load_settings(project / "settings.ini"), create=False)
    return nb, project, st, summary


def test_the_chosen_parameters_are_the_in_sample_best_and_are_promoted_active(walkthrough):
    from ats.backtest import sweep
    from ats.data import read_prices
    from ats.strategy import load_strategy_class
    nb, project, st, summary = walkthrough
    chosen = summary["chosen"]
    # recompute the sweep here, on the in-sample years only (the notebook's grid): the notebook must have picked its best Sharpe
    Breakout = load_strategy_class(project / "strategies" / "breakout.py")
    prices = read_prices(st, SYMBOLS, start=PARAMS["start"], end=PARAMS["end"])
    in_sample = prices.loc[:pd.Timestamp(PARAMS["split"], tz="UTC") - pd.Timedelta(days=1)]
    opens = read_prices(st, SYMBOLS, field="open", start=PARAMS["start"], end=PARAMS["end"])     # trades at the next open, as live
    table = sweep(Breakout, in_sample, dict(entry=[10, 20, 50, 100, 150], exit=[5, 10, 20, 50]), base_params=dict(symbols=SYMBOLS),
                  progress=False, open_prices=opens)
    best = table.dropna(subset=["sharpe"]).sort_values("sharpe", ascending=False).iloc[0]
    assert (chosen["entry"], chosen["exit"]) == (best["entry"], best["exit"])
    # promoted: the strategies library has it active with exactly those parameters, and the runtime would load it
    cfg = st.load_strategy_config("breakout")
    assert cfg.active and cfg.filename == "breakout.py" and cfg.parameters == dict(symbols=SYMBOLS, entry=chosen["entry"], exit=chosen["exit"])
    assert [c.strategy_name for c in st.load_strategy_configs(active_only=True)] == ["breakout"]
    assert not (ROOT / "strategies" / "breakout.py").exists()          # written to the temporary project, not the repository


def test_the_out_of_sample_result_is_saved_and_trades_only_after_the_split(walkthrough):
    from ats.backtest import load_result, list_results
    nb, project, st, summary = walkthrough
    r = load_result(st, "breakout_oos")
    assert r.params["entry"] == summary["chosen"]["entry"] and r.params["exit"] == summary["chosen"]["exit"]
    assert r.equity.index[-1].strftime("%Y-%m-%d") == PARAMS["end"]
    assert len(r.trades) > 0 and r.trades["entry_time"].min() >= pd.Timestamp(PARAMS["split"], tz="UTC")   # nothing traded on seen data
    assert r.stats["sharpe"] == pytest.approx(summary["out_of_sample_sharpe"], abs=1e-3)
    assert list(list_results(st)["name"]) == ["breakout_oos"]


def test_the_paper_gateway_filled_the_strategys_decisions_and_the_ledger_has_them(walkthrough):
    from ats.data import read_prices
    from ats.strategy import load_strategy_class
    nb, project, st, summary = walkthrough
    ledger = load_ledger(st)
    fills = ledger.fills_frame("breakout")
    assert len(fills) == summary["fills"] > 0
    assert set(ledger.fills_frame()["strategy"]) == {"breakout"}
    assert fills["order_ref"].str.startswith("breakout:").all() and set(fills["symbol"]) <= set(SYMBOLS)
    first, last = pd.Timestamp(PARAMS["paper_start"], tz="UTC"), pd.Timestamp(PARAMS["paper_start"], tz="UTC") + pd.Timedelta(days=PARAMS["days"] * 7 / 5 + 5)
    assert fills["time"].between(first, last).all()
    # each fill is a decision of the same class computed the backtest's way at the previous close, in that direction
    # (orders sent after a close wait for the next open)
    Breakout = load_strategy_class(project / "strategies" / "breakout.py")
    chosen = summary["chosen"]
    w = Breakout(chosen, name="breakout").decisions(read_prices(st, SYMBOLS, end=fills["time"].max()))
    for f in fills.itertuples():
        i = w.index.get_indexer([f.time.normalize()])[0]
        assert i > 0, f"fill {f.symbol} {f.time} is not on a trading day of the data"
        x = w[f.symbol].iloc[i - 1]
        assert x == x, f"fill {f.symbol} {f.time} has no decision at the previous close ({w.index[i - 1].date()})"
        assert (x > 0) == (f.quantity > 0), f"fill {f.symbol} {f.quantity} on {f.time} against target weight {x} decided the day before"
    # the ledger's positions equal the paper account's, which the gateway saved when it stopped
    account = json.loads((project / "paper_account.json").read_text())
    broker = {int(p["con_id"]): float(p["qty"]) for p in account["positions"] if float(p["qty"])}
    assert {cid: float(p.quantity) for (_, cid), p in ledger.positions.items() if p.quantity} == broker != {}


def test_the_executed_notebook_shows_the_research_and_the_trading(walkthrough):
    nb, project, st, summary = walkthrough
    text = outputs(nb)
    assert "total_return" in text and "max_drawdown" in text and "win_rate" in text       # the stats table
    assert "in-sample" in text and "out-of-sample" in text                                # the check of the choice
    assert "entry_time" in text and "exit_price" in text                                  # the trades table
    assert f"{summary['fills']} fills for breakout" in text and "paper traded 2012-06-01" in text
    charts = sum("application/vnd.bokehjs_exec.v0+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert charts >= 4                                                                     # prices, backtest, heatmap, P&L
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    assert os.path.getsize(project.parent / IDEA_TO_PAPER.name) < 6_000_000                 # outputs stay small


def test_a_project_that_already_paper_traded_is_refused_clearly(walkthrough, tmp_path):
    nb, project, st, summary = walkthrough
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute(IDEA_TO_PAPER, tmp_path, project_dir=str(project), **PARAMS)
    assert e.value.ename == "FileExistsError" and "has paper traded before" in e.value.evalue and "new or empty project_dir" in e.value.evalue


@pytest.mark.parametrize("path", sorted(RESEARCH.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_are_clean_and_parameterised(path):
    from ats.jobs import notebook_parameters
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert not any(c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code"), "commit without outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    p = notebook_parameters(path)
    assert {"project_dir", "symbols", "start", "days"} <= set(p) and p["days"]["type"] == "int"
