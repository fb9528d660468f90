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
