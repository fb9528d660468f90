"Risk properties: no order that breaks a limit passes; an order that only reduces risk always passes."
from hypothesis import given, settings, strategies as st
from ats.risk import RiskEngine, RiskConfig, OrderRequest, Snapshot, TradingState

syms = ["A", "B", "C"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(["s1", "s2"]), st.sampled_from(syms)), st.integers(-5000, 5000), max_size=6),
       st.integers(-5000, 5000).filter(bool), st.sampled_from(["s1", "s2"]), st.sampled_from(syms),
       st.floats(-50_000, 50_000), st.floats(0, 1_000_000), st.sampled_from(list(TradingState)))
def test_limits_hold_and_reducing_always_passes(pos, q, strat, sym, spnl, excess, state):
    cfg = RiskConfig()
    E = RiskEngine(cfg, {"s1": {"max_position_size": 0.05, "max_position_value": 40_000}})
    if state == TradingState.HALTED: E.account_state = state
    elif state == TradingState.REDUCING: E.strategy_states[strat] = state
    snap = Snapshot(nav=1_000_000, excess_liquidity=excess, positions=dict(pos), prices={s: (20.0, 1.0, 1.0) for s in syms},
                    strategy_pnl_today={strat: spnl})
    cur = pos.get((strat, sym), 0)
    new = cur + q
    d = E.check(OrderRequest(strat, sym, q, 20.0), snap)
    reducing = abs(new) <= abs(cur) and (new == 0 or (new > 0) == (cur > 0))
    if reducing:
        assert d.allowed
        return
    if d.allowed:
        assert E.state(strat) == TradingState.ACTIVE
        assert abs(new) * 20 <= E.limit(strat, "max_position_size") * 1_000_000
        assert strat != "s1" or abs(new) * 20 <= 40_000
        assert -spnl / 1_000_000 <= E.limit(strat, "max_strategy_risk")
        gross = sum(abs(v) * 20 for (s, y), v in pos.items() if s == strat and y != sym) + abs(new) * 20
        assert gross <= E.limit(strat, "max_portfolio_weight") * 1_000_000
        added = (abs(new) - abs(cur)) * 20
        assert (excess - added * cfg.initial_margin_rate) / 1_000_000 >= cfg.margin_buffer


def test_strategy_loss_moves_it_to_reducing_and_resume(tmp_path):
    E = RiskEngine(RiskConfig(), state_path=tmp_path / "r.json")
    acts = E.update(Snapshot(nav=1_000_000, excess_liquidity=900_000, strategy_pnl_today={"s1": -15_000, "s2": -5_000}))
    assert E.state("s1") == TradingState.REDUCING and E.state("s2") == TradingState.ACTIVE and acts[0]["level"] == "WARNING"
    assert RiskEngine(RiskConfig(), state_path=tmp_path / "r.json").state("s1") == TradingState.REDUCING
    E.resume("s1", by="ann")
    assert E.state("s1") == TradingState.ACTIVE and E.status()["recent_events"][-1]["kind"] == "resumed"


def test_correlation_refuse_or_flag():
    import numpy as np, pandas as pd
    r = pd.Series(np.random.default_rng(0).normal(0, 0.01, 60))
    snap = Snapshot(nav=1e6, excess_liquidity=9e5, prices={"A": (10.0, 1.0, 1.0)}, strategy_returns={"s1": r, "s2": r * 1.5 + 0.0001})
    assert RiskEngine(RiskConfig()).check(OrderRequest("s1", "A", 10, 10.0), snap).reasons[0].code == "max_correlation"
    d = RiskEngine(RiskConfig(correlation_action="flag")).check(OrderRequest("s1", "A", 10, 10.0), snap)
    assert d.allowed and d.flagged[0].code == "max_correlation"
