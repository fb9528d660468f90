"The Strategy API as researchers and the runtime use it: typed params, rebalance dates, order intents, loading files."
import datetime as dt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as hs
from ats.strategy import (Strategy, StrategyParamError, StrategyLoadError, OrderIntent, RecordingContext,
                          load_strategy_class, discover, order_key)
from conftest import ROOT

LTM = load_strategy_class(ROOT / "strategies" / "long_term_momentum.py")
MAC = load_strategy_class(ROOT / "strategies" / "ma_crossover.py")


class Typed(Strategy):
    params = dict(symbols=["A"], lookback=10, weight=0.5, long_only=True, stop_pct=None, note="")
    param_types = dict(stop_pct=float)

    def target_weights(self, prices):
        return pd.DataFrame(self.p["weight"], index=prices.index, columns=prices.columns)


def walk(n=600, cols=("A", "B"), seed=5):
    idx = pd.bdate_range("2016-01-01", periods=n, tz="UTC")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.013, n))) for c in cols}, index=idx)


# ---- params -------------------------------------------------------------------------------------------------
def test_stored_params_merge_over_defaults_and_keep_their_types():
    s = Typed({"lookback": 3, "weight": 1, "stop_pct": 0.05})
    assert s.p == dict(symbols=["A"], lookback=3, weight=1.0, long_only=True, stop_pct=0.05, note="")
    assert type(s.p["weight"]) is float                      # an int where a float is expected becomes a float
    assert Typed().p["stop_pct"] is None and Typed.params["lookback"] == 10   # defaults untouched by instances


@pytest.mark.parametrize("bad, words", [
    ({"lookback": "10"}, ["'Typed'", "lookback = '10'", "type str", "expected int"]),
    ({"lookback": 2.5}, ["lookback = 2.5", "type float", "expected int"]),
    ({"weight": True}, ["weight = True", "type bool", "expected float"]),
    ({"long_only": 1}, ["long_only = 1", "type int", "expected bool"]),
    ({"symbols": "AAPL"}, ["symbols = 'AAPL'", "expected list"]),
    ({"stop_pct": "5%"}, ["stop_pct = '5%'", "expected float"]),          # declared type, default None
    ({"lookbak": 3}, ["'Typed'", "unknown parameter 'lookbak'", "lookback, weight"]),
])
def test_wrong_params_are_refused_naming_strategy_key_value_and_type(bad, words):
    with pytest.raises(StrategyParamError) as e:
        Typed(bad)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_shipped_strategies_check_their_own_combinations():
    with pytest.raises(StrategyParamError, match="lookback_period = 1 months; use at least 2"):
        LTM({"lookback_period": 1})
    with pytest.raises(StrategyParamError, match="weight = 1.5 must be a fraction"):
        MAC({"weight": 1.5})
    with pytest.raises(StrategyParamError, match="rebalance_frequency = 'hourly'; expected one of daily, weekly, monthly"):
        LTM({"rebalance_frequency": "hourly"})


# ---- rebalancing --------------------------------------------------------------------------------------------
def test_rebalance_dates_are_the_last_bar_of_each_period():
    idx = pd.bdate_range("2024-01-01", "2024-02-29", tz="UTC").delete([3])      # a holiday on Thu 4 Jan
    monthly = Typed({"weight": 1.0})
    monthly.p["rebalance_frequency"] = "monthly"
    assert [str(t.date()) for t in monthly.rebalance_dates(idx)] == ["2024-01-31", "2024-02-29"]
    weekly = Typed(); weekly.p["rebalance_frequency"] = "weekly"
    assert [str(t.date()) for t in weekly.rebalance_dates(idx)][:3] == ["2024-01-05", "2024-01-12", "2024-01-19"]
    assert Typed().rebalance_dates(idx).equals(idx)                                  # daily is the default


def test_decisions_are_nan_between_rebalance_dates():
    s = LTM({"symbols": ["A", "B"], "lookback_period": 3})
    d = s.decisions(walk())
    taken = d.dropna(how="all")
    assert len(taken) > 10 and taken.index.isin(s.rebalance_dates(d.index)).all()
    assert set(np.unique(taken.values[~np.isnan(taken.values)])) <= {0.0, 0.5}    # fractions, never percents


@settings(max_examples=25, deadline=None)
@given(cut=hs.integers(60, 590), factor=hs.floats(0.1, 10.0), which=hs.sampled_from(["ltm", "mac"]))
def test_no_look_ahead_for_any_cut_and_any_future(cut, factor, which):
    "Whatever happens after bar t, the decisions up to t are the same."
    p = walk()
    s = LTM({"symbols": ["A", "B"], "lookback_period": 3}) if which == "ltm" else MAC({"symbols": ["A", "B"], "fast": 5, "slow": 30})
    t = p.index[cut]
    q = p.copy()
    q.loc[q.index > t, "A"] *= factor
    q.loc[q.index > t, "B"] = q.loc[q.index > t, "B"].iloc[::-1].values
    pd.testing.assert_frame_equal(s.decisions(p).loc[:t], s.decisions(q).loc[:t])


def test_ma_crossover_is_long_exactly_while_fast_is_above_slow():
    p = walk(cols=("A",))
    s = MAC({"symbols": ["A"], "fast": 5, "slow": 20})
    w = s.target_weights(p)["A"].ffill()          # decisions are taken on changes; the position holds in between
    fast, slow = p["A"].rolling(5).mean(), p["A"].rolling(20).mean()
    ok = slow.notna()
    assert ((w[ok] == 1.0) == (fast[ok] > slow[ok])).all()


# ---- orders -------------------------------------------------------------------------------------------------
def test_order_helpers_produce_signed_typed_intents():
    t = dt.datetime(2024, 3, 28, 20, tzinfo=dt.timezone.utc)
    ctx = RecordingContext(capital=50_000, now=t)
    s = Typed(name="typed-1", ctx=ctx)
    s.buy("A", 10)
    s.sell("A", 4, "LMT", limit_price=101.5)
    s.sell("A", 6, "STP", stop_price=95.0)
    s.sell("A", 6, "TRAIL", trail_percent=2.0)
    s.order_target_weight("A", 0.25)
    s.order_target_quantity("A", -30)
    s.bracket("A", 100, stop_price=90.0, target_price=120.0, limit_price=100.0)
    got = [(i.order_type, i.quantity, i.target_weight, i.target_quantity, i.limit_price, i.stop_price, i.trail_percent) for i in ctx.intents]
    assert got == [("MKT", 10.0, None, None, None, None, None), ("LMT", -4.0, None, None, 101.5, None, None),
                   ("STP", -6.0, None, None, None, 95.0, None), ("TRAIL", -6.0, None, None, None, None, 2.0),
                   ("MKT", None, 0.25, None, None, None, None), ("MKT", None, None, -30.0, None, None, None),
                   ("LMT", 100.0, None, None, 100.0, None, None)]
    assert ctx.intents[-1].bracket == dict(stop_price=90.0, target_price=120.0)
    assert all(i.strategy == "typed-1" for i in ctx.intents)                     # orderRef = strategy id
    assert len({i.client_order_key for i in ctx.intents}) == len(ctx.intents)


def test_client_order_key_survives_a_restart_and_differs_by_bar_and_symbol():
    t = pd.Timestamp("2024-03-28 20:00", tz="UTC")
    a, b = RecordingContext(now=t), RecordingContext(now=t)          # the same bar seen before and after a restart
    Typed(name="s", ctx=a).order_target_weight("A", 0.5)
    Typed(name="s", ctx=b).order_target_weight("A", 0.5)
    assert a.intents[0].client_order_key == b.intents[0].client_order_key
    assert order_key("s", t, "A") != order_key("s", t + pd.Timedelta(days=1), "A") != order_key("s", t, "B")
    assert order_key("s", t, "A") != order_key("other", t, "A")


def test_orders_without_a_host_say_so():
    with pytest.raises(RuntimeError, match="'Typed' is not running: orders need a runtime, replay or test context"):
        Typed().buy("A", 1)


def test_positions_capital_and_history_come_from_the_host():
    ctx = RecordingContext(capital=25_000)
    ctx.positions["A"] = -15.0
    ctx.histories["A"] = walk(cols=("close",))
    s = Typed(ctx=ctx)
    assert s.position == {"A": -15.0} and s.ctx.capital == 25_000
    assert len(s.ctx.history("A", 20)) == 20


# ---- loading files ------------------------------------------------------------------------------------------
def test_discover_and_load_the_shipped_strategies():
    found = discover(ROOT / "strategies")
    assert {"ma_crossover", "long_term_momentum"} <= set(found)
    assert load_strategy_class(found["long_term_momentum"]).__name__ == "LongTermMomentum"
    assert LTM.params["symbols"] == ["ACWI"] and LTM.params["lookback_period"] == 10 and LTM.params["rebalance_frequency"] == "monthly"
    assert MAC.params["fast"] == 20 and MAC.params["slow"] == 50


@pytest.mark.parametrize("source, words", [
    ("from ats.strategy import Strategy\nclass X(Strategy)\n    pass\n", ["bad.py:2: syntax error", "fix the file and reload"]),
    ("import math\nx = 1\n", ["expected exactly one Strategy subclass, found 0", "class MyStrategy(Strategy)"]),
    ("from ats.strategy import Strategy\nclass X(Strategy): pass\nclass Y(Strategy): pass\n", ["found 2 (X, Y)"]),
    ("from ats.strategy import Strategy\n\nraise KeyError('API_KEY')\n", ["bad.py:3: KeyError while loading"]),
])
def test_broken_files_are_refused_naming_file_line_and_what_to_do(tmp_path, source, words):
    f = tmp_path / "bad.py"
    f.write_text(source)
    with pytest.raises(StrategyLoadError) as e:
        load_strategy_class(f)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_an_edited_file_reloads_and_helpers_are_skipped(tmp_path):
    f = tmp_path / "mine.py"
    (tmp_path / "_helpers.py").write_text("X = 1\n")
    f.write_text("from ats.strategy import Strategy\nclass Mine(Strategy):\n    params = dict(n=1)\n")
    assert load_strategy_class(f).params == {"n": 1}
    f.write_text("from ats.strategy import Strategy\nclass Mine(Strategy):\n    params = dict(n=2)\n")
    assert load_strategy_class(f).params == {"n": 2}
    assert list(discover(tmp_path)) == ["mine"]
    with pytest.raises(StrategyLoadError, match="strategy file not found"):
        load_strategy_class(tmp_path / "gone.py")
