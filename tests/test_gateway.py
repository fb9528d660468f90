"The paper gateway over a real socket, driven by unmodified ib_async."
import asyncio, socket, struct, time
import pytest
from ib_async import IB, Stock, Forex, MarketOrder, LimitOrder, StopOrder, Order, ExecutionFilter
from ats.gateway.service import GatewayThread
from ats.gateway.protocol import frame


@pytest.fixture
def gw(tmp_path):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path / "state.json", start="2005-01-03").start()
    yield g
    g.stop()


def connect(port, cid=1, **kw):
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=cid, timeout=5, **kw)
    return ib


def test_connect_is_fast_and_negotiates_the_highest_version(gw):
    t = time.perf_counter()
    ib = connect(gw.port)
    assert time.perf_counter() - t < 1.0                      # every connect-time request answered with its End
    assert ib.client.serverVersion() == 178 and ib.managedAccounts() == ["DU0000001"]
    assert ib.reqCurrentTime().date().isoformat() == "2005-01-03"
    ib.disconnect()


def test_two_clients_and_duplicate_client_id(gw):
    a, b = connect(gw.port, 1), connect(gw.port, 2)
    assert a.isConnected() and b.isConnected()
    dup = IB()
    errors = []
    dup.errorEvent += lambda reqId, code, msg, c: errors.append(code)
    with pytest.raises(Exception):
        dup.connect("127.0.0.1", gw.port, clientId=1, timeout=2)
    assert 326 in errors and a.isConnected()
    a.disconnect(); b.disconnect()


def test_contracts_qualify_and_unknown_symbol(gw):
    ib = connect(gw.port)
    aapl, sap = Stock("AAPL", "SMART", "USD"), Stock("SAP", "SMART", "EUR")
    ib.qualifyContracts(aapl, sap)
    assert aapl.conId > 0 and aapl.primaryExchange == "NASDAQ" and sap.currency == "EUR" and sap.primaryExchange == "IBIS"
    cd = ib.reqContractDetails(aapl)[0]
    assert cd.minTick == 0.01 and cd.longName == "Apple Inc" and cd.timeZoneId == "US/Eastern"
    errors = []
    ib.errorEvent += lambda reqId, code, msg, c: errors.append(code)
    assert ib.reqContractDetails(Stock("NOPE", "SMART", "USD")) == []
    assert 200 in errors
    ib.disconnect()


def test_historical_bars_sizes_and_errors(gw):
    ib = connect(gw.port)
    c = Stock("IBM", "SMART", "USD"); ib.qualifyContracts(c)
    daily = ib.reqHistoricalData(c, "", "1 M", "1 day", "TRADES", True)
    assert 15 <= len(daily) <= 23 and str(daily[-1].date) == "2005-01-03"
    weekly = ib.reqHistoricalData(c, "", "6 M", "1 week", "TRADES", True)
    assert 20 <= len(weekly) <= 28
    mins = ib.reqHistoricalData(c, "", "1 D", "30 mins", "MIDPOINT", True)
    assert len(mins) == 13 and mins[0].open == daily[-1].open and abs(mins[-1].close - daily[-1].close) < 1e-6
    adj = ib.reqHistoricalData(c, "", "1 M", "1 day", "ADJUSTED_LAST", True)
    assert adj[-1].close != daily[-1].close                  # dividends adjust IBM's history
    errors = []
    ib.errorEvent += lambda reqId, code, msg, c: errors.append((code, msg))
    ib.reqHistoricalData(c, "", "ten days", "1 day", "TRADES", True, timeout=2)
    assert errors and errors[-1][0] == 162 and "duration 'ten days'" in errors[-1][1]
    ib.disconnect()


def test_streaming_quotes_and_keep_up_to_date(gw):
    ib = connect(gw.port)
    c = Stock("MSFT", "SMART", "USD"); ib.qualifyContracts(c)
    t = ib.reqMktData(c)
    bars = ib.reqHistoricalData(c, "", "5 D", "1 day", "TRADES", True, keepUpToDate=True)
    ib.sleep(0.2)
    first_last, n = t.last, len(bars)
    assert t.bid < t.last < t.ask
    new = []
    bars.updateEvent += lambda b, hasNew: new.append(hasNew)
    gw.call(gw.gw.step, 3)
    ib.sleep(0.3)
    assert len(bars) == n + 3 and new.count(True) == 3 and t.last != first_last
    snap = ib.reqMktData(c, snapshot=True); ib.sleep(0.2)
    assert snap.last == t.last
    ib.disconnect()


def test_bracket_order_fills_with_commissions_and_account_adds_up(gw):
    ib = connect(gw.port)
    c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
    px = ib.reqHistoricalData(c, "", "2 D", "1 day", "TRADES", True)[-1].close
    br = ib.bracketOrder("BUY", 100, limitPrice=round(px * 1.01, 2), takeProfitPrice=round(px * 1.03, 2), stopLossPrice=round(px * 0.95, 2))
    for o in br: o.tif = "GTC"
    trades = [ib.placeOrder(c, o) for o in br]
    ib.sleep(0.3)
    parent, tp, sl = trades
    assert parent.orderStatus.status == "Filled" and parent.fills[0].commissionReport.commission == 1.0
    assert tp.orderStatus.status == "Submitted" and sl.orderStatus.status == "PreSubmitted"
    for _ in range(40):                                       # walk the market until one side of the bracket fills
        gw.call(gw.gw.step, 1); ib.sleep(0.05)
        if tp.orderStatus.status == "Filled" or sl.orderStatus.status == "Filled": break
    done = [t for t in (tp, sl) if t.orderStatus.status == "Filled"]
    other = [t for t in (tp, sl) if t not in done]
    assert len(done) == 1 and other[0].orderStatus.status == "Cancelled"       # the OCA group cancels the other
    assert ib.positions() == [] or ib.positions()[0].position == 0
    vals = {v.tag: float(v.value) for v in ib.accountValues() if v.currency == "USD" and v.tag in ("NetLiquidation", "TotalCashValue")}
    fills = ib.fills()
    cash_flow = sum((-1 if f.execution.side == "BOT" else 1) * f.execution.shares * f.execution.price - f.commissionReport.commission for f in fills)
    assert abs(vals["TotalCashValue"] - (1_000_000 + cash_flow)) < 0.02 and abs(vals["NetLiquidation"] - vals["TotalCashValue"]) < 0.02
    ib.disconnect()


def test_positions_portfolio_and_pnl(gw):
    ib = connect(gw.port)
    c = Stock("MSFT", "SMART", "USD"); ib.qualifyContracts(c)
    ib.placeOrder(c, MarketOrder("BUY", 50)); ib.sleep(0.3)
    gw.call(gw.gw.step, 2); ib.sleep(0.3)
    pos = ib.positions()[0]
    item = ib.portfolio()[0]
    assert pos.position == 50 and item.position == 50
    assert abs(item.marketValue - 50 * item.marketPrice) < 0.01
    assert abs(item.unrealizedPNL - (item.marketValue - 50 * item.averageCost)) < 0.02
    pnl = ib.reqPnL("DU0000001"); ib.sleep(0.2)
    assert abs(pnl.unrealizedPnL - item.unrealizedPNL) < 0.02
    ib.disconnect()


def test_day_orders_expire_at_the_close(gw):
    ib = connect(gw.port)
    c = Stock("IBM", "SMART", "USD"); ib.qualifyContracts(c)
    day, gtc = ib.placeOrder(c, LimitOrder("BUY", 10, 1.0)), ib.placeOrder(c, LimitOrder("BUY", 10, 1.0, tif="GTC"))
    ib.sleep(0.2); gw.call(gw.gw.step, 1); ib.sleep(0.2)
    assert day.orderStatus.status == "Cancelled" and gtc.orderStatus.status == "Submitted"
    ib.disconnect()


def test_cancel_modify_reject_and_global_cancel(gw):
    ib = connect(gw.port)
    c = Stock("IBM", "SMART", "USD"); ib.qualifyContracts(c)
    t = ib.placeOrder(c, LimitOrder("BUY", 10, 1.0)); ib.sleep(0.2)
    assert t.orderStatus.status == "Submitted"
    t.order.lmtPrice = 2.0; ib.placeOrder(c, t.order); ib.sleep(0.2)
    assert ib.openTrades()[0].order.lmtPrice == 2.0 and len(ib.openTrades()) == 1
    ib.cancelOrder(t.order); ib.sleep(0.2)
    assert t.orderStatus.status == "Cancelled"
    gw.call(gw.gw.reject_next, 1, "test rejection")
    r = ib.placeOrder(c, MarketOrder("BUY", 10)); ib.sleep(0.2)
    assert r.orderStatus.status == "Inactive" and any("test rejection" in e.message for e in r.log)
    for p in (1.0, 1.5): ib.placeOrder(c, LimitOrder("BUY", 10, p))
    ib.sleep(0.2); ib.reqGlobalCancel(); ib.sleep(0.3)
    assert ib.openTrades() == []
    bad = ib.placeOrder(c, MarketOrder("BUY", 0)); ib.sleep(0.2)
    assert bad.orderStatus.status == "Inactive"
    ib.disconnect()


def test_executions_across_clients_with_filters(gw):
    a, b = connect(gw.port, 1), connect(gw.port, 2)
    c = Stock("AAPL", "SMART", "USD"); a.qualifyContracts(c)
    a.placeOrder(c, MarketOrder("BUY", 10)); b.placeOrder(c, MarketOrder("SELL", 5)); a.sleep(0.3)
    assert len(b.reqExecutions(ExecutionFilter(clientId=1))) == 1
    assert len(b.reqExecutions(ExecutionFilter(side="SELL"))) == 1
    assert len(b.reqExecutions()) == 2
    a.disconnect(); b.disconnect()


def test_reconnect_after_drop_and_persistence_across_restart(gw):
    ib = connect(gw.port)
    c = Stock("GOOG", "SMART", "USD"); ib.qualifyContracts(c)
    ib.placeOrder(c, MarketOrder("BUY", 20)); ib.sleep(0.3)
    gtc = ib.placeOrder(c, LimitOrder("BUY", 5, 1.0, tif="GTC")); ib.sleep(0.2)
    cash = {v.tag: v.value for v in ib.accountValues()}["TotalCashValue"]
    assert gw.call(gw.gw.drop, 1) == 1
    try: ib.sleep(0.3)
    except ConnectionError: pass                              # ib_async reports the drop
    assert not ib.isConnected()
    ib = connect(gw.port)
    assert ib.positions()[0].position == 20
    ib.disconnect()       # (ib_async reports any socket loss to every IB object in the process)
    gw.restart()
    ib2 = connect(gw.port, 3)
    assert ib2.positions()[0].position == 20 and len(ib2.reqExecutions()) == 1
    assert {v.tag: v.value for v in ib2.accountValues()}["TotalCashValue"] == cash
    ib2.reqAllOpenOrders(); ib2.sleep(0.2)
    assert [t.order.lmtPrice for t in ib2.openTrades()] == [1.0]
    ib2.disconnect()


def test_malformed_input_drops_only_that_client(gw):
    ib = connect(gw.port)
    s = socket.create_connection(("127.0.0.1", gw.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(2)
    assert s.recv(100) == b""                                 # closed by the gateway
    s2 = socket.create_connection(("127.0.0.1", gw.port))
    s2.sendall(b"API\0" + struct.pack(">I", 9) + b"v157..178" + frame(71, 2, 9, "") + struct.pack(">I", 5) + b"\xff\xfe\xfd\x00\x00")
    s2.settimeout(2)
    data = b""
    try:
        while chunk := s2.recv(4096): data += chunk
    except socket.timeout: pass
    assert data                                               # it got the handshake before its garbage
    assert ib.isConnected() and ib.reqCurrentTime()
    ib.disconnect()


def test_unimplemented_request_gets_an_error_not_a_hang(gw):
    ib = connect(gw.port)
    errors = []
    ib.errorEvent += lambda reqId, code, msg, c: errors.append((code, msg))
    ib.client.send(24, 1)                                     # reqScannerParameters
    ib.sleep(0.3)
    assert (321, "Error validating request: request type 24 is not implemented by the ats paper gateway") in errors
    ib.disconnect()


def test_flood_gets_pacing_error_and_gateway_stays_up(gw):
    ib = connect(gw.port)
    errors = []
    ib.errorEvent += lambda reqId, code, msg, c: errors.append(code)
    ib.client.MaxRequests = 0                                 # switch off ib_async's own throttle to flood for real
    for _ in range(300): ib.client.reqCurrentTime()
    ib.sleep(0.5)
    assert errors.count(100) >= 200
    ib.sleep(1.1)
    assert ib.isConnected() and ib.reqCurrentTime()
    other = connect(gw.port, 2); assert other.isConnected(); other.disconnect()
    ib.disconnect()


def test_non_usd_stock_converts_to_base_currency(gw):
    ib = connect(gw.port)
    c = Stock("SAP", "SMART", "EUR"); ib.qualifyContracts(c)
    ib.placeOrder(c, MarketOrder("BUY", 10)); ib.sleep(0.3)
    vals = [(v.tag, v.currency, float(v.value)) for v in ib.accountValues() if v.tag in ("CashBalance", "ExchangeRate")]
    eur = {t: v for t, ccy, v in vals if ccy == "EUR"}
    eurusd = Forex("EURUSD"); ib.qualifyContracts(eurusd)
    rate = ib.reqHistoricalData(eurusd, "", "1 D", "1 day", "MIDPOINT", True)[-1].close     # the rate is the simulated EURUSD quote
    assert eur["CashBalance"] < 0 and eur["ExchangeRate"] == rate
    usd_total = [float(v.value) for v in ib.accountValues() if v.tag == "TotalCashValue"][0]
    assert abs(usd_total - (1_000_000 + eur["CashBalance"] * rate)) < 0.02
    ib.disconnect()


def test_accelerated_clock_moves_by_itself(tmp_path):
    with GatewayThread(data="random", speed=86400 * 10, state_path=tmp_path / "s.json") as g:
        ib = connect(g.port)
        t0 = ib.reqCurrentTime(); ib.sleep(0.5); t1 = ib.reqCurrentTime()
        assert (t1 - t0).days >= 3
        c = Stock("ZZZ", "SMART", "USD"); ib.qualifyContracts(c)          # random data: any symbol exists
        assert c.conId > 0
        ib.disconnect()


def test_stall_and_delayed_fills(gw):
    ib = connect(gw.port)
    c = Stock("IBM", "SMART", "USD"); ib.qualifyContracts(c)
    gw.call(gw.gw.delay_fills, 0.5)
    t = ib.placeOrder(c, MarketOrder("BUY", 1)); ib.sleep(0.2)
    assert t.orderStatus.status == "Submitted" and not t.fills
    ib.sleep(0.6)
    assert t.orderStatus.status == "Filled"
    gw.call(gw.gw.delay_fills, 0)
    gw.call(gw.gw.stall, 0.5)
    t0 = time.perf_counter(); ib.reqCurrentTime()
    assert time.perf_counter() - t0 >= 0.4
    ib.disconnect()


def test_trailing_stop_fields_arrive_intact(gw):
    "placeOrder's field layout: a TRAIL order's percent and stop price reach the exchange as sent."
    from ib_async import Order
    ib = connect(gw.port)
    c = Stock("IBM", "SMART", "USD"); ib.qualifyContracts(c)
    ib.placeOrder(c, MarketOrder("BUY", 10)); ib.sleep(0.2)
    t = ib.placeOrder(c, Order(action="SELL", totalQuantity=10, orderType="TRAIL", trailingPercent=5.0, trailStopPrice=1.0, tif="GTC"))
    trail = lambda: [x for x in gw.gw.exchange.orders.values() if x.order_type == "TRAIL"]
    for _ in range(100):                          # a loaded box: the order may take more than a moment to arrive
        if trail(): break
        ib.sleep(0.1)
    o = trail()[0]
    last = gw.gw.exchange.last[o.con_id]
    # the percent arrives as sent, and the stop starts from 1.0 and trails up to 5 % under the price at once
    assert o.trailing_percent == 5.0 and o.trail_stop_price == round(last * 0.95, 6) and not o.what_if
    ib.disconnect()
