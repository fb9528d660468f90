"""A backup taken while `ats up` trades, restored into a fresh directory: the ledger, positions, strategy configs and
market data are exactly the source's as of the backup (the runner, the paper gateway and the backup are real processes)."""
import json, os, re, subprocess
from decimal import Decimal
import pandas as pd
from ats.supervisor import free_port
from conftest import ATS, run_ats
from runtime_helpers import wait_for
from test_up import init_project, project_store, status


def _fills_seen(project) -> int:
    try: return sum(s["fills"] for s in status(project)["strategies"])
    except Exception: return 0


def test_a_backup_taken_while_ats_up_trades_restores_exactly_into_a_fresh_directory(project, tmp_path_factory):
    from ats.config import load_settings
    from ats.ledger import LedgerStore, load_ledger
    from ats.store import Store
    init_project(project)
    from ats.data import ingest, get_source          # market data in the database, as the daily job leaves it
    assert not ingest(project_store(project), get_source("sample"), ["AAPL", "IBM", "MSFT"], progress=False).errors
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {"IB_PORT": str(free_port()), "ATS_GUI__START_DASHBOARD": "false", "ATS_JOBS__START_SCHEDULER": "false"}
    up = subprocess.Popen([ATS, "up", "--no-notebook", "--speed", "432000", "--every", "5"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fresh = tmp_path_factory.mktemp("restored") / "proj"
    try:
        assert wait_for(lambda: _fills_seen(project) >= 4, 120), "ats up did not trade"
        before = _fills_seen(project)
        r = run_ats("backup", "--no-progress", cwd=project)            # while the runner writes fills, equity and status
        assert r.returncode == 0, r.stdout + r.stderr
        archive = re.search(r"backup written: (\S+)", r.stdout).group(1)       # the command names its archive
        r = run_ats("restore", archive, "--to", str(fresh), cwd=project)      # a new project: allowed while the source trades
        assert r.returncode == 0, r.stdout + r.stderr
        new_s = load_settings(fresh / "settings.ini", env={})
        new = Store.from_settings(new_s, create=False)
        n = len(LedgerStore(new).fills())
        # trading went on after the backup: the status counts fills after the ledger has them, so more than the
        # archive holds means the source's ledger moved on (the status alone can lag the ledger the backup copied)
        assert wait_for(lambda: _fills_seen(project) > n, 90), f"no fill after the backup's {n}"
        run_ats("shutdown", cwd=project, check=True)
        assert up.wait(90) == 0, up.stdout.read()
    finally:
        if up.poll() is None: up.kill(); up.wait()
    src_s = load_settings(project / "settings.ini", env={})
    src = project_store(project)
    # fills: exactly the source's first n, n at least what was booked when the backup started
    src_fills, new_fills = LedgerStore(src).fills(), LedgerStore(new).fills()
    assert before <= len(new_fills) < len(src_fills) and new_fills == src_fills[:len(new_fills)]
    # positions: what `ats ledger positions` shows in the restored project is the source's ledger as of those fills
    restored = json.loads(run_ats("ledger", "positions", "--json", cwd=fresh, check=True).stdout)
    got = {(p["strategy"], p["symbol"]): Decimal(p["quantity"]) for p in restored if Decimal(p["quantity"])}
    from ats.ledger import Ledger
    ref = Ledger(src_s.environment.base_currency)                   # the source's ledger as of the backup: its first n fills
    for f in src_fills[:len(new_fills)]: ref.record_fill(f)
    assert got == {(p.strategy, p.symbol): p.quantity for p in ref.positions.values() if p.quantity}
    book = lambda L: {(p.strategy, p.symbol): (p.quantity, p.avg_price, p.realized) for p in L.positions.values() if p.quantity or p.realized}
    assert book(load_ledger(new)) == book(ref) and book(ref)         # quantities, average prices and realized P&L, exactly
    # strategy configs and market data: identical
    assert new.load_strategy_configs(validate=False) == src.load_strategy_configs(validate=False)
    lib_s, lib_n = src.library("market_data"), new.library("market_data")
    assert sorted(lib_n.list_symbols()) == sorted(lib_s.list_symbols()) and lib_s.list_symbols()
    for sym in lib_s.list_symbols():
        a, b = lib_s.read(sym).data, lib_n.read(sym).data
        pd.testing.assert_frame_equal(b, a.iloc[:len(b)])
    assert "opens and reads" in r.stdout
