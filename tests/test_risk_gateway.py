"""Risk against the paper gateway over a real socket with unmodified ib_async: the account picture and IB's what-if margin
come from the broker, a strategy that keeps buying is stopped at its limit, and a price crash trips the emergency stop,
whose actions leave no open order and no position, and whose HALTED state survives a restart until `resume`."""
import pytest
from ib_async import IB, Stock, MarketOrder, LimitOrder
from ats.gateway.service import GatewayThread
from ats.risk import RiskEngine, RiskConfig, Order, PortfolioSnapshot, TradingState, WhatIf


@pytest.fixture
def gw(tmp_path):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path / "gw.json", start="2005-01-03").start()
    yield g
    g.stop()


@pytest.fixture
def ib(gw):
    conn = IB()
    conn.connect("127.0.0.1", gw.port, clientId=1, timeout=5)
    yield conn
    conn.disconnect()


def jump(gw, ib, con_id, px):
    "A new last price between bars; the account and the position are re-marked to it (the gateway's bar clock does that itself)."
    g = gw.gw
    gw.call(lambda: g.dispatch(g.exchange.mark(con_id, px, g.now()) + [("account",), ("position", con_id)]))
    ib.sleep(0.25)                       # account and position updates are batched every 100 ms


def picture(ib, strategy, **kw) -> PortfolioSnapshot:
    "The account as IB reports it, all positions attributed to one strategy (the ledger does the attribution in the runtime)."
    vals = {v.tag: float(v.value) for v in ib.accountValues() if v.currency == "USD" and v.tag in ("NetLiquidation", "ExcessLiquidity", "InitMarginReq")}
    return PortfolioSnapshot(nav=vals["NetLiquidation"], excess_liquidity=vals["ExcessLiquidity"], init_margin=vals["InitMarginReq"],
                             positions={(strategy, p.contract.symbol): p.position for p in ib.positions() if p.position},
                             prices={i.contract.symbol: i.marketPrice for i in ib.portfolio()}, **kw)


def filled(ib, trade):
    for _ in range(40):
        if trade.isDone(): break
        ib.sleep(0.05)
    return trade.orderStatus.status == "Filled"


def test_a_strategy_that_keeps_buying_is_stopped_at_its_limit(gw, ib):
    c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
    jump(gw, ib, c.conId, 50.0)
    E = RiskEngine(RiskConfig(max_position_size=0.10))          # 10 % of 1,000,000: at 50.00, 2,000 shares
    refused = None
    for _ in range(10):
        wi = WhatIf.from_order_state(ib.whatIfOrder(c, MarketOrder("BUY", 300)))
        d = E.check(Order("greedy", "AAPL", 300, 50.0, con_id=c.conId, what_if=wi), picture(ib, "greedy"))
        if not d.allowed: refused = d; break
        assert filled(ib, ib.placeOrder(c, MarketOrder("BUY", 300, orderRef="greedy")))
        ib.sleep(0.25)
    assert [r.code for r in refused.reasons] == ["max_position_size"] and 0.10 < refused.reasons[0].value < 0.1051
    assert sum(p.position for p in ib.positions()) == 1800                                     # 6 orders; the 7th (2,100) refused
    assert E.events[-1].kind == "refused" and E.events[-1].strategy == "greedy"
    # the margin check used IB's answer: with a 99 % buffer the same order is refused on margin, with IB's numbers
    wi = WhatIf.from_order_state(ib.whatIfOrder(c, MarketOrder("BUY", 100)))
    assert wi.equity_with_loan_after is not None and wi.maint_margin_after > 0
    d = RiskEngine(RiskConfig(margin_buffer=0.99)).check(Order("greedy", "AAPL", 100, 50.0, what_if=wi), picture(ib, "greedy"))
    assert [r.code for r in d.reasons] == ["margin_buffer"]
    snap = picture(ib, "greedy")
    assert d.reasons[0].value == pytest.approx((wi.equity_with_loan_after - wi.maint_margin_after) / snap.nav)


def test_a_crash_trips_the_emergency_stop_cancels_flattens_and_stays_halted(gw, ib, tmp_path):
    c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
    jump(gw, ib, c.conId, 50.0)
    state = tmp_path / "risk_state.json"
    E = RiskEngine(RiskConfig(max_position_size=0.10), store=state)
    assert E.check(Order("s1", "AAPL", 1900, 50.0), picture(ib, "s1")).allowed
    assert filled(ib, ib.placeOrder(c, MarketOrder("BUY", 1900, orderRef="s1")))
    working = ib.placeOrder(c, LimitOrder("BUY", 100, 10.0, orderRef="s1", tif="GTC"))
    ib.sleep(0.25)
    start = picture(ib, "s1")
    assert E.update(start) == [] and working.orderStatus.status == "Submitted"
    jump(gw, ib, c.conId, 20.0)                                   # 1,900 × 30 = 57,000 lost: 5.7 % below the peak
    snap = picture(ib, "s1", peak_equity=start.nav)
    acts = E.update(snap)
    assert [(a.kind, a.strategy) for a in acts] == [("cancel_orders", None), ("flatten", None), ("alert", None)]
    # what the runtime does with the actions
    for a in acts:
        if a.kind == "cancel_orders": ib.reqGlobalCancel()
        elif a.kind == "flatten":
            for p in ib.positions():
                if p.position:
                    order = MarketOrder("SELL" if p.position > 0 else "BUY", abs(p.position), orderRef="risk")
                    assert E.check(Order("s1", p.contract.symbol, -p.position, 20.0), snap).action == "accept_reducing"
                    p.contract.exchange = "SMART"
                    ib.placeOrder(p.contract, order)
    ib.sleep(0.5)
    assert ib.openTrades() == [] and working.orderStatus.status == "Cancelled"
    assert sum(p.position for p in ib.positions()) == 0
    # HALTED until resume, across a restart of the runner
    E2 = RiskEngine(RiskConfig(max_position_size=0.10), store=state)
    assert E2.state("s1") is TradingState.HALTED
    d = E2.check(Order("s1", "AAPL", 10, 20.0), picture(ib, "s1"))
    assert not d.allowed and d.reasons[0].code == "trading_state" and "drawdown" in d.message
    E2.resume(by="test", snap=picture(ib, "s1"))
    assert E2.check(Order("s1", "AAPL", 10, 20.0), picture(ib, "s1")).allowed
    assert E2.status()["account"]["state"] == "ACTIVE"
