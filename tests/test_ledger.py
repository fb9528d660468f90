"Ledger properties: money is conserved and positions are the signed sum of fills, for any sequence of fills."
import datetime as dt
from decimal import Decimal as D
from hypothesis import given, settings, strategies as st
from ats.ledger import Ledger, Fill

T = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
fills = st.lists(st.tuples(st.integers(-500, 500).filter(bool), st.integers(100, 100_000), st.integers(0, 500)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(fills, st.integers(100, 100_000), st.sampled_from([1, 50, 100]))
def test_conservation_and_quantity(seq, mark_cents, mult):
    L = Ledger()
    for i, (q, px, c) in enumerate(seq):
        L.record_fill(Fill(f"e{i}", "s", 1, "X", D(q), D(px) / 100, T, "USD", D(mult), D(c) / 100))
        L.record_fill(Fill(f"e{i}", "s", 1, "X", D(q), D(px) / 100, T, "USD", D(mult), D(c) / 100))   # replays change nothing
    mark = D(mark_cents) / 100
    L.mark(1, mark)
    p = L.positions[("s", 1)]
    assert p.quantity == sum(D(q) for q, _, _ in seq)
    # everything paid and received, plus what is held at the mark, equals realized + unrealized − commissions;
    # an average price like 302/3 carries 28 significant digits, so the two sides agree to far below a cent
    assert abs(L.cash[("s", "USD")] + p.quantity * mark * mult - (p.realized + p.unrealized - p.commissions)) < D("1e-18")


def test_late_commission_is_added_once():
    L = Ledger()
    L.record_fill(Fill("x", "s", 1, "X", D(10), D("5"), T))
    assert L.record_commission("x", 1.25) and not L.record_commission("x", 1.25)
    assert L.positions[("s", 1)].commissions == D("1.25") and L.cash[("s", "USD")] == D("-51.25")


# ---- hand-computed cases ------------------------------------------------------------------
import subprocess, sys, textwrap, time
import pytest
from ats.ledger import (UNASSIGNED, LedgerError, LedgerStore, LedgerWriter, LedgerWriteError, load_ledger, FILLS,
                        ReconciliationReport)
from ats.store import Store


def F(eid, strategy, q, px, *, c="0", con=1, sym="AAA", ccy="USD", mult="1", t=T, order_id=0):
    return Fill(eid, strategy, con, sym, D(str(q)), D(str(px)), t, ccy, D(mult), D(c), order_id)


def identity_holds(L, strategy, ccy="USD"):
    "cash + holdings at the mark == realized + unrealized - commissions, for one strategy in one currency."
    ps = [p for (s, _), p in L.positions.items() if s == strategy and p.currency == ccy]
    held = sum((p.quantity * p.mark * p.multiplier for p in ps), D(0))
    return L.cash[(strategy, ccy)] + held == sum((p.realized + p.unrealized - p.commissions for p in ps), D(0))


def test_long_two_buys_then_partial_sell():
    L = Ledger()
    L.record_fill(F("b1", "s", 100, "10")); L.record_fill(F("b2", "s", 100, "12")); L.record_fill(F("x1", "s", -150, "15"))
    p = L.positions[("s", 1)]
    # avg = (100*10 + 100*12) / 200 = 11; realized = 150 * (15 - 11) = 600; left 50 @ 11
    assert p.avg_price == D("11") and p.realized == D("600") and p.quantity == 50
    L.mark(1, "14")
    # unrealized = 50 * (14 - 11) = 150; cash = -1000 - 1200 + 2250 = 50
    assert p.unrealized == D("150") and L.cash[("s", "USD")] == D("50") and identity_holds(L, "s")


def test_short_then_partial_cover():
    L = Ledger()
    L.record_fill(F("s1", "s", -100, "50")); L.record_fill(F("c1", "s", 40, "45"))
    p = L.positions[("s", 1)]
    # realized = 40 * (50 - 45) = 200; left -60 @ 50; at 47: unrealized = (47 - 50) * -60 = 180
    assert p.realized == D("200") and p.quantity == -60 and p.avg_price == D("50")
    L.mark(1, "47")
    assert p.unrealized == D("180") and identity_holds(L, "s")


def test_flip_through_zero():
    L = Ledger()
    L.record_fill(F("l1", "s", 100, "10")); L.record_fill(F("f1", "s", -250, "12"))
    p = L.positions[("s", 1)]
    # the first 100 close: realized = 100 * (12 - 10) = 200; the other 150 open a short at 12
    assert p.realized == D("200") and p.quantity == -150 and p.avg_price == D("12")
    L.mark(1, "11")
    assert p.unrealized == D("150") and identity_holds(L, "s")    # (11 - 12) * -150


def test_partial_fills_of_one_order_are_counted_once(tmp_path):
    L = Ledger()
    parts = [F("o7.1", "s", 30, "20.00", c="0.30", order_id=7), F("o7.2", "s", 50, "20.10", c="0.50", order_id=7),
             F("o7.3", "s", 20, "20.05", c="0.20", order_id=7)]
    assert all(L.record_fill(f) for f in parts)
    p = L.positions[("s", 1)]
    # avg = (30*20.00 + 50*20.10 + 20*20.05) / 100 = (600 + 1005 + 401) / 100 = 20.06; commissions 1.00
    assert p.quantity == 100 and p.avg_price == D("20.06") and p.commissions == D("1.00")
    before = (p.quantity, p.avg_price, p.commissions, dict(L.cash))
    assert not L.record_fill(parts[1])                               # IB replays an execution after a reconnect
    assert (p.quantity, p.avg_price, p.commissions, dict(L.cash)) == before and len(L.fills) == 3
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    assert ls.append_fills(parts) == 3 and ls.append_fills([parts[1]]) == 0 and len(ls.fills()) == 3


def test_futures_multiplier():
    L = Ledger()
    L.record_fill(F("e1", "fut", 2, "4500.25", con=2, sym="ES", mult="50"))
    L.record_fill(F("e2", "fut", -1, "4510.75", con=2, sym="ES", mult="50"))
    p = L.positions[("fut", 2)]
    # realized = 1 * (4510.75 - 4500.25) * 50 = 525; at 4495.25: unrealized = (4495.25 - 4500.25) * 1 * 50 = -250
    assert p.realized == D("525") and p.quantity == 1
    L.mark(2, "4495.25")
    assert p.unrealized == D("-250")
    # cash = -2*4500.25*50 + 4510.75*50 = -450025 + 225537.5 = -224487.5
    assert L.cash[("fut", "USD")] == D("-224487.5") and identity_holds(L, "fut")
    (row,) = L.equity_rows(T)
    assert row["gross_exposure"] == D("224762.5") and row["net"] == D("275")   # 1 * 4495.25 * 50; 525 - 250


def test_euro_stock_in_usd():
    L = Ledger("USD")
    L.record_fill(F("x1", "eu", 10, "120", c="1", con=3, sym="SAP", ccy="EUR"))
    L.record_fill(F("x2", "eu", -4, "130", c="1", con=3, sym="SAP", ccy="EUR"))
    L.mark(3, "125")
    with pytest.raises(LedgerError, match="no FX rate for EUR"): L.pnl_frame()
    L.set_fx("EUR", "1.08")
    # in EUR: realized 4 * (130 - 120) = 40, unrealized 6 * (125 - 120) = 30, commissions 2
    # in USD at 1.08: 43.20, 32.40, 2.16 -> net 73.44
    (row,) = L.equity_rows(T)
    assert (row["realized"], row["unrealized"], row["commissions"], row["net"]) == (D("43.20"), D("32.40"), D("2.16"), D("73.44"))
    pnl = L.pnl_frame().set_index("strategy").loc["eu"]
    assert pnl["realized"] == pytest.approx(43.20) and pnl["net"] == pytest.approx(73.44)
    assert row["gross_exposure"] == D("810.00") and identity_holds(L, "eu", "EUR")   # 6 * 125 * 1.08


def test_commission_arriving_late(tmp_path):
    L = Ledger()
    L.record_fill(F("x", "s", 100, "10"))
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    ls.append_fills([L.fills["x"]])
    assert L.record_commission("x", "1.25") and ls.append_commissions([("x", "1.25")]) == 1
    assert not L.record_commission("x", "1.25") and ls.append_commissions([("x", "1.25")]) == 0
    with pytest.raises(LedgerError, match="already has commission"): L.record_commission("x", "2")
    with pytest.raises(LedgerError, match="store the fill first"): ls.append_commissions([("nope", "1")])
    # cash = -100 * 10 - 1.25
    assert L.cash[("s", "USD")] == D("-1001.25") and L.positions[("s", 1)].commissions == D("1.25")
    R = load_ledger(ls)
    assert R.fills["x"].commission == D("1.25") and R.cash == L.cash and ls.fills()[0].commission == 0   # stored as written
    # a replayed execution that now carries its commission stores just the commission
    ls2 = LedgerStore(Store(f"lmdb://{tmp_path}/db2"))
    ls2.append_fills([F("y", "s", 5, "10")]); ls2.append_fills([F("y", "s", 5, "10", c="0.5")])
    assert len(ls2.fills()) == 1 and ls2.commissions() == [("y", D("0.5"))]


def test_reconciliation_unassigned_then_assigned_as_a_transfer(tmp_path):
    L = Ledger()
    L.record_fill(F("a", "s1", 100, "10"))
    rep = L.reconcile({1: ("AAA", D(130))}, price={1: D("10")})
    # broker 130, strategies 100 -> 30 unassigned, an explicit position
    assert not rep.ok and rep.differences[0]["difference"] == 30
    assert L.positions[(UNASSIGNED, 1)].quantity == 30 and L.positions[(UNASSIGNED, 1)].currency == "USD"
    t = L.assign(1, 30, "s2", price="10.50", by="ann")
    assert t["to"] == "s2" and t["quantity"] == 30 and t["price"] == D("10.50") and t["by"] == "ann"
    assert len(L.fills) == 1 and L.transfers == [t]                      # a transfer, not a fill
    assert L.position("s2", 1) == 30 and L.positions[("s2", 1)].avg_price == D("10.50")
    assert L.cash[("s2", "USD")] == D("-315.00")                         # s2 pays 30 * 10.50 for what it takes
    assert L.reconcile({1: ("AAA", D(130))}).ok and L.positions[(UNASSIGNED, 1)].quantity == 0
    with pytest.raises(LedgerError, match="nothing unassigned"): L.assign(1, 1, "s2")
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    ls.append_fills(L.fills.values()); assert ls.append_transfers([t]) == 1 and ls.append_transfers([t]) == 0
    R = load_ledger(ls)
    assert R.positions[("s2", 1)] == L.positions[("s2", 1)] and R.transfers == [t] and R.reconcile({1: ("AAA", D(130))}).ok


def test_unassigned_takes_currency_and_multiplier_of_the_contract():
    L = Ledger()
    L.record_fill(F("e1", "fut", 1, "4500", con=2, sym="ES", mult="50"))
    L.reconcile({2: ("ES", D(3))}, price={2: D("4500")})
    u = L.positions[(UNASSIGNED, 2)]
    assert (u.currency, u.multiplier, u.quantity) == ("USD", D(50), 2)
    L.reconcile({2: ("ES", D(3)), 9: ("SAP", D(10))}, contracts={9: ("EUR", "1")})
    assert L.positions[(UNASSIGNED, 9)].currency == "EUR"
    # neither a position nor `contracts`: the assumption is on the report and in the log, not silent
    rep = L.reconcile({2: ("ES", D(3)), 9: ("SAP", D(10)), 11: ("VOD", D(-7))})
    assert [r.get("note", "") for r in rep.rows if r["con_id"] == 11] == ["currency USD and multiplier 1 assumed (pass contracts= to reconcile)"]


def test_late_fill_is_booked_in_execution_time_order():
    t0 = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.timezone.utc)
    a, b, c = (F("a", "s", 100, "10", t=t0), F("b", "s", -100, "12", t=t0 + dt.timedelta(minutes=1)),
               F("c", "s", 100, "11", t=t0 + dt.timedelta(minutes=2)))
    live, ordered = Ledger(), Ledger()
    for f in (a, c, b): live.record_fill(f)          # b was found after a reconnect
    for f in (a, b, c): ordered.record_fill(f)
    # in time order: buy 100 @ 10, sell 100 @ 12 -> realized 200; then long 100 @ 11
    assert live.positions == ordered.positions and live.positions[("s", 1)].realized == D("200")
    assert live.positions[("s", 1)].avg_price == D("11")


# ---- persistence ---------------------------------------------------------------------------
def busy_ledger():
    "A ledger with every kind of event: long, short, futures, euro stock, late commission, late fill, a transfer."
    L = Ledger(); L.set_fx("EUR", "1.08")
    t = lambda m: T + dt.timedelta(minutes=m)
    for f in [F("1", "mom", 100, "10.01", c="1.00", t=t(0)), F("2", "mom", 100, "12", t=t(1)), F("3", "mom", -150, "15", t=t(2)),
              F("4", "rev", -100, "50", t=t(0)), F("5", "rev", 40, "45", t=t(1)), F("6", "fut", 2, "4500.25", con=2, sym="ES", mult="50", t=t(3)),
              F("7", "eu", 10, "120", c="1", con=3, sym="SAP", ccy="EUR", t=t(3)), F("8", "mom", 1, "0.1", t=t(0)),
              F("9", "mom", -1, "14", t=t(1))]:     # 8 and 9 share times with others; 8 arrives late
        L.record_fill(f)
    L.record_commission("2", "0.35")
    L.reconcile({1: ("AAA", D(-10)), 2: ("ES", D(3)), 3: ("SAP", D(10))}, price={2: D("4501")})
    tr = L.assign(2, 1, "fut", by="ann")
    for cid, m in ((1, "14"), (2, "4495.25"), (3, "125")): L.mark(cid, m)
    return L, tr


def test_round_trip_through_lmdb(tmp_path):
    L, tr = busy_ledger()
    S = Store(f"lmdb://{tmp_path}/db")
    ls = LedgerStore(S)
    written = list(L.fills.values())
    originals = [F("1", "mom", 100, "10.01", c="1.00", t=T)]
    ls.append_fills(written)
    ls.append_commissions([("2", "0.35")])
    ls.append_transfers(L.transfers)
    ls.write_snapshot(L, L.reconcile({1: ("AAA", D(-10)), 2: ("ES", D(3)), 3: ("SAP", D(10))}))
    back = LedgerStore(S).fills()                                               # a fresh reader
    assert back == written and back[0] == originals[0] and all(isinstance(f.quantity, D) for f in back)
    assert back[0].time.tzinfo is not None and back[7].price == D("0.1")
    R = load_ledger(S, snapshot=True)
    live = {k: p for k, p in L.positions.items() if not (k[0] == UNASSIGNED and p.quantity == 0)}
    assert R.positions == live
    assert R.cash == L.cash and R.fills == L.fills and R.transfers == L.transfers and R.fx == L.fx
    assert R.equity_rows(T) == L.equity_rows(T) and R.pnl_frame().equals(L.pnl_frame())
    assert {k: p.realized for k, p in R.positions.items()} == {k: p.realized for k, p in L.positions.items() if k in live}
    snap = ls.snapshot()
    assert snap["reconciliation"].ok and snap["marks"][2] == D("4495.25") and snap["transfers"] == {tr["id"]}
    # the index of each appended symbol keeps increasing even though fills share execution times
    idx = S.library("portfolios").read(FILLS).data.index
    assert idx.is_monotonic_increasing and idx.is_unique and str(idx.tz) == "UTC"


def test_reappending_is_idempotent_across_processes_restarts(tmp_path):
    L, _ = busy_ledger()
    S = Store(f"lmdb://{tmp_path}/db")
    fills = list(L.fills.values())
    assert LedgerStore(S).append_fills(fills[:5]) == 5
    ls = LedgerStore(S)                                 # a restarted runner: reads the stored ids once
    assert ls.append_fills(fills) == len(fills) - 5 and ls.append_fills(fills) == 0
    assert [f.exec_id for f in ls.fills()] == [f.exec_id for f in fills]


def test_writes_are_one_call_per_batch(tmp_path):
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    calls = []
    for name in ("append", "write"):
        orig = getattr(ls.lib, name)
        setattr(ls.lib, name, lambda *a, _o=orig, _n=name, **k: (calls.append((_n, a[0])), _o(*a, **k))[1])
    ls.append_fills([F(f"e{i}", "s", 1, "10") for i in range(50)])
    ls.append_fills([F(f"f{i}", "s", 1, "10") for i in range(50)])
    ls.append_equity(Ledger().equity_rows())            # nothing to write: no call
    assert calls == [("write", FILLS), ("append", FILLS)]


def test_equity_samples(tmp_path):
    L, _ = busy_ledger()
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    t1, t2 = T, T + dt.timedelta(minutes=5)
    ls.append_equity(L.equity_rows(t1)); L.mark(1, "15"); ls.append_equity(L.equity_rows(t2))
    e = ls.equity("mom")
    assert list(e.index) == [pd_ts(t1), pd_ts(t2)] and e["net"].iloc[1] - e["net"].iloc[0] == D("50")   # 50 held, +1 each
    assert set(ls.equity()["strategy"]) == {"mom", "rev", "fut", "eu"}
    assert ls.equity("nobody").empty


def pd_ts(t):
    import pandas as pd
    return pd.Timestamp(t)


def test_writer_batches_retries_and_flushes_on_close(tmp_path, caplog):
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    real, fails = ls.append_fills, [1]
    def flaky(fills):
        if fails: fails.pop(); raise OSError("disk busy")
        return real(fills)
    ls.append_fills = flaky
    w = LedgerWriter(ls, interval=0.05)
    w.append_fills([F("a", "s", 1, "10")]); w.append_fills([F("b", "s", 1, "11")]); w.append_commissions([("a", "0.1")])
    assert w.flush(5) and w.errors == 1 and "disk busy" in w.last_error
    assert [f.exec_id for f in ls.fills()] == ["a", "b"] and ls.commissions() == [("a", D("0.1"))]
    assert "retrying at the next flush" in caplog.text
    w.append_fills([F("c", "s", 1, "12")])
    w.close()                                            # close writes what is still queued
    assert [f.exec_id for f in ls.fills()] == ["a", "b", "c"]
    with pytest.raises(LedgerWriteError, match="closed"): w.append_fills([F("d", "s", 1, "1")])


def test_writer_close_raises_when_data_cannot_be_written(tmp_path):
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    ls.append_fills = lambda fills: (_ for _ in ()).throw(OSError("read-only file system"))
    w = LedgerWriter(ls, interval=0.01, close_attempts=2)
    w.append_fills([F("a", "s", 1, "10")])
    with pytest.raises(LedgerWriteError, match="1 fills.*read-only"): w.close()


def test_snapshot_is_taken_when_queued_not_when_written(tmp_path):
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    L = Ledger(); L.record_fill(F("a", "s", 1, "10"))
    with LedgerWriter(ls, interval=0.2) as w:
        w.write_snapshot(L)
        L.record_fill(F("b", "s", 1, "10"))              # the event loop goes on
    assert ls.snapshot()["fills"] == 1


WRITER = textwrap.dedent("""
    import sys, time, datetime as dt
    from decimal import Decimal as D
    from ats.store import Store, exit_skipping_teardown
    from ats.ledger import LedgerStore, Fill
    ls = LedgerStore(Store(sys.argv[1]))
    T = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    for b in range(int(sys.argv[2])):
        ls.append_fills([Fill(f"e{b * 5 + i:04d}", "s", 1, "X", D(1), D("10.5"), T) for i in range(5)])
        time.sleep(0.01)
    exit_skipping_teardown(0)
""")


def test_reader_sees_complete_batches_while_a_writer_process_appends(tmp_path):
    uri = f"lmdb://{tmp_path}/db"
    S = Store(uri)                                       # libraries exist before the writer starts
    reader = LedgerStore(S)
    batches = 60
    p = subprocess.Popen([sys.executable, "-c", WRITER, uri, str(batches)], stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        while p.poll() is None:
            ids = [f.exec_id for f in reader.fills()]
            assert len(ids) % 5 == 0 and ids == [f"e{i:04d}" for i in range(len(ids))]
            seen.append(len(ids))
    finally:
        err = p.communicate(timeout=60)[1]
    assert p.returncode == 0, err
    assert len(reader.fills()) == 5 * batches and len(set(seen)) > 3, seen    # it did read while appends went on


def test_many_small_appends_are_compacted(tmp_path, caplog):
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"), compact_every=4)
    for b in range(9): ls.append_fills([F(f"e{b}.{i}", "s", 1, "10") for i in range(3)])
    assert "compacting" not in caplog.text
    assert [f.exec_id for f in ls.fills()] == [f"e{b}.{i}" for b in range(9) for i in range(3)]
    # compacted after the 4th and the 8th append: one merged slice and the 9th batch, not 9 slices
    assert ls.lib.compact_data_explain_plan(FILLS).num_row_slices_before == 2


def test_snapshot_keeps_the_last_reconciliation_and_its_time(tmp_path):
    S = Store(f"lmdb://{tmp_path}/db")
    L = Ledger(); L.record_fill(F("a", "s", 100, "10"))
    rep = L.reconcile({1: ("AAA", D(120))}, price={1: D("10")})
    LedgerStore(S).write_snapshot(L, rep)
    time.sleep(0.01)
    ls = LedgerStore(S)                                   # a restarted runner, before its first reconciliation
    ls.write_snapshot(L)
    snap = ls.snapshot()
    assert snap["reconciled_at"] == rep.at < snap["at"] and str(snap["reconciliation"]) == str(rep)
    assert snap["reconciliation"].differences[0]["difference"] == D(20)
    assert [(p.strategy, p.quantity) for p in snap["positions"]] == [("s", 100), (UNASSIGNED, 20)]
