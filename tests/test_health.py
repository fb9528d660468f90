"""Health checks (issue 13): thresholds from [monitoring] decide the verdicts; IB's data-farm and connectivity messages, sent
by the paper gateway over the socket, fail the connection checks and raise alerts; a symbol without bars goes stale; the
checks are in the runner's status and `ats health` exits 1 when one fails."""
import datetime as dt, json, threading, time
from ats.config import load_settings
from ats.store import StrategyConfig
from ats.status import status_document, write_status
from ats.gateway.service import GatewayThread
from ats.health import run_checks, Check
from conftest import run_ats
from runtime_helpers import Session, make_project, wait_for

NOOP = """from ats.strategy import Strategy
class Noop(Strategy):
    params = dict(symbols=["AAPL", "MSFT"])
    def on_bar(self, bar):
        pass
"""
# thresholds nobody reaches on a shared test machine: only the injected faults fail
CALM = ("ATS_MONITORING__CHECK_INTERVAL=1\nATS_MONITORING__STALE_DATA_BARS=3\n"
        "ATS_MONITORING__ALERT_THRESHOLDS=cpu_usage: 100, memory_usage: 100, disk_usage: 100, connection_latency: 60000\n")


def _settings(thresholds: str = "", **env):
    e = {"ATS_MONITORING__ALERT_THRESHOLDS": thresholds} if thresholds else {}
    return load_settings(use_file=False, env={**e, **env})


def _busy(seconds: float):
    "Some CPU use while the CPU is measured (an idle machine could read 0.0 %)."
    end = time.monotonic() + seconds
    while time.monotonic() < end: pass


def test_thresholds_from_settings_decide_the_resource_verdicts():
    t = threading.Thread(target=_busy, args=(1.0,)); t.start()
    tight = {c.name: c for c in run_checks(None, _settings("cpu_usage: 0.0001, memory_usage: 0.0001, disk_usage: 0.0001"), cpu_interval=0.3)}
    t.join()
    assert {n: c.verdict for n, c in tight.items()} == {"cpu": "fail", "memory": "fail", "disk": "fail"}
    assert tight["cpu"].threshold == 0.0001 and tight["cpu"].unit == "%" and "cpu_usage" in tight["cpu"].message
    loose = run_checks(None, _settings("cpu_usage: 100, memory_usage: 100, disk_usage: 100"), cpu_interval=0.05)
    assert [c.name for c in loose] == ["cpu", "memory", "disk"] and all(c.verdict != "fail" for c in loose)
    assert run_checks(None, _settings(ATS_MONITORING__RESOURCE_MONITORING="false")) == []


def _health(rt) -> dict[str, Check]:
    return {c.name: c for c in getattr(rt, "health", None) or []}


def _verdict(rt, name):
    c = _health(rt).get(name)
    return c.verdict if c else None


def test_ib_messages_stale_data_status_and_ats_health_against_a_live_runtime(project):
    s, st = make_project(project, env=CALM, strategies=dict(noop=NOOP),
                         configs=[StrategyConfig("noop.py", "noop", True, dict(symbols=["AAPL", "MSFT"]), {}, 0.5)])
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    sess = Session(s, st, gw).start()
    rt = sess.rt
    try:
        # every group checked, nothing failing on a healthy session
        want = {"cpu", "memory", "disk", "connection:runtime", "latency:runtime", "connection:noop", "ib_connectivity",
                "error_rate:noop", "bar_to_order_latency", "strategy:noop", "data:AAPL", "data:MSFT"}
        assert wait_for(lambda: want <= set(_health(rt)), 20), sorted(_health(rt))
        assert wait_for(lambda: all(c.verdict != "fail" for c in _health(rt).values()), 10), [c for c in _health(rt).values() if c.verdict == "fail"]
        from ats.status import read_status                # the runner has published its checks (a busy box may take a while)
        assert wait_for(lambda: (d := read_status(st)) is not None and want <= {c["name"] for c in d.get("health") or []}, 30)
        r = run_ats("health", "--json", cwd=project)
        out = json.loads(r.stdout)
        assert r.returncode == 0, r.stdout + r.stderr
        assert out["ok"] and out["checks"][0]["name"] == "runner" and out["checks"][0]["verdict"] == "ok"
        assert want <= {c["name"] for c in out["checks"]}

        # a data farm breaks: its check fails, one ERROR alert (the message reaches both connections)
        assert gw.call(gw.gw.system_message, 2103) == 2
        assert wait_for(lambda: _verdict(rt, "farm:usfarm") == "fail", 10)
        broken = [a for a in rt.alerts if "usfarm broken" in a["message"]]
        assert len(broken) == 1 and broken[0]["level"] == "ERROR" and "no data" in broken[0]["message"]
        doc = sess.call(status_document, rt)
        assert {c["name"]: c["verdict"] for c in doc["health"]}["farm:usfarm"] == "fail"
        # `ats health` reads what the runner published (once a second): wait for the publication that carries the failure
        published = lambda: {c["name"]: c["verdict"] for c in (read_status(st) or {}).get("health") or []}.get("farm:usfarm")
        assert wait_for(lambda: published() == "fail", 15), published()
        r = run_ats("health", "--json", cwd=project)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "farm:usfarm" in json.loads(r.stdout)["failed"]
        r = run_ats("health", cwd=project)               # the table names the failed check
        assert r.returncode == 1 and "farm:usfarm" in r.stdout and "FAIL" in r.stdout
        r = run_ats("status", cwd=project)               # `ats status` (and `ats up`'s live block) lead with what fails
        assert "FAIL  farm:usfarm: " in r.stdout and "checks ok (`ats health` for all)" in r.stdout, r.stdout
        # ... and is restored
        gw.call(gw.gw.system_message, 2104)
        assert wait_for(lambda: _verdict(rt, "farm:usfarm") == "ok", 10)
        assert any(a["level"] == "INFO" and "usfarm is back" in a["message"] for a in rt.alerts)

        # TWS loses IB's servers, then gets them back
        gw.call(gw.gw.system_message, 1100)
        assert wait_for(lambda: _verdict(rt, "ib_connectivity") == "fail", 10)
        assert any(a["level"] == "ERROR" and "1100" in a["message"] for a in rt.alerts)
        gw.call(gw.gw.system_message, 1102)
        assert wait_for(lambda: _verdict(rt, "ib_connectivity") == "ok", 10)

        # AAPL's bars stop: after three sessions without one it is stale; MSFT is fine
        gw.call(gw.gw.silence, "AAPL")
        for _ in range(3): gw.call(gw.gw.step, 1)
        last_day = gw.gw.days[gw.gw.day]
        assert wait_for(lambda: rt.history["MSFT"].last == last_day, 10)
        assert wait_for(lambda: _verdict(rt, "data:AAPL") == "fail", 15), _health(rt).get("data:AAPL")
        assert _verdict(rt, "data:MSFT") == "ok" and _health(rt)["data:AAPL"].value == 3
        assert len([a for a in rt.alerts if "data:AAPL failed" in a["message"]]) == 1
    finally:
        sess.stop(); gw.stop()


def test_ats_health_without_a_live_runner_fails_the_runner_check(project):
    s, st = make_project(project, env=CALM)
    r = run_ats("health", "--json", cwd=project)
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["failed"] == ["runner"]
    assert "not running" in out["checks"][0]["message"] and [c["name"] for c in out["checks"][1:]] == ["cpu", "memory", "disk"]
    # a runner that said `running` a minute ago and went silent (killed): its status is stale, the runner check fails
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
    write_status(st, dict(as_of=old, running=True, pid=999999, health=[Check("cpu", "resources", 1.0, 100.0, "%", "ok", "fine", at=old).to_dict()]))
    r = run_ats("health", cwd=project)
    assert r.returncode == 1 and "STALE" in r.stdout, r.stdout
    assert run_ats("health", "--bogus", cwd=project).returncode == 2
