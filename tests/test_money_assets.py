"""Money in every asset class: the ledger, sizing and risk for futures, options and FX as for shares — hand-computed
cases per class, and conservation of money across classes for any sequence of fills, settlements and price moves."""
import datetime as dt
from decimal import Decimal as D
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from ats.ledger import Ledger, Fill, Instrument, LedgerError, LedgerStore, load_ledger, FUTURES_MARGIN
from ats.store import Store

T = dt.datetime(2024, 3, 4, 15, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)

ES = Instrument("ES", "FUT", D(50), "USD", con_id=10)
CALL = Instrument("AAPL", "OPT", D(100), "USD", con_id=20, strike=D(150), right="C", underlying="AAPL")
PUT = Instrument("XYZ", "OPT", D(100), "USD", con_id=30, strike=D(50), right="P", underlying="XYZ")
XYZ = Instrument("XYZ", "STK", D(1), "USD", con_id=31)
EURGBP = Instrument("EUR", "CASH", D(1), "GBP", con_id=40)
SAP = Instrument("SAP", "STK", D(1), "EUR", con_id=50)


def fill(eid, strategy, inst, q, px, t=T, c="0"):
    return Fill(eid, strategy, inst.con_id, inst.symbol, D(str(q)), D(str(px)), t, inst.currency, inst.multiplier, D(c),
                sec_type=inst.sec_type)


def balanced(L, strategy=None, tol=D(0)):
    "cash + market value == realized + unrealized − commissions, in the base currency."
    x = L.totals(strategy)
    return abs(x["cash"] + x["market_value"] - (x["realized"] + x["unrealized"] - x["commissions"])) <= tol


def reread(L, tmp_path, name="db"):
    "The ledger as another process reads it back from ArcticDB (fills, transfers; then the runner's marks and FX)."
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/{name}"))
    ls.append_fills(list(L.fills.values())); ls.append_transfers(L.transfers); ls.write_snapshot(L)
    return load_ledger(ls, L.base, snapshot=True)


# ---- futures ---------------------------------------------------------------------------------
def test_futures_round_trip_with_two_days_of_variation(tmp_path):
    L = Ledger()
    L.record_fill(fill("b", "f", ES, 2, "4000", T, c="2.50"))
    p = L.positions[("f", 10)]
    # a futures trade pays no notional: only the commission leaves cash
    assert L.cash[("f", "USD")] == D("-2.50") and L.market_value("f") == 0
    # day 1 settles at 4010: (4010 − 4000) × 2 × 50 = 1,000 moves into cash, the cost basis becomes 4010
    (v1,) = L.settle(10, "4010", T.replace(hour=21))
    assert v1.kind == "variation" and v1.quantity == 0
    assert L.cash[("f", "USD")] == D("997.50") and p.avg_price == D("4010") and p.realized == D("1000") and p.unrealized == 0
    assert L.settle(10, "4010", T.replace(hour=21)) == []                 # the same settlement again: nothing new
    # day 2 at 4005: unrealized (4005 − 4010) × 100 = −500, held in the position, not counted twice
    L.mark(10, "4005")
    assert p.unrealized == D("-500") and L.market_value("f") == D("-500") and balanced(L)
    (row,) = L.equity_rows(T + DAY)
    assert row["net"] == D("497.50") and row["gross_exposure"] == D("400500")      # 1000 − 500 − 2.50; 2 × 4005 × 50
    # day 2 settles at 3990: (3990 − 4010) × 100 = −2,000
    L.settle(10, "3990", (T + DAY).replace(hour=21))
    assert L.cash[("f", "USD")] == D("-1002.50") and p.realized == D("-1000") and p.avg_price == D("3990")
    # day 3: sold at 4020: (4020 − 3990) × 100 = 3,000; the round trip realized (4020 − 4000) × 100 = 2,000
    L.record_fill(fill("s", "f", ES, -2, "4020", T + 2 * DAY, c="2.50"))
    assert p.quantity == 0 and p.realized == D("2000") and L.cash[("f", "USD")] == D("1995.00") and balanced(L)
    R = reread(L, tmp_path)
    assert R.totals("f") == L.totals("f") and R.cash == L.cash and R.fills == L.fills
    assert [f.kind for f in sorted(R.fills.values(), key=lambda f: f.time)] == ["trade", "variation", "variation", "trade"]


def test_variation_is_for_futures_only():
    L = Ledger()
    L.record_fill(fill("b", "s", XYZ, 100, "50"))
    with pytest.raises(LedgerError, match="only futures are settled daily"): L.settle(31, "51", T)
    with pytest.raises(LedgerError, match="quantity 0"):
        L.record_fill(Fill("v", "s", 31, "XYZ", D(0), D(51), T, kind="variation"))


# ---- options ---------------------------------------------------------------------------------
def test_call_bought_marked_sold(tmp_path):
    L = Ledger()
    L.record_fill(fill("b", "o", CALL, 1, "2.50", c="0.65"))
    # the premium: 1 × 2.50 × 100 = 250, plus the commission
    assert L.cash[("o", "USD")] == D("-250.65")
    L.mark(20, "3.10")
    p = L.positions[("o", 20)]
    assert p.unrealized == D("60") and L.market_value("o") == D("310") and balanced(L)
    (row,) = L.equity_rows(T)
    assert row["gross_exposure"] == D("310") and row["net"] == D("59.35")
    L.record_fill(fill("s", "o", CALL, -1, "3.40", T + DAY, c="0.65"))
    # realized (3.40 − 2.50) × 100 = 90; cash −250.65 + 340 − 0.65 = 88.70
    assert p.realized == D("90") and L.cash[("o", "USD")] == D("88.70") and L.market_value("o") == 0 and balanced(L)
    assert reread(L, tmp_path).totals() == L.totals()


def test_put_assigned_into_stock(tmp_path):
    L = Ledger()
    L.record_fill(fill("w", "p", PUT, -1, "3.00", c="0.65"))
    assert L.cash[("p", "USD")] == D("299.35")                              # the premium received
    legs = L.option_delivery("p", PUT, XYZ, kind="assignment", exec_id="asg1", at=T + 5 * DAY)
    # as IB reports it: the put closes at 0 (its premium is realized), 100 shares are bought at the strike
    assert [(f.exec_id, f.con_id, f.quantity, f.price, f.kind) for f in legs] == [
        ("asg1", 30, D(1), D(0), "assignment"), ("asg1.u", 31, D(100), D(50), "assignment")]
    assert L.position("p", 30) == 0 and L.positions[("p", 30)].realized == D("300")
    stock = L.positions[("p", 31)]
    assert stock.quantity == 100 and stock.avg_price == D("50") and L.cash[("p", "USD")] == D("-4700.65")
    assert L.option_delivery("p", PUT, XYZ, kind="assignment", exec_id="asg1", at=T + 5 * DAY) == []   # booked once
    L.mark(31, "48")
    # realized 300, unrealized 100 × (48 − 50) = −200, commissions 0.65
    assert L.totals("p")["unrealized"] == D("-200") and balanced(L)
    assert L.reconcile({31: ("XYZ", D(100))}).ok                         # the broker: 100 XYZ, no put
    R = reread(L, tmp_path)
    assert R.totals() == L.totals() and R.fills["asg1.u"].kind == "assignment" and R.reconcile({31: ("XYZ", D(100))}).ok


def test_long_call_exercised_and_delivery_checks():
    L = Ledger()
    L.record_fill(fill("b", "c", CALL, 2, "4.00"))
    AAPL = Instrument("AAPL", con_id=21)
    with pytest.raises(LedgerError, match="long option is exercised"):
        L.option_delivery("c", CALL, AAPL, kind="assignment", exec_id="x")
    L.option_delivery("c", CALL, AAPL, kind="exercise", exec_id="ex", quantity=1)
    # one contract exercised: 100 AAPL bought at 150; the other still held
    assert L.position("c", 20) == 1 and L.position("c", 21) == 100 and L.positions[("c", 21)].avg_price == 150
    L.option_delivery("c", CALL, None, kind="expiry", exec_id="xp")
    assert L.position("c", 20) == 0 and L.positions[("c", 20)].realized == D("-800")   # both premiums, 2 × 4.00 × 100
    assert L.cash[("c", "USD")] == D("-800") - 15000 and balanced(L)


# ---- FX --------------------------------------------------------------------------------------
def test_fx_round_trip_pnl_in_quote_currency_converted_to_base(tmp_path):
    L = Ledger("USD")
    L.set_fx("GBP", "1.25"); L.set_fx("EUR", "1.0625")
    # buy 100,000 EUR.GBP at 0.8500: long 100,000 EUR, short 85,000 GBP (plus 2 GBP commission)
    L.record_fill(fill("b", "x", EURGBP, 100_000, "0.8500", c="2"))
    assert L.cash[("x", "EUR")] == D(100_000) and L.cash[("x", "GBP")] == D("-85002.0000")
    assert L.market_value("x") == 0 and balanced(L)                      # 106,250 − 106,252.50 = −2.50 = −commission
    # EUR.GBP at 0.8550 (EUR 1.06875 USD): unrealized 0.0050 × 100,000 = 500 GBP = 625 USD
    L.mark(40, "0.8550"); L.set_fx("EUR", "1.06875")
    assert L.totals("x")["unrealized"] == D("625") and balanced(L)
    L.record_fill(fill("s", "x", EURGBP, -100_000, "0.8600", T + DAY, c="2"))
    # realized 0.0100 × 100,000 = 1,000 GBP = 1,250 USD; commissions 4 GBP = 5 USD; the euros are gone
    t = L.totals("x")
    assert L.cash[("x", "EUR")] == 0 and L.cash[("x", "GBP")] == D("996")
    assert (t["realized"], t["commissions"], t["cash"], t["market_value"]) == (D("1250"), D("5"), D("1245"), 0)
    assert L.reconcile({40: ("EUR", D(0))}).ok
    assert reread(L, tmp_path).totals() == t


def test_fx_pair_quoted_in_base_is_the_fx_rate():
    "EUR.USD is long EUR cash and short USD cash; its mark and the EUR rate are one number."
    L = Ledger("USD")
    eurusd = Instrument("EUR", "CASH", D(1), "USD", con_id=41)
    L.record_fill(fill("b", "x", eurusd, 10_000, "1.1000"))
    assert L.cash[("x", "EUR")] == 10_000 and L.cash[("x", "USD")] == -11_000
    L.mark(41, "1.1200")
    assert L.fx["EUR"] == D("1.1200") and L.totals("x")["unrealized"] == D("200") and L.cash_value("x") == D("200")
    L.set_fx("EUR", "1.0900")
    assert L.positions[("x", 41)].mark == D("1.0900") and L.totals("x")["unrealized"] == D("-100") and balanced(L)


def test_eur_stock_valued_in_usd():
    L = Ledger("USD")
    L.record_fill(fill("b", "e", SAP, 10, "120", c="1"))
    L.mark(50, "125")
    with pytest.raises(LedgerError, match="no FX rate for EUR"): L.market_value()
    L.set_fx("EUR", "1.08")
    # 10 × 125 EUR = 1,250 EUR = 1,350 USD; cash −1,201 EUR = −1,297.08 USD; unrealized 50 EUR = 54 USD
    t = L.totals("e")
    assert (t["market_value"], t["cash"], t["unrealized"], t["commissions"]) == (D("1350"), D("-1297.08"), D("54"), D("1.08"))
    L.set_fx("EUR", "1.10")                                                  # the same holding, a dearer euro
    assert L.market_value("e") == D("1375") and balanced(L)


def test_reconciliation_compares_every_class_per_contract():
    L = Ledger()
    L.record_fill(fill("1", "a", ES, 3, "4000")); L.record_fill(fill("2", "a", CALL, -2, "1.5"))
    L.record_fill(fill("3", "a", EURGBP, 25_000, "0.85")); L.record_fill(fill("4", "b", ES, -1, "4001"))
    broker = {10: ("ES", D(2)), 20: ("AAPL", D(-2)), 40: ("EUR", D(25_000))}
    assert L.reconcile(broker).ok
    rep = L.reconcile(broker | {10: ("ES", D(3))}, contracts={10: ("USD", D(50), "FUT")})
    assert [(r["con_id"], r["difference"]) for r in rep.differences] == [(10, D(1))]
    assert L.positions[("_unassigned", 10)].sec_type == "FUT"


def test_fills_stored_before_the_new_columns_are_read_and_extended(tmp_path):
    "A database written before fills had sec_type/kind: its rows read as share trades, and futures append after them."
    import pandas as pd
    from ats.ledger import fills_to_frame, FILLS
    ls = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    old = fills_to_frame([fill("old", "s", XYZ, 10, "50")]).drop(columns=["sec_type", "kind"])
    old.index = pd.DatetimeIndex([pd.Timestamp.now(tz="UTC")], name="written_at")
    ls.lib.write(FILLS, old)
    ls2 = LedgerStore(Store(f"lmdb://{tmp_path}/db"))
    assert ls2.append_fills([fill("new", "f", ES, 1, "4000")]) == 1
    got = {f.exec_id: f for f in ls2.fills()}
    assert (got["old"].sec_type, got["old"].kind, got["new"].sec_type) == ("STK", "trade", "FUT")
    assert load_ledger(ls2).cash == {("s", "USD"): D(-500), ("f", "USD"): D(0)}


# ---- conservation across classes -------------------------------------------------------------
EURUSD = Instrument("EUR", "CASH", D(1), "USD", con_id=41)
UNIVERSE = [XYZ, SAP, ES, CALL, EURUSD, EURGBP]
ops = st.lists(st.one_of(
    st.tuples(st.just("fill"), st.integers(0, len(UNIVERSE) - 1), st.sampled_from("ab"), st.integers(-5, 5).filter(bool),
              st.integers(50, 150), st.integers(0, 300), st.integers(0, 8)),
    st.tuples(st.just("mark"), st.integers(0, len(UNIVERSE) - 1), st.integers(50, 150)),
    st.tuples(st.just("settle"), st.integers(50, 150), st.integers(0, 8)),
    st.tuples(st.just("fx"), st.sampled_from(["EUR", "GBP"]), st.integers(80, 140)),
), min_size=1, max_size=30)
BASE_PRICE = {31: D(50), 50: D(100), 10: D(4000), 20: D(3), 41: D("1.1"), 40: D("0.85")}
SIZE = {31: 10, 50: 10, 10: 1, 20: 1, 41: 10_000, 40: 10_000}


def play(seq):
    "A ledger after a sequence of fills (some out of time order), settlements, marks and FX moves across classes."
    L = Ledger("USD")
    L.set_fx("EUR", "1.1"); L.set_fx("GBP", "1.25")
    settled = set()                                     # one settlement a day (another price the same day is refused)
    for i, op in enumerate(seq):
        if op[0] == "fill":
            _, k, s, q, pct, c, day = op
            inst = UNIVERSE[k]
            px = BASE_PRICE[inst.con_id] * pct / 100
            L.record_fill(fill(f"e{i}", s, inst, q * SIZE[inst.con_id], px, T + day * DAY + dt.timedelta(minutes=i), c=D(c) / 100))
        elif op[0] == "mark":
            _, k, pct = op
            L.mark(UNIVERSE[k].con_id, BASE_PRICE[UNIVERSE[k].con_id] * pct / 100)
        elif op[0] == "settle":
            _, pct, day = op
            if day in settled: continue
            settled.add(day)
            L.settle(10, BASE_PRICE[10] * pct / 100, (T + day * DAY).replace(hour=21))
        else:
            _, ccy, pct = op
            L.set_fx(ccy, D(pct) / 100)
    return L


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_money_is_conserved_across_classes(seq):
    L = play(seq)
    # an average price like 302/3 carries 28 significant digits: both sides agree to far below a cent
    for s in (None, "a", "b"): assert balanced(L, s, tol=D("1e-12"))
    for (s, cid), p in L.positions.items():
        assert p.quantity == sum((f.quantity for f in L.fills.values() if (f.strategy, f.con_id) == (s, cid)), D(0))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops)
def test_rereading_from_arcticdb_gives_the_same_figures(tmp_path_factory, seq):
    L = play(seq)
    R = reread(L, tmp_path_factory.mktemp("db"))
    assert R.totals() == L.totals() and R.cash == L.cash
    for s in ("a", "b"): assert R.totals(s) == L.totals(s)

def test_a_pair_marked_before_it_is_held_reads_back_the_same():
    "Found by the property test: a mark of EUR.USD before the first fill, then the fill. The runner's snapshot and the ledger agree."
    import tempfile, pathlib
    seq = [("fill", 0, "a", 1, 50, 0, 0), ("mark", 4, 50), ("fill", 4, "a", 1, 50, 0, 0)]
    L = play(seq)
    R = reread(L, pathlib.Path(tempfile.mkdtemp()))
    assert R.totals() == L.totals() and R.cash == L.cash and R.fx["EUR"] == L.fx["EUR"]


# ---- sizing: a target value in contracts -----------------------------------------------------
from ats.sizing import SizingConfig, size_order, target_quantities, intent_delta, TradeStats
from ats.strategy import OrderIntent


def test_sizing_turns_a_target_value_into_whole_contracts_never_above_it():
    lots = SizingConfig(base_position_size=250_000, position_increment=10)      # stocks in lots of 10 shares
    # 250,000 at 4,000 × 50 = 200,000 a contract: 1 ES (1.25 rounded down), not the lot of 10
    es = size_order(4000.0, 1_000_000, lots, instrument=ES)
    assert (es.quantity, es.value) == (1, 200_000)
    assert size_order(100.0, 1_000_000, lots).quantity == 2500                # a share: lots of 10, as before
    # volatility-adjusted: 0.01 × 1,000,000 / 0.02 = 500,000 -> 2 contracts (2.5 down), 400,000
    vol = size_order(4000.0, 1_000_000, SizingConfig(method="volatility_adjusted", position_increment=10), instrument=ES, volatility=0.02)
    assert (vol.quantity, vol.value) == (2, 400_000)
    # Kelly: (0.6 − 0.4 / 2) × 0.5 = 0.2 of 1,000,000 = 200,000 -> 1 contract short
    k = size_order(4000.0, 1_000_000, SizingConfig(method="kelly", position_increment=10), instrument=ES, side=-1, stats=TradeStats(50, 0.6, 2.0))
    assert (k.quantity, k.value) == (-1, 200_000)
    # an option: 10,000 of premium at 2.50 × 100 = 250 a contract -> 40 calls
    assert size_order(2.5, 1_000_000, SizingConfig(position_increment=10), instrument=CALL).quantity == 40


def test_target_weights_in_contracts_and_intents():
    cfg = SizingConfig(position_increment=5)
    q = target_quantities({"ESM4": 0.25, "SAP": 0.1}, {"ESM4": 4000.0, "SAP": 120.0}, 1_000_000, cfg=cfg,
                          fx={"SAP": 1.1}, instruments={"ESM4": ES, "SAP": SAP})
    # ES: 250,000 / 200,000 = 1.25 -> 1 contract; SAP: 100,000 / (120 × 1.1) = 757.6 -> 755 shares (lots of 5)
    assert q == {"ESM4": 1, "SAP": 755}
    it = OrderIntent("s", "ESM4", target_quantity=3)
    assert intent_delta(it, price=4000.0, capital=1.0, current=1, cfg=cfg, instrument=ES) == 2
    w = OrderIntent("s", "ESM4", target_weight=0.5)
    assert intent_delta(w, price=4000.0, capital=1_000_000, cfg=cfg, instrument=ES) == 2


# ---- risk: notional and margin in the base currency -------------------------------------------
from ats.risk import RiskEngine, RiskConfig, Order, PortfolioSnapshot, regt_short_option


def verdict(d):
    return d.allowed, [(r.code, round(r.value, 6)) for r in d.reasons]


def test_a_stock_limit_and_the_same_notional_es_order_give_the_same_verdict():
    snap = PortfolioSnapshot(nav=1_000_000, excess_liquidity=900_000, positions={("s", "QQQ"): 1000}, prices={"QQQ": 400.0})
    for limit in (0.10, 0.25):
        E = RiskEngine(RiskConfig(max_position_size=limit, max_portfolio_weight=1.0))
        stock = E.check(Order("s", "SPY", 2000, 100.0), snap)                       # 200,000
        es = E.check(Order("s", "ESM4", 1, 4000.0, instrument=ES), snap)            # 1 × 4,000 × 50 = 200,000
        assert verdict(stock) == verdict(es)
        assert stock.allowed == (limit == 0.25)
    # held futures count their notional toward exposure too: 2 ES held (400,000) + 200,000 more is 60 % of NAV
    held = PortfolioSnapshot(nav=1_000_000, excess_liquidity=900_000, positions={("s", "ESM4"): 2}, prices={"ESM4": (4000.0, 50.0, 1.0)})
    d = RiskEngine(RiskConfig(max_position_size=1.0, max_portfolio_weight=0.5)).check(Order("s", "ESM4", 1, 4000.0, instrument=ES), held)
    assert verdict(d) == (False, [("max_portfolio_weight", 0.6)])


def test_futures_margin_is_per_contract():
    E = RiskEngine(RiskConfig(max_position_size=0.5, max_portfolio_weight=0.5))
    snap = PortfolioSnapshot(nav=1_000_000, excess_liquidity=215_000)
    # the same 200,000: the stock takes 25 % of it (50,000, leaving 16.5 % of NAV), the ES contract 13,000 (20.2 %)
    assert verdict(E.check(Order("s", "SPY", 2000, 100.0), snap)) == (False, [("margin_buffer", 0.165)])
    assert FUTURES_MARGIN["ES"] == 13_000 and E.check(Order("s", "ESM4", 1, 4000.0, instrument=ES), snap).allowed
    assert E.check(Order("s", "ESM4", 1, 4000.0, instrument=Instrument("ES", "FUT", D(50), margin=D(60_000))), snap).reasons[0].code == "margin_buffer"
    # a contract without a margin of its own nor a default is margined like shares: 25 % of 100 × 1,000 = 25,000
    odd = E.check(Order("s", "XXZ4", 1, 100.0, instrument=Instrument("XX", "FUT", D(1000))), snap)
    assert verdict(odd) == (False, [("margin_buffer", 0.19)])


def test_a_short_options_margin_counts():
    assert regt_short_option("C", 100, 12, 110) == pytest.approx(34)      # in the money: 12 + 20 % of 110
    assert regt_short_option("P", 50, 0.5, 60) == pytest.approx(5.5)      # 10 out: 0.5 + max(12 − 10, 10 % of 50)
    E = RiskEngine()
    snap = PortfolioSnapshot(nav=100_000, excess_liquidity=25_000)
    # a 50 put at 2.00 with XYZ at 50: (2 + 20 % of 50) × 100 = 1,200 a contract; 20,000 (20 % of NAV) must remain
    sell = lambda n: E.check(Order("s", "XYZ P50", -n, 2.0, instrument=PUT, underlying_price=50.0), snap)
    assert sell(4).allowed                                                   # 25,000 − 4,800 = 20,200
    assert verdict(sell(5)) == (False, [("margin_buffer", 0.19)])           # 25,000 − 6,000 = 19,000
    assert E.check(Order("s", "XYZ P50", 5, 2.0, instrument=PUT), snap).allowed   # bought: the premium, 1,000
