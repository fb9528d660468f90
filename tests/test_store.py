"ArcticDB store: libraries, typed round trips, refusals that write nothing, overrides."
import dataclasses
import pandas as pd
import pytest
from ats.store import Store, StoreError, StrategyConfig, LIBRARIES
from ats.config import load_settings


@pytest.fixture
def store(project):
    (project / "strategies" / "ltm.py").write_text(LTM)
    return Store(f"lmdb://{project}/db", strategies_dir=project / "strategies", known_symbols={"ACWI", "IBM", "SPY"})


LTM = """from ats.strategy import Strategy, StrategyParamError
class LTM(Strategy):
    params = dict(symbols=["ACWI"], lookback_period=10, rebalance_frequency="monthly", weight=0.0, nested=None)
    def validate(self):
        if self.p["lookback_period"] < 2: raise StrategyParamError(f"strategy {self.name!r}: lookback_period = {self.p['lookback_period']}; use at least 2")
"""


CFG = StrategyConfig(filename="ltm.py", strategy_name="long_term_momentum", active=True,
                     parameters=dict(symbols=["ACWI"], lookback_period=10, rebalance_frequency="monthly", weight=0.5,
                                     nested=dict(a=[1, 2.5, True], b=None)),
                     risk_limits=dict(max_position_size=0.5, max_orders_per_day=20), allocation=0.25)


def test_creates_all_libraries(store):
    assert sorted(store.arctic.list_libraries()) == sorted(LIBRARIES)


def test_map_size_holds_years_of_bars_for_many_symbols(store):
    "A predecessor used 5 MB and filled up at once: 2,000 symbols x 10 years of daily bars must fit."
    import numpy as np
    lib = store.library("market_data")
    idx = pd.bdate_range("2015-01-01", periods=2520, tz="UTC")
    frame = pd.DataFrame(np.random.default_rng(0).random((2520, 6)), index=idx, columns=list("ohlcav"))
    from arcticdb import WritePayload
    lib.write_batch([WritePayload(f"S{i}.1d", frame) for i in range(2000)])
    assert len(lib.list_symbols()) == 2000


def test_round_trip_keeps_types(store):
    store.save_strategy_config(CFG)
    back = store.load_strategy_config("long_term_momentum")
    assert back == CFG
    assert back.active is True and type(back.parameters["lookback_period"]) is int
    assert back.parameters["nested"] == dict(a=[1, 2.5, True], b=None)
    assert type(back.risk_limits["max_orders_per_day"]) is int and type(back.allocation) is float


@pytest.mark.parametrize("change,message", [
    (dict(active="true"), "strategy 'long_term_momentum': active = 'true' has type str; expected bool"),
    (dict(parameters=dict(weight=1.2)), "strategy 'long_term_momentum': parameters.weight = 1.2 is outside [0, 1]; weights are fractions (0.5 = 50 %)"),
    (dict(allocation=25.0), "strategy 'long_term_momentum': allocation = 25.0 is outside [0, 1]; it is a fraction of NAV (0.25 = 25 %)"),
    (dict(risk_limits=dict(max_drawdown=0.1)), "strategy 'long_term_momentum': risk_limits has unknown key 'max_drawdown'; allowed: max_position_size, max_portfolio_weight, max_strategy_risk, stop_loss_pct, max_position_value, max_leverage, max_orders_per_day"),
    (dict(risk_limits=dict(max_position_size=-0.1)), "strategy 'long_term_momentum': risk_limits.max_position_size = -0.1 is out of range: expected a number in (0, 1.0] (largest position as a fraction of NAV)"),
    (dict(filename="nope.py"), "strategy 'long_term_momentum': strategy file 'nope.py' not found in"),
    (dict(filename="../etc/passwd"), "strategy 'long_term_momentum': filename = '../etc/passwd': expected the name of a .py file in strategies/, e.g. 'ma_crossover.py'"),
    (dict(strategy_name="1bad name"), "strategy '1bad name': strategy_name must start with a letter"),
    (dict(parameters="lookback=10"), "strategy 'long_term_momentum': parameters = 'lookback=10' has type str; expected dict"),
    # the strategy's own check (declared types, validate(), symbols the broker knows), as the runtime runs it
    (dict(parameters=dict(lookback_period="abc")), "strategy 'long_term_momentum': parameter lookback_period = 'abc' has type str; expected int (default 10)"),
    (dict(parameters=dict(symbols="SPY")), "strategy 'long_term_momentum': parameter symbols = 'SPY' has type str; expected list"),
    (dict(parameters=dict(lookback_period=1)), "strategy 'long_term_momentum': lookback_period = 1; use at least 2"),
    (dict(parameters=dict(symbols=["ZZZZ", "SPY"])), "strategy 'long_term_momentum': parameters.symbols: 'ZZZZ' is not known to the broker; known: ACWI, IBM, SPY"),
    (dict(parameters=dict(lookbak=12)), "strategy 'long_term_momentum': unknown parameter 'lookbak'"),
])
def test_bad_config_refused_and_nothing_written(store, change, message):
    with pytest.raises(ValueError) as e:
        store.save_strategy_config(dataclasses.replace(CFG, **change))
    assert str(e.value).startswith(message), str(e.value)
    assert store.load_strategy_configs() == []


def test_unknown_key_in_dict_config(store):
    with pytest.raises(ValueError, match=r"unknown key\(s\) colour; allowed keys: "):
        store.save_strategy_config(dict(CFG.to_dict(), colour="red"))
    assert store.load_strategy_configs() == []


def test_versions_are_kept_for_audit(store):
    store.save_strategy_config(CFG, by="ann")
    store.save_strategy_config(dataclasses.replace(CFG, active=False), by="bob")
    h = store.strategy_config_history("long_term_momentum")
    assert list(h["by"]) == ["ann", "bob"] and list(h["active"]) == [True, False]


def test_overrides_validated_and_typed(store):
    assert store.save_override("ib", "reconnect_attempts", "9", by="ann") == 9
    with pytest.raises(ValueError, match=r"override \[ib\] port = 'x': expected a whole number"):
        store.save_override("ib", "port", "x")
    with pytest.raises(ValueError, match="is a secret"):
        store.save_override("data", "quandl_api_key", "k")
    s = load_settings(None, env={}, store=store, use_file=False)
    assert s.ib.reconnect_attempts == 9 and str(s.source("ib", "reconnect_attempts")) == "override (arcticdb by ann)"
    assert store.clear_override("ib", "reconnect_attempts") and store.load_overrides() == {}


def test_unknown_library_and_missing_db(project):
    st = Store(f"lmdb://{project}/db2")
    with pytest.raises(KeyError, match="unknown library 'trades'; ats libraries are: market_data, strategies"):
        st.library("trades")
    with pytest.raises(StoreError, match="no database at .*; run `ats init`"):
        Store(f"lmdb://{project}/never", create=False)


def test_any_uri_accepted(project):
    st = Store("mem://")
    assert sorted(st.arctic.list_libraries()) == sorted(LIBRARIES)


def test_a_strategy_file_that_does_not_load(store, project):
    "An active config needs a file that loads (it could not start); an inactive one may wait for the fix."
    (project / "strategies" / "ltm.py").write_text("class Broken(:\n")
    with pytest.raises(ValueError, match=r"strategy 'long_term_momentum': cannot be active: .*ltm.py:1: syntax error"):
        store.save_strategy_config(CFG)
    assert store.load_strategy_configs() == []
    store.save_strategy_config(dataclasses.replace(CFG, active=False))
    assert store.load_strategy_config("long_term_momentum").active is False
