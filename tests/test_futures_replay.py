"""`ats replay` for a strategy trading a future: the in-process replay (ats.replay.replay_future) trades what the runtime
trades on the paper gateway — the same orders in the same contracts (through the March 2006 roll), the same fills at the
gateway's quote, the same commissions and daily settlements — and `ats replay futures_trend` reports it."""
import json, shutil
import pandas as pd
import pytest
from ats.store import StrategyConfig
from ats.gateway.service import GatewayThread
from ats.config import load_settings
from ats.risk import RiskConfig
from ats.sizing import SizingConfig
from ats.replay import replay_future, futures_market
from conftest import run_ats
from runtime_helpers import Session, make_project, ROOT

START = "2006-03-01"                   # the gateway's first close: the runtime starts there (history only)
PARAMS = dict(symbols=["ES.FUT"], fast=2, slow=3, long_short=True, vol_lookback=5, max_contracts=2)


def gateway_spy():
    "SPY as the paper gateway has it with data = sample (the sample lacks SPY: the gateway's seeded random walk)."
    from ats.data import RandomWalkSource
    return RandomWalkSource(seed=0, start="2000-01-01", end="2013-12-31").bars("SPY")


def strategy(name="futures_trend"):
    from ats.strategy import load_strategy_class
    return load_strategy_class(ROOT / "strategies" / "futures_trend.py")(PARAMS, name=name)


def test_the_replay_trades_what_the_paper_runtime_traded_through_a_roll(project, tmp_path):
    g = GatewayThread(data="sample", speed=0, start=START, state_path=tmp_path / "gw.json").start()
    try:
        # 2 contracts (about 66,000) fit a 10 % position limit, 4 do not: the roll's open must count with its close of the
        # old contract as one ES exposure, or risk refuses it
        s, st = make_project(project, env="ATS_RISK__MAX_POSITION_SIZE=0.1\n",
                             configs=[StrategyConfig("futures_trend.py", "futures_trend", True, PARAMS, {}, 0.5)])
        sess = Session(s, st, g).start()
        try:
            sess.step(12)                                  # to Friday 17 March: the roll on the 10th, the ESH6 expiry on the 17th
            sess.settle()
            rt = sess.rt
            paper = sorted(((f.time.date(), f.con_id, float(f.quantity), float(f.price), float(f.commission), f.kind)
                            for f in rt.ledger.fills.values()), key=lambda x: (x[0], x[5], x[1], x[2]))
            paper_orders = [(a["quantity"], a["reason"]) for a in rt.activity if a["kind"] == "order"]
            paper_cash = {k: float(v) for k, v in rt.ledger.cash.items()}
            last_day = max(f.time.date() for f in rt.ledger.fills.values())
        finally:
            sess.stop()
    finally:
        g.stop()
    assert s.risk.max_position_size == 0.1
    rp = replay_future(strategy(), gateway_spy(), cash=1_000_000.0, start="2006-03-02", end=str(last_day), allocation=0.5,
                       sizing=SizingConfig.from_settings(s), risk=RiskConfig.from_settings(s))
    mine = sorted(((pd.Timestamp(f.time).date(), f.con_id, float(f.quantity), float(f.price), float(f.commission), f.kind)
                   for f in rp.ledger.fills.values()), key=lambda x: (x[0], x[5], x[1], x[2]))
    assert rp.refused.empty, rp.refused
    # the same orders (quantities and reasons, the roll's close and open included) ...
    assert [(o.quantity, o.reason) for o in rp.orders.itertuples()] == paper_orders
    assert any("roll: close ESH6" in r for _, r in paper_orders)
    # ... the same fills in the same contracts at the same prices (the gateway's quote), commissions and settlements ...
    assert mine == paper
    assert set(rp.executions["symbol"]) == {"ESH6", "ESM6"}
    # ... so the ledger's cash is the paper run's to the cent
    assert {k: round(float(v), 2) for k, v in rp.ledger.cash.items()} == {k: round(v, 2) for k, v in paper_cash.items()}


def test_the_continuous_series_is_the_front_contract_by_expiry():
    m = futures_market("ES", gateway_spy().loc["2005-12-01":"2006-06-30"])
    h6 = next(c for c in m.months.values() if c.local_symbol == "ESH6")
    m6 = next(c for c in m.months.values() if c.local_symbol == "ESM6")
    day, after = pd.Timestamp("2006-03-13"), pd.Timestamp("2006-03-20")
    assert m.continuous.loc[day, "close"] == m.bars[h6.con_id].loc[day, "close"]          # ESH6 until it expires on the 17th
    assert m.continuous.loc[after, "close"] == m.bars[m6.con_id].loc[after, "close"]
    assert m.front(day.date(), 5) is m6 and m.front(pd.Timestamp("2006-03-09").date(), 5) is h6   # ats rolls on the 10th


def test_ats_replay_futures_trend_reports_the_replay_against_its_backtest(tmp_path):
    shutil.copytree(ROOT / "strategies", tmp_path / "strategies")
    run_ats("init", cwd=tmp_path, check=True)
    r = run_ats("replay", "futures_trend", "--json", "--cash", "1000000", "-p", "max_contracts=2", "--start", "2004-01-01",
                "--end", "2006-12-31", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads(r.stdout)
    assert j["matched"] and j["refused"] == [] and j["differences"] == [] and j["executions"] >= 5, j
    assert j["summary"].endswith("match (whole quantities within 25% of the trade, prices within 0.70%)"), j["summary"]
    # the backtest trades the continuous series at constant capital, the replay the contract held from the NAV
    assert abs(j["final_equity"]["replay"] / j["final_equity"]["backtest"] - 1) < 0.01
