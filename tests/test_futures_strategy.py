"""Strategies that name futures and FX in their symbols (ats.instruments): the spec parser, resolving specs on the paper
gateway through unmodified ib_async, and the shipped futures trend strategy trading ES through the live runtime — whole
contracts of multiplier 50, a daily variation in the ledger equal to the gateway's settlement, a roll across the March
2006 expiry (last trade Friday 17 March, roll date Friday 10 March), positions reconciled per contract id."""
import asyncio, datetime as dt
from decimal import Decimal
import pytest
from ib_async import IB
from ats.store import StrategyConfig
from ats.gateway.service import GatewayThread
from ats.instruments import parse_spec, resolve, InstrumentSpecError, OptionSpecNotSupported, derived_future
from runtime_helpers import Session, make_project, broker_positions, ledger_positions, duplicate_orders

START = "2006-03-01"                               # seven trading days before the ESH6 roll date


def test_spec_errors_name_the_strategy_and_the_bad_symbol():
    assert parse_spec("AAPL").kind == "STK" and parse_spec("ES.FUT").kind == parse_spec("FUT:ES").kind == "FUT"
    for bad in ("ES.FUTURE", "FUT:", "EURUSDX.CASH", "ES.FUT:roll=99", "STK:AAPL:X"):
        with pytest.raises(InstrumentSpecError, match=rf"strategy 'trend': symbol '{bad}'.*"):
            parse_spec(bad, "trend")
    # option specs are traded now (tests/test_options_strategy.py); one in a form ats does not trade is still refused
    assert parse_spec("SPY.OPT:P:30d:0.25delta", "hedge").kind == "OPT"
    with pytest.raises(OptionSpecNotSupported, match=r"strategy 'hedge': symbol 'SPY.OPT:P'.*SPY.OPT:P:30d:0.25delta"):
        parse_spec("SPY.OPT:P", "hedge")
    assert issubclass(OptionSpecNotSupported, NotImplementedError)


@pytest.fixture
def gateway(tmp_path):
    g = GatewayThread(data="sample", speed=0, start=START, state_path=tmp_path / "gw.json").start()
    yield g
    g.stop()


def test_resolving_es_future_and_eurusd_pair_on_the_paper_gateway(gateway):
    ib = IB()
    ib.connect("127.0.0.1", gateway.port, clientId=7, timeout=5)
    try:
        es = ib.run(resolve(ib, "ES.FUT"))
        assert (es.contract.secType, es.contract.localSymbol, es.contract.lastTradeDateOrContractMonth) == ("FUT", "ESH6", "20060317")
        assert (es.instrument.sec_type, es.instrument.multiplier, es.instrument.currency) == ("FUT", Decimal(50), "USD")
        assert es.instrument.whole_contracts and es.instrument.con_id == es.contract.conId
        assert es.bars.secType == "CONTFUT" and [c.localSymbol for c in es.listed] == ["ESH6", "ESM6", "ESU6", "ESZ6"]
        # from the roll date on, the front is the next contract; roll=3 rolls later
        assert ib.run(resolve(ib, "ES.FUT", dt.date(2006, 3, 10))).contract.localSymbol == "ESM6"
        assert ib.run(resolve(ib, "ES.FUT:roll=3", dt.date(2006, 3, 10))).contract.localSymbol == "ESH6"
        fx = ib.run(resolve(ib, "EURUSD.CASH"))
        assert (fx.contract.secType, fx.contract.symbol, fx.contract.currency, fx.contract.exchange) == ("CASH", "EUR", "USD", "IDEALPRO")
        assert (fx.instrument.sec_type, fx.what_to_show) == ("CASH", "MIDPOINT")
        assert ib.run(resolve(ib, "XX.FUT")) is None
    finally:
        ib.disconnect()


def test_futures_trend_trades_es_settles_daily_and_rolls_through_the_runtime(project, gateway):
    params = dict(symbols=["ES.FUT"], fast=2, slow=3, long_short=True, vol_lookback=5, max_contracts=2)
    s, st = make_project(project, configs=[StrategyConfig("futures_trend.py", "futures_trend", True, params, {}, 0.5),
                                           StrategyConfig("ma_crossover.py", "bad_spec", True, dict(symbols=["ES.FUTURE"]), {}, 0.1)])
    sess = Session(s, st, gateway).start()
    try:
        rt = sess.rt
        assert rt.slots["bad_spec"].state == "failed" and "strategy 'bad_spec': symbol 'ES.FUTURE' is not a valid instrument spec" in rt.slots["bad_spec"].error
        front = rt.slots["futures_trend"].contracts["ES.FUT"]
        assert front.localSymbol == "ESH6"
        sess.step(7)                                     # through 10 March, the roll date: its close rolls
        assert rt.slots["futures_trend"].contracts["ES.FUT"].localSymbol == "ESM6"
        sess.step(2)                                     # the roll's two orders fill at the next open
        sess.run(rt.reconcile("test"))
        ex = gateway.gw.exchange
        fills = [f for f in rt.ledger.fills.values() if f.kind == "trade"]
        assert fills and all(f.sec_type == "FUT" and f.multiplier == 50 and f.quantity == int(f.quantity) for f in fills)
        by_contract = {f.con_id for f in fills}
        new = rt.slots["futures_trend"].contracts["ES.FUT"]
        assert by_contract == {front.conId, new.conId}
        # the roll: the old contract closed, the same exposure opened in the new one, both orders through risk
        rolls = [a for a in rt.activity if a["kind"] == "order" and a.get("reason", "").startswith("roll")]
        assert [a["reason"].split(":")[1].split()[:2] for a in rolls] == [["close", "ESH6"], ["open", "ESM6"]]
        assert rolls[0]["quantity"] == -rolls[1]["quantity"] != 0
        assert rt.ledger.position("futures_trend", front.conId) == 0 == ex.positions[front.conId].qty
        assert rt.ledger.position("futures_trend", new.conId) == ex.positions[new.conId].qty != 0
        # a daily variation entry per day the position was open; the ledger's cash is the gateway's, to the cent
        var = [f for f in rt.ledger.fills.values() if f.kind == "variation"]
        assert len({f.time.date() for f in var}) >= 6 and all(f.quantity == 0 for f in var)
        ledger_usd = sum(v for (strat, ccy), v in rt.ledger.cash.items() if ccy == "USD")
        assert float(ledger_usd) == pytest.approx(ex.cash["USD"] - 1_000_000.0, abs=0.01)
        # positions reconcile with the broker per conId
        assert rt.last_reconciliation.ok, str(rt.last_reconciliation)
        assert ledger_positions(rt.ledger) == broker_positions(gateway) != {}
        assert duplicate_orders(gateway) == {}
    finally:
        sess.stop()
    # the variation entries are stored with the fills: the ledger read back from the database has the same cash
    from ats.ledger import load_ledger
    stored = load_ledger(st)
    assert {f.exec_id for f in stored.fills.values() if f.kind == "variation"} == {f.exec_id for f in var}
    assert stored.cash == rt.ledger.cash


def test_derived_es_is_spy_times_ten_and_labelled():
    import pandas as pd
    spy = pd.DataFrame(dict(open=[120.0], high=[121.0], low=[119.5], close=[120.5], volume=[1e6]), index=pd.DatetimeIndex(["2006-03-01"]))
    assert derived_future("ES", spy).close.iloc[0] == 1205.0 and "DERIVED" in derived_future.__doc__


def test_backtest_of_futures_trend_counts_whole_contracts_times_50():
    from ats.backtest import run_backtest_cli
    from runtime_helpers import ROOT
    res = run_backtest_cli("futures_trend", None, "2012-01-01", "2016-12-31", source="random", params=dict(fast=10, slow=40),
                           strategies_dir=ROOT / "strategies", init_cash=1_000_000.0)
    closed = res.trades[res.trades.status == "Closed"]
    assert len(closed) >= 2 and (res.trades["size"] == res.trades["size"].round()).all()
    # each round trip: contracts × (exit − entry) × 50, less 0.85 per contract each way
    expected = closed["size"] * (closed.exit_price - closed.entry_price) * 50 - 2 * 0.85 * closed["size"].abs()
    assert list(closed.pnl.round(6)) == list(expected.round(6))
    assert res.equity.iloc[-1] == pytest.approx(1_000_000.0 + res.trades.pnl.sum())
    # the return of each trade is on the notional it opened: contracts × entry price × 50 (it was NaN in `ats backtest`)
    assert list(res.trades.ret.round(9)) == list((res.trades.pnl / (res.trades["size"].abs() * res.trades.entry_price * 50)).round(9))
    assert res.trades.ret.notna().all()
