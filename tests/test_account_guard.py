"""The account guard: ats checks the account TWS is logged into, not only the port. The paper gateway pretends to be a live
account (`ats gateway --account U1234567`); `ats run` with paper settings and [ib] gateway_type = tws must refuse it before
any order, and live settings must refuse a paper (DU…) account. The broker's side is read with a separate ib_async client."""
import contextlib, signal, subprocess, time
from ib_async import IB
from ats.config import LIVE_CONFIRMATION
from ats.supervisor import free_port, port_open
from ats.gateway.service import GatewayThread
from ats.store import StrategyConfig
from conftest import ATS, run_ats
from runtime_helpers import Session, make_project, wait_for, PROBE
from test_up import init_project

PAPER = {"ATS_IB__GATEWAY_TYPE": "tws"}                                   # development profile: paper_trading = true
LIVE = {"ATS_IB__GATEWAY_TYPE": "tws", "ENVIRONMENT": "production", "ATS_IB__PAPER_TRADING": "false",
        "ATS_ENVIRONMENT__CONFIRM_LIVE_TRADING": LIVE_CONFIRMATION}


def start_gateway(project, port, *account):
    "`ats gateway` as a user starts it, a trading day every 0.2 s so that a connected runner's probe would trade at once."
    p = subprocess.Popen([ATS, "gateway", "--port", str(port), "--speed", "432000", "--start", "2006-01-03", "--fresh", *account],
                         cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not port_open("127.0.0.1", port):
        assert p.poll() is None, p.stdout.read()
    return p


def stop_gateway(p):
    p.send_signal(signal.SIGINT); p.wait(20)


@contextlib.contextmanager
def gateway_as(project, *account):
    "A project with the probe strategy and a paper gateway on a free port answering as `account`; yields the port."
    init_project(project, probe=True)
    port = free_port()
    gw = start_gateway(project, port, *account)
    try: yield port
    finally: stop_gateway(gw)


def broker_side(port):
    "(managed accounts, executions, open orders, completed orders) as the gateway reports them to another API client."
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=77, timeout=10)
    try: return ib.managedAccounts(), ib.reqExecutions(), ib.reqAllOpenOrders(), ib.reqCompletedOrders(False)
    finally: ib.disconnect()


def run_session(project, port, env, minutes="0.1"):
    return run_ats("run", "--no-notebook", "--minutes", minutes, "--port", str(port), cwd=project, env=env, timeout=180)


def test_paper_settings_refuse_a_live_account_before_any_order(project):
    with gateway_as(project, "--account", "U1234567") as port:
        r = run_session(project, port, PAPER)
        assert r.returncode == 2, r.stdout + r.stderr
        err = r.stderr
        assert "account U1234567 is a live (real-money) account" in err and "paper_trading = true" in err, err
        assert "ENVIRONMENT=production" in err and "[ib] paper_trading = false" in err and LIVE_CONFIRMATION in err
        accounts, execs, open_orders, completed = broker_side(port)
        assert accounts == ["U1234567"]                                  # the gateway did pretend to be that account
        assert execs == [] and open_orders == [] and completed == []     # and received no order at all


def test_live_settings_refuse_a_paper_account(project):
    with gateway_as(project) as port:
        r = run_session(project, port, LIVE)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "account DU0000001 is a paper account" in r.stderr and "set [ib] paper_trading = true" in r.stderr, r.stderr
        accounts, execs, open_orders, completed = broker_side(port)
        assert accounts == ["DU0000001"] and execs == [] and open_orders == [] and completed == []


def test_paper_settings_on_a_paper_account_trade_as_before(project):
    with gateway_as(project, "--account", "DU7654321") as port:
        r = run_session(project, port, PAPER, minutes="0.25")
        assert r.returncode == 0, r.stdout + r.stderr
        accounts, execs, _, _ = broker_side(port)
        assert accounts == ["DU7654321"] and any(f.execution.orderRef.startswith("probe:") for f in execs), r.stdout + r.stderr
        assert {f.execution.acctNumber for f in execs} == {"DU7654321"}


def test_ats_up_prints_the_refusal(project):
    with gateway_as(project, "--account", "U1234567") as port:
        r = run_ats("up", "--no-notebook", "--minutes", "1", "--every", "30", cwd=project, env={**PAPER, "IB_PORT": str(port)}, timeout=180)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "live runner exited with code 2" in r.stdout and "account U1234567 is a live (real-money) account" in r.stdout, r.stdout
        assert broker_side(port)[1:] == ([], [], [])


def play(gw, days):
    """Trading days on the gateway's clock, without waiting for the runtime to act on each: as from TWS
    (gateway_type = tws), a day's bar reaches the runtime when the next day starts, which `Session.step` would wait out."""
    for _ in range(days):
        gw.call(gw.gw.step, 1); time.sleep(0.3)


def test_a_reconnect_to_another_account_stops_the_runner(project):
    "The same port, a different login after a reconnect (TWS restarted into a live account): the runner stops, no order goes out."
    s, st = make_project(project, env="ATS_IB__GATEWAY_TYPE=tws\n", strategies=dict(probe=PROBE),
                         configs=[StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.2)])
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    sess = Session(s, st, gw).start()
    try:
        slot = sess.rt.slots["probe"]
        assert slot.state == "running"
        play(gw, 2)
        assert wait_for(lambda: len(gw.gw.exchange.orders) > 0)       # trades on the paper account
        sent = len(gw.gw.exchange.orders)
        gw.gw.account = "U1234567"                                      # the next login answers as a live account
        for c in (sess.rt.main, slot.conn): gw.call(gw.gw.drop, c.client_id)
        assert wait_for(lambda: sess.rt.stop_reason != "", 20), sess.rt.alerts
        assert "U1234567 is a live (real-money) account" in sess.rt.stop_reason
        assert any(a["level"] == "CRITICAL" and "U1234567" in a["message"] for a in sess.rt.alerts)
        # each connection refuses at its own next login (the strategy's may still be waiting out its reconnect backoff)
        assert wait_for(lambda: sess.rt.main.state.value == "failed" and slot.conn.state.value == "failed", 20), \
            (sess.rt.main.state.value, slot.conn.state.value)
        play(gw, 2); time.sleep(1.0)
        assert len(gw.gw.exchange.orders) == sent                       # nothing was sent after the refusal
    finally:
        sess.stop()
        gw.stop()
