"Sizing: minimum, increment and leverage cap hold for any input; rounding never adds risk; each method by hand; backtest and live size alike."
import math
from decimal import Decimal
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from ats.sizing import (SizingConfig, SizingError, TradeStats, Sized, kelly_fraction, daily_volatility, round_to_increment,
                        size_order, target_quantities, target_quantities_frame, sized_weights)

SYMS = list("ABCDEFGH")
weights = st.dictionaries(st.sampled_from(SYMS), st.floats(-2, 2, allow_nan=False), min_size=1, max_size=8)
methods = st.sampled_from(["fixed", "volatility_adjusted", "kelly"])
stats = st.builds(TradeStats, st.integers(0, 200), st.floats(0, 1), st.floats(0.01, 10))


def unit_values(syms, px, mults):
    return {s: px * (1 + i / 7) * mults[i % len(mults)] for i, s in enumerate(sorted(syms))}


@settings(max_examples=400, deadline=None)
@given(weights, st.floats(1e3, 1e8), st.integers(1, 100), st.floats(0, 5000), st.floats(0.1, 5), st.floats(0.01, 2000),
       methods, stats, st.dictionaries(st.sampled_from(SYMS), st.integers(-3000, 3000), max_size=4), st.floats(0.002, 0.1))
def test_target_quantities_respect_increment_minimum_and_leverage(w, capital, inc, minimum, lev, px, method, ks, held, vol):
    cfg = SizingConfig(method=method, position_increment=inc, min_position_size=minimum, max_leverage=lev)
    prices = unit_values(set(w) | set(held), px, [1.0])
    vols = {s: vol * (1 + i / 5) for i, s in enumerate(sorted(w))}
    q = target_quantities(w, prices, capital, positions=held, cfg=cfg, volatility=vols, stats=ks)
    assert set(q) == set(w)
    other = sum(abs(v) * prices[s] for s, v in held.items() if s not in w)
    gross = sum(abs(float(v)) * prices[s] for s, v in q.items())
    assert gross <= max(0.0, lev * capital - other) * (1 + 1e-9) + 1e-6          # the new targets share what is left under the cap
    f, _ = kelly_fraction(ks, cfg) if method == "kelly" else (None, "")
    for s, v in q.items():
        assert isinstance(v, Decimal) and v == v.to_integral_value() and v % inc == 0
        assert v == 0 or abs(float(v)) * prices[s] >= minimum
        assert v == 0 or (v > 0) == (w[s] > 0)
        asked = abs(w[s]) * (cfg.risk_per_trade / vols[s] if method == "volatility_adjusted" else f if f is not None else 1.0) * capital
        assert abs(float(v)) * prices[s] <= asked * (1 + 1e-9) + 1e-6             # rounding toward zero never adds risk


@settings(max_examples=300, deadline=None)
@given(st.floats(0.05, 5000), st.floats(1e3, 1e8), st.integers(1, 50), st.sampled_from([1.0, 50.0, 100.0]), st.sampled_from([1.0, 1.1, 0.0067]),
       st.floats(0, 5000), st.floats(0.1, 5), methods, stats, st.floats(0.001, 0.2), st.floats(0, 3e8), st.sampled_from([1, -1]))
def test_size_order_respects_increment_minimum_and_leverage(px, capital, inc, mult, fx, minimum, lev, method, ks, vol, gross, side):
    cfg = SizingConfig(method=method, position_increment=inc, min_position_size=minimum, max_leverage=lev)
    r = size_order(px, capital, cfg, side=side, multiplier=mult, fx=fx, volatility=vol, stats=ks, gross_exposure=gross)
    unit = px * mult * fx
    q = r.quantity
    assert q % inc == 0 and (q == 0 or (q > 0) == (side > 0))
    assert q == 0 or abs(float(q)) * unit >= minimum
    assert abs(float(q)) * unit <= max(0.0, lev * capital - gross) * (1 + 1e-9) + 1e-6
    assert math.isclose(r.value, abs(float(q)) * unit, rel_tol=1e-12)
    assert r.method in ("fixed", method)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(st.floats(-1.5, 1.5, allow_nan=False), st.just(float("nan")), st.just(0.0)), min_size=4, max_size=4), min_size=1, max_size=6),
       st.floats(1e3, 1e7), st.integers(1, 20), st.floats(0, 500), st.floats(0.2, 3), methods, stats)
def test_vectorized_equals_scalar_row_by_row(rows, capital, inc, minimum, lev, method, ks):
    cfg = SizingConfig(method=method, position_increment=inc, min_position_size=minimum, max_leverage=lev)
    idx = pd.date_range("2020-01-01", periods=len(rows), freq="D")
    W = pd.DataFrame(rows, index=idx, columns=list("ABCD"))
    P = pd.DataFrame([[10.0, 33.33, 250.5, 0.75]] * len(rows), index=idx, columns=W.columns)
    V = pd.DataFrame([[0.01, 0.02, 0.015, 0.05]] * len(rows), index=idx, columns=W.columns)
    Q = target_quantities_frame(W, P, capital, cfg, volatility=V, stats=ks)
    for t in idx:
        q = target_quantities(W.loc[t], P.loc[t], capital, cfg=cfg, volatility=V.loc[t], stats=ks)
        for s in W.columns:
            if W.at[t, s] != W.at[t, s]: assert Q.at[t, s] != Q.at[t, s] and q[s] == 0      # no decision: NaN in a backtest, keep (0) live
            else: assert Decimal(int(Q.at[t, s])) == q[s], (t, s, Q.at[t, s], q[s])


def test_each_method_by_hand():
    cap = 250_000
    # fixed: 10,000 / 41.37 = 241.72 -> 241; in round lots of 100 -> 200
    assert size_order(41.37, cap, SizingConfig()).quantity == 241
    assert size_order(41.37, cap, SizingConfig(position_increment=100)).quantity == 200
    # volatility: 1 % of 250,000 = 2,500 at risk; σ 1.25 %/day on 80.00 -> 1.00 a share a day -> 2,500 shares
    assert size_order(80.0, cap, SizingConfig(method="volatility_adjusted"), volatility=0.0125).quantity == 2500
    # ...from a price history: returns alternate +1 % / -1 % exactly enough to give σ by hand
    px = pd.Series([100.0, 101.0, 99.99, 100.9899, 99.980001])
    sigma = pd.Series([0.01, -0.01, 0.01, -0.01]).std(ddof=1)
    assert math.isclose(daily_volatility(px, 4), sigma, rel_tol=1e-9)
    r = size_order(100.0, cap, SizingConfig(method="volatility_adjusted", volatility_lookback=4), prices=px)
    assert r.quantity == int(2500 / (sigma * 100.0))
    # kelly: p 0.6, b 2 -> f* = 0.6 - 0.4 / 2 = 0.4; half = 0.2 (under the 0.25 cap); 50,000 / 125 = 400
    assert size_order(125.0, cap, SizingConfig(method="kelly"), stats=TradeStats(50, 0.6, 2.0)).quantity == 400
    # capped: p 0.8, b 3 -> 0.733, half 0.367 -> 0.25: 62,500 / 125 = 500
    assert size_order(125.0, cap, SizingConfig(method="kelly"), stats=TradeStats(50, 0.8, 3.0)).quantity == 500
    # too few trades -> fixed, and the result says so
    r = size_order(125.0, cap, SizingConfig(method="kelly", min_trades_for_kelly=30), stats=TradeStats(29, 0.8, 3.0))
    assert (r.quantity, r.method) == (80, "fixed") and "29 closed trades" in r.note and "needs 30" in r.note
    # a futures contract: ES at 5,000 × 50 = 250,000 a contract; Kelly 0.25 × 1,000,000 -> 1 contract
    assert size_order(5000.0, 1_000_000, SizingConfig(method="kelly"), multiplier=50, stats=TradeStats(50, 0.8, 3.0)).quantity == 1
    # an instrument in EUR at 1.10 USD per EUR: 10,000 USD / (90 × 1.10) = 101.01 -> 101
    assert size_order(90.0, cap, SizingConfig(), fx=1.10).quantity == 101


def test_trade_stats_from_closed_trades():
    st_ = TradeStats.from_pnl([300, -100, 300, -100, -100, 0, float("nan")])
    assert (st_.trades, st_.win_rate, st_.payoff) == (5, 0.4, 3.0)
    assert TradeStats.from_pnl([5, 10]).payoff == math.inf
    assert kelly_fraction(TradeStats.from_pnl([5, 10] * 20), SizingConfig())[0] == 0.25        # never lost: capped, not infinite
    assert kelly_fraction(TradeStats.from_pnl([-5] * 30), SizingConfig())[0] == 0.0


def test_leverage_cap_counts_positions_already_held():
    # capital 100,000 at 2×: 150,000 of B held leaves 50,000 for A, even though A asks for 80 %
    q = target_quantities({"A": 0.8}, {"A": 50.0, "B": 100.0}, 100_000, positions={"B": 1500}, cfg=SizingConfig())
    assert q == {"A": 1000}
    # held beyond the cap already: no room, no new exposure
    assert target_quantities({"A": 0.8}, {"A": 50.0, "B": 100.0}, 100_000, positions={"B": 2500}, cfg=SizingConfig()) == {"A": 0}


@pytest.mark.parametrize("call, words", [
    (lambda: size_order(0.0, 1e5, SizingConfig()), ["price = 0.0", "> 0"]),
    (lambda: size_order(float("nan"), 1e5, SizingConfig()), ["price = nan"]),
    (lambda: size_order(10.0, -5, SizingConfig()), ["capital = -5"]),
    (lambda: size_order(10.0, 1e5, SizingConfig(), side=2), ["side = 2"]),
    (lambda: size_order(10.0, 1e5, SizingConfig(method="volatility_adjusted")), ["needs the daily volatility"]),
    (lambda: size_order(10.0, 1e5, SizingConfig(method="volatility_adjusted"), prices=pd.Series([1.0, 2.0])), ["needs 21 prices, have 2", "volatility_lookback"]),
    (lambda: size_order(10.0, 1e5, SizingConfig(method="kelly"), stats=[0.5, 2]), ["TradeStats"]),
    (lambda: target_quantities({"A": 0.5}, {}, 1e5), ["no usable price for A", "prices['A']"]),
    (lambda: target_quantities({"A": 0.5}, {"A": 10.0}, 1e5, positions={"Z": 5}), ["no usable price for Z", "held"]),
    (lambda: target_quantities({"A": 0.5}, {"A": 10.0}, 1e5, cfg=SizingConfig(method="volatility_adjusted"), volatility={"A": 0}), ["volatility > 0 for A"]),
    (lambda: SizingConfig(position_increment=0), ["[position_sizing] position_increment = 0", "whole number ≥ 1"]),
    (lambda: SizingConfig(kelly_cap=1.5), ["kelly_cap = 1.5", "(0, 1]"]),
    (lambda: SizingConfig(method="Kelly"), ["method = 'Kelly'", "fixed, volatility_adjusted, kelly"]),
    (lambda: round_to_increment(float("inf")), ["not a finite number"]),
])
def test_bad_input_is_refused_with_a_clear_message(call, words):
    with pytest.raises(SizingError) as e:
        call()
    for w in words:
        assert w in str(e.value)


def test_settings_from_the_real_configuration(tmp_path):
    from ats.config import load_settings
    ini = tmp_path / "settings.ini"
    ini.write_text("[position_sizing]\nmethod = volatility_adjusted\nposition_increment = 10\nmax_leverage = 1.5\n")
    s = load_settings(ini, env={})
    for c in (SizingConfig.from_settings(s), SizingConfig.from_settings(s.position_sizing)):
        assert (c.method, c.position_increment, c.max_leverage, c.risk_per_trade) == ("volatility_adjusted", 10, 1.5, 0.01)


def test_backtest_weights_after_sizing():
    idx = pd.date_range("2024-01-31", periods=2, freq="ME")
    W = pd.DataFrame({"A": [0.5, 0.25], "B": [0.5, -0.25]}, index=idx)
    P = pd.DataFrame({"A": [33.0, 40.0], "B": [7.0, 9.0]}, index=idx)
    Q = target_quantities_frame(W, P, pd.Series([10_000.0, 12_000.0], index=idx), SizingConfig(position_increment=5))
    assert Q.values.tolist() == [[150.0, 710.0], [75.0, -330.0]]                 # 5,000/33 = 151.5 -> 150; 3,000/9 = 333.3 -> 330
    SW = sized_weights(Q, P, pd.Series([10_000.0, 12_000.0], index=idx))
    assert np.allclose(SW.values, [[0.495, 0.497], [0.25, -0.2475]])


def test_working_quantities_count_only_orders_that_reach_a_target():
    "What the runtime counts as still working, per contract, in one pass: entries count (less what filled), protection does not."
    from decimal import Decimal
    from ib_async import Trade, Order, OrderStatus, Stock
    from ats.sizing import working_quantities
    msft, aapl = Stock("MSFT", "SMART", "USD", conId=1), Stock("AAPL", "SMART", "USD", conId=2)
    def trade(c, action, qty, filled=0.0, **kw):
        return Trade(c, Order(action=action, totalQuantity=qty, **{"orderType": "MKT", **kw}), OrderStatus(filled=filled))
    trades = [trade(msft, "BUY", 10.0, 3.0), trade(msft, "SELL", 2.5, orderType="LMT", lmtPrice=1.0),
              trade(aapl, "SELL", 5.0, orderType="MOC"),
              trade(msft, "SELL", 7.0, orderType="STP", auxPrice=1.0),                   # a plain stop: not an entry
              trade(msft, "SELL", 7.0, orderType="LMT", ocaGroup="ats-abc"),             # an ats target: protection
              trade(aapl, "BUY", 4.0, parentId=9)]                                        # a bracket child
    w = working_quantities(trades)
    assert w == {1: Decimal("4.5"), 2: Decimal(-5)} and str(w[2]) == "-5"             # exact: 7 − 2.5, whole shares stay whole
    assert working_quantities([]) == {}
