"""The paper gateway answers as TWS does where ib_async's own test suite (tests/test_requests.py, tests/test_contract.py in
its repository; run them with scripts/ib_async_suite.py) found it did not, and refuses orders the account has no trading
permission for. A real gateway over a socket, driven by unmodified ib_async."""
import subprocess
import pytest
from ib_async import IB, Stock, Future, Option, MarketOrder, util
from ats.gateway.service import GatewayThread
from ats.supervisor import free_port, port_open
from conftest import ATS


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = GatewayThread(data="sample", speed=0, state_path=tmp_path_factory.mktemp("fidelity") / "state.json", start="2005-01-03").start()
    yield g
    g.stop()


def connect(port: int, client_id: int = 1) -> IB:
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=client_id, timeout=5)
    ib.errors = []
    ib.errorEvent += lambda reqId, code, msg, c: ib.errors.append((reqId, code, msg))
    return ib


@pytest.fixture
def ib(gw):
    ib = connect(gw.port)
    yield ib
    ib.disconnect()


def test_an_order_without_exchange_is_refused_with_321_before_the_contract_is_looked_up(ib):
    "TWS checks the order's routing first: Stock('XXX') with no exchange gets 321 'Missing order exchange', not 200."
    trade = ib.placeOrder(Stock("XXX"), MarketOrder("BUY", 100))
    ib.sleep(0.3)
    codes = [code for rid, code, _ in ib.errors if rid == trade.order.orderId]
    assert codes == [321], ib.errors
    assert "Missing order exchange" in ib.errors[-1][2]
    assert trade.log[-1].errorCode == 321 and not trade.fills
    known = ib.placeOrder(Stock("XXX", "SMART", "USD"), MarketOrder("BUY", 100))    # routed, but no such stock: still 200
    ib.sleep(0.3)
    assert [code for rid, code, _ in ib.errors if rid == known.order.orderId] == [200]


@pytest.mark.parametrize("symbol", ["AMZN", "TSLA"])
def test_amzn_and_tsla_give_hourly_bars_with_time_zones(ib, symbol):
    "What ib_async's test_contract asks of a paper account: a day of hourly TRADES bars, outside regular hours too."
    c = Stock(symbol, "SMART", "USD")
    assert ib.qualifyContracts(c) == [c] and c.conId and c.primaryExchange == "NASDAQ"
    bars = ib.reqHistoricalData(c, "", "1 D", "1 hour", "TRADES", False, 1)
    df = util.df(bars)
    assert df is not None and len(df) >= 2, ib.errors
    ny = df["date"].dt.tz_convert("America/New_York")             # aware datetimes: the test converts them
    assert ny.iloc[0].date() == ny.iloc[-1].date() and (df["high"] >= df["low"]).all() and (df["volume"] > 0).all()


def test_permissions_stk_refuses_futures_and_options_but_fills_stocks(tmp_path):
    "`ats gateway --permissions STK`: an ES and a SPY option order get TWS's error 201 'No Trading Permission'; a stock fills."
    port = free_port()
    p = subprocess.Popen([ATS, "gateway", "--port", str(port), "--speed", "0", "--start", "2005-01-03", "--permissions", "STK",
                          "--state", str(tmp_path / "state.json")], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not port_open("127.0.0.1", port):
            assert p.poll() is None, p.stdout.read()
        ib = connect(port, client_id=3)
        spy, es = Stock("SPY", "SMART", "USD"), Future("ES", "200503", "CME")
        ib.qualifyContracts(spy, es)
        ch = ib.reqSecDefOptParams("SPY", "", "STK", spy.conId)[0]
        call = Option("SPY", "20050121", ch.strikes[len(ch.strikes) // 2], "C", "SMART")
        ib.qualifyContracts(call)
        assert es.conId and call.conId, ib.errors                       # known contracts: only trading them is refused
        refused = [ib.placeOrder(c, MarketOrder("BUY", 1)) for c in (es, call)]
        stock = ib.placeOrder(spy, MarketOrder("BUY", 10))
        ib.sleep(0.5)
        for t, cls in zip(refused, ("FUT", "OPT")):
            errs = [(code, msg) for rid, code, msg in ib.errors if rid == t.order.orderId]
            assert len(errs) == 1 and errs[0][0] == 201, ib.errors
            assert errs[0][1].startswith("Order rejected - reason:") and "No Trading Permission" in errs[0][1] and f"not {cls}" in errs[0][1]
            assert t.orderStatus.status == "Cancelled" and not t.fills
        assert stock.orderStatus.status == "Filled" and stock.filled() == 10
        assert {pos.contract.conId: pos.position for pos in ib.positions()} == {spy.conId: 10}
        ib.disconnect()
    finally:
        p.terminate(); p.wait(20)


def test_an_unknown_permission_is_a_clear_error(tmp_path):
    r = subprocess.run([ATS, "gateway", "--permissions", "STK,CRYPTO"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown trading permission CRYPTO" in r.stderr and "STK,OPT,FUT,CASH" in r.stderr
