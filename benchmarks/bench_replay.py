"""Replay speed: bars per second through the live order path in process (`ats.replay`), against backtrader in the same
run (target: >= 10x backtrader's bars/s).

    .venv/bin/python benchmarks/bench_replay.py [--symbols 100] [--years 10] [--live-symbols 10]

Data: the seeded random walk of bench_backtest.py (daily OHLCV bars, UTC business days). The strategy everywhere is the
shipped moving-average crossover (fast 20, slow 50), equal weights, one account for all symbols.

- ats replay, fast mode: target_weights computed once, then every bar of every symbol goes through the exchange
  (matching at the open, marks at the close), and every order through sizing (`intent_delta`), the risk engine's
  pre-trade checks and daily loss limits, the paper gateway's matching engine, and the ledger.
- ats replay, live mode: target_weights asked again on every bar for the closes so far, exactly as the runtime does
  (its cost grows with the history: measured on --live-symbols symbols).
- backtrader: the same crossover as one portfolio (all symbols as data feeds of one Cerebro, the like-for-like
  comparison), and one Cerebro per symbol (as bench_backtest.py measures it).
Each figure is the best of the runs timed; the ratios are from this run only.
"""
import argparse, os, sys, time, warnings
from pathlib import Path
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")
from bench_backtest import random_walk, timed, bench_backtrader


def loose_risk():
    from ats.risk import RiskConfig
    from ats.replay import LOOSE_RISK
    # limits wide enough never to refuse: the run measures the path, not the brakes (which are checked on every order)
    return RiskConfig(**LOOSE_RISK)


def bench_ats(bars, mode: str, repeat: int = 2):
    from ats.replay import replay
    from ats.strategy import load_strategy_class
    cls = load_strategy_class(ROOT / "strategies" / "ma_crossover.py")
    def run():
        return replay(cls(dict(symbols=list(bars), fast=20, slow=50)), bars, cash=10_000_000.0, risk=loose_risk(), mode=mode)
    t, r = timed(run, repeat=repeat)
    return r.bars / t, r


def bench_backtrader_portfolio(bars) -> float | None:
    try:
        import backtrader as bt
    except ImportError:
        print("backtrader: not installed (.venv/bin/pip install backtrader) - skipped"); return None
    w = 1.0 / len(bars)

    class Cross(bt.Strategy):
        params = dict(fast=20, slow=50)
        def __init__(self):
            self.x = {d: bt.ind.CrossOver(bt.ind.SMA(d, period=self.p.fast), bt.ind.SMA(d, period=self.p.slow)) for d in self.datas}
        def next(self):
            for d, x in self.x.items():
                if x > 0: self.order_target_percent(d, target=w)
                elif x < 0: self.order_target_percent(d, target=0.0)

    def run():
        c = bt.Cerebro(stdstats=False)
        for s, df in bars.items():
            c.adddata(bt.feeds.PandasData(dataname=df.tz_convert(None)[["open", "high", "low", "close", "volume"]]), name=s)
        c.addstrategy(Cross)
        c.broker.setcash(10_000_000); c.broker.setcommission(commission=0.0005)
        c.run()
    t, _ = timed(run, repeat=1)
    return sum(len(d) for d in bars.values()) / t


def main(n_symbols=100, years=10, live_symbols=10):
    n_bars = 252 * years
    bars = random_walk(n_symbols, n_bars)
    print(f"data: {n_symbols} symbols x {n_bars} daily bars = {n_symbols * n_bars:,} bars")
    bench_ats({k: bars[k] for k in list(bars)[:3]}, "fast", repeat=1)          # warm-up: imports, first calls
    fast, r = bench_ats(bars, "fast")
    print(f"ats replay, fast mode: {fast:,.0f} bars/s ({len(r.executions)} fills, {len(r.refused)} refused)")
    few = {k: bars[k] for k in list(bars)[:live_symbols]}
    live, rl = bench_ats(few, "live", repeat=1)
    print(f"ats replay, live mode ({live_symbols} symbols): {live:,.0f} bars/s ({len(rl.executions)} fills)")
    bt_port = bench_backtrader_portfolio(bars)
    bt_one = bench_backtrader({k: bars[k] for k in list(bars)[:5]})
    if bt_port:
        print(f"backtrader, one portfolio of {n_symbols} feeds: {bt_port:,.0f} bars/s")
        print(f"  -> ats replay fast / backtrader portfolio: {fast / bt_port:.1f}x (target >= 10x: {'met' if fast / bt_port >= 10 else 'MISSED'})")
        bt_few = bench_backtrader_portfolio(few)
        print(f"backtrader, one portfolio of {live_symbols} feeds: {bt_few:,.0f} bars/s -> ats live mode / backtrader: {live / bt_few:.1f}x")
    if bt_one:
        print(f"backtrader, one Cerebro per symbol (5 symbols): {bt_one:,.0f} bars/s -> ats replay fast: {fast / bt_one:.1f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--live-symbols", type=int, default=10)
    a = ap.parse_args()
    main(a.symbols, a.years, a.live_symbols)
