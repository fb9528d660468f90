"The `ats` command end to end, in a temporary project, through a subprocess."
import json
from conftest import run_ats, ROOT


def test_help_on_every_command(project):
    r = run_ats("--help", cwd=project, check=True)
    cmds = [c for c in ("init", "check", "config", "strategies") if c in r.stdout]
    assert len(cmds) == 4
    for c in cmds:
        assert run_ats(c, "--help", cwd=project, check=True).stdout.startswith(f"usage: ats {c}")


def _ship(project, *names):
    "Copy shipped strategy files into the temporary project."
    for n in names: (project / "strategies" / f"{n}.py").write_text((ROOT / "strategies" / f"{n}.py").read_text())


def test_init_is_idempotent_and_check_passes(project):
    _ship(project, "ma_crossover")
    r1 = run_ats("init", cwd=project, check=True)
    assert "wrote" in r1.stdout and "ma_crossover added" in r1.stdout
    (project / "settings.ini").write_text((project / "settings.ini").read_text().replace("max_position_size = 0.1", "max_position_size = 0.08"))
    r2 = run_ats("init", cwd=project, check=True)
    assert "exists, kept" in r2.stdout and "ma_crossover configured, kept" in r2.stdout
    assert "max_position_size = 0.08" in (project / "settings.ini").read_text()
    r = run_ats("check", cwd=project)
    assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout
    j = json.loads(run_ats("check", "--json", cwd=project).stdout)
    assert j["ok"] and {x["check"] for x in j["results"]} >= {"settings", "ib", "database", "strategies", "risk", "resources"}


def test_check_bad_value_exits_nonzero_naming_section_key_value(project):
    run_ats("init", cwd=project, check=True)
    p = project / "settings.ini"
    p.write_text(p.read_text().replace("emergency_stop_loss = 0.05", "emergency_stop_loss = 5"))
    r = run_ats("check", cwd=project)
    assert r.returncode == 1
    assert "[risk] emergency_stop_loss = '5': out of range: expected a number > 0 and ≤ 1 (fraction of NAV)" in r.stdout
    assert "FAILED: 1 error(s)" in r.stdout


def test_commands_on_bad_settings_fail_cleanly(project):
    (project / "settings.ini").write_text("[ib\nport=1\n")
    r = run_ats("strategies", "list", cwd=project)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "settings.ini:1: '[ib' is not a section header: write it as [ib]" in r.stderr


def test_config_never_shows_a_secret(project):
    run_ats("init", cwd=project, check=True)
    (project / ".env").write_text("QUANDL_API_KEY=q-very-secret-1\n")
    env = {"ALPHA_VANTAGE_API_KEY": "av-very-secret-2", "ATS_ALERTS__SMTP_PASSWORD": "smtp-very-secret-3"}
    for args in (("config",), ("config", "--json"), ("check",), ("check", "--json")):
        r = run_ats(*args, cwd=project, env=env)
        out = r.stdout + r.stderr
        assert "very-secret" not in out, args
    j = json.loads(run_ats("config", "--json", cwd=project, env=env).stdout)
    assert j["settings"]["data"]["alpha_vantage_api_key"] == "********"
    assert j["sources"]["data.quandl_api_key"].startswith(".env")
    assert j["sources"]["ib.port"] == "profile (development)"


def test_config_shows_sources_and_overrides(project):
    run_ats("init", cwd=project, check=True)
    run_ats("config", "set", "risk.max_position_size", "0.04", cwd=project, check=True)
    j = json.loads(run_ats("config", "--json", cwd=project, env={"IB_PORT": "4002"}).stdout)
    assert j["settings"]["risk"]["max_position_size"] == 0.04
    assert j["sources"]["risk.max_position_size"].startswith("override (arcticdb")
    assert j["sources"]["ib.port"] == "environment (env IB_PORT)"
    r = run_ats("config", "set", "risk.max_position_size", "lots", cwd=project)
    assert r.returncode == 2 and "expected a number" in r.stderr


def test_strategies_lifecycle(project):
    (project / "strategies" / "mine.py").write_text(
        "from ats.strategy import Strategy\nclass Mine(Strategy):\n    params = dict(symbols=['SPY'], lookback=10, flag=False, weight=0.0)\n")
    run_ats("init", cwd=project, check=True)
    run_ats("strategies", "add", "mine", "lookback=12", 'symbols=["SPY","QQQ"]', "--limit", "max_position_size=0.05", cwd=project, check=True)
    run_ats("strategies", "activate", "mine", cwd=project, check=True)
    run_ats("strategies", "set-param", "mine", "lookback=15", "flag=true", cwd=project, check=True)
    lst = {c["strategy_name"]: c for c in json.loads(run_ats("strategies", "list", "--json", cwd=project, check=True).stdout)}
    assert lst["mine"]["active"] is True
    assert lst["mine"]["parameters"] == {"lookback": 15, "symbols": ["SPY", "QQQ"], "flag": True}
    assert lst["mine"]["risk_limits"] == {"max_position_size": 0.05}
    run_ats("strategies", "deactivate", "mine", cwd=project, check=True)
    assert json.loads(run_ats("strategies", "list", "--json", cwd=project).stdout)[0]["active"] is False
    r = run_ats("strategies", "set-param", "mine", "weight=3", cwd=project)
    assert r.returncode == 2 and "parameters.weight = 3 is outside [0, 1]" in r.stderr
    r = run_ats("strategies", "activate", "ghost", cwd=project)
    assert r.returncode == 2 and "no strategy named 'ghost'; configured strategies: mine" in r.stderr
    r = run_ats("strategies", "add", "other", "--file", "missing.py", cwd=project)
    assert r.returncode == 2 and "strategy file 'missing.py' not found" in r.stderr


def test_check_reports_a_stored_config_whose_file_vanished(project):
    _ship(project, "ma_crossover")
    run_ats("init", cwd=project, check=True)
    (project / "strategies" / "ma_crossover.py").unlink()
    r = run_ats("check", cwd=project)
    assert r.returncode == 1
    assert "strategy 'ma_crossover': strategy file 'ma_crossover.py' not found in" in r.stdout
