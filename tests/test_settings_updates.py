"""A setting changed while ats runs takes effect when its schema says: a risk limit binds the very next order of a running
`ats up` session (no restart), a new IB port waits for a restart and says so; `ats config` shows which is which."""
import json, os, subprocess
import pytest
from ats.supervisor import free_port
from conftest import ATS, run_ats
from runtime_helpers import wait_for
from test_up import init_project, _try_status

pytestmark = pytest.mark.timeout(240)


def refused(project) -> int:
    return sum(s.get("refused", 0) for s in (_try_status(project) or {}).get("strategies", []))


def test_a_lower_position_limit_binds_the_next_order_of_a_running_session_and_a_port_waits_for_a_restart(project):
    init_project(project, probe=True)                 # the probe buys 5 IBM every bar
    for name in ("ma_crossover", "long_term_momentum"): run_ats("strategies", "deactivate", name, cwd=project)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "IB_"))} | {
        "IB_PORT": str(port), "ATS_GUI__START_DASHBOARD": "false", "ATS_JOBS__START_SCHEDULER": "false", "ATS_USER": "ann"}
    up = subprocess.Popen([ATS, "up", "--minutes", "4", "--speed", "43200", "--every", "30"], cwd=project, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: (d := _try_status(project)) and d.get("running") and
                        sum(s.get("fills", 0) for s in d.get("strategies", [])) >= 2, 120, every=0.5), "the runner never traded"
        assert refused(project) == 0                                              # the default 10 % of NAV does not bind
        r = run_ats("config", "set", "risk.max_position_size", "0.0001", cwd=project, env={"ATS_USER": "ann"}, check=True)
        assert "applies live: a running runner uses it within a second" in r.stdout, r.stdout
        # no restart: the next order is checked against 0.01 % of NAV and refused
        assert wait_for(lambda: refused(project) > 0, 30, every=0.5), _try_status(project)["strategies"]
        doc = _try_status(project)
        assert any("setting [risk] max_position_size: 0.1 -> 0.0001, applied live (set by ann)" in a["message"] for a in doc["alerts"]), doc["alerts"]
        assert any(a.get("kind") == "refused" and "max_position_size" in (a.get("reason") or "") for a in doc["activity"]), doc["activity"][-5:]
        r = run_ats("config", "set", "ib.port", str(port + 1), cwd=project, check=True)
        assert "takes effect when `ats up` (or the runner) starts again" in r.stdout
        assert wait_for(lambda: "ib.port" in (_try_status(project) or {}).get("pending_restart", {}), 15, every=0.5)
        assert _try_status(project)["pending_restart"]["ib.port"] == dict(running=str(port), new=str(port + 1))
        text = run_ats("status", cwd=project).stdout
        assert "restart pending (restart `ats up` to apply):" in text and f"[ib] port: running with {port}, {port + 1} after a restart" in text, text
        shown = json.loads(run_ats("config", "--json", cwd=project, check=True).stdout)["applies"]
        assert shown["risk.max_position_size"] == "live" and shown["ib.port"] == "restart" and shown["arctic.uri"] == "restart"
        run_ats("config", "unset", "ib.port", cwd=project, check=True)
        run_ats("shutdown", cwd=project, check=True)
        up.communicate(timeout=90)
    finally:
        if up.poll() is None: up.kill(); up.communicate(timeout=10)


def test_every_setting_says_when_a_change_takes_effect():
    "The rule is declared for every key; what a running process cannot change under its feet waits for a restart."
    from dataclasses import fields
    from ats.config import SECTIONS, render_ini
    from ats.settings_updates import applies
    rule = {(sec, f.name): applies(sec, f.name) for sec, cls in SECTIONS.items() for f in fields(cls)}
    assert set(rule.values()) == {"live", "restart"}
    for sec in ("ib", "arctic", "logging", "environment", "gateway"):
        assert {v for (s, _), v in rule.items() if s == sec} == {"restart"}, sec
    for sec in ("risk", "position_sizing", "stop_loss", "monitoring", "alerts"):
        assert {v for (s, _), v in rule.items() if s == sec} == {"live"}, sec
    assert rule[("gui", "port")] == "restart" and rule[("gui", "theme")] == "live"
    text = render_ini()
    assert text.count("; a change applies live") + text.count("; a change needs a restart") == len(rule)
