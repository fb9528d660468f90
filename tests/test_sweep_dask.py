"""Research sweeps on Dask (`ats.backtest.sweep_on`, `ats sweep`): tasks on a real local cluster of worker processes read
their prices from a real ArcticDB themselves and give exactly the in-process `sweep` table, even when a worker dies."""
import os, socket, time
import pandas as pd
import pytest
from conftest import ROOT, run_ats
from test_up import init_project
from ats.backtest import sweep, sweep_on, dask_client, load_sweep
from ats.data import RandomWalkSource, ingest, read_prices
from ats.store import Store
from ats.strategy import load_strategy_class

SYMS = ["AAA", "BBB", "CCC"]
GRID = dict(fast=[5, 10, 30], slow=[20, 40])          # (30, 20) is invalid: its row carries the reason

KILL_ONCE = '''
import os
from pathlib import Path
import pandas as pd
from ats.strategy import Strategy, StrategyParamError

class KillOnce(Strategy):
    "A moving-average crossover whose first run with fast=10 kills the worker process it runs in (once: a marker file)."
    params = dict(symbols=[], fast=5, slow=20, weight=0.0, marker="")

    def validate(self):
        if not 1 <= self.p["fast"] < self.p["slow"]: raise StrategyParamError(f"fast ({self.p['fast']}) must be below slow ({self.p['slow']})")

    def target_weights(self, prices):
        m = Path(self.p["marker"])
        if self.p["fast"] == 10 and not m.exists():
            m.write_text(str(os.getpid()))
            os._exit(1)
        fast = prices.rolling(self.p["fast"], min_periods=self.p["fast"]).mean()
        slow = prices.rolling(self.p["slow"], min_periods=self.p["slow"]).mean()
        out = ((fast > slow).astype(float) / len(prices.columns)).where(slow.notna())
        return out.where(out.ne(out.shift()))
'''


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = Store(f"lmdb://{tmp_path_factory.mktemp('sweepdb')}/db")
    assert not ingest(st, RandomWalkSource(seed=3, start="2019-01-01", end="2020-12-31"), SYMS, progress=False).errors
    return st


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as c:
        yield c


def _in_process(cls, uri, grid, base):
    from ats.backtest import _worker_store              # the worker's open database: one Arctic instance per LMDB path and process
    st = _worker_store(uri, "market_data")
    close, opens = read_prices(st, SYMS, "close"), read_prices(st, SYMS, "open")
    return sweep(cls, close, grid, base_params=dict(symbols=SYMS, **base), progress=False, open_prices=opens)

def in_process(client, cls, st, grid, **base):
    """The reference: one call of the in-process `sweep` over the same prices. It runs in a worker process, whose
    vectorbt is already imported: importing it once more here costs ~15 s of a busy 2-core box."""
    return client.submit(_in_process, cls, st.uri, grid, base, pure=False).result()


def test_dask_sweep_equals_in_process_sweep(store, client):
    MAC = load_strategy_class(ROOT / "strategies" / "ma_crossover.py")
    got = sweep_on(store, MAC, SYMS, GRID, client=client, chunk=2, progress=False)
    assert len(client.scheduler_info()["workers"]) == 2
    want = in_process(client, MAC, store, GRID)
    assert len(got) == 6 and (got["error"] != "").sum() == 1
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def _page_faults_of_price_sized_arrays(rounds: int = 40) -> int:
    "Minor page faults of this process while a backtest-like loop allocates and frees bars × symbols float arrays."
    import resource
    import numpy as np
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds): np.ones((2608, 100)).sum()                 # 10 years × 100 symbols: 2 MB, as in a real sweep
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def test_workers_reuse_freed_memory_after_a_sweep_task(store, client):
    """Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, under which glibc maps and unmaps every MB-sized array:
    a backtest in a worker paid ~4x the page faults (20-30% more CPU) of the same code in a plain process. After a sweep
    task, a worker keeps freed arrays for reuse: one array's pages fault in, not one array's per round."""
    from ats.backtest import SweepJob, _sweep_chunk
    MAC = load_strategy_class(ROOT / "strategies" / "ma_crossover.py")
    assert set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}   # Dask's setting
    job = SweepJob(store.uri, "market_data", MAC, ("fast", "slow"), tuple(SYMS), None, None, dict(symbols=SYMS), {})
    for w in client.scheduler_info()["workers"]:
        client.submit(_sweep_chunk, job, [(5, 20)], workers=[w], pure=False).result()
    faults = client.run(_page_faults_of_price_sized_arrays)
    one_array = 2608 * 100 * 8 // 4096
    assert all(f < 5 * one_array for f in faults.values()), faults       # without: ~40 arrays' worth


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory):
    "A project after `ats init`, with the sample's AAPL and MSFT bars in its database."
    project = tmp_path_factory.mktemp("sweep_project")
    init_project(project)
    from ats.config import load_settings
    from ats.data import get_source
    st = Store.from_settings(load_settings(project / "settings.ini", env={}), create=False)
    assert not ingest(st, get_source("sample"), ["AAPL", "MSFT"], start="2010-01-01", progress=False).errors
    return project, st


def test_ats_sweep_cli_saves_to_research(sample_project, client):
    "`ats sweep` on a running cluster named by --scheduler (the module's local one): best rows printed, table saved."
    project, st = sample_project
    r = run_ats("sweep", "ma_crossover", "--grid", "fast=10:30:10", "slow=50,100", "--symbols", "AAPL,MSFT",
                "--scheduler", client.scheduler.address, "--top", "3", "--save", "ma_grid", cwd=project, timeout=180)
    assert r.returncode == 0, r.stderr
    table, meta = load_sweep(st, "ma_grid")
    assert len(table) == 6 and list(table.columns[:2]) == ["fast", "slow"] and meta["symbols"] == ["AAPL", "MSFT"]
    best = table.sort_values("sharpe", ascending=False).iloc[0]
    lines = r.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.split()[:3] == ["fast", "slow", "sharpe"])
    assert lines[head + 2].split()[:2] == [str(best["fast"]), str(best["slow"])]     # the best row first
    assert len([l for l in lines[head + 2:] if l.strip() and l.split()[0].isdigit()]) == 3
    assert "saved to the research library as sweep.ma_grid" in r.stdout


def closed_port() -> int:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


MISTAKES = [
    (["--grid", "fast=5:x:5"], "--grid fast=5:x:5: stop 'x' is not a number"),
    (["--grid", "fast=5:50"], "--grid fast=5:50: a range is start:stop:step"),
    (["--grid", "fast"], "--grid 'fast': write name=start:stop:step or name=a,b,c"),
    (["--grid", "fast=5,10", "fast=20"], "--grid fast is given twice"),
    (["--grid", "fsat=5,10"], "strategy MovingAverageCrossover has no parameter 'fsat'; its parameters: symbols, fast, slow"),
    (["--grid", "fast=5,10", "--symbols", "AAPL,NOPE"], "no daily bars in the database for NOPE; ingest them first"),
    (["--grid", "fast=5,10", "--scheduler", "SCHED"], "cannot reach the Dask scheduler at 'tcp://127.0.0.1:"),
]

def test_ats_sweep_mistakes_are_clear(sample_project, monkeypatch, capsys):
    "Each mistake is one line naming the bad part (exit 2, no traceback); a dead scheduler address fails in seconds."
    from ats.cli import main
    project, _ = sample_project
    for k in list(os.environ):
        if k.startswith(("ATS_", "IB_", "DASK_")): monkeypatch.delenv(k, raising=False)
    for args, message in MISTAKES:
        args = [a.replace("SCHED", f"tcp://127.0.0.1:{closed_port()}") for a in args]
        t0 = time.monotonic()
        assert main(["--settings", str(project / "settings.ini"), "sweep", "ma_crossover", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
        assert time.monotonic() - t0 < 30


def test_a_killed_worker_costs_only_a_retry(store, client, tmp_path):
    path = tmp_path / "kill_once.py"
    path.write_text(KILL_ONCE)
    cls, marker = load_strategy_class(path), tmp_path / "killed"
    pids = set(client.run(os.getpid).values())
    got = sweep_on(store, cls, SYMS, GRID, client=client, chunk=1, base_params=dict(marker=str(marker)), progress=False)
    assert int(marker.read_text()) in pids                  # a worker process of the cluster really died mid-sweep
    pd.testing.assert_frame_equal(got, in_process(client, cls, store, GRID, marker=str(marker)), check_exact=True)


def test_a_local_lmdb_store_the_workers_cannot_see_is_refused_before_any_task(tmp_path, client):
    """Workers read the store themselves: one on another machine cannot open this machine's LMDB folder (it would open an
    empty database of its own at that path). Simulated with a store whose folder moves away after the client opened it:
    the workers are asked first, and the refusal names them and what to do."""
    import shutil
    from ats.backtest import SweepError
    st = Store(f"lmdb://{tmp_path}/db")
    assert not ingest(st, RandomWalkSource(seed=4, start="2020-01-01", end="2020-06-30"), SYMS, progress=False).errors
    shutil.move(str(tmp_path / "db"), str(tmp_path / "elsewhere"))
    cls = load_strategy_class(ROOT / "strategies" / "ma_crossover.py")
    with pytest.raises(SweepError, match=r"local LMDB folder .*db\) that Dask worker\(s\) tcp://.* cannot see.*s3://"):
        sweep_on(st, cls, SYMS, dict(fast=[5], slow=[20]), client=client, progress=False)
    assert not (tmp_path / "db").exists()                  # and nothing was created in its place
