"Sizing properties: minimum, increment and leverage cap hold for any input; rounding never adds risk."
from decimal import Decimal
from hypothesis import given, settings, strategies as st
from ats.sizing import SizingConfig, target_quantities, size_order

weights = st.dictionaries(st.sampled_from(list("ABCDEFGH")), st.floats(-2, 2, allow_nan=False), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(weights, st.floats(1e3, 1e7), st.integers(1, 100), st.floats(0, 5000), st.floats(0.1, 4), st.floats(0.5, 2000))
def test_target_quantities_respect_limits(w, capital, inc, minimum, lev, px):
    cfg = SizingConfig(position_increment=inc, min_position_size=minimum, max_leverage=lev)
    prices = {s: px * (1 + i / 10) for i, s in enumerate(sorted(w))}
    q = target_quantities(w, prices, capital, cfg)
    gross = sum(abs(float(v)) * prices[s] for s, v in q.items())
    assert gross <= lev * capital * (1 + 1e-9)
    for s, v in q.items():
        assert v % inc == 0
        assert v == 0 or abs(float(v)) * prices[s] >= minimum
        assert v == 0 or (v > 0) == (w[s] > 0)
        assert abs(float(v)) * prices[s] <= abs(w[s]) * capital + 1e-6          # rounding toward zero never adds risk


@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 5000), st.floats(1e3, 1e7), st.integers(1, 50), st.sampled_from([1.0, 50.0]))
def test_fixed_size_is_bounded(px, capital, inc, mult):
    cfg = SizingConfig(base_position_size=10_000, position_increment=inc, min_position_size=100, max_leverage=1.0)
    q, how = size_order(px, capital, cfg, multiplier=mult)
    assert q >= 0 and q % inc == 0
    assert float(q) * px * mult <= min(10_000, capital) + 1e-6
