"Backtests of the shipped strategies: no look-ahead, hand-checkable stats, the CLI, sweeps and saved results."
import json
import numpy as np
import pandas as pd
import pytest
from ats.backtest import backtest, sweep, save_result, list_results, load_result, run_backtest_cli
from ats.data import SampleSource, load_prices
from ats.strategy import load_strategy_class, StrategyParamError, StrategyLoadError
from ats.store import Store
from conftest import ROOT, run_ats

LTM = load_strategy_class(ROOT / "strategies" / "long_term_momentum.py")
MAC = load_strategy_class(ROOT / "strategies" / "ma_crossover.py")


def walk(n=800, cols=("A", "B"), seed=3):
    idx = pd.bdate_range("2015-01-01", periods=n, tz="UTC")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, n))) for c in cols}, index=idx)


@pytest.mark.parametrize("cls,params", [(LTM, dict(symbols=["A", "B"])), (MAC, dict(symbols=["A", "B"], fast=5, slow=20))])
def test_no_look_ahead(cls, params):
    "Weights decided at t do not change when prices after t are altered."
    p = walk()
    s = cls(params)
    base = s.decisions(p)
    t = p.index[500]
    q = p.copy(); q.loc[q.index > t] *= np.linspace(0.2, 3.0, (q.index > t).sum())[:, None]
    alt = s.decisions(q)
    pd.testing.assert_frame_equal(base.loc[:t], alt.loc[:t])


def test_ltm_decides_only_at_month_end_against_its_ema():
    p = walk(cols=("A",))
    s = LTM(dict(symbols=["A"], lookback_period=3))
    d = s.decisions(p).dropna()
    month_end = p.groupby(p.index.tz_convert(None).to_period("M")).tail(1)
    assert set(d.index) <= set(month_end.index)
    ema = month_end["A"].ewm(span=3, adjust=False, min_periods=3).mean()
    for t in d.index:                       # hand check each decision
        assert d.loc[t, "A"] == (1.0 if month_end.loc[t, "A"] > ema.loc[t] else 0.0)


def test_ma_crossover_weights_split_equally():
    s = MAC(dict(symbols=["A", "B"], fast=5, slow=20))
    w = s.decisions(walk()).dropna()
    assert set(np.unique(w.values)) <= {0.0, 0.5}


def test_bad_params_are_refused():
    with pytest.raises(StrategyParamError, match="fast \\(50\\) must be at least 1 and below slow \\(20\\)"):
        MAC(dict(fast=50, slow=20))
    with pytest.raises(StrategyParamError, match="unknown parameter 'lookback'"):
        LTM(dict(lookback=3))


def test_backtest_ltm_on_sample_matches_a_manual_replay():
    "The portfolio holds exactly the decided positions, one bar after each decision."
    close = load_prices("sample", ["IBM"], "2005-01-01", "2012-12-31", field="adj_close")
    s = LTM(dict(symbols=["IBM"]))
    r = backtest(s, close, fees=0, slippage=0)
    d = s.decisions(close)["IBM"].dropna()
    held = r.portfolio.asset_value() > 0
    for t, w in d.items():
        nxt = close.index[close.index.get_loc(t) + 1] if close.index.get_loc(t) + 1 < len(close) else None
        if nxt is not None: assert bool(held.loc[nxt]) == (w > 0), t
    assert r.stats["trades"] == len(r.trades) > 3
    assert -1 < r.stats["max_drawdown"] < 0 and r.stats["bars"] == len(close)


def test_cli_backtest_json(project):
    import shutil
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    run_ats("init", cwd=project, check=True)
    r = run_ats("backtest", "long_term_momentum", "--symbols", "MSFT", "--start", "2003-01-01", "--end", "2012-12-31",
                "-p", "lookback_period=8", "--json", "--save", "ltm_msft", cwd=project, check=True)
    j = json.loads(r.stdout)
    assert j["params"]["lookback_period"] == 8 and j["params"]["symbols"] == ["MSFT"]
    assert set(j["stats"]) >= {"cagr", "sharpe", "sortino", "max_drawdown", "turnover", "exposure", "trades"}
    assert j["stats"]["trades"] == len(j["trades"]) > 0 and j["trades"][0]["symbol"] == "MSFT"
    st = Store(f"lmdb://{project}/data_and_research/db")
    assert list(list_results(st)["name"]) == ["ltm_msft"]
    assert load_result(st, "ltm_msft").stats["trades"] == j["stats"]["trades"]
    listed = json.loads(run_ats("backtest", "--list", "--json", cwd=project, check=True).stdout)
    assert [(x["name"], x["strategy"], x["trades"]) for x in listed] == [("ltm_msft", "long_term_momentum", j["stats"]["trades"])]
    assert "ltm_msft" in run_ats("backtest", "--list", cwd=project, check=True).stdout
    bad = run_ats("backtest", "long_term_momentum", "--symbols", "ACWI", cwd=project)
    assert bad.returncode == 2 and "the bundled sample has no 'ACWI'" in bad.stderr
    none = run_ats("backtest", cwd=project)
    assert none.returncode == 2 and "--list the saved results" in none.stderr


def test_broken_strategy_file_is_named(project):
    (project / "strategies" / "broken.py").write_text("from ats.strategy import Strategy\nclass X(Strategy)\n    pass\n")
    run_ats("init", cwd=project, check=True)
    r = run_ats("backtest", "broken", cwd=project)
    assert r.returncode == 2 and "broken.py:2: syntax error" in r.stderr


def test_sweep_and_heatmap():
    from ats.backtest import heatmap
    t = sweep(MAC, walk(), dict(fast=[5, 10, 30], slow=[20, 40]), base_params=dict(symbols=["A", "B"]), progress=False)
    assert len(t) == 6
    assert t.loc[(t.fast == 30) & (t.slow == 20), "error"].iloc[0].startswith("strategy 'MovingAverageCrossover': fast (30)")
    ok = t[t.error == ""]
    assert len(ok) == 5 and ok["sharpe"].notna().all()
    assert heatmap(ok, "fast", "slow").title.text == "sharpe by fast and slow"


def test_saved_results_come_back_with_their_types(tmp_path):
    st = Store(f"lmdb://{tmp_path}/db")
    s = MAC(dict(symbols=["A", "B"], fast=5, slow=20))
    r = backtest(s, walk())
    save_result(st, "mac_ab", r)
    save_result(st, "mac_ab2", backtest(MAC(dict(symbols=["A"], fast=10, slow=40)), walk()))
    listed = list_results(st)
    assert list(listed["name"]) == ["mac_ab2", "mac_ab"]                      # newest first
    back = load_result(st, "mac_ab")
    assert back.params == s.p and back.params["symbols"] == ["A", "B"] and isinstance(back.params["fast"], int)
    assert back.stats == r.stats
    pd.testing.assert_frame_equal(back.trades, r.trades)
    assert isinstance(back.trades["entry_time"].iloc[0], pd.Timestamp)
    pd.testing.assert_series_equal(back.equity, r.equity, check_freq=False)
    pd.testing.assert_frame_equal(back.weights, r.weights.dropna(how="all"), check_freq=False)
    with pytest.raises(KeyError, match="no saved backtest 'nope'.*saved: mac_ab, mac_ab2"):
        load_result(st, "nope")
    with pytest.raises(ValueError, match="result name 'a b'"):
        save_result(st, "a b", r)


def test_ohlcv_bars_per_symbol_trade_at_the_next_open():
    close = walk(cols=("A", "B"))
    bars = {c: pd.DataFrame({"open": close[c] * 0.99, "high": close[c], "low": close[c] * 0.98, "close": close[c], "volume": 1e6})
            for c in close}
    s = MAC(dict(symbols=["A", "B"], fast=5, slow=20))
    a = backtest(s, bars, fees=0, slippage=0)
    b = backtest(s, {"close": close, "open": close * 0.99}, fees=0, slippage=0)
    pd.testing.assert_series_equal(a.equity, b.equity)
    t = a.trades.iloc[0]
    assert t.entry_price == pytest.approx(bars[t.symbol].loc[t.entry_time, "open"])
    with pytest.raises(ValueError, match="bars of A have no 'close' column"):
        backtest(s, {"A": bars["A"].drop(columns="close"), "B": bars["B"]})
    with pytest.raises(ValueError, match="trades C but the data has only A, B"):
        backtest(MAC(dict(symbols=["A", "C"], fast=5, slow=20)), close)
    with pytest.raises(TypeError, match="expected a DataFrame of closes"):
        backtest(s, [1, 2, 3])


def test_live_sizing_settings_apply_increments_and_the_leverage_cap():
    from ats.sizing import SizingConfig

    class Levered(MAC):
        "Twice the crossover's weights: 1.0 per symbol, gross 2.0."
        def target_weights(self, prices): return super().target_weights(prices) * 2

    s = Levered(dict(symbols=["A", "B"], fast=5, slow=20))
    r = backtest(s, walk(), fees=0, slippage=0, sizing=SizingConfig(max_leverage=1.0, position_increment=5))
    assert (r.trades["size"] % 5 == 0).all()
    assert r.weights.abs().sum(axis=1).max() <= 1.0 + 1e-12
    assert (r.portfolio.cash() >= -1e-6).all()                               # capped at 1x: never borrows


def test_a_strategy_that_never_trades_has_an_empty_typed_trade_table_and_json():
    class Flat(MAC):
        def target_weights(self, prices): return super().target_weights(prices) * 0
    r = backtest(Flat(dict(symbols=["A"], fast=5, slow=20)), walk())
    assert r.stats["trades"] == 0 and r.stats["total_return"] == 0 and r.stats["exposure"] == 0
    assert list(r.trades.columns) == ["symbol", "entry_time", "entry_price", "exit_time", "exit_price", "size", "pnl", "ret", "status"]
    from ats.backtest import to_json
    j = json.loads(json.dumps(to_json(r)))                                    # strictly JSON: NaN Sharpe becomes null
    assert j["stats"]["sharpe"] is None and j["trades"] == []


def test_plot_is_an_unshown_bokeh_layout_with_equity_and_drawdown():
    from bokeh.embed import json_item
    r = backtest(MAC(dict(symbols=["A"], fast=5, slow=20)), walk())
    lay = r.plot()
    assert [c.title.text for c in lay.children][1] == "drawdown"
    assert json_item(lay)                                                     # serialises: renders in a notebook or Voila
