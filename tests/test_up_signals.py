"""A stop is a stop, whatever sends it: `ats up` ended by SIGTERM or SIGHUP (kill, timeout, systemd, schedulers) stops
like Ctrl-C, and killed outright (SIGKILL) its children - the paper gateway, the live runner and the runner's papermill
kernel - notice and stop by themselves. Real `ats up` on a temporary project; processes are followed with psutil."""
import json, os, signal, subprocess, time
import psutil, pytest
from ats.supervisor import free_port, port_open
from conftest import ATS
from runtime_helpers import wait_for
from test_up import init_project, _try_status

pytestmark = pytest.mark.timeout(240)


def start_up(project, **extra_env):
    "`ats up` with the live runner under papermill; returns (process, port, its descendants once the runner runs)."
    init_project(project)
    port, gui = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {"IB_PORT": str(port), "ATS_GUI__PORT": str(gui)} | extra_env
    up = subprocess.Popen([ATS, "up", "--minutes", "5", "--speed", "86400", "--every", "30"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert wait_for(lambda: (d := _try_status(project)) and d.get("running"), 120, every=0.5), "the runner never ran"
    tree = psutil.Process(up.pid).children(recursive=True)
    cmds = [" ".join(p.cmdline()) for p in tree]
    assert any(" gateway " in c for c in cmds) and any(" run" in c for c in cmds), cmds
    assert any("ipykernel" in c for c in cmds), cmds                      # the runner's papermill kernel is watched too
    assert wait_for(lambda: port_open("127.0.0.1", gui), 60, every=0.5)     # and the dashboard (Voila) is served
    tree = psutil.Process(up.pid).children(recursive=True)
    assert any("ats.ui.server" in " ".join(p.cmdline()) for p in tree), cmds     # the Voila server, run by ats.ui.server.serve
    return up, (port, gui), tree


def _cleanup(up, tree):
    "Never leave a test's processes behind (they would hold ports and write to the database)."
    for p in [*tree, psutil.Process(up.pid)] if up.poll() is None else tree:
        try: p.kill()
        except psutil.Error: pass
    up.wait(10)


def _gone(tree, timeout):
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    return [(p.pid, " ".join(p.cmdline())) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_ats_up_like_ctrl_c(project, sig):
    up, port, tree = start_up(project)
    try:
        up.send_signal(sig)
        out, _ = up.communicate(timeout=30)
        assert f"stopping ({sig.name})" in out, out
        assert "summary:" in out, out                                            # the final summary, as after Ctrl-C
        assert _gone(tree, 10) == []                                              # gateway, runner and kernel: all gone
        assert not port_open("127.0.0.1", port[0]) and not port_open("127.0.0.1", port[1])   # the IB port and the dashboard port
        doc = _try_status(project)
        assert not doc["running"] and doc["stop_reason"] == f"`ats up` was stopped ({sig.name})", doc["stop_reason"]   # the runner's clean stop
        assert list((project / "data_and_research" / "runs" / "live_runner").glob("*.ipynb"))         # and its record
        log = (project / "logs" / "gateway.log").read_text()
        assert "paper gateway stopped" in log and "CancelledError" not in log and "Traceback" not in log, log[-3000:]
    finally:
        _cleanup(up, tree)


def test_children_stop_by_themselves_when_ats_up_is_killed(project):
    up, port, tree = start_up(project)
    try:
        up.kill()
        up.wait(10)
        assert _gone(tree, 15) == []                                              # nobody left holding the port or the database
        assert not port_open("127.0.0.1", port[0]) and not port_open("127.0.0.1", port[1])
        doc = _try_status(project)
        assert not doc["running"], doc                                            # the runner stopped cleanly and said so
        log = (project / "logs" / "gateway.log").read_text()
        assert "paper gateway stopped" in log and "Traceback" not in log, log[-3000:]   # state saved on the way out
    finally:
        _cleanup(up, tree)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_gateway_stopped_with_clients_connected_saves_and_exits_without_a_traceback(tmp_path, sig):
    from ib_async import IB
    port = free_port()
    gw = subprocess.Popen([ATS, "gateway", "--port", str(port), "--state", str(tmp_path / "state.json")], cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clients = []
    try:
        assert wait_for(lambda: port_open("127.0.0.1", port), 60, every=0.1)
        for cid in (5, 6):                                   # connected clients: their handlers are running when it stops
            ib = IB(); ib.connect("127.0.0.1", port, clientId=cid, timeout=10); clients.append(ib)
        gw.send_signal(sig)
        out, _ = gw.communicate(timeout=30)
    finally:
        for ib in clients: ib.disconnect()
        if gw.poll() is None: gw.kill(); gw.wait(10)
    assert gw.returncode == 0 and "paper gateway stopped; state saved" in out, out
    assert "CancelledError" not in out and "Traceback" not in out, out
    assert (tmp_path / "state.json").is_file() and not port_open("127.0.0.1", port)


def test_a_runner_killed_outright_is_reported_not_shown_running(project):
    "kill -9 of the runner without crash recovery: `ats up` says so, records it in the status, stops the gateway; `ats status` never shows it running."
    up, port, tree = start_up(project, ATS_RECOVERY__AUTO_RECOVERY="false")
    try:
        runner = next(p for p in tree if " run" in " ".join(p.cmdline()) and "ipykernel" not in " ".join(p.cmdline()))
        runner.kill()
        out, _ = up.communicate(timeout=60)
        assert "live runner exited with code -9" in out, out
        assert _gone(tree, 15) == [] and not port_open("127.0.0.1", port[0])
        # its kernel (where the runtime lives) either stopped cleanly and said so, or died with it and `ats up` said so
        doc = _try_status(project)
        died = "recorded in the status: the runner died" in out
        assert not doc["running"], doc["stop_reason"]
        assert doc["stop_reason"].startswith("the live runner died (killed by SIGKILL)") if died else doc["stop_reason"], doc["stop_reason"]
        r = subprocess.run([ATS, "status"], cwd=project, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "stopped" in r.stdout and "STALE" not in r.stdout and doc["stop_reason"] in r.stdout, r.stdout
    finally:
        _cleanup(up, tree)
