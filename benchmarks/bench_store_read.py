"""Batch read of 500 symbols × 10 years of daily bars: ArcticDB `market_data` (ats.data.read_prices) against Parquet files.

    .venv/bin/python benchmarks/bench_store_read.py [--symbols 500] [--years 10] [--repeat 5]

Both sides hold the same bars (seeded random walks, float64, UTC index): one ArcticDB symbol per
instrument (`AAPL.1d`, as ats stores them) on local LMDB, and one Parquet file per instrument
(pyarrow, snappy) in a folder. Two reads are timed, best of `--repeat`:
  * close prices as a time × symbol frame (what a backtest reads): `read_prices` vs read_parquet(columns=["close"]) + concat
  * all bar columns of every symbol: `read_batch` vs read_parquet per file
The ratio is Parquet time / ArcticDB time (> 1: ArcticDB is faster). Needs pyarrow."""
import argparse, tempfile, time
from pathlib import Path

import pandas as pd

from ats.data import RandomWalkSource, bar_symbol, read_prices
from ats.store import Store


def best(f, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t)
    return min(ts), out


def main(n=500, years=10, repeat=5):
    tmp = Path(tempfile.mkdtemp(prefix="bench_store_read_"))
    st = Store(f"lmdb://{tmp}/db?map_size=4GB")
    lib = st.library("market_data")
    src = RandomWalkSource(seed=0, start="2014-01-01", end=pd.Timestamp("2014-01-01") + pd.DateOffset(years=years) - pd.Timedelta(days=1))
    syms = [f"S{i:03d}" for i in range(n)]
    bars = {s: src.bars(s) for s in syms}
    pq = tmp / "parquet"; pq.mkdir()
    t = time.perf_counter()
    lib.write_batch([__import__("arcticdb").WritePayload(bar_symbol(s), b) for s, b in bars.items()])
    t_w_arctic = time.perf_counter() - t
    t = time.perf_counter()
    for s, b in bars.items(): b.to_parquet(pq / f"{s}.parquet")
    t_w_pq = time.perf_counter() - t
    rows = sum(len(b) for b in bars.values())

    t_a, px_a = best(lambda: read_prices(st, syms, "close"), repeat)
    t_p, px_p = best(lambda: pd.concat({s: pd.read_parquet(pq / f"{s}.parquet", columns=["close"])["close"] for s in syms}, axis=1), repeat)
    assert px_a.equals(px_p[syms].rename_axis("time")), "the two stores must hold the same prices"
    from arcticdb import ReadRequest
    t_a2, full_a = best(lambda: [r.data for r in lib.read_batch([ReadRequest(bar_symbol(s)) for s in syms])], repeat)
    t_p2, full_p = best(lambda: [pd.read_parquet(pq / f"{s}.parquet") for s in syms], repeat)
    assert (full_a[7].to_numpy() == full_p[7].to_numpy()).all() and (full_a[7].index == full_p[7].index).all()

    print(f"{n} symbols x {years} years daily = {rows:,} bars ({rows // n} per symbol); best of {repeat}")
    print(f"write      arcticdb write_batch {t_w_arctic:7.3f} s   parquet files {t_w_pq:7.3f} s")
    print(f"close px   arcticdb read_prices {t_a:7.3f} s   parquet files {t_p:7.3f} s   ratio parquet/arcticdb {t_p / t_a:5.2f}x")
    print(f"all bars   arcticdb read_batch  {t_a2:7.3f} s   parquet files {t_p2:7.3f} s   ratio parquet/arcticdb {t_p2 / t_a2:5.2f}x")
    print(f"throughput arcticdb read_prices {rows / t_a / 1e6:.1f} M bars/s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=500); ap.add_argument("--years", type=int, default=10); ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    main(a.symbols, a.years, a.repeat)
