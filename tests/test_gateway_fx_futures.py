"""FX pairs and futures in the paper gateway, as TWS answers them, driven by unmodified ib_async over a real socket.
One gateway for the module: the tests run in order on one account (FX first, then futures through an expiry), and each
hand-computes the money it expects from the prices the gateway reported."""
import pytest
from ib_async import IB, Forex, Future, ContFuture, MarketOrder
from ats.gateway.service import GatewayThread

ACCT = "DU0000001"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path_factory.mktemp("fxfut") / "state.json", start="2005-01-03").start()
    yield g
    g.stop()


@pytest.fixture
def ib(gw):
    ib = IB()
    ib.connect("127.0.0.1", gw.port, clientId=1, timeout=5)
    ib.errors = []
    ib.errorEvent += lambda reqId, code, msg, c: ib.errors.append((code, msg))
    yield ib
    ib.disconnect()


def values(ib, tag: str) -> dict:
    "An account value by currency (IB reports some per currency and the totals under 'BASE')."
    return {v.currency: float(v.value) for v in ib.accountValues() if v.tag == tag}


def test_fx_pairs_qualify_with_ibs_fields(ib):
    eur, jpy = Forex("EURUSD"), Forex("USDJPY")
    ib.qualifyContracts(eur, jpy)
    assert (eur.secType, eur.symbol, eur.currency, eur.exchange, eur.localSymbol) == ("CASH", "EUR", "USD", "IDEALPRO", "EUR.USD")
    assert (jpy.symbol, jpy.currency, jpy.localSymbol) == ("USD", "JPY", "USD.JPY") and eur.conId != jpy.conId > 0
    assert ib.reqContractDetails(eur)[0].minTick == 0.00005 and ib.reqContractDetails(jpy)[0].minTick == 0.005
    for pair in ("GBPUSD", "USDCHF", "AUDUSD", "USDCAD", "EURGBP", "EURJPY"):
        assert ib.qualifyContracts(Forex(pair))[0].localSymbol == f"{pair[:3]}.{pair[3:]}"
    assert ib.qualifyContracts(Forex("EURNOK")) == [None] and ib.errors[-1][1].startswith("No security definition has been found for the request")


def test_fx_quotes_and_bars_midpoint_but_no_trades(ib):
    eur = Forex("EURUSD"); ib.qualifyContracts(eur)
    t = ib.reqMktData(eur); ib.sleep(0.3)
    assert t.ask - t.bid == pytest.approx(0.0001) and t.bid < t.last < t.ask          # one tick (0.00005) either side of the last price
    bars = ib.reqHistoricalData(eur, "", "5 D", "1 day", "MIDPOINT", True)
    assert str(bars[-1].date) == "2005-01-03" and bars[-1].close == t.last
    assert ib.reqHistoricalData(eur, "", "5 D", "1 day", "BID_ASK", True)
    assert len(ib.reqHistoricalData(eur, "", "5 D", "1 day", "TRADES", True, timeout=3)) == 0
    assert (162, "Historical Market Data Service error message:No historical market data for EUR/CASH@FXSUBPIP Last 1d") in ib.errors


def test_buying_euros_moves_cash_in_both_currencies(ib, gw):
    eur = Forex("EURUSD"); ib.qualifyContracts(eur)
    t = ib.reqMktData(eur); ib.sleep(0.3)
    usd_before = values(ib, "CashBalance")["USD"]
    trade = ib.placeOrder(eur, MarketOrder("BUY", 100_000)); ib.sleep(0.5)
    fill = trade.fills[0]
    assert trade.orderStatus.status == "Filled" and fill.execution.price == t.ask            # a market buy fills at the ask
    comm = round(max(2.0, 100_000 * t.ask * 0.00002), 2)                                      # 0.2 bp of the value, at least 2 USD
    assert fill.commissionReport.commission == comm and fill.commissionReport.currency == "USD"
    cash, rate = values(ib, "CashBalance"), values(ib, "ExchangeRate")
    assert cash["EUR"] == 100_000 and cash["USD"] == pytest.approx(usd_before - 100_000 * t.ask - comm, abs=0.005)
    assert rate["EUR"] == t.last and rate["USD"] == 1
    total = cash["USD"] + 100_000 * t.last                                                  # the account holds cash, not a security
    assert values(ib, "TotalCashBalance")["BASE"] == pytest.approx(total, abs=0.01)
    assert values(ib, "NetLiquidation")["USD"] == pytest.approx(total, abs=0.01)
    pos = [p for p in ib.positions() if p.contract.secType == "CASH"]
    assert len(pos) == 1 and pos[0].contract.localSymbol == "EUR.USD" and pos[0].position == 100_000


def test_futures_qualify_by_month_local_symbol_and_continuous(ib):
    es, esm = Future("ES", "200503", "CME"), Future(localSymbol="ESM5", exchange="CME")
    ib.qualifyContracts(es, esm)
    assert (es.localSymbol, es.lastTradeDateOrContractMonth, es.multiplier, es.tradingClass) == ("ESH5", "20050318", "50", "ES")
    assert (esm.symbol, esm.lastTradeDateOrContractMonth) == ("ES", "20050617")
    cd = ib.reqContractDetails(Future("ES", exchange="CME"))
    assert [d.contract.localSymbol for d in cd] == ["ESH5", "ESM5", "ESU5", "ESZ5"] and {d.minTick for d in cd} == {0.25}
    assert [d.contractMonth for d in cd] == ["200503", "200506", "200509", "200512"]
    for root, exch, mult, tick in (("NQ", "CME", "20", 0.25), ("CL", "NYMEX", "1000", 0.01), ("GC", "COMEX", "100", 0.1), ("ZN", "CBOT", "1000", 1 / 64)):
        d = ib.reqContractDetails(Future(root, exchange=exch))
        assert len(d) >= 3 and d[0].contract.multiplier == mult and d[0].minTick == tick, root
    cont = ContFuture("ES", "CME"); ib.qualifyContracts(cont)
    assert cont.secType == "CONTFUT" and cont.conId == es.conId                              # the front contract
    assert ib.qualifyContracts(Future("XX", "200503", "CME")) == [None]                      # unknown root
    assert ib.qualifyContracts(Future("ES", "200412", "CME")) == [None]                      # expired in December
    assert [c for c, _ in ib.errors].count(200) == 2


def test_futures_quotes_and_bars(ib):
    es, cont = Future("ES", "200503", "CME"), ContFuture("ES", "CME"); ib.qualifyContracts(es, cont)
    t = ib.reqMktData(es); ib.sleep(0.3)
    assert (t.bid, t.ask) == (t.last - 0.25, t.last + 0.25)
    bars = ib.reqHistoricalData(es, "", "1 M", "1 day", "TRADES", True)
    assert bars[-1].close == t.last and all(b.close * 4 == int(b.close * 4) for b in bars)   # on the 0.25 grid
    series = ib.reqHistoricalData(cont, "", "1 Y", "1 day", "TRADES", True)
    assert len(series) > 200 and series[-1].close == t.last


def test_futures_margin_daily_settlement_and_expiry(ib, gw):
    es = Future("ES", "200503", "CME"); ib.qualifyContracts(es)
    t = ib.reqMktData(es); ib.sleep(0.3)
    im0, usd0 = values(ib, "InitMarginReq")["USD"], values(ib, "CashBalance")["USD"]
    what = ib.whatIfOrder(es, MarketOrder("BUY", 2))
    assert float(what.initMarginChange) == 2 * 12_000 and float(what.maintMarginChange) == 2 * 11_000 and what.commission == 1.70
    trade = ib.placeOrder(es, MarketOrder("BUY", 2)); ib.sleep(0.5)
    fill = trade.fills[0].execution.price
    assert fill == t.ask and trade.fills[0].commissionReport.commission == 1.70              # 0.85 USD per contract
    assert values(ib, "CashBalance")["USD"] == pytest.approx(usd0 - 1.70, abs=1e-6)          # no notional changes hands
    assert values(ib, "InitMarginReq")["USD"] == pytest.approx(im0 + 24_000, abs=0.01)
    av = values(ib, "AvailableFunds")["USD"]
    assert av == pytest.approx(values(ib, "EquityWithLoanValue")["USD"] - values(ib, "InitMarginReq")["USD"], abs=0.01)

    gw.call(gw.gw.step, 1); ib.sleep(0.5)
    settle = ib.reqHistoricalData(es, "", "2 D", "1 day", "TRADES", True)[-1].close
    assert values(ib, "CashBalance")["USD"] == pytest.approx(usd0 - 1.70 + 2 * 50 * (settle - fill), abs=1e-6)   # variation margin
    item = [p for p in ib.portfolio() if p.contract.secType == "FUT"][0]
    assert item.position == 2 and item.marketValue == 2 * 50 * settle

    while str(ib.reqCurrentTime().date()) <= "2005-03-18":                                   # through ESH5's last trade day
        gw.call(gw.gw.step, 5); ib.sleep(0.05)
    final = gw.gw.bars[es.conId].close.iloc[-1]                                               # its final settlement price
    assert str(gw.gw.bars[es.conId].index[-1].date()) == "2005-03-18"
    assert values(ib, "CashBalance")["USD"] == pytest.approx(usd0 - 1.70 + 2 * 50 * (final - fill), abs=1e-6)
    assert es.conId not in [p.contract.conId for p in ib.positions()]                        # closed at the final settlement
    assert values(ib, "InitMarginReq")["USD"] == pytest.approx(im0, rel=0.1)                 # the futures margin is released

    late = ib.placeOrder(es, MarketOrder("BUY", 1)); ib.sleep(0.3)
    assert not late.fills and any(c == 201 and "expired" in m for c, m in ib.errors)
    assert ib.qualifyContracts(Future("ES", "200503", "CME")) == [None] and 200 in [c for c, _ in ib.errors]
    cont = ContFuture("ES", "CME"); ib.qualifyContracts(cont)
    assert cont.localSymbol == "ESM5"                                                         # the continuous future rolled


def test_a_futures_position_and_its_settlement_survive_a_restart(ib, gw):
    esm = Future("ES", "200506", "CME"); ib.qualifyContracts(esm)
    usd0 = values(ib, "CashBalance")["USD"]
    trade = ib.placeOrder(esm, MarketOrder("SELL", 1)); ib.sleep(0.2)
    gw.call(gw.gw.step, 1); ib.sleep(0.5)                     # the market was closed: it fills at the next open
    fill = trade.fills[0].execution.price
    close1 = ib.reqHistoricalData(esm, "", "2 D", "1 day", "TRADES", True)[-1].close
    usd1 = values(ib, "CashBalance")["USD"]
    assert usd1 == pytest.approx(usd0 - 0.85 - 50 * (close1 - fill), abs=1e-6)              # a short gains as the price falls
    ib.disconnect()
    gw.kw.pop("start")                                        # a kept account resumes after its clock
    gw.restart()
    ib.connect("127.0.0.1", gw.port, clientId=1, timeout=5)
    assert [(p.contract.localSymbol, p.position) for p in ib.positions() if p.contract.secType == "FUT"] == [("ESM5", -1)]
    assert values(ib, "CashBalance")["USD"] == usd1
    gw.call(gw.gw.step, 1); ib.sleep(0.5)
    close2 = ib.reqHistoricalData(esm, "", "2 D", "1 day", "TRADES", True)[-1].close
    assert values(ib, "CashBalance")["USD"] == pytest.approx(usd1 - 50 * (close2 - close1), abs=1e-6)   # settled from yesterday's close
