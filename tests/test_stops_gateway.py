"""Stops against the paper gateway over a real socket with unmodified ib_async: the bracket `ats.stops` builds is accepted as
one OCA group, a broker trailing stop follows the price and fires, a local trail exits through the same OCA group, and a
restarted runner re-attaches to the stops IB still holds instead of sending them twice."""
import datetime as dt
import pytest
from ib_async import IB, Stock
from ats.gateway.service import GatewayThread
from ats.stops import StopBook, StopConfig, plan_stop, bracket, protective_orders, exit_order

T0 = dt.datetime(2005, 1, 3, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def gw(tmp_path):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path / "gw.json", start="2005-01-03").start()
    yield g
    g.stop()


def connect(port, cid=1):
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=cid, timeout=5)
    return ib


@pytest.fixture
def ib(gw):
    "A connection that is closed even when the test fails (a client left open poisons the next test's connect)."
    conn = connect(gw.port)
    yield conn
    conn.disconnect()


def jump(gw, ib, con_id, px):
    "A new last price at the gateway (between bars), then let the client hear about it."
    g = gw.gw
    gw.call(lambda: g.dispatch(g.exchange.mark(con_id, px, g.now())))
    ib.sleep(0.15)


def position(ib, con_id):
    ib.sleep(0.15)
    return sum(p.position for p in ib.positions() if p.contract.conId == con_id)


def aapl(ib):
    c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
    return c


def test_broker_trailing_stop_follows_the_price_and_fires(gw, ib):
    c = aapl(ib)
    jump(gw, ib, c.conId, 100.0)
    plan = plan_stop("trend", "AAPL", 100, 100.0, StopConfig(trailing_stop=True, trailing_stop_pct=0.05, profit_target_ratio=3.0),
                     opened_at=T0, con_id=c.conId)
    assert (plan.stop_price, plan.target_price) == (95, 115)
    parent, target, stop = [ib.placeOrder(c, o) for o in bracket(plan, ib.client.getReqId).orders]
    ib.sleep(0.3)
    assert parent.orderStatus.status == "Filled" and target.orderStatus.status == "Submitted" and stop.orderStatus.status == "PreSubmitted"
    jump(gw, ib, c.conId, 110.0)            # the trail moves up to 104.50
    jump(gw, ib, c.conId, 105.0)            # above it: nothing happens
    assert stop.orderStatus.status == "PreSubmitted" and position(ib, c.conId) == 100
    jump(gw, ib, c.conId, 104.0)            # below the trail (a fixed stop at 95 would not fire here)
    ib.sleep(0.2)
    assert stop.orderStatus.status == "Filled" and target.orderStatus.status == "Cancelled"
    assert 103.0 < stop.fills[0].execution.price <= 104.0 and stop.fills[0].execution.orderRef == "trend"
    assert position(ib, c.conId) == 0


def test_local_trailing_stop_exits_through_the_oca_group(gw, ib, tmp_path):
    c = aapl(ib)
    jump(gw, ib, c.conId, 100.0)
    book = StopBook(tmp_path / "stops.json")
    plan, _ = book.attach(plan_stop("swing", "AAPL", 100, 100.0, StopConfig(trailing_stop=True, trailing_stop_pct=0.05, trailing_mode="local", profit_target_ratio=3.0),
                                    opened_at=T0, con_id=c.conId))
    trades = [ib.placeOrder(c, o) for o in bracket(plan, ib.client.getReqId).orders]
    book.placed(plan)
    ib.sleep(0.3)
    assert trades[0].orderStatus.status == "Filled" and trades[2].order.auxPrice == 95.0      # the broker's floor stop
    exits = []
    for px in (104.0, 110.0, 108.0, 104.4):
        jump(gw, ib, c.conId, px)
        for sig in book.on_price(c.conId, px):
            if sig.kind == "stop_hit": exits.append(ib.placeOrder(c, exit_order(sig.plan, ib.client.getReqId())))
    ib.sleep(0.3)
    assert len(exits) == 1 and exits[0].orderStatus.status == "Filled" and plan.stop_price == 104.5
    assert [t.orderStatus.status for t in trades[1:]] == ["Cancelled", "Cancelled"]             # OCA: target and floor stop gone
    assert position(ib, c.conId) == 0
    book.close("swing", c.conId)
    assert len(StopBook(tmp_path / "stops.json")) == 0


def test_restart_reattaches_to_the_stops_ib_holds_without_duplicates(gw, ib, tmp_path, request):
    path = tmp_path / "stops.json"
    c = aapl(ib)
    jump(gw, ib, c.conId, 100.0)
    book = StopBook(path)
    plan, _ = book.attach(plan_stop("s1", "AAPL", 100, 100.0, opened_at=T0, con_id=c.conId))
    for o in bracket(plan, ib.client.getReqId).orders: ib.placeOrder(c, o)
    book.placed(plan)
    ib.sleep(0.3)
    assert position(ib, c.conId) == 100 and len(ib.openTrades()) == 2
    ib.disconnect()

    # the runner restarts: a new book from the saved state, a new connection with the same client id
    ib = connect(gw.port)
    request.addfinalizer(ib.disconnect)
    ib.sleep(0.2)
    held = {("s1", c.conId): position(ib, c.conId)}
    book = StopBook(path)
    r = book.reattach(ib.openTrades(), held)
    assert [p.key for p in r.attached] == [plan.key] and r.missing == [] and r.orphans == []
    assert len(ib.openTrades()) == 2                                                            # nothing sent twice

    # the stops were lost meanwhile (cancelled by hand in TWS): the next restart re-sends them, once
    for t in ib.openTrades(): ib.cancelOrder(t.order)
    ib.sleep(0.3)
    r = StopBook(path).reattach(ib.openTrades(), held)
    assert [p.key for p in r.missing] == [plan.key]
    for o in protective_orders(r.missing[0], ib.client.getReqId): ib.placeOrder(c, o)
    ib.sleep(0.3)
    open_ = ib.openTrades()
    assert sorted(t.order.orderType for t in open_) == ["LMT", "STP"] and {t.order.ocaGroup for t in open_} == {plan.oca_group}
    assert [p.key for p in StopBook(path).reattach(open_, held).attached] == [plan.key]
    # and the re-sent stop protects the position
    jump(gw, ib, c.conId, 97.0)
    assert position(ib, c.conId) == 0 and [t.order.orderType for t in ib.openTrades()] == []
