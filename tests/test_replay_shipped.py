"""`ats replay NAME` on every shipped strategy, in a fresh project after `ats init`, with the config `ats init` stored for
it (parameters, allocation of NAV, its own risk limits): the replay sizes each order from the strategy's allocation of
NAV, as the runtime does, so the shipped configs trade instead of being refused wholesale."""
import json, os, re, shutil
import pandas as pd
import pytest
from conftest import run_ats
from runtime_helpers import ROOT

# futures_trend trades 'ES.FUT' and options_income SPY puts: `ats init` seeds neither (no stored config to replay with);
# futures_trend's replay (against a paper run and as `ats replay`) is tested in test_futures_replay.py, and both are
# traded on the paper gateway through the runtime in test_futures_strategy.py and test_options_strategy.py
NOT_SEEDED = {"futures_trend", "options_income"}
SHIPPED = sorted(p.stem for p in (ROOT / "strategies").glob("*.py") if not p.name.startswith("_") and p.stem not in NOT_SEEDED)
LOSS_LIMITS = ("[trading_state]", "[max_strategy_risk]", "[max_account_risk]", "[max_portfolio_weight]")


@pytest.fixture(scope="module")
def initialised(tmp_path_factory):
    d = tmp_path_factory.mktemp("shipped")
    shutil.copytree(ROOT / "strategies", d / "strategies")
    run_ats("init", cwd=d, check=True)
    return d


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_strategy_replays_with_its_stored_config(initialised, name):
    listed = json.loads(run_ats("strategies", "list", "--json", cwd=initialised, check=True).stdout)
    cfg = next(c for c in listed if c["strategy_name"] == name)
    r = run_ats("replay", name, "--json", cwd=initialised, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    j = json.loads(r.stdout)
    # the stored config is what ran: its parameters, its allocation of NAV and its risk limits
    assert j["configured"] and j["allocation"] == pytest.approx(cfg["allocation"]) and j["risk_limits"] == cfg["risk_limits"]
    assert all(j["params"][k] == v for k, v in cfg["parameters"].items())
    refused = pd.DataFrame(j["refused"], columns=["time", "symbol", "quantity", "reason"])
    # no order is refused for its size: allocation × NAV keeps each position within the config's max_position_size
    assert not refused["reason"].str.contains(r"\[max_position_size\]").any(), refused.head().to_string()
    assert j["executions"] >= 10
    if j["matched"]:
        assert r.returncode == 0 and refused.empty and j["differences"] == []
        assert abs(j["final_equity"]["replay"] / j["final_equity"]["backtest"] - 1) < 1e-3
        return
    # the replay and its backtest part only where a live loss or exposure limit refused an order (the backtest has none):
    # the first day they trade differently was decided one bar after a day with such a refusal
    assert r.returncode == 1 and len(refused) and refused["reason"].map(lambda x: any(k in x for k in LOSS_LIMITS)).all()
    first = pd.Timestamp(min(d["time"] for d in j["differences"]))
    first = (first.tz_convert(None) if first.tz is not None else first).normalize()
    refused_days = pd.DatetimeIndex(pd.to_datetime(refused["time"], utc=True)).tz_convert(None).normalize()
    assert (refused_days < first).any()


def test_the_shipped_momentum_strategy_trades_and_matches_its_backtest(initialised):
    "The issue's command: its 10 % allocation of NAV used to be refused, all 97 orders, as 99.94 % of NAV."
    r = run_ats("replay", "long_term_momentum", "--symbols", "IBM", cwd=initialised, timeout=600)
    # piped (not a terminal): no progress bar, so no carriage returns or ANSI escapes in what a log or a pipe receives
    assert not re.search(r"[\r\x1b]", r.stdout + r.stderr), repr(r.stderr[:200])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "allocation 10% of NAV" in r.stdout and "match" in r.stdout and "refused" not in r.stdout
