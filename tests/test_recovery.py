"""Crash recovery of the live runner: `ats up` restarts a runner killed outright (kill -9), which reconciles with the
broker before it trades, per [recovery] (fallback_mode safe / aggressive / manual, max_recovery_attempts within
recovery_timeout). Real `ats up` on a temporary project with the paper gateway; processes are followed with psutil."""
import json, os, signal, subprocess, time
from collections import Counter
from decimal import Decimal
import psutil, pytest
from ats.supervisor import free_port, port_open
from conftest import ATS, run_ats
from runtime_helpers import wait_for
from test_up import init_project, _try_status

pytestmark = pytest.mark.timeout(420)


def start(project, minutes=8, speed=4 * 86400, **env):
    "`ats up` trading the probe (it buys every bar, so orders and fills keep coming) with the given [recovery] settings."
    init_project(project, probe=True)
    run_ats("strategies", "deactivate", "ma_crossover", cwd=project)
    run_ats("strategies", "deactivate", "long_term_momentum", cwd=project)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {
        "IB_PORT": str(port), "ATS_GUI__START_DASHBOARD": "false", "ATS_JOBS__START_SCHEDULER": "false", "ATS_RECOVERY__RECOVERY_DELAY": "0.5"} | env
    up = subprocess.Popen([ATS, "up", "--minutes", str(minutes), "--speed", str(speed), "--every", "30"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return up, port


def runner_process(up) -> psutil.Process | None:
    "The `ats run` process under `ats up` (papermill; its kernel is its child)."
    for p in psutil.Process(up.pid).children():
        try:
            cmd = " ".join(p.cmdline())
            if " run" in cmd and "gateway" not in cmd: return p
        except psutil.Error: pass
    return None


def running_with_fills(project, pid_not=None, fills=1):
    "A runner (not the one with pid `pid_not`) that publishes `running` and has booked at least `fills` fills this session."
    d = _try_status(project)
    return bool(d and d.get("running") and d.get("pid") != pid_not and sum(s.get("fills", 0) for s in d.get("strategies", [])) >= fills)


def kill_runner(up, project):
    "kill -9 the runner process; returns the pid of the runtime (its kernel) that was publishing the status."
    doc = _try_status(project)
    r = runner_process(up)
    assert r is not None
    r.kill()
    return doc["pid"]


def journal(project) -> list[dict]:
    p = project / "data_and_research" / "db" / "gateway_state.fills.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def stop(up, timeout=90) -> str:
    try: return up.communicate(timeout=timeout)[0]
    finally:
        if up.poll() is None:
            for p in psutil.Process(up.pid).children(recursive=True): p.kill()
            up.kill(); up.wait(10)


def test_three_kill_9s_of_the_runner_are_survived_with_no_order_twice_and_no_fill_lost(project):
    up, port = start(project, ATS_RECOVERY__FALLBACK_MODE="aggressive")
    out = ""
    try:
        assert wait_for(lambda: running_with_fills(project), 120, every=0.5), "the runner never traded"
        for n in (1, 2, 3):
            dead_pid = kill_runner(up, project)
            # a new runner (another kernel) publishes running and trades again: fills keep coming after each crash
            assert wait_for(lambda: running_with_fills(project, pid_not=dead_pid), 120, every=0.5), f"no recovery after kill {n}"
            assert not psutil.pid_exists(dead_pid) or psutil.Process(dead_pid).status() == psutil.STATUS_ZOMBIE   # the old runtime is gone
        run_ats("shutdown", cwd=project, check=True)
        out = stop(up)
    finally:
        out = out or stop(up, 5)
    assert out.count("live runner restarted") == 3, out
    assert "recovery 3 of 3 within 300 s" in out and "reconciles with the broker first" in out, out
    doc = _try_status(project)
    assert not doc["running"] and doc["reconciliation"] and all(Decimal(x["difference"]) == 0 for x in doc["reconciliation"]), doc["reconciliation"]
    fills = json.loads(run_ats("ledger", "fills", "--json", cwd=project, check=True).stdout)
    ledger_ids = [f["exec_id"] for f in fills]
    assert len(ledger_ids) == len(set(ledger_ids))                                   # every fill stored once
    broker = {f["exec_id"]: f for f in journal(project)}
    assert set(ledger_ids) <= set(broker)
    # none lost across three crashes: what the ledger lacks filled after the runner's clean end, when only the protective
    # orders it leaves at the broker (stop, target, an exit in their OCA group) were still working on a market at 4 days/s
    late = [broker[x]["order_ref"] for x in set(broker) - set(ledger_ids)]
    protective = lambda ref: ref == "probe" or ref.partition(":")[2].startswith(("stop.", "target.", "exit."))
    assert all(protective(r) for r in late), late
    state = json.loads((project / "data_and_research" / "db" / "gateway_state.json").read_text())
    refs = Counter(o["order_ref"] for o in state["orders"] if o.get("order_ref"))
    assert {r: c for r, c in refs.items() if c > 1} == {}                            # no decision sent twice
    risk = json.loads(run_ats("risk", "status", "--json", cwd=project, check=True).stdout)
    assert risk["account"]["state"] == "ACTIVE"                                       # aggressive: trading went on as before


def test_safe_mode_restarts_into_reducing_and_gives_up_after_max_attempts(project):
    up, port = start(project, ATS_RECOVERY__MAX_RECOVERY_ATTEMPTS="1")
    out = ""
    try:
        assert wait_for(lambda: running_with_fills(project), 120, every=0.5), "the runner never traded"
        dead_pid = kill_runner(up, project)
        assert wait_for(lambda: (d := _try_status(project)) and d.get("running") and d.get("pid") != dead_pid, 120, every=0.5)
        risk = json.loads(run_ats("risk", "status", "--json", cwd=project, check=True).stdout)
        assert risk["account"]["state"] == "REDUCING" and "restarted" in json.dumps(risk["account"]), risk["account"]
        # the probe only buys: every new order of the recovered runner is refused until a person resumes
        assert wait_for(lambda: sum(s.get("refused", 0) for s in (_try_status(project) or {}).get("strategies", [])) > 0, 60, every=0.5)
        kill_runner(up, project)                                                      # a second death within the window: give up
        out = stop(up)
    finally:
        out = out or stop(up, 5)
    assert up.returncode == 1, out
    assert "restart(s) within 300 s already ([recovery] max_recovery_attempts = 1), so ats gives up" in out, out
    assert not port_open("127.0.0.1", port)                                            # everything stopped


def test_manual_mode_does_not_restart_and_keeps_the_gateway_for_a_person(project):
    up, port = start(project, ATS_RECOVERY__FALLBACK_MODE="manual")
    try:
        assert wait_for(lambda: running_with_fills(project), 120, every=0.5), "the runner never traded"
        kill_runner(up, project)
        assert wait_for(lambda: (d := _try_status(project)) and not d.get("running"), 60, every=0.5)
        time.sleep(3)
        assert up.poll() is None and port_open("127.0.0.1", port) and runner_process(up) is None   # waiting, gateway up, no runner
        up.send_signal(signal.SIGTERM)
        out = stop(up)
    finally:
        if up.poll() is None: stop(up, 5)
    assert "is not restarted ([recovery] fallback_mode = manual)" in out, out
    assert "live runner restarted" not in out
