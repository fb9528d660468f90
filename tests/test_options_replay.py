"""`ats replay options_income`: the shipped options strategy replayed in process on the paper gateway's own option market
(ats.replay.replay_options: the OptionDesk's chain, model prices, quotes and expiry settlement) against its model-priced
backtest, within the tolerances of nbs/42_replay.ipynb (one session later, the bid instead of the model mid)."""
import json, shutil
from decimal import Decimal
from conftest import run_ats
from runtime_helpers import ROOT


def test_ats_replay_options_income_matches_its_backtest_and_books_premium_commissions_and_assignments(tmp_path):
    shutil.copytree(ROOT / "strategies", tmp_path / "strategies")
    run_ats("init", cwd=tmp_path, check=True)
    r = run_ats("replay", "options_income", "--json", "--cash", "30000", "-p", "take_profit=0", "--start", "2005-03-01",
                "--end", "2005-06-30", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads(r.stdout)
    assert j["matched"] and j["differences"] == [] and j["refused"] == [] and j["executions"] >= 6, j
    # the replay sells at the bid, the backtest at the model mid: a few dollars on a 30,000 account
    assert abs(j["final_equity"]["replay"] - j["final_equity"]["backtest"]) < 0.01 * 30_000


def test_the_replay_sells_puts_and_books_assignments_at_the_strike_into_the_ledger():
    from ats.strategy import load_strategy_class
    from ats.data import RandomWalkSource
    from ats.replay import replay_options
    spy = RandomWalkSource(seed=0, start="2000-01-01", end="2013-12-31").bars("SPY")      # SPY as the sample gateway has it
    st = load_strategy_class(ROOT / "strategies" / "options_income.py")(dict(max_contracts=1, take_profit=0.0), name="options_income")
    rp = replay_options(st, spy, cash=30_000.0, start="2005-03-01", end="2005-06-30")
    fills = list(rp.ledger.fills.values())
    sold = [f for f in fills if f.sec_type == "OPT" and f.kind == "trade"]
    assigned = [f for f in fills if f.sec_type == "STK" and f.kind == "assignment"]
    assert sold and all(f.quantity == -1 and f.multiplier == 100 and f.commission == Decimal("1.00") for f in sold)
    assert {f.kind for f in fills if f.sec_type == "OPT" and f.kind != "trade"} == {"assignment", "expiry"}
    # each assignment buys 100 shares at the strike of a put that expired in the money (the OCC symbol's last 8 digits)
    itm = rp.delivered[rp.delivered.intrinsic > 0]
    assert assigned and all(f.quantity == 100 for f in assigned)
    assert sorted(float(f.price) for f in assigned) == sorted(int(o.strip()[-8:]) / 1000 for o in itm.symbol)
    # the options' cash: premium − commissions − assignment cash (the shares bought at the strike)
    premium = sum(-f.quantity * f.multiplier * f.price for f in sold)
    commissions = sum(f.commission for f in sold)
    assignment_cash = sum(f.quantity * f.price for f in assigned)
    stock_sales = sum(-f.quantity * f.price - f.commission for f in fills if f.sec_type == "STK" and f.kind == "trade")
    cash = sum(rp.ledger.cash.values())
    assert cash == premium - commissions - assignment_cash + stock_sales
