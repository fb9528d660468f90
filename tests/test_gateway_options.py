"""Options in the paper gateway, as TWS answers them, driven by unmodified ib_async: the chain, contracts, quotes with greeks,
fills at the quote with IB's per-contract commission, and exercise / expiry into stock at the close of the expiration day.
Money is hand-computed: quantity × price × 100 + commission, to the cent."""
import datetime as dt, math
from zoneinfo import ZoneInfo
import pytest
from ib_async import IB, Stock, Option, MarketOrder
from ats.gateway.service import GatewayThread
from ats.gateway.options import RATE

NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path_factory.mktemp("opt") / "state.json", start="2005-01-03").start()
    yield g
    g.stop()


@pytest.fixture
def ib(gw):
    ib = IB()
    ib.RequestTimeout = 10                      # a request the gateway does not answer fails the test instead of hanging it
    ib.connect("127.0.0.1", gw.port, clientId=1, timeout=5)
    yield ib
    ib.disconnect()


def spy_chain(ib):
    spy = Stock("SPY", "SMART", "USD"); ib.qualifyContracts(spy)
    chains = ib.reqSecDefOptParams("SPY", "", "STK", spy.conId)
    return spy, chains


def cash(ib) -> float:
    return next(float(v.value) for v in ib.accountValues() if v.tag == "TotalCashValue")


def account(ib, tag) -> float:
    return next(float(v.value) for v in ib.accountValues() if v.tag == tag)


def today(gw) -> dt.date:
    return gw.gw.days[gw.gw.day].date()


def step_to(gw, ib, day: dt.date) -> None:
    "Play sessions up to the close of `day`."
    while today(gw) < day: gw.call(gw.gw.step, 1)
    ib.sleep(0.3)


def qualified(ib, *contracts):
    ib.qualifyContracts(*contracts)
    assert all(c.conId for c in contracts), contracts
    return contracts


def test_sec_def_opt_params_gives_the_spy_chain(gw, ib):
    spy, chains = spy_chain(ib)
    assert len(chains) == 1
    ch = chains[0]
    assert (ch.exchange, int(ch.underlyingConId), ch.tradingClass, ch.multiplier) == ("SMART", spy.conId, "SPY", "100")   # ib_async keeps the conId as text
    # 2005-01-03 is a Monday: SPY's weeklies every Friday, the monthly on the third (2005-01-21), out to a year
    assert ch.expirations[:4] == ["20050107", "20050114", "20050121", "20050128"] and ch.expirations[-1] <= "20060103"
    last = gw.gw.exchange.last[spy.conId]
    assert all(b - a == 1 for a, b in zip(ch.strikes, ch.strikes[1:]))                 # $1 strikes below 200
    assert ch.strikes[0] <= last * 0.7 + 1 and ch.strikes[-1] >= last * 1.3 - 1 and any(abs(k - last) < 1 for k in ch.strikes)


def test_a_spy_put_qualifies_as_tws_describes_it_and_unknown_ones_get_error_200(gw, ib):
    _, (ch,) = spy_chain(ib)
    k = ch.strikes[len(ch.strikes) // 2]
    put, = qualified(ib, Option("SPY", "20050121", k, "P", "SMART"))
    assert (put.secType, put.right, put.strike, put.multiplier, put.tradingClass, put.lastTradeDateOrContractMonth) == \
           ("OPT", "P", k, "100", "SPY", "20050121")
    assert put.localSymbol == f"SPY   050121P{round(k * 1000):08d}"
    cd = ib.reqContractDetails(put)[0]
    assert cd.underConId == int(ch.underlyingConId) and cd.contractMonth == "200501" and cd.minTick == 0.01
    errors = []
    ib.errorEvent += lambda reqId, code, msg, c: errors.append((code, msg))
    assert ib.reqContractDetails(Option("SPY", "20050121", k + 0.5, "P", "SMART")) == []          # off the $1 grid
    assert ib.reqContractDetails(Option("SPY", "20050119", k, "P", "SMART")) == []                # a Wednesday: no expiration
    assert [c for c, _ in errors] == [200, 200] and all(m.startswith("No security definition has been found for the request") for _, m in errors)


def test_an_option_ticker_has_model_greeks_and_put_call_parity_holds_within_the_spread(gw, ib):
    spy, (ch,) = spy_chain(ib)
    S = gw.gw.exchange.last[spy.conId]
    k = min(ch.strikes, key=lambda x: abs(x - S))
    call, put = qualified(ib, Option("SPY", "20050121", k, "C", "SMART"), Option("SPY", "20050121", k, "P", "SMART"))
    tc, tp = ib.reqMktData(call), ib.reqMktData(put)
    ib.sleep(0.5)
    mc, mp = tc.modelGreeks, tp.modelGreeks
    assert mc and mp and tc.bidGreeks and tc.askGreeks and tc.lastGreeks
    assert -1 < mp.delta < 0 < mc.delta < 1 and abs(mc.delta - mp.delta - 1) < 1e-5                 # no dividends: Δc − Δp = 1
    assert mc.undPrice == mp.undPrice == pytest.approx(S) and mc.impliedVol == mp.impliedVol and 0.05 <= mc.impliedVol < 1
    assert mc.gamma > 0 and mc.vega > 0 and mc.theta < 0 and mp.theta < 0
    for t, m in ((tc, mc), (tp, mp)):
        assert t.bid < m.optPrice < t.ask and t.bidGreeks.impliedVol < m.impliedVol < t.askGreeks.impliedVol
    T = (dt.datetime(2005, 1, 21, 16, tzinfo=NY) - ib.reqCurrentTime()).total_seconds() / (365 * 86400)
    forward = S - k * math.exp(-RATE * T)                                                          # C − P for European options
    assert abs((mc.optPrice - mp.optPrice) - forward) < 1e-4
    assert tc.bid - tp.ask <= forward <= tc.ask - tp.bid
    bars = ib.reqHistoricalData(call, "", "10 D", "1 day", "TRADES", True)                         # model-priced from SPY's bars
    assert 5 <= len(bars) <= 10 and str(bars[-1].date) == "2005-01-03" and abs(bars[-1].close - tc.last) < 1e-3


def test_buying_two_calls_fills_at_the_ask_with_the_per_contract_commission(gw, ib):
    _, (ch,) = spy_chain(ib)
    call, = qualified(ib, Option("SPY", "20050218", ch.strikes[len(ch.strikes) // 2], "C", "SMART"))
    t = ib.reqMktData(call); ib.sleep(0.3)
    ask, before, im_before = t.ask, cash(ib), account(ib, "InitMarginReq")
    trade = ib.placeOrder(call, MarketOrder("BUY", 2)); ib.sleep(0.4)
    f = trade.fills[0]
    assert trade.orderStatus.status == "Filled" and f.execution.price == ask and f.commissionReport.commission == 1.30   # 2 × 0.65
    pos = [p for p in ib.positions() if p.contract.conId == call.conId][0]
    assert pos.position == 2 and pos.contract.multiplier == "100"
    assert pos.avgCost == pytest.approx((2 * 100 * ask + 1.30) / 2)                                 # IB: per contract, × 100
    assert cash(ib) == pytest.approx(before - (2 * 100 * ask + 1.30), abs=0.005)
    # a long option is paid in full: its whole value is its margin (no loan on it)
    assert account(ib, "InitMarginReq") - im_before == pytest.approx(2 * 100 * gw.gw.exchange.last[call.conId], abs=0.011)


def test_at_expiry_an_itm_call_becomes_stock_at_the_strike_and_an_otm_put_vanishes(gw, ib):
    spy, (ch,) = spy_chain(ib)
    S = gw.gw.exchange.last[spy.conId]
    expiry = ch.expirations[0]                                                                      # this week's Friday
    k = min(ch.strikes, key=lambda x: abs(x - 0.85 * S))                                            # the call deep in the money, the put far out
    call, put = qualified(ib, Option("SPY", expiry, k, "C", "SMART"), Option("SPY", expiry, k, "P", "SMART"))
    tc, tp = ib.reqMktData(call), ib.reqMktData(put); ib.sleep(0.3)
    buy_c, buy_p = ib.placeOrder(call, MarketOrder("BUY", 2)), ib.placeOrder(put, MarketOrder("BUY", 1))
    ib.sleep(0.4)
    ask_c, ask_p = buy_c.fills[0].execution.price, buy_p.fills[0].execution.price
    assert (ask_c, ask_p) == (tc.ask, tp.ask)
    assert buy_p.fills[0].commissionReport.commission == 1.00                                       # 0.65, at least 1.00
    before = cash(ib)
    step_to(gw, ib, dt.datetime.strptime(expiry, "%Y%m%d").date())
    close = gw.gw.exchange.last[spy.conId]
    assert close - k >= 0.01                                                                        # the call expired in the money
    held = {p.contract.conId: p for p in ib.positions()}
    assert call.conId not in held and put.conId not in held                                         # both options are gone
    assert held[spy.conId].position == 200 and held[spy.conId].avgCost == pytest.approx(k)          # 2 contracts × 100 at the strike
    assert cash(ib) == pytest.approx(before - 200 * k, abs=0.005)                                   # the stock, paid at the strike, no commission
    settled = [f for f in ib.reqExecutions() if f.execution.orderId == 0]
    assert sorted((f.contract.conId, f.execution.side, f.execution.shares, f.execution.price) for f in settled) == \
           sorted([(call.conId, "SLD", 2, 0.0), (spy.conId, "BOT", 200, k), (put.conId, "SLD", 1, 0.0)])
    live = {f.execution.execId: f for f in ib.fills()}                                              # (their commission reports live here)
    assert {f.execution.execId for f in settled} <= set(live)                                       # the client heard of them as they happened
    report = {f.contract.conId: live[f.execution.execId].commissionReport for f in settled}
    assert [report[c].commission for c in (call.conId, spy.conId, put.conId)] == [0, 0, 0]
    assert report[call.conId].realizedPNL == pytest.approx(-(2 * 100 * ask_c + 1.30), abs=0.01)   # the premium and commission, lost
    assert report[put.conId].realizedPNL == pytest.approx(-(100 * ask_p + 1.00), abs=0.01)


def test_an_order_on_an_expired_option_is_refused(gw, ib):
    _, (ch,) = spy_chain(ib)
    expiry = ch.expirations[0]
    opt, = qualified(ib, Option("SPY", expiry, ch.strikes[len(ch.strikes) // 2], "C", "SMART"))
    step_to(gw, ib, dt.datetime.strptime(expiry, "%Y%m%d").date())
    errors = []
    ib.errorEvent += lambda reqId, code, msg, c: errors.append((code, msg))
    trade = ib.placeOrder(opt, MarketOrder("BUY", 1)); ib.sleep(0.4)
    assert trade.orderStatus.status == "Cancelled" and not trade.fills
    assert errors and errors[0][0] == 200 and f"expired on {expiry[:4]}-{expiry[4:6]}-{expiry[6:]}" in errors[0][1]
    assert ib.reqContractDetails(Option("SPY", expiry, opt.strike, "C", "SMART")) == []            # no longer listed
    assert expiry not in spy_chain(ib)[1][0].expirations


def test_a_restarted_gateway_still_knows_the_options_its_account_holds(gw):
    "Option conIds are made from what defines the option, so the positions kept in the state file are options again after a restart."
    held = [p for cid, p in gw.gw.exchange.positions.items() if p.qty and gw.gw.instruments[cid].sec_type == "OPT"]
    assert held                                                                   # the calls bought above (February expiry)
    cash_before = dict((t, v) for t, v, _ in gw.gw.exchange.account_values())["TotalCashValue"]
    stock_before = {cid: p.qty for cid, p in gw.gw.exchange.positions.items() if p.qty and gw.gw.instruments[cid].sec_type == "STK"}
    assert stock_before                                                           # the shares an exercise delivered above
    gw.kw.pop("start", None)                                                      # a kept account continues after its clock
    gw.restart()
    ib = IB(); ib.RequestTimeout = 10
    ib.connect("127.0.0.1", gw.port, clientId=3, timeout=5)
    try:
        ib.reqAccountUpdates(); ib.sleep(0.2)
        opt = {p.contract.conId: p for p in ib.portfolio() if p.contract.secType == "OPT"}
        assert {p.con_id for p in held} == set(opt)
        assert {p.contract.conId: p.position for p in ib.positions() if p.contract.secType == "STK"} == stock_before
        assert next(v.value for v in ib.accountValues() if v.tag == "TotalCashValue") == cash_before
        item = opt[held[0].con_id]
        assert item.contract.localSymbol.startswith("SPY   050218C") and item.contract.multiplier == "100"
        assert item.marketValue == pytest.approx(float(held[0].qty) * 100 * item.marketPrice, abs=0.01)
        t = ib.reqMktData(item.contract); ib.sleep(0.3)
        assert t.modelGreeks and t.bid < t.modelGreeks.optPrice < t.ask
    finally:
        ib.disconnect()
