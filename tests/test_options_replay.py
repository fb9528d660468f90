"""`ats replay options_income`: the shipped options strategy replayed in process on the paper gateway's own option market
(ats.replay.replay_options: the OptionDesk's chain, model prices, quotes and expiry settlement) against its model-priced
backtest, which fills as the desk does (nbs/35, nbs/42): every sale, buy-back and expiry on the same day at the same price."""
import json, shutil
import pandas as pd
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
    # the same sales at the same bids: the equities differ by the assigned shares (the backtest books the intrinsic value
    # at the expiration's close, the replay sells the shares at the next open) — a few dollars on a 30,000 account
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


def test_ats_replay_options_income_with_its_default_take_profit_matches_its_backtest(tmp_path):
    "Issue 15: with take_profit = 0.5 (the default) the buy-backs differed in day and price and `ats replay` exited 1."
    shutil.copytree(ROOT / "strategies", tmp_path / "strategies")
    run_ats("init", cwd=tmp_path, check=True)
    r = run_ats("replay", "options_income", "--json", "--cash", "30000", "--start", "2005-03-01", "--end", "2005-06-30", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads(r.stdout)
    assert j["summary"].endswith("match (the same option and contracts, the same day, prices within 0.0001)"), j["summary"]
    assert j["params"]["take_profit"] == 0.5 and j["matched"] and j["differences"] == [] and j["refused"] == [] and j["executions"] >= 15, j


def test_the_default_take_profit_sells_and_buys_back_on_the_same_day_at_the_same_price_and_the_cash_differs_only_by_assignments():
    from ats.backtest import strategy_run
    from ats.replay import run_option_replay
    run = strategy_run("options_income", strategies_dir=ROOT / "strategies")
    bt, rp, c = run_option_replay(run, "2005-03-01", "2005-06-30", "sample", cash=30_000.0, progress=False)
    assert bt.params["take_profit"] == rp.params["take_profit"] == 0.5 and c.matched, c.differences
    e = rp.executions
    opt, stk = e[e.symbol.str.len() > 10], e[e.symbol.str.len() <= 10]
    sales, buy_backs = opt[(opt.kind == "trade") & (opt.quantity < 0)], opt[(opt.kind == "trade") & (opt.quantity > 0)]
    assert len(buy_backs) >= 5 and bt.stats["buy_backs"] == len(buy_backs)
    # every buy-back: the backtest's on the same day at the same price (the desk's ask at the phase the limit is reached)
    x = c.executions
    closes = x[x.quantity_backtest > 0].set_index(["time", x.loc[x.quantity_backtest > 0, "symbol"]])
    day = lambda t: pd.Timestamp(t).tz_convert(None).normalize()
    for b in buy_backs.itertuples():
        row = closes.loc[(day(b.time), " ".join(b.symbol.split()))]
        assert row.verdict == "match" and row.price_replay == b.price and abs(row.price_backtest - b.price) <= 0.0001
    # every sale: the backtest's on the same day at the same price (the desk's bid at the open after the decision's close)
    sold = x[x.quantity_backtest < 0].set_index(["time", "symbol"])
    assert len(sold) == len(sales)
    for s in sales.itertuples():
        key = (day(s.time), " ".join(s.symbol.split()))
        assert key in sold.index, (key, sold)
        row = sold.loc[key]
        assert row.verdict == "match" and row.price_replay == s.price and abs(row.price_backtest - s.price) <= 0.0001
    # the final cash: the replay's is the backtest's but for the assigned shares — the backtest books the intrinsic value
    # at the expiration's close, the replay buys 100 shares at the strike and sells them at the next open with
    # commission — to the cent: sales and buy-backs add nothing
    closed = bt.trades[bt.trades.status == "Closed"]
    bought = pd.Series([(t, " ".join(o.split())) in {(day(b.time), " ".join(b.symbol.split())) for b in buy_backs.itertuples()}
                        for t, o in zip(closed.exit_time, closed.symbol)], closed.index)
    bt_cash = 30_000.0 + (-bt.trades["size"] * 100 * bt.trades.entry_price - 1.00).sum() \
        + (closed["size"] * 100 * closed.exit_price).sum() - 1.00 * bought.sum()
    rp_cash = 30_000.0 + float(sum(rp.ledger.cash.values()))                   # the ledger books the strategy's cash flows
    intrinsic = (closed["size"] * 100 * closed.exit_price)[~bought].sum()       # paid by the backtest at expiry: -100 × intrinsic each
    shares = (-stk.quantity * stk.price - stk.commission).sum()               # bought at the strike, sold at the next open
    assert len(stk) and bought.sum() == len(buy_backs)
    assert abs(rp_cash - (bt_cash - intrinsic + shares)) < 0.005, (rp_cash, bt_cash, intrinsic, shares)
