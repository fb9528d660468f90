"`ats config export` / `ats config import`: a settings round trip through the override layer, all or nothing."
import json
from ats.config import load_settings
from ats.store import Store
from conftest import run_ats


def _overrides(project) -> dict:
    return Store.from_settings(load_settings(project / "settings.ini"), create=False).load_overrides()


def _export(project, env=None) -> dict:
    run_ats("config", "export", "--json", "--output", "e.json", cwd=project, env=env, check=True)
    return json.loads((project / "e.json").read_text())


def test_export_then_import_changes_nothing_and_edits_apply_exactly(project):
    run_ats("init", cwd=project, check=True)
    (project / ".env").write_text("ALPHA_VANTAGE_API_KEY=av-very-secret\n")
    d = _export(project, env={"IB_PORT": "4002"})
    assert "very-secret" not in (project / "e.json").read_text()
    assert d["settings"]["data"]["alpha_vantage_api_key"] == "********"            # set, never shown
    assert d["settings"]["ib"]["port"] == 4002 and d["sources"]["ib"]["port"] == "environment (env IB_PORT)"
    assert d["settings"]["risk"]["max_position_size"] == 0.1 and d["settings"]["dashboard"]["refresh_intervals"]["portfolio"] == 5

    r = run_ats("config", "import", "e.json", cwd=project, env={"IB_PORT": "4002"}, check=True)
    assert "0 changed" in r.stdout and _overrides(project) == {}                   # the same file changes nothing

    d["settings"]["risk"]["max_position_size"] = 0.05
    d["settings"]["dashboard"]["refresh_intervals"]["trades"] = 9
    (project / "e2.json").write_text(json.dumps(d))
    r = run_ats("config", "import", "e2.json", cwd=project, env={"IB_PORT": "4002", "USER": "ann"}, check=True)
    assert "[risk] max_position_size: 0.1 -> 0.05" in r.stdout and "2 changed" in r.stdout, r.stdout
    ov = _overrides(project)
    assert {(s, k) for s, kv in ov.items() for k in kv} == {("risk", "max_position_size"), ("dashboard", "refresh_intervals")}
    e = ov["risk"]["max_position_size"]
    assert (e["value"], e["was"], e["by"]) == (0.05, 0.1, "ann") and e["at"]                  # who, when, old and new
    assert ov["dashboard"]["refresh_intervals"]["value"]["trades"] == 9
    j = json.loads(run_ats("config", "--json", cwd=project).stdout)
    assert j["settings"]["risk"]["max_position_size"] == 0.05 and j["sources"]["risk.max_position_size"] == "override (arcticdb by ann)"


def test_the_readable_export_reads_back_too(project):
    run_ats("init", cwd=project, check=True)
    run_ats("config", "set", "ib.reconnect_attempts", "7", cwd=project, check=True)
    r = run_ats("config", "export", "--output", "e.ini", cwd=project, check=True)
    text = (project / "e.ini").read_text()
    assert "[ib]" in text and "reconnect_attempts = 7    ; override (arcticdb" in text
    before = _overrides(project)
    r = run_ats("config", "import", "e.ini", cwd=project, check=True)
    assert "0 changed" in r.stdout and _overrides(project) == before


def test_one_bad_value_among_good_ones_writes_nothing_and_names_each(project):
    run_ats("init", cwd=project, check=True)
    run_ats("config", "set", "ib.reconnect_attempts", "7", cwd=project, check=True)
    before = _overrides(project)
    d = _export(project)
    d["settings"]["ib"]["reconnect_attempts"] = 3                      # good
    d["settings"]["risk"]["max_position_size"] = 0.05                  # good
    d["settings"]["risk"]["max_account_risk"] = "lots"                 # bad type
    d["settings"]["gui"]["theme"] = "purple"                           # not a choice
    d["settings"]["risk"]["max_positon_size"] = 0.2                    # misspelt key
    d["settings"]["riskk"] = {"x": 1}                                  # misspelt section
    d["settings"]["alerts"]["smtp_password"] = "pw-very-secret"        # a secret in clear
    d["settings"]["alerts"]["enabled"] = True                          # retired
    (project / "bad.json").write_text(json.dumps(d))
    r = run_ats("config", "import", "bad.json", cwd=project)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert _overrides(project) == before                               # not even the good values
    err = r.stderr
    assert "nothing imported" in err and "very-secret" not in r.stdout + err
    assert "bad.json: [risk] max_account_risk = 'lots': expected a number" in err
    assert "[gui] theme = 'purple'" in err and "is not allowed: expected one of" in err
    assert "[risk] max_positon_size = 0.2: unknown key (did you mean 'max_position_size'?)" in err
    assert "[riskk]: unknown section (did you mean 'risk'?)" in err
    assert "[alerts] smtp_password = '********'" in err and "secrets belong in .env" in err and "ATS_ALERTS__SMTP_PASSWORD" in err
    assert "[alerts] enabled = True: no longer a setting: each channel has its own switch now: [alerts] email_alerts" in err


def test_old_names_are_read_as_new_and_the_whole_set_must_pass_check(project):
    run_ats("init", cwd=project, check=True)
    # an old name is applied under the guide's name, with the warning `ats check` gives for settings.ini
    (project / "old.json").write_text(json.dumps({"performance": {"worker_threads": 8}, "monitoring": {"cpu_threshold": 0.9}}))
    r = run_ats("config", "import", "old.json", cwd=project, check=True)
    assert "warning: old.json: [performance] worker_threads = 8: deprecated name: write it as [performance] thread_pool_size" in r.stdout
    ov = _overrides(project)
    assert ov["performance"]["thread_pool_size"]["value"] == 8 and ov["monitoring"]["alert_thresholds"]["value"]["cpu_usage"] == 90
    # each value is valid alone, but one strategy may not risk more than the whole account: `ats check` would fail, so nothing is written
    (project / "risk.json").write_text(json.dumps({"risk": {"max_strategy_risk": 0.04, "max_account_risk": 0.03}}))
    r = run_ats("config", "import", "risk.json", cwd=project)
    assert r.returncode == 2 and "[risk] max_strategy_risk = 0.04" in r.stderr and "must be ≤ max_account_risk (0.03)" in r.stderr, r.stderr
    assert _overrides(project) == ov
