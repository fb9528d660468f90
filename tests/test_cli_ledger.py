"`ats ledger` end to end: fills written with LedgerStore into the project's database, read by the real `ats` script."
import datetime as dt, json
from decimal import Decimal as D
import pytest
from conftest import run_ats
from ats.config import load_settings
from ats.store import Store
from ats.ledger import Fill, Ledger, LedgerStore, UNASSIGNED

T = dt.datetime(2024, 3, 1, 14, 30, tzinfo=dt.timezone.utc)


def F(eid, strategy, q, px, *, c="0", con=1, sym="AAPL", ccy="USD", mult="1", minute=0):
    return Fill(eid, strategy, con, sym, D(str(q)), D(str(px)), T + dt.timedelta(minutes=minute), ccy, D(mult), D(c), 0, 0, strategy, "DU1")


@pytest.fixture
def db(project):
    run_ats("init", cwd=project, check=True)
    return LedgerStore(Store.from_settings(load_settings(str(project / "settings.ini"))))


def ats_json(project, *args):
    r = run_ats("ledger", *args, "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def write_book(db):
    "What a runner would have written: fills, a late commission, marks, FX and a reconciliation with an unassigned position."
    L = Ledger("USD"); L.set_fx("EUR", "1.08")
    fills = [F("e1", "mom", 100, "10.50", c="1.00"), F("e2", "mom", -40, "12", c="1.00", minute=2),
             F("e3", "fut", 2, "4500.25", con=2, sym="ES", mult="50", minute=1), F("e4", "eu", 10, "120", con=3, sym="SAP", ccy="EUR", minute=3)]
    for f in fills: L.record_fill(f)
    db.append_fills(fills)
    L.record_commission("e3", "4.20"); db.append_commissions([("e3", "4.20")])
    for cid, m in ((1, "11.25"), (2, "4495.25"), (3, "125")): L.mark(cid, m)
    rep = L.reconcile({1: ("AAPL", D(70)), 2: ("ES", D(2)), 3: ("SAP", D(10))}, price={1: D("11")})    # broker has 10 more AAPL
    db.write_snapshot(L, rep)
    db.append_equity(L.equity_rows(T + dt.timedelta(hours=1)))
    return L


def test_empty_ledger_says_so(project, db):
    r = run_ats("ledger", "positions", cwd=project)
    assert r.returncode == 0 and "no fills yet" in r.stdout, r.stdout + r.stderr
    assert ats_json(project, "fills") == []
    r = run_ats("ledger", "equity", cwd=project)
    assert r.returncode == 0 and "no equity samples yet" in r.stdout


def test_positions_json_exact_with_marks_and_unassigned(project, db):
    write_book(db)
    rows = {(r["strategy"], r["symbol"]): r for r in ats_json(project, "positions")}
    mom = rows[("mom", "AAPL")]
    # 100 @ 10.50 then -40 @ 12: 60 left @ 10.50, realized 40 * 1.50 = 60; at 11.25: unrealized 60 * 0.75 = 45
    assert (mom["quantity"], mom["avg_price"], mom["mark"], mom["realized"], mom["unrealized"], mom["commissions"]) == \
           ("60", "10.50", "11.25", "60.00", "45.00", "2.00")
    es = rows[("fut", "ES")]
    # (4495.25 - 4500.25) * 2 * 50 = -500; the late commission 4.20 is there
    assert (es["multiplier"], es["unrealized"], es["commissions"], es["con_id"]) == ("50", "-500.00", "4.20", 2)
    assert rows[("eu", "SAP")]["currency"] == "EUR"
    un = rows[(UNASSIGNED, "AAPL")]
    assert (un["quantity"], un["avg_price"], un["mark"]) == ("10", "11", "11.25")      # from the snapshot's reconciliation
    assert all(isinstance(v, str) for r in rows.values() for k, v in r.items() if k in ("quantity", "avg_price", "realized"))
    assert [r["strategy"] for r in ats_json(project, "positions", "--strategy", "fut")] == ["fut"]
    human = run_ats("ledger", "positions", cwd=project, check=True).stdout
    assert "strategy" in human and "avg_price" in human and "_unassigned" in human and "4,500.25" in human
    assert "AAPL: broker 70, strategies 60 -> 10 unassigned" in human


def test_fills_json_in_time_order_with_late_commission(project, db):
    write_book(db)
    fills = ats_json(project, "fills")
    assert [f["exec_id"] for f in fills] == ["e1", "e3", "e2", "e4"]                    # by execution time
    e3 = fills[1]
    assert (e3["quantity"], e3["price"], e3["multiplier"], e3["commission"], e3["time"]) == ("2", "4500.25", "50", "4.20", "2024-03-01T14:31:00+00:00")
    assert [f["exec_id"] for f in ats_json(project, "fills", "--strategy", "mom")] == ["e1", "e2"]
    assert [f["exec_id"] for f in ats_json(project, "fills", "--limit", "1")] == ["e4"]
    human = run_ats("ledger", "fills", cwd=project, check=True).stdout
    assert "2024-03-01 14:31:00" in human and "exec_id" in human


def test_pnl_and_equity(project, db):
    write_book(db)
    pnl = {r["strategy"]: r for r in ats_json(project, "pnl")}
    # eu: 10 * (125 - 120) = 50 EUR = 54.00 USD at 1.08
    assert pnl["eu"]["unrealized"] == "54.00" and pnl["eu"]["currency"] == "USD"
    # mom: 60 + 45 - 2 = 103
    assert D(pnl["mom"]["net"]) == D("103") and pnl["mom"]["positions"] == 1
    eq = ats_json(project, "equity", "--strategy", "mom")
    assert len(eq) == 1 and eq[0]["time"] == "2024-03-01T15:30:00+00:00" and D(eq[0]["net"]) == D("103")
    human = run_ats("ledger", "pnl", cwd=project, check=True).stdout
    assert "P&L in USD" in human and "TOTAL" in human


def test_pnl_without_fx_rate_is_a_clear_error(project, db):
    db.append_fills([F("x", "eu", 10, "120", con=3, sym="SAP", ccy="EUR")])             # no snapshot yet: no FX rates
    r = run_ats("ledger", "pnl", cwd=project)
    assert r.returncode == 2 and "no FX rate for EUR" in r.stderr and "Traceback" not in r.stderr
    assert run_ats("ledger", "positions", cwd=project).returncode == 0
