"Strategy degradation: the arithmetic on hand-computed curves, and `ats degradation` end to end on a real database."
import datetime as dt, json, shutil, warnings
import bokeh.embed, bokeh.resources
from decimal import Decimal as D
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_ats
from ats.backtest import run_backtest_cli
from ats.config import load_settings
from ats.degradation import compare_equity, DegradationError
from ats.ledger import LedgerStore
from ats.store import Store

IDX = pd.bdate_range("2024-01-01", periods=60, tz="UTC")
YEARS = (IDX[-1] - IDX[0]).days / 365.25          # 59 returns over 85 calendar days


def noisy(seed=0, n=60):
    return pd.Series(100_000 * np.cumprod(1 + np.random.default_rng(seed).normal(0.0005, 0.01, n)), index=IDX[:n])


# ---- compare_equity on hand-computed series -------------------------------------------------

def test_identical_curves_are_ok():
    bt = noisy()
    r = compare_equity(bt, bt, strategy="same")
    assert r.verdict == "ok" and r.reasons == []
    assert r.tracking_error == pytest.approx(0, abs=1e-12) and r.return_gap == pytest.approx(0, abs=1e-12)
    assert r.correlation == pytest.approx(1) and r.live_return == pytest.approx(bt.iloc[-1] / bt.iloc[0] - 1)
    assert r.live_max_drawdown == r.backtest_max_drawdown == pytest.approx((bt / bt.cummax() - 1).min())
    assert (r.difference.abs() < 1e-12).all() and len(r.difference) == 59


def test_steady_daily_drag_is_degraded_with_the_hand_computed_gap():
    bt = pd.Series(100_000 * 1.001 ** np.arange(60), index=IDX)          # backtest: +0.1 % a day
    live = pd.Series(250_000 * 1.0004 ** np.arange(60), index=IDX)       # live: +0.04 % a day, another capital
    r = compare_equity(live, bt, strategy="drag")
    hand = 1.0004 ** (59 / YEARS) - 1.001 ** (59 / YEARS)                # each CAGR: (1 + daily) ^ (returns / years) - 1
    assert r.return_gap == pytest.approx(hand, rel=1e-9) and hand < -0.05
    assert r.live_return == pytest.approx(1.0004 ** 59 - 1) and r.backtest_return == pytest.approx(1.001 ** 59 - 1)
    assert r.backtest.iloc[0] == pytest.approx(250_000)                  # rescaled to the live start
    assert r.difference.mean() == pytest.approx(0.0004 - 0.001) and r.tracking_error == pytest.approx(0, abs=1e-9)
    assert r.verdict == "degraded" and r.reasons == [f"live trails the backtest by {-hand:.2%} a year (more than max_return_gap=5.00%)"]
    assert compare_equity(live, bt, max_return_gap=-hand + 0.01).verdict == "ok"     # the threshold is a parameter


def test_unrelated_curves_too_little_history_and_gaps():
    r = compare_equity(noisy(1), noisy(0))
    assert r.verdict == "degraded" and r.correlation < 0.5 and r.tracking_error > 0.10
    assert [x.split(" ")[0] for x in r.reasons] == ["live", "tracking", "correlation"]
    # the table stays readable in 100 columns with all three reasons (one row each, wrapped), labels say what is annualised
    t = r.table()
    assert max(len(k) + 2 + len(str(v)) for k, v in t["value"].items()) <= 100, t.to_string()
    assert {"return gap (annualised)", "tracking error (annualised)"} <= set(t.index)
    assert " ".join(t["value"].iloc[-5:]).count("trails") == 1
    short = compare_equity(noisy(0, 19), noisy(0))
    assert short.verdict == "too little history" and short.days == 19 and "min_days=20" in short.reasons[0]
    live = noisy().drop(IDX[10:15])                                       # the runner was off for a week
    r = compare_equity(live, noisy())
    assert r.days == 55 and r.tracking_error == pytest.approx(0, abs=1e-12)
    with pytest.raises(DegradationError, match="≤ 0"): compare_equity(noisy() - 200_000, noisy())


def test_report_table_json_and_plot():
    r = compare_equity(pd.Series(100_000 * 1.0004 ** np.arange(60), index=IDX), pd.Series(100_000 * 1.001 ** np.arange(60), index=IDX))
    t = r.table()
    assert t.loc["verdict", "value"] == "degraded" and t.loc["return gap (annualised)", "value"].startswith("-") and t.loc["days", "value"] == 60
    j = r.to_json()
    assert j["correlation"] is None and json.loads(json.dumps(j))["verdict"] == "degraded"     # NaN becomes null
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                    # e.g. Bokeh's warning about time zones
        lay = r.plot()
        bokeh.embed.file_html(lay, resources=bokeh.resources.INLINE)
    assert len(lay.children) == 2 and lay.children[1].x_range is lay.children[0].x_range
    assert {g.glyph.__class__.__name__ for g in lay.children[0].renderers} == {"Line"} and len(lay.children[0].renderers) == 2


# ---- `ats degradation` end to end ------------------------------------------------------------

FIRST, LAST, CAPITAL, DRAG = pd.Timestamp("2011-01-03", tz="UTC"), "2012-06-29", 200_000.0, 0.0003


@pytest.fixture
def db(project):
    for f in ("ma_crossover.py", "long_term_momentum.py"):
        shutil.copy(ROOT / "strategies" / f, project / "strategies" / f)
    run_ats("init", cwd=project, check=True)            # configures both: ma_crossover with 20 % of NAV
    return Store.from_settings(load_settings(str(project / "settings.ini")))


def paper_run(store):
    """What a paper session could have stored: ma_crossover's backtest with a steady drag of DRAG a day, as P&L
    samples on its capital (20 % of the paper gateway's 1,000,000), through the ledger's public append."""
    # the backtest `ats degradation` reruns: same file, parameters, sample prices; warm-up slow = 50 bars -> 65 business days
    # sized as live: 20 % of the account's NAV (CAPITAL / 0.2), the strategy's equity its capital plus the P&L
    nav = CAPITAL / 0.2
    ref = run_backtest_cli(str(store.strategies_dir / "ma_crossover.py"), None, FIRST - pd.offsets.BDay(65), LAST, "sample",
                           dict(symbols=["AAPL", "MSFT"], fast=20, slow=50), init_cash=nav, allocation=0.2).equity.loc[FIRST:] - nav + CAPITAL
    live = ref / ref.iloc[0] * CAPITAL * (1 - DRAG) ** np.arange(len(ref))
    rows = []
    for t, v in live.items():
        net = D(str(round(v - CAPITAL, 2)))
        rows += [dict(time=t.to_pydatetime(), strategy="ma_crossover", realized=D(0), unrealized=net + 7,
                      commissions=D(0), net=net + 7, gross_exposure=D(0), positions=1),          # an earlier sample that day: not the last
                 dict(time=t.to_pydatetime() + dt.timedelta(hours=6), strategy="ma_crossover", realized=net, unrealized=D(0), commissions=D(0), net=net,
                      gross_exposure=D(0), positions=1)]
    assert LedgerStore(store).append_equity(rows) == 2 * len(live)
    years = (ref.index[-1] - ref.index[0]).days / 365.25
    growth = ref.iloc[-1] / ref.iloc[0]
    gap = (growth * (1 - DRAG) ** (len(ref) - 1)) ** (1 / years) - growth ** (1 / years)
    return ref, gap


def test_cli_reports_the_gap_of_a_dragged_paper_run(project, db):
    ref, gap = paper_run(db)
    r = run_ats("degradation", "ma_crossover", "--json", "--plot", "out/chart.html", cwd=project, timeout=180)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert (j["strategy"], j["start"], j["end"], j["days"]) == ("ma_crossover", "2011-01-03", LAST, len(ref))
    assert j["capital"] == CAPITAL and j["capital_source"] == "20% of the given NAV 1,000,000" and j["source"] == "sample"
    assert j["return_gap"] == pytest.approx(gap, abs=2e-5) and gap < -0.05
    assert j["verdict"] == "degraded" and "trails the backtest" in j["reasons"][0]
    assert j["correlation"] > 0.9999 and j["tracking_error"] < 1e-3
    assert "Warning" not in r.stderr, r.stderr
    html = (project / "out" / "chart.html").read_text()
    assert "Bokeh" in html and 'type="application/json"' in html and "cdn.bokeh.org" not in html     # inline: works offline
    human = run_ats("degradation", "ma_crossover", "--end", "2011-12-30", cwd=project, timeout=180)
    assert human.returncode == 0, human.stderr
    # a vertical table that reads in 100 columns, the annualised figures labelled as such
    assert max(map(len, human.stdout.splitlines())) <= 100, human.stdout
    assert "return gap (annualised)" in human.stdout and "degraded" in human.stdout and "2011-12-30" in human.stdout and "2012" not in human.stdout.split("capital")[0]
    assert run_ats("degradation", "ma_crossover", "--fail-on-degraded", cwd=project, timeout=180).returncode == 1
    few = json.loads(run_ats("degradation", "ma_crossover", "--end", "2011-01-14", "--json", cwd=project, timeout=180).stdout)
    assert few["verdict"] == "too little history" and few["days"] == 10


def test_cli_errors_say_what_to_do(project, db):
    r = run_ats("degradation", "long_term_momentum", cwd=project)
    assert r.returncode == 2 and "no equity samples for strategy 'long_term_momentum'" in r.stderr
    assert "it has not traded yet: run it on the paper gateway first (`ats up`)" in r.stderr and "Traceback" not in r.stderr
    r = run_ats("degradation", "ghost", cwd=project)
    assert r.returncode == 2 and "no strategy named 'ghost'" in r.stderr
    assert "configured strategies: long_term_momentum, ma_crossover" in r.stderr and "Traceback" not in r.stderr
