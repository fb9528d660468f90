"`ats gateway` in one process serves an unmodified ib_async script in another; state survives a restart."
import os, signal, subprocess, sys, textwrap
from pathlib import Path
from ats.supervisor import free_port, port_open
from conftest import ATS, run_ats

SCRIPT = textwrap.dedent("""
    import sys
    from ib_async import IB, Stock, MarketOrder
    ib = IB(); ib.connect("127.0.0.1", int(sys.argv[1]), clientId=7, timeout=5)
    c = Stock("AAPL", "SMART", "USD"); ib.qualifyContracts(c)
    bars = ib.reqHistoricalData(c, "", "10 D", "1 day", "TRADES", True)
    t = ib.reqMktData(c); ib.sleep(0.3)
    if sys.argv[2] == "trade":
        last = bars[-1].close
        trades = [ib.placeOrder(c, o) for o in ib.bracketOrder("BUY", 10, round(last * 1.02, 2), round(last * 1.5, 2), round(last * 0.5, 2))]
        ib.sleep(0.5)
        print("parent", trades[0].orderStatus.status, trades[0].fills[0].commissionReport.commission)
    print("bars", len(bars) >= 5, "last", t.last > 0)
    print("position", sum(p.position for p in ib.positions()))
    ib.disconnect()
""")


def start(project, port):
    p = subprocess.Popen([ATS, "gateway", "--port", str(port), "--speed", "0", "--start", "2006-01-03"], cwd=project,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not port_open("127.0.0.1", port):
        assert p.poll() is None, p.stdout.read()
    return p


def test_gateway_serves_a_script_and_survives_restart(project):
    run_ats("init", cwd=project, check=True)
    (project / "client.py").write_text(SCRIPT)
    port = free_port()
    gw = start(project, port)
    out = subprocess.run([sys.executable, "client.py", str(port), "trade"], cwd=project, capture_output=True, text=True, timeout=60)
    assert "parent Filled 1.0" in out.stdout and "bars True last True" in out.stdout and "position 10.0" in out.stdout, out.stdout + out.stderr
    gw.send_signal(signal.SIGINT); gw.wait(20)
    assert "state saved" in gw.stdout.read()
    gw = start(project, port)
    out = subprocess.run([sys.executable, "client.py", str(port), "look"], cwd=project, capture_output=True, text=True, timeout=60)
    assert "position 10.0" in out.stdout, out.stdout + out.stderr
    gw.send_signal(signal.SIGINT); gw.wait(20)


def test_port_in_use_is_a_clear_error(project):
    run_ats("init", cwd=project, check=True)
    port = free_port()
    gw = start(project, port)
    r = run_ats("gateway", "--port", str(port), "--speed", "0", cwd=project)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stdout
    gw.send_signal(signal.SIGINT); gw.wait(20)
