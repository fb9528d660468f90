"""`ats up` (what `make run` starts) and the trading commands, as a user runs them: real subprocesses, the paper gateway as
a child process over a socket, the live runner under papermill, `ats status`, `ats kill --flatten`, `ats risk status`,
`ats resume`, `ats ledger assign`. The broker's side is read with a raw ib_async client."""
import json, os, shutil, subprocess, sys, time
from decimal import Decimal
from ib_async import IB
from ats.supervisor import free_port, port_open
from conftest import ROOT, ATS, run_ats
from runtime_helpers import PROBE, wait_for


def init_project(project, probe=False):
    shutil.copytree(ROOT / "strategies", project / "strategies", dirs_exist_ok=True)
    if probe: (project / "strategies" / "probe.py").write_text(PROBE)
    run_ats("init", cwd=project, check=True)
    assert (project / "data_and_research" / "jobs" / "live_runner.ipynb").is_file()     # `ats init` brings the runner notebook
    if probe: run_ats("strategies", "add", "probe", 'symbols=["IBM"]', "qty=5", "--active", cwd=project, check=True)


_stores: dict = {}

def project_store(project):
    """The project's database, opened once in this test process; ArcticDB reloads version maps on every read here, so it
    sees what the runner writes."""
    from ats.config import load_settings
    from ats.store import Store
    if str(project) not in _stores:
        _stores[str(project)] = Store.from_settings(load_settings(project / "settings.ini", env={}), create=False)
    return _stores[str(project)]


def status(project) -> dict | None:
    """What `ats status --json` prints, read in this process: tests poll it in loops, and a subprocess per poll cost a
    second of CPU each, taken from the processes under test (the command itself is checked in the first test)."""
    from ats.status import freshness, read_status
    doc = read_status(project_store(project))
    return json.loads(json.dumps(None if doc is None else {**doc, "freshness": freshness(doc).to_dict()}, default=str))


def broker(port):
    "Positions and open orders as the gateway reports them to a separate API client."
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=77, timeout=10)
    try:
        pos = {p.contract.symbol: p.position for p in ib.reqPositions() if p.position}
        orders = [t for t in ib.reqAllOpenOrders() if not t.isDone()]
        return pos, orders
    finally:
        ib.disconnect()


def test_ats_up_trades_the_shipped_strategies_and_ends_with_a_reconciled_summary(project):
    init_project(project)
    port = free_port()
    r = run_ats("up", "--minutes", "0.4", "--speed", "432000", "--every", "5", cwd=project, env={"IB_PORT": str(port)}, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "started paper gateway" in out and "started live runner" in out
    summary = out.split("summary:")[1]
    rows = {l.split()[0]: l.split() for l in summary.splitlines() if l.startswith(("ma_crossover", "long_term_momentum"))}
    assert {"ma_crossover", "long_term_momentum"} <= set(rows)
    doc = status(project)
    printed = json.loads(run_ats("status", "--json", cwd=project).stdout)          # the command prints the same
    assert printed.pop("freshness")["state"] == doc.pop("freshness")["state"] == "stopped" and printed == doc
    strat = {s["strategy"]: s for s in doc["strategies"]}
    assert strat["ma_crossover"]["orders"] > 0 and strat["long_term_momentum"]["orders"] > 0, summary     # both traded
    assert strat["ma_crossover"]["fills"] > 0 and strat["long_term_momentum"]["fills"] > 0
    assert doc["stop_reason"] == "the session length of 0.4 min was reached" and not doc["running"]        # not "requested by root"
    assert "stopped: the session length of 0.4 min was reached" in summary
    assert doc["reconciliation"] and all(Decimal(x["difference"]) == 0 for x in doc["reconciliation"])   # ledger == broker
    assert doc["connections"][0]["latency_ms"] is not None                                       # the heartbeat measured it
    # the session's record: the executed live runner notebook, archived
    runs = list((project / "data_and_research" / "runs" / "live_runner").glob("*.ipynb"))
    assert len(runs) == 1
    outputs = json.dumps([o for c in json.loads(runs[0].read_text())["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])])
    assert "ma_crossover" in outputs and "long_term_momentum" in outputs          # the executed cells printed the session
    # the ledger the runner stored agrees with what it showed
    led = json.loads(run_ats("ledger", "positions", "--json", cwd=project, check=True).stdout)
    held = {(p["strategy"], p["symbol"]): Decimal(p["quantity"]) for p in led if Decimal(p["quantity"])}
    shown = {(p["strategy"], p["symbol"]): Decimal(str(p["quantity"])) for p in doc["positions"] if p["quantity"]}
    assert held == shown
    fills = json.loads(run_ats("ledger", "fills", "--json", cwd=project, check=True).stdout)
    assert len(fills) == len({f["exec_id"] for f in fills}) == sum(s["fills"] for s in doc["strategies"])
    assert not port_open("127.0.0.1", port)                                                      # the gateway child stopped


def test_kill_flatten_halts_and_flattens_within_2_s_then_resume_trades_again(project):
    init_project(project, probe=True)
    # and a holder: two strategies hold positions at once from the first bars (the shipped ones hold one only now and then)
    (project / "strategies" / "holder.py").write_text(HOLDER)
    run_ats("strategies", "add", "holder", 'symbols=["MSFT"]', "qty=3", "--active", cwd=project, check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {"IB_PORT": str(port), "ATS_JOBS__START_SCHEDULER": "false"}
    # one simulated day every 0.2 s: the probe buys on every bar
    up = subprocess.Popen([ATS, "up", "--no-notebook", "--speed", "432000", "--every", "30"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: (d := _try_status(project)) and d.get("running") and
                        sum(p["quantity"] != 0 for p in d["positions"]) >= 2, 90), up.stdout and ""
        watch = IB()                  # connected before the kill: the 2 s are the flattening's, not a new connection's
        watch.connect("127.0.0.1", port, clientId=78, timeout=10)
        try:
            r = run_ats("kill", "--flatten", cwd=project, check=True)
            t_answer = time.monotonic()
            assert "account HALTED and flattening" in r.stdout
            seen = lambda: ({p.contract.symbol: p.position for p in watch.reqPositions() if p.position},
                            [t for t in watch.reqAllOpenOrders() if not t.isDone()])
            flat = wait_for(lambda: seen() == ({}, []), 10, every=0.05)
            took = time.monotonic() - t_answer
        finally:
            watch.disconnect()
        assert flat and took < 2.0, f"{broker(port)} after {took:.2f} s"
        risk = json.loads(run_ats("risk", "status", "--json", cwd=project, check=True).stdout)
        assert risk["account"]["state"] == "HALTED" and risk["account"]["by"]
        refused0 = {s["strategy"]: s["refused"] for s in status(project)["strategies"]}
        assert wait_for(lambda: status(project)["strategies"] and
                        next(s for s in status(project)["strategies"] if s["strategy"] == "probe")["refused"] > refused0["probe"] + 2, 20)
        assert broker(port)[0] == {}                                             # nothing got through while HALTED
        run_ats("resume", cwd=project, check=True)
        assert json.loads(run_ats("risk", "status", "--json", cwd=project).stdout)["account"]["state"] == "ACTIVE"
        assert wait_for(lambda: broker(port)[0].get("IBM", 0) > 0, 20)             # the probe trades again
        run_ats("shutdown", cwd=project, check=True)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None: up.terminate(); up.wait(30)
    assert not port_open("127.0.0.1", port)


HOLDER = """from ats.strategy import Strategy
class Holder(Strategy):
    params = dict(symbols=["MSFT"], qty=1)
    def on_bar(self, bar):
        if not self.position[self.symbols[0]]: self.buy(self.symbols[0], self.p["qty"])
"""


def _try_status(project):
    try: return status(project)
    except Exception: return None        # e.g. the database not created yet


def test_trading_commands_without_a_runner_say_what_to_do_and_keep_the_state(project):
    init_project(project)
    r = run_ats("strategies", "stop", "ma_crossover", cwd=project)
    assert r.returncode == 2 and "no runner is running" in r.stderr and "ats up" in r.stderr
    r = run_ats("status", cwd=project)
    assert r.returncode == 1 and "no runner has run yet" in r.stdout
    # the kill switch works without a runner: the stored state, obeyed when a runner starts
    r = run_ats("kill", "--strategy", "ma_crossover", cwd=project, check=True)
    assert "strategy ma_crossover HALTED in the stored state" in r.stdout
    risk = json.loads(run_ats("risk", "status", "--json", cwd=project, check=True).stdout)
    assert risk["strategies"]["ma_crossover"]["effective"] == "HALTED" and risk["account"]["state"] == "ACTIVE"
    assert "no runner" in risk["note"]
    run_ats("resume", "--strategy", "ma_crossover", cwd=project, check=True)
    risk = json.loads(run_ats("risk", "status", "--json", cwd=project, check=True).stdout)
    assert risk["strategies"]["ma_crossover"]["effective"] == "ACTIVE"
    r = run_ats("ledger", "assign", "AAPL", "10", "--to", "ma_crossover", cwd=project)
    assert r.returncode == 2 and "nothing unassigned in AAPL" in r.stderr
    r = run_ats("ledger", "assign", "AAPL", "ten", "--to", "ma_crossover", cwd=project)
    assert r.returncode == 2 and "quantity 'ten' is not a number" in r.stderr


def test_a_position_opened_outside_ats_is_unassigned_until_a_trader_assigns_it(project):
    init_project(project)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {"IB_PORT": str(port), "ATS_GUI__START_DASHBOARD": "false", "ATS_JOBS__START_SCHEDULER": "false"}
    up = subprocess.Popen([ATS, "up", "--no-notebook", "--speed", "86400", "--every", "30"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: (d := _try_status(project)) and d.get("running"), 90)
        from ib_async import Stock, MarketOrder
        ib = IB(); ib.connect("127.0.0.1", port, clientId=78, timeout=10)     # a trader buys in another program
        t = ib.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder("BUY", 7, tif="GTC"))   # GTC: it waits for the next open
        assert wait_for(lambda: (ib.sleep(0.05), t.isDone())[1], 20) and t.orderStatus.status == "Filled", t.log
        ib.disconnect()
        r = run_ats("ledger", "reconcile", cwd=project, check=True)
        assert "AAPL: broker" in r.stdout and "7 unassigned" in r.stdout
        pos = json.loads(run_ats("ledger", "positions", "--strategy", "_unassigned", "--json", cwd=project, check=True).stdout)
        assert [(p["symbol"], Decimal(p["quantity"])) for p in pos] == [("AAPL", 7)]
        r = run_ats("ledger", "assign", "AAPL", "9", "--to", "ma_crossover", cwd=project)
        assert r.returncode == 2 and "at most 7" in r.stderr                       # more than there is: refused, nothing lost
        r = run_ats("ledger", "assign", "AAPL", "7", "--to", "ma_crossover", cwd=project, check=True)
        assert "assigned 7 AAPL to ma_crossover" in r.stdout
        assert "agree with the broker" in run_ats("ledger", "reconcile", cwd=project, check=True).stdout
        run_ats("shutdown", cwd=project, check=True)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None: up.terminate(); up.wait(30)
    led = {(p["strategy"], p["symbol"]): Decimal(p["quantity"]) for p in
           json.loads(run_ats("ledger", "positions", "--json", cwd=project, check=True).stdout)}
    assert led.get(("_unassigned", "AAPL"), 0) == 0                  # the transfer is stored: it survives the runner
    assert all(Decimal(x["difference"]) == 0 for x in status(project)["reconciliation"])
