"""Risk: no order that breaks a limit passes, none that respects them all is refused, and an order that only reduces risk
always passes; every check, state transition, the kill switch and state persistence by hand."""
import datetime as dt, json, math
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from ib_async import OrderState
from ats.risk import (RiskEngine, RiskConfig, RiskError, Order, OrderRequest, PortfolioSnapshot, Snapshot, TradingState, WhatIf,
                      JsonFileStore, Limits, return_correlations)

NAV = 1_000_000
PRICES = {"A": 20.0, "B": 37.5, "C": 8.25, "D": 125.0}          # exact binary fractions: the oracle's sums are exact too
OWN = {"s1": {"max_position_size": 0.05, "max_position_value": 40_000, "max_portfolio_weight": 0.2},
       "s2": {"max_strategy_risk": 0.005}}
A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


def violated(E: RiskEngine, o: Order, snap: PortfolioSnapshot) -> set:
    "Every limit this order would break, computed the plain way, independently of the engine."
    cfg, s, sym, u = E.cfg, o.strategy, o.symbol, o.price
    own = OWN.get(s, {})
    strict = lambda k: min(getattr(cfg, k), own[k]) if k in own else getattr(cfg, k)
    pos = snap.positions
    cur = pos.get((s, sym), 0)
    new = cur + o.quantity
    V = set()
    if E.state(s) is not A: V.add("trading_state")
    if abs(new) * u > strict("max_position_size") * NAV: V.add("max_position_size")
    net_before = sum(q for (t, y), q in pos.items() if y == sym)
    net_after = net_before + o.quantity
    if net_after != new and abs(net_after) > abs(net_before) and abs(net_after) * u > cfg.max_position_size * NAV: V.add("max_position_size")
    if "max_position_value" in own and abs(new) * u > own["max_position_value"]: V.add("max_position_value")
    sg = sum(abs(q) * PRICES[y] for (t, y), q in pos.items() if t == s and y != sym) + abs(new) * u
    if sg > strict("max_portfolio_weight") * NAV: V.add("max_portfolio_weight")
    if -snap.strategy_pnl_today.get(s, 0) / NAV > strict("max_strategy_risk"): V.add("max_strategy_risk")
    account_pnl = NAV - snap.day_start_equity if snap.day_start_equity is not None else sum(snap.strategy_pnl_today.values())
    if -account_pnl / NAV > cfg.max_account_risk: V.add("max_account_risk")
    peak = max(NAV, snap.peak_equity or 0)
    if (peak - NAV) / peak > cfg.emergency_stop_loss: V.add("emergency_stop_loss")
    added = max(0, abs(new) - abs(cur)) * u
    if (snap.excess_liquidity - added * cfg.margin_rate) / NAV < cfg.margin_buffer: V.add("margin_buffer")
    ag = sum(abs(q) * PRICES[y] for (t, y), q in pos.items() if (t, y) != (s, sym)) + abs(new) * u
    if ag > cfg.max_leverage * NAV: V.add("max_leverage")
    return V


strats, syms = ["s1", "s2", "s3"], list(PRICES)


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(strats), st.sampled_from(syms)), st.integers(-6000, 6000), max_size=8),
       st.sampled_from(strats), st.sampled_from(syms), st.integers(-8000, 8000).filter(bool),
       st.dictionaries(st.sampled_from(strats), st.integers(-30_000, 10_000)), st.integers(0, NAV),
       st.one_of(st.none(), st.integers(950_000, 1_050_000)), st.one_of(st.none(), st.integers(NAV, 1_080_000)),
       st.sampled_from(["none", "strategy REDUCING", "strategy HALTED", "account REDUCING", "account HALTED"]))
def test_every_limit_holds_and_reducing_orders_always_pass(pos, s, sym, q, pnl, excess, day_start, peak, state):
    E = RiskEngine(RiskConfig(), OWN)
    if state == "strategy HALTED": E.kill(s, by="test")
    elif state == "account HALTED": E.kill(by="test")
    elif state == "strategy REDUCING": E.update(PortfolioSnapshot(nav=NAV, excess_liquidity=NAV, strategy_pnl_today={s: -50_000}))
    elif state == "account REDUCING": E.update(PortfolioSnapshot(nav=NAV, excess_liquidity=NAV, day_start_equity=1_030_000))
    assert state == "none" or E.state(s) is not A
    snap = PortfolioSnapshot(nav=NAV, excess_liquidity=excess, positions=dict(pos), prices=dict(PRICES), strategy_pnl_today=pnl,
                             day_start_equity=day_start, peak_equity=peak)
    o = Order(s, sym, q, PRICES[sym])
    d = E.check(o, snap)
    cur = pos.get((s, sym), 0)
    new = cur + q
    if cur and abs(new) < abs(cur) and (new == 0 or (new > 0) == (cur > 0)):
        assert d.allowed and d.action == "accept_reducing" and d.reasons == []
        return
    V = violated(E, o, snap)
    assert {r.code for r in d.reasons} == V
    assert d.allowed == (not V)
    if not d.allowed:
        ev = E.events[-1]
        assert ev.kind == "refused" and ev.strategy == s and ev.symbol == sym and ev.quantity == q and {r.code for r in ev.reasons} == V


def snapshot(**kw):
    return PortfolioSnapshot(**(dict(nav=NAV, excess_liquidity=800_000, prices=dict(PRICES), day=dt.date(2024, 3, 1)) | kw))


def test_each_check_by_hand():
    E = RiskEngine(RiskConfig(), OWN)
    codes = lambda d: [r.code for r in d.reasons]
    # max_position_size, global 10 %: 5,000 A = 100,000 passes; 5,001 does not
    assert E.check(Order("s3", "A", 5000, 20.0), snapshot()).allowed
    d = E.check(Order("s3", "A", 5001, 20.0), snapshot())
    assert codes(d) == ["max_position_size"] and d.reasons[0].limit == 0.10 and d.reasons[0].value == 0.10002
    # s1's own 5 % and 40,000: 2,600 A = 52,000 breaks both
    assert codes(E.check(Order("s1", "A", 2600, 20.0), snapshot())) == ["max_position_size", "max_position_value"]
    # account concentration: s2 holds 4,000 A (8 %), s3 1,000; s3 buying 1,500 more (5 % itself) makes the account 13 %
    d = E.check(Order("s3", "A", 1500, 20.0), snapshot(positions={("s2", "A"): 4000, ("s3", "A"): 1000}))
    assert codes(d) == ["max_position_size"] and "account's net A" in d.message and math.isclose(d.reasons[0].value, 0.13)
    # ...but s4 selling 1,000 A short (new risk for s4) makes the account's net smaller: passes
    assert E.check(Order("s4", "A", -1000, 20.0), snapshot(positions={("s2", "A"): 4000, ("s3", "A"): 1000})).allowed
    # max_portfolio_weight, s1's own 20 %: 162,500 of D + 39,000 of A -> 20.15 %
    d = E.check(Order("s1", "A", 1950, 20.0), snapshot(positions={("s1", "D"): 1300}))
    assert codes(d) == ["max_portfolio_weight"] and math.isclose(d.reasons[0].value, 0.2015) and d.reasons[0].limit == 0.2
    assert E.check(Order("s1", "A", 1875, 20.0), snapshot(positions={("s1", "D"): 1300})).allowed      # exactly 20 % is within
    # max_strategy_risk: s2's own 0.5 %: a loss of 5,001 blocks it, s3 at the same loss is fine (global 1 %)
    assert codes(E.check(Order("s2", "A", 10, 20.0), snapshot(strategy_pnl_today={"s2": -5001}))) == ["max_strategy_risk"]
    assert E.check(Order("s3", "A", 10, 20.0), snapshot(strategy_pnl_today={"s3": -5001})).allowed
    # max_account_risk: down 20,001 on 1,000,000 of NAV
    assert codes(E.check(Order("s3", "A", 10, 20.0), snapshot(day_start_equity=NAV + 20_001))) == ["max_account_risk"]
    # emergency_stop_loss in the check too (even before update() halts): 5.3 % below the peak
    assert codes(E.check(Order("s3", "A", 10, 20.0), snapshot(peak_equity=1_056_000))) == ["emergency_stop_loss"]
    # margin_buffer: 220,000 excess, buying 100,000 adds 25,000 of margin -> 19.5 % < 20 %
    d = E.check(Order("s3", "A", 5000, 20.0), snapshot(excess_liquidity=220_000))
    assert codes(d) == ["margin_buffer"] and math.isclose(d.reasons[0].value, 0.195)
    # ...what-if numbers win over the estimate, both ways
    ok = WhatIf(equity_with_loan_after=1_000_000, maint_margin_after=700_000)
    assert E.check(Order("s3", "A", 5000, 20.0, what_if=ok), snapshot(excess_liquidity=220_000)).allowed
    bad = WhatIf(maint_margin_change=30_000)
    assert codes(E.check(Order("s3", "A", 10, 20.0, what_if=bad), snapshot(excess_liquidity=220_000))) == ["margin_buffer"]
    # max_leverage on the account: 1,990,000 held across strategies + 20,000 -> 2.01×
    held = {(f"x{i}", "D"): 1592 for i in range(10)}
    assert codes(E.check(Order("s3", "A", 1000, 20.0), snapshot(positions=held, excess_liquidity=NAV))) == ["max_leverage"]
    # max_leverage of a strategy against its capital (its own limit 1.5×): 150,000 capital, 230,000 gross
    E2 = RiskEngine(RiskConfig(max_portfolio_weight=1.0), {"lev": {"max_leverage": 1.5}})
    d = E2.check(Order("lev", "A", 1500, 20.0), snapshot(positions={("lev", "D"): 1600}, strategy_capital={"lev": 150_000}))
    assert codes(d) == ["max_leverage"] and math.isclose(d.reasons[0].value, 230_000 / 150_000)
    # max_orders_per_day from a strategy's risk_limits
    E3 = RiskEngine(RiskConfig(), {"busy": {"max_orders_per_day": 3}})
    assert E3.check(Order("busy", "A", 1, 20.0), snapshot(orders_today={"busy": 2})).allowed
    assert codes(E3.check(Order("busy", "A", 1, 20.0), snapshot(orders_today={"busy": 3}))) == ["max_orders_per_day"]


def test_correlation_refused_or_flagged_and_computed_from_returns():
    rng = np.random.default_rng(7)
    base = rng.normal(0, 0.01, 120)
    days = pd.bdate_range("2024-01-01", periods=120)
    rets = {"s1": pd.Series(base, days), "s2": pd.Series(base * 2 + rng.normal(0, 0.002, 120), days), "s3": pd.Series(rng.normal(0, 0.01, 120), days)}
    corr = return_correlations(rets, 20)
    assert corr[("s1", "s2")] > 0.95 and abs(corr[("s1", "s3")]) < 0.3 and corr[("s2", "s1")] == corr[("s1", "s2")]
    assert return_correlations({"s1": base[:10], "s2": base[:10]}, 20) == {}               # too short to judge
    snap = snapshot(positions={("s2", "B"): 100}, strategy_returns=rets)
    d = RiskEngine(RiskConfig()).check(Order("s1", "A", 10, 20.0), snap)
    assert [r.code for r in d.reasons] == ["max_correlation"] and d.reasons[0].value > 0.95 and "s2" in d.message
    assert RiskEngine(RiskConfig(max_correlation=0.995)).check(Order("s1", "A", 10, 20.0), snap).allowed
    seen = []
    E = RiskEngine(RiskConfig(correlation_action="flag")); E.subscribe(seen.append)
    d = E.check(Order("s1", "A", 10, 20.0), snap)
    assert d.allowed and d.action == "flag" and seen[-1].kind == "flagged"
    # precomputed correlations are used as given (the runtime computes them once a day)
    assert not RiskEngine(RiskConfig()).check(Order("s3", "A", 10, 20.0), snapshot(positions={("s2", "B"): 1}, correlations={("s3", "s2"): 0.8})).allowed


def test_reducing_orders_pass_even_with_a_broken_picture():
    E = RiskEngine(RiskConfig())
    E.kill(by="test")
    bad = PortfolioSnapshot(nav=float("nan"), excess_liquidity=-1, positions={("s", "A"): 100}, prices={})
    assert E.check(Order("s", "A", -40, float("nan")), bad).action == "accept_reducing"
    d = E.check(Order("s", "A", 40, 20.0), bad)
    assert not d.allowed and {r.code for r in d.reasons} == {"invalid_snapshot"}
    d = E.check(Order("s", "A", float("nan"), 20.0), snapshot())
    assert [r.code for r in d.reasons] == ["invalid_order"]
    d = E.check(Order("s", "A", -150, 20.0), bad)                                      # flipping is not reducing
    assert not d.allowed


def test_unpriced_positions_block_new_risk_but_not_exits():
    E = RiskEngine(RiskConfig())
    snap = snapshot(positions={("s2", "ZZZ"): 100, ("s1", "A"): 100})
    d = E.check(Order("s1", "A", 10, 20.0), snap)
    assert [r.code for r in d.reasons] == ["unknown_exposure"] and "ZZZ" in d.message and "s2" in d.message
    assert E.check(Order("s1", "A", -10, 20.0), snap).allowed
    # the order's own symbol without a snapshot price is valued at the order's price
    assert E.check(Order("s1", "NEW", 10, 20.0), snapshot(positions={("s1", "NEW"): 100})).allowed
    d = E.check(Order("s1", "NEW", 10_000, 20.0), snapshot(positions={("s1", "NEW"): 100}))
    assert "max_position_size" in [r.code for r in d.reasons]


def test_states_transitions_by_hand():
    events = []
    E = RiskEngine(RiskConfig(max_account_risk=0.02, emergency_stop_loss=0.05))
    E.subscribe(events.append)
    acts = E.update(snapshot(strategy_pnl_today={"s1": -10_001, "s2": -10_000}, day_start_equity=NAV))  # 1.0001 % > 1 %; 1 % is not over
    assert (E.state("s1"), E.state("s2"), E.state()) == (R, A, A)
    assert [(a.kind, a.strategy, a.level) for a in acts] == [("alert", "s1", "WARNING")] and "ats resume --strategy s1" in acts[0].message
    assert E.update(snapshot(strategy_pnl_today={"s1": -30_000}, day_start_equity=NAV)) == []  # already REDUCING: no new alert
    acts = E.update(snapshot(nav=979_000, day_start_equity=NAV))                            # account down 2.1 % of NAV
    assert E.state() is R and E.state("s3") is R and acts[0].level == "WARNING"
    acts = E.update(snapshot(nav=949_000, peak_equity=NAV))                                  # 5.1 % below the peak
    assert E.state() is H and [(a.kind, a.strategy) for a in acts] == [("cancel_orders", None), ("flatten", None), ("alert", None)]
    assert acts[-1].level == "CRITICAL" and "emergency stop" in acts[-1].message
    assert E.update(snapshot(nav=900_000, peak_equity=NAV)) == []                           # halted once
    assert [e.kind for e in events] == ["state", "state", "state"] and events[-1].state == "HALTED"
    # without flatten_on_emergency only cancel + alert
    E2 = RiskEngine(RiskConfig(flatten_on_emergency=False))
    assert [a.kind for a in E2.update(snapshot(nav=940_000, peak_equity=NAV))] == ["cancel_orders", "alert"]


def test_kill_switch_and_resume():
    E = RiskEngine(RiskConfig())
    snap = snapshot(positions={("s1", "A"): 100, ("s2", "A"): 100})
    acts = E.kill("s1", flatten=False, by="cli:ann", reason="looks wrong")
    assert [(a.kind, a.strategy) for a in acts] == [("cancel_orders", "s1"), ("alert", "s1")]
    assert not E.check(Order("s1", "A", 1, 20.0), snap).allowed and E.check(Order("s2", "A", 1, 20.0), snap).allowed
    assert E.check(Order("s1", "A", -100, 20.0), snap).allowed
    assert E.events[-2].kind == "kill" and E.events[-2].by == "cli:ann"
    acts = E.kill(flatten=True, by="dashboard")
    assert [(a.kind, a.strategy) for a in acts] == [("cancel_orders", None), ("flatten", None), ("alert", None)]
    d = E.check(Order("s2", "A", 1, 20.0), snap)
    assert [r.code for r in d.reasons] == ["trading_state"] and "the account is HALTED" in d.message and "ats resume" in d.message
    E.resume("s1", by="ann")                                                                  # the account is still halted
    assert E.state("s1") is H
    E.resume(by="ann")
    assert E.state("s1") is A and E.check(Order("s2", "A", 1, 20.0), snap).allowed and E.events[-1].kind == "resume"


def test_resume_gives_a_fresh_budget_for_the_rest_of_the_day():
    E = RiskEngine(RiskConfig())
    day = dt.date(2024, 3, 1)
    snapshot = lambda **kw: globals()["snapshot"](day_start_equity=NAV, **kw)     # the account itself is flat today
    E.update(snapshot(strategy_pnl_today={"s1": -12_000}, day=day))
    assert E.state("s1") is R
    E.resume("s1", by="ann", snap=snapshot(strategy_pnl_today={"s1": -12_000}, day=day))
    assert E.update(snapshot(strategy_pnl_today={"s1": -21_000}, day=day)) == [] and E.state("s1") is A   # 0.9 % since the resume
    assert E.check(Order("s1", "A", 10, 20.0), snapshot(strategy_pnl_today={"s1": -21_000}, day=day)).allowed
    E.update(snapshot(strategy_pnl_today={"s1": -22_001}, day=day))                          # 1.0001 % since the resume
    assert E.state("s1") is R
    # the next day the budget is the whole limit again, measured from 0
    assert [r.code for r in E.check(Order("s1", "A", 10, 20.0), snapshot(strategy_pnl_today={"s1": -10_001}, day=dt.date(2024, 3, 4))).reasons] == ["trading_state", "max_strategy_risk"]


def test_states_survive_restarts_in_a_json_file(tmp_path):
    path = tmp_path / "db" / "risk_state.json"
    E = RiskEngine(RiskConfig(), OWN, path)
    E.update(snapshot(strategy_pnl_today={"s1": -20_000}))
    E.kill("s2", by="cli")
    E2 = RiskEngine(RiskConfig(), OWN, path)
    assert (E2.state("s1"), E2.state("s2"), E2.state("s3")) == (R, H, A)
    assert E2.status()["strategies"]["s2"]["by"] == "cli" and [h["state"] for h in E2.status()["history"]] == ["REDUCING", "HALTED"]
    # a new day resets nothing unless reset_states_daily
    E2.update(snapshot(day=dt.date(2024, 3, 4)))
    assert RiskEngine(RiskConfig(), OWN, path).state("s2") is H
    E3 = RiskEngine(RiskConfig(reset_states_daily=True), OWN, path)
    E3.update(snapshot(day=dt.date(2024, 3, 4)))                                               # same day as the last roll: no reset
    assert E3.state("s2") is H
    E3.update(snapshot(day=dt.date(2024, 3, 5)))
    assert (E3.state("s1"), E3.state("s2")) == (A, A) and E3.events[-1].kind == "reset"
    assert RiskEngine(RiskConfig(), OWN, path).state("s2") is A


def test_unusable_state_is_an_error_never_a_silent_reset(tmp_path):
    p = tmp_path / "risk_state.json"
    p.write_text("{\"version\": 1, \"account\": {\"state\": \"PAUSED\"}}")
    with pytest.raises(RiskError, match="risk state in JsonFileStore.*not usable.*repair or remove"):
        RiskEngine(RiskConfig(), store=p)
    p.write_text("{half")
    with pytest.raises(RiskError, match=r"cannot read the state file .*risk_state.json.*repair it or move it away"):
        RiskEngine(RiskConfig(), store=p)


def test_states_survive_restarts_in_arcticdb(tmp_path):
    from ats.store import Store
    from ats.risk import ArcticStateStore
    lib = Store(f"lmdb://{tmp_path / 'db'}?map_size=64MB").library("portfolios")
    E = RiskEngine(RiskConfig(), store=ArcticStateStore(lib))
    E.kill(flatten=True, by="cli")
    lib2 = Store(f"lmdb://{tmp_path / 'db'}?map_size=64MB").library("portfolios")
    E2 = RiskEngine(RiskConfig(), store=ArcticStateStore(lib2))
    assert E2.state("any") is H and E2.account["by"] == "cli"
    E2.resume(by="ann")
    assert RiskEngine(RiskConfig(), store=ArcticStateStore(lib)).state() is A
    assert len(lib.list_versions("risk_state")) == 1                                          # old versions pruned


def test_status_is_json_with_states_limits_and_usage():
    E = RiskEngine(RiskConfig(), OWN)
    snap = snapshot(positions={("s1", "A"): 1000, ("s1", "D"): 200, ("s2", "B"): -2000}, strategy_pnl_today={"s1": -3000, "s2": 500},
                    day_start_equity=1_002_500, peak_equity=1_004_000, init_margin=120_000)
    E.update(snap)
    s = json.loads(json.dumps(E.status()))
    assert s["account"]["state"] == "ACTIVE" and set(s["strategies"]) == {"s1", "s2"}
    assert s["limits"]["globals"]["max_position_size"] == 0.10 and s["limits"]["strategies"]["s1"]["max_position_size"] == 0.05
    u = s["usage"]
    assert math.isclose(u["account"]["loss_today"], 0.0025) and math.isclose(u["account"]["drawdown"], 4000 / 1_004_000)
    assert math.isclose(u["account"]["leverage"], (20_000 + 25_000 + 75_000) / NAV) and u["account"]["init_margin"] == 0.12
    assert math.isclose(u["strategies"]["s1"]["gross"], 0.045) and u["strategies"]["s1"]["largest_symbol"] == "D"
    assert math.isclose(u["strategies"]["s1"]["loss_today"], 0.003) and math.isclose(u["strategies"]["s2"]["loss_today"], -0.0005)
    E.check(Order("s1", "A", 10_000, 20.0), snap)
    assert json.loads(json.dumps(E.status()))["events"][-1]["kind"] == "refused"


def test_what_if_from_a_real_ib_order_state():
    st_ = OrderState(initMarginChange="25000.5", maintMarginChange="20000", equityWithLoanAfter="1000000",
                     maintMarginAfter="1.7976931348623157E308", initMarginAfter="")
    w = WhatIf.from_order_state(st_)
    assert (w.init_margin_change, w.maint_margin_change, w.equity_with_loan_after, w.maint_margin_after) == (25000.5, 20000.0, 1_000_000.0, None)
    assert w.excess_after(300_000) == 280_000                                                  # the maintenance change, IB's after-values incomplete


def test_settings_from_the_real_configuration_and_runtime_names(tmp_path):
    from ats.config import load_settings
    ini = tmp_path / "settings.ini"
    ini.write_text("[risk]\nmax_position_size = 0.08\ncorrelation_action = flag\n[position_sizing]\nmax_leverage = 1.5\n")
    s = load_settings(ini, env={})
    c = RiskConfig.from_settings(s)
    assert (c.max_position_size, c.correlation_action, c.max_leverage, c.emergency_stop_loss) == (0.08, "flag", 1.5, 0.05)
    assert RiskConfig.from_settings(s.risk).max_position_size == 0.08
    # the names and shapes the runtime uses: OrderRequest(strategy, symbol, qty, price), prices as (price, multiplier, fx)
    snap = Snapshot(nav=NAV, excess_liquidity=900_000, positions={("s", "ES"): 1}, prices={"ES": (5000.0, 50.0, 1.0)})
    d = RiskEngine(c).check(OrderRequest("s", "ES", 1, 5000.0, multiplier=50.0), snap)
    assert not d.allowed and [r.code for r in d.reasons] == ["max_position_size", "max_portfolio_weight"] and math.isclose(d.reasons[0].value, 0.5)


@pytest.mark.parametrize("kw, words", [
    (dict(max_position_size=0), ["[risk] max_position_size = 0", "(0, 1]"]),
    (dict(correlation_action="warn"), ["correlation_action = 'warn'", "refuse or flag"]),
    (dict(max_leverage=-1), ["max_leverage = -1"]),
    (dict(max_position_size="10%"), ["max_position_size = '10%'", "a number"]),
    (dict(flatten_on_emergency="yes"), ["flatten_on_emergency = 'yes'", "true or false"]),
])
def test_bad_settings_are_refused_with_a_clear_message(kw, words):
    with pytest.raises(RiskError) as e:
        RiskConfig(**kw)
    for w in words: assert w in str(e.value)
    with pytest.raises(RiskError, match="strategy 'x': risk_limits.max_position_value = -5: expected a number > 0"):
        RiskEngine(RiskConfig(), {"x": {"max_position_value": -5}})


def test_reduce_after_crash_recovery_never_loosens_a_state_and_survives_a_restart(tmp_path):
    "Crash recovery in safe mode makes the account REDUCING before the new runner trades; a kill switch's HALT stays HALTED."
    path = tmp_path / "risk_state.json"
    E = RiskEngine(RiskConfig(), store=path)
    snap = snapshot(positions={("s1", "A"): 100})
    acts = E.reduce(None, by="crash recovery", reason="the runner was restarted")
    assert E.state() is R and [a.kind for a in acts] == ["alert"] and "ats resume" in acts[0].message
    assert not E.check(Order("s1", "A", 1, 20.0), snap).allowed and E.check(Order("s1", "A", -100, 20.0), snap).allowed
    again = RiskEngine(RiskConfig(), store=path)                                             # what the new runner loads
    assert again.state() is R and again.account["reason"] == "the runner was restarted"
    E.kill(by="ann")
    assert E.reduce(None, by="crash recovery", reason="again") == [] and E.state() is H


def test_runner_state_store_writes_off_the_event_loop_and_a_kill_before_it_returns(tmp_path):
    "The runner's risk and stop state go through a write-behind store: saving never waits on ArcticDB, a kill is on disk when kill() returns."
    import threading, time
    from ats.store import Store
    from ats.risk import ArcticStateStore, BackgroundStateStore
    lib = Store(f"lmdb://{tmp_path / 'db'}?map_size=64MB").library("portfolios")
    writing = threading.Event()
    class Gated(ArcticStateStore):                  # the real ArcticDB store, held at the door until the test lets it write
        def save(self, state): writing.wait(10); super().save(state)
    bg = BackgroundStateStore(Gated(lib, "stops.state"))
    t0 = time.perf_counter()
    for i in range(50): bg.save({"n": i, "plans": [i] * 10})
    assert time.perf_counter() - t0 < 1.0           # 50 saves while the store cannot write: none of them waited for it
    assert bg.load() == {"n": 49, "plans": [49] * 10} and not lib.has_symbol("stops.state")
    writing.set()
    assert bg.flush(10)
    assert ArcticStateStore(lib, "stops.state").load() == {"n": 49, "plans": [49] * 10}     # the newest state, from a fresh reader
    bg.close()
    # a trading-state change does not wait in the queue: the next process sees the kill as soon as kill() returned
    E = RiskEngine(RiskConfig(), store=BackgroundStateStore(ArcticStateStore(lib, "risk.state")))
    E.kill("s1", by="cli", reason="test")
    assert RiskEngine(RiskConfig(), store=ArcticStateStore(lib, "risk.state")).state("s1") is H
    E.store.close()
