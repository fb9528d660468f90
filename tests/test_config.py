"Settings layers, profiles, the live guard and the exact messages for bad input."
import dataclasses
from pathlib import Path
import pytest
from ats.config import (load_settings, SettingsError, LiveTradingRefused, check_live_guard, validate_configuration,
                        render_ini, SECTIONS, env_names, LIVE_CONFIRMATION)

ROOT = Path(__file__).resolve().parents[1]


def ini(tmp, text, name="settings.ini"):
    p = tmp / name
    p.write_text(text)
    return p


def problems(path, env=None):
    with pytest.raises(SettingsError) as e:
        load_settings(path, env=env or {})
    return [str(p) for p in e.value.problems]


def test_shipped_settings_ini_is_the_generated_defaults():
    "settings.ini in the repo is exactly what the schema renders, so its comments cannot drift."
    assert (ROOT / "settings.ini").read_text() == render_ini()


def test_every_key_documented_in_settings_ini():
    text = render_ini()
    for sec, cls in SECTIONS.items():
        assert f"[{sec}]" in text
        for f in dataclasses.fields(cls):
            assert f.name in text, (sec, f.name)
            assert f.metadata["doc"] in text


@pytest.mark.parametrize("layer", ["default", "profile", "ini", "dotenv", "env", "override"])
def test_each_layer_wins_over_the_ones_below(project, layer):
    order = ["default", "profile", "ini", "dotenv", "env", "override"]
    upto = order[: order.index(layer) + 1]
    env = {}
    if "profile" in upto: env["ENVIRONMENT"] = "production"      # profile sets logging.level INFO
    if "ini" in upto: ini(project, "[logging]\nlevel = WARNING\n")
    if "dotenv" in upto: (project / ".env").write_text("LOG_LEVEL=ERROR\n")
    if "env" in upto: env["LOG_LEVEL"] = "CRITICAL"
    ov = {"logging": {"level": {"value": "DEBUG", "by": "t"}}} if "override" in upto else None
    s = load_settings(project / "settings.ini" if "ini" in upto else None, env=env, overrides=ov, use_file="ini" in upto)
    expect = dict(default=("DEBUG", "profile"), profile=("INFO", "profile"), ini=("WARNING", "settings.ini"),
                  dotenv=("ERROR", ".env"), env=("CRITICAL", "environment"), override=("DEBUG", "override"))[layer]
    # the development profile makes DEBUG the effective default
    assert (s.logging.level, s.source("logging", "level").layer) == expect


@pytest.mark.parametrize("var,section,key,raw,value", [
    ("IB_HOST", "ib", "host", "10.1.2.3", "10.1.2.3"),
    ("IB_PORT", "ib", "port", "4002", 4002),
    ("IB_CLIENT_ID", "ib", "client_id_start", "17", 17),
    ("ARCTIC_DB_PATH", "arctic", "path", "/tmp/somewhere/db", "/tmp/somewhere/db"),
    ("LOG_LEVEL", "logging", "level", "WARNING", "WARNING"),
    ("ENVIRONMENT", "environment", "name", "production", "production"),
    ("ALPHA_VANTAGE_API_KEY", "data", "alpha_vantage_api_key", "AV-SECRET", "AV-SECRET"),
    ("QUANDL_API_KEY", "data", "quandl_api_key", "Q-SECRET", "Q-SECRET"),
    ("ATS_RISK__MAX_POSITION_SIZE", "risk", "max_position_size", "0.05", 0.05),
    ("ATS_DASHBOARD__DEFAULT_WIDGETS", "dashboard", "default_widgets", "recent_trades,market_overview", ["recent_trades", "market_overview"]),
    ("ATS_STOP_LOSS__TRAILING_STOP", "stop_loss", "trailing_stop", "yes", True),
])
def test_every_guide_env_variable(project, var, section, key, raw, value):
    s = load_settings(None, env={var: raw}, use_file=False)
    assert getattr(getattr(s, section), key) == value
    assert s.source(section, key).where == f"env {var}"


def test_generic_env_name_exists_for_every_key():
    names = env_names()
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert names[f"ATS_{sec.upper()}__{f.name.upper()}"] == (sec, f.name)


def test_arctic_path_gives_lmdb_uri(project):
    s = load_settings(None, env={"ARCTIC_DB_PATH": str(project / "x")}, use_file=False)
    assert s.arctic_uri == f"lmdb://{project / 'x'}?map_size=20GB"
    assert load_settings(None, env={"ATS_ARCTIC__URI": "s3://h:bucket"}, use_file=False).arctic_uri == "s3://h:bucket"


def test_development_profile(project):
    s = load_settings(None, env={}, use_file=False)
    assert (s.environment.name, s.ib.port, s.ib.paper_trading, s.logging.level) == ("development", 7497, True, "DEBUG")
    assert s.monitoring.system_health_check and s.backup.auto_backup and not s.logging.enhanced   # the guide: health checks and backups on by default
    assert not (s.security.enable_authentication or s.encryption.ssl_enabled or s.encryption.encrypt_backups)


def test_production_profile(project):
    s = load_settings(None, env={"ENVIRONMENT": "production"}, use_file=False)
    assert (s.ib.port, s.ib.paper_trading, s.logging.level) == (7496, False, "INFO")
    assert s.monitoring.system_health_check and s.backup.auto_backup and s.logging.enhanced and s.security.enable_authentication
    assert s.encryption.ssl_enabled and s.encryption.encrypt_backups     # the production dashboard is a login over HTTPS


def test_live_guard_refuses_without_both_opt_ins(project):
    for env in ({"ATS_IB__GATEWAY_TYPE": "tws", "IB_PORT": "7496"},
                {"ATS_IB__PAPER_TRADING": "false"},
                {"ENVIRONMENT": "production"},                                   # production alone: live port, no confirmation
                {"ATS_ENVIRONMENT__CONFIRM_LIVE_TRADING": LIVE_CONFIRMATION, "ATS_IB__PAPER_TRADING": "false"}):  # confirmation alone
        s = load_settings(None, env=env, use_file=False)
        with pytest.raises(LiveTradingRefused) as e:
            check_live_guard(s)
        assert "refusing to trade real money" in str(e.value)
    s = load_settings(None, env={"ENVIRONMENT": "production"}, use_file=False)
    with pytest.raises(LiveTradingRefused) as e:
        check_live_guard(s)
    assert f"[environment] confirm_live_trading = {LIVE_CONFIRMATION}" in str(e.value)
    assert "ENVIRONMENT=production" not in str(e.value).split("To trade live, set")[1]   # already set: not asked for


def test_live_guard_allows_explicit_opt_in(project):
    s = load_settings(None, env={"ENVIRONMENT": "production", "ATS_ENVIRONMENT__CONFIRM_LIVE_TRADING": LIVE_CONFIRMATION}, use_file=False)
    assert s.is_live
    check_live_guard(s)


def test_gateway_4001_and_4000_are_live(project):
    for port in ("4001", "4000"):
        s = load_settings(None, env={"IB_PORT": port, "ATS_IB__GATEWAY_TYPE": "gateway"}, use_file=False)
        assert s.is_live
    assert not load_settings(None, env={"IB_PORT": "4002", "ATS_IB__GATEWAY_TYPE": "gateway"}, use_file=False).is_live


# ---- at least 15 distinct bad inputs, each with its exact message ------------------------------------

BAD = [
    ("malformed INI (no section)", "port = 1\n", {},
     "settings.ini:1: malformed INI: File contains no section headers. file: '{p}', line: 1 'port = 1\\n'. Each line must be '[section]', 'key = value' or a comment starting with ; or #"),
    ("line without =", "[ib]\nport\n", {},
     None),
    ("unknown section", "[ibb]\nport = 1\n", {}, "settings.ini: [ibb]: unknown section (did you mean 'ib'?); known sections: environment, development, production, ib, arctic, risk, position_sizing, stop_loss, data, performance, logging, memory, gui, dashboard, security, encryption, backup, recovery, monitoring, alerts, jobs, gateway"),
    ("unknown key", "[ib]\nprot = 1\n", {}, "settings.ini:2: [ib] prot = '1': unknown key (did you mean 'port'?); keys of [ib]: host, port, client_id_start, connection_timeout, reconnect_attempts, reconnect_backoff, heartbeat_interval, paper_trading, gateway_type, account, max_messages_per_second"),
    ("wrong type int", "[ib]\nport = seven\n", {}, "settings.ini:2: [ib] port = 'seven': expected a whole number from 1 to 65535"),
    ("fraction for int", "[ib]\nreconnect_attempts = 2.5\n", {}, "settings.ini:2: [ib] reconnect_attempts = '2.5': expected a whole number from 0 to 1000"),
    ("wrong type bool", "[ib]\npaper_trading = maybe\n", {}, "settings.ini:2: [ib] paper_trading = 'maybe': expected true or false"),
    ("negative timeout", "[ib]\nconnection_timeout = -5\n", {}, "settings.ini:2: [ib] connection_timeout = '-5': out of range: expected a number > 0 and ≤ None (s)".replace(" and ≤ None", "")),
    ("zero timeout", "[ib]\nconnection_timeout = 0\n", {}, "settings.ini:2: [ib] connection_timeout = '0': out of range: expected a number > 0 (s)"),
    ("port out of range", "[ib]\nport = 70000\n", {}, "settings.ini:2: [ib] port = '70000': out of range: expected a whole number from 1 to 65535"),
    ("fraction above 1", "[risk]\nmax_position_size = 1.5\n", {}, "settings.ini:2: [risk] max_position_size = '1.5': out of range: expected a number > 0 and ≤ 1 (fraction of NAV)"),
    ("percent instead of fraction", "[risk]\nmax_account_risk = 2\n", {}, "settings.ini:2: [risk] max_account_risk = '2': out of range: expected a number > 0 and ≤ 1 (fraction of NAV)"),
    ("bad choice", "[position_sizing]\nmethod = martingale\n", {}, "settings.ini:2: [position_sizing] method = 'martingale': 'martingale' is not allowed: expected one of fixed, volatility_adjusted, kelly"),
    ("bad list item", "[dashboard]\ndefault_widgets = recent_trades, charts\n", {}, "settings.ini:2: [dashboard] default_widgets = 'recent_trades, charts': 'charts' is not allowed: expected a comma-separated list of portfolio_summary, active_strategies, recent_trades, system_status, market_overview"),
    ("secret in file", "[data]\nalpha_vantage_api_key = abc123\n", {}, "settings.ini:2: [data] alpha_vantage_api_key = '********': secrets must not be written in settings.ini; put it in .env or the environment as ATS_DATA__ALPHA_VANTAGE_API_KEY"),
    ("bad env value", "", {"IB_PORT": "localhost"}, "env IB_PORT: [ib] port = 'localhost': expected a whole number from 1 to 65535"),
    ("unknown env var", "", {"ATS_IB__PROT": "1"}, "env ATS_IB__PROT: unknown variable (did you mean 'ATS_IB__PORT'?); the form is ATS_<SECTION>__<KEY>, e.g. ATS_IB__PORT"),
    ("bad profile", "", {"ENVIRONMENT": "staging"}, "env ENVIRONMENT: [environment] name = 'staging': 'staging' is not allowed: expected one of development, production"),
    ("duplicate key", "[ib]\nport = 1\nport = 2\n", {}, None),
    ("nan", "[risk]\nmargin_buffer = nan\n", {}, "settings.ini:2: [risk] margin_buffer = 'nan': expected a number from 0 to 1 (fraction of NAV)"),
]


@pytest.mark.parametrize("name,text,env,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exact_message(project, name, text, env, expected):
    p = ini(project, text)
    msgs = problems(p, env)
    if expected is None:      # parser-worded messages: check the parts we promise
        assert len(msgs) == 1 and msgs[0].startswith("settings.ini:") and "malformed INI" in msgs[0], msgs
        assert "Each line must be '[section]', 'key = value'" in msgs[0]
    else:
        assert expected.format(p=p) in msgs, msgs


def test_bad_dotenv_line(project):
    ini(project, "")
    (project / ".env").write_text("IB_PORT=4002\nthis is not an assignment\n")
    assert problems(project / "settings.ini") == [".env:2: cannot read line 'this is not an assignment': expected NAME=value"]


def test_all_problems_reported_at_once(project):
    msgs = problems(ini(project, "[ib]\nport = x\nhost = \n[risk]\nmax_position_size = 9\n[nope]\n"))
    assert len(msgs) == 3, msgs


def test_missing_settings_file_is_clear(project):
    msgs = problems(project / "nope.ini")
    assert msgs == [f"{project / 'nope.ini'}: settings file not found; run `ats init` to create it, or point ATS_SETTINGS at yours"]


# ---- validate_configuration: consistency, database, resources ----------------------------------------

def results(path, env=None):
    rep, _ = validate_configuration(path, env=env or {}, open_store=False)
    return rep


def test_inconsistent_limits(project):
    rep = results(ini(project, "[risk]\nmax_strategy_risk = 0.05\nmax_account_risk = 0.02\nemergency_stop_loss = 0.01\n"))
    msgs = [r.message for r in rep.errors]
    assert "settings.ini:2: [risk] max_strategy_risk = 0.05: must be ≤ max_account_risk (0.02): one strategy may not lose more than the whole account" in msgs
    assert "settings.ini:4: [risk] emergency_stop_loss = 0.01: must be ≥ max_account_risk (0.02): the emergency stop is the last line, after new risk is refused" in msgs


def test_min_position_above_base(project):
    rep = results(ini(project, "[position_sizing]\nmin_position_size = 50000\n"))
    assert any("[position_sizing] min_position_size = 50000.0: must be ≤ base_position_size (10000.0)" in r.message for r in rep.errors)


def test_unwritable_database_path(project):
    (project / "afile").write_text("x")
    rep = results(ini(project, f"[arctic]\npath = {project / 'afile' / 'db'}\n"))
    assert [r.message for r in rep.errors] == [f"settings.ini:2: [arctic] path: {project / 'afile' / 'db'} is not a folder ({project / 'afile'} is a file); choose another path"]


def test_readonly_database_folder(project):
    import os
    ro = project / "ro"; ro.mkdir(); ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK): pytest.skip("running as a user who can write anywhere (root)")
        rep = results(ini(project, f"[arctic]\npath = {ro / 'db'}\n"))
        assert "is not writable" in rep.errors[0].message
    finally:
        ro.chmod(0o700)


def test_invalid_uri(project):
    rep = results(ini(project, "[arctic]\nuri = postgres://x\n"))
    assert [r.message for r in rep.errors] == ["settings.ini:2: [arctic] uri = 'postgres://x': not an ArcticDB URI; use lmdb://PATH, s3://HOST:BUCKET?…, azure://… or mem://"]


def test_disk_threshold(project):
    rep = results(ini(project, "[memory]\nmin_free_disk_gb = 1000000\n"))
    assert any(r.check == "resources" and "below settings.ini:2: [memory] min_free_disk_gb = 1000000.0" in r.message for r in rep.errors)


def test_defaults_pass(project):
    assert results(None).ok


# ---- the guide's names for the dashboard settings (issue 12) -----------------------------------------------------

def test_dashboard_settings_have_the_guides_names_and_defaults(project):
    s = load_settings(None, env={}, use_file=False)
    assert s.gui.theme == "dark" and s.gui.update_frequency == 1000 and s.gui.chart_history_days == 30
    assert s.gui.max_log_entries == 1000 and s.gui.auto_refresh and s.gui.notifications and not s.gui.sound_alerts
    assert s.dashboard.default_widgets == ["portfolio_summary", "active_strategies", "recent_trades", "system_status", "market_overview"]
    assert s.dashboard.refresh_intervals == dict(portfolio=5, strategies=10, trades=5, system=30, market=60)
    (project / "settings.ini").write_text("[gui]\ntheme = auto\n[dashboard]\nrefresh_intervals = trades: 2, market: 120\n")
    s = load_settings(project / "settings.ini", env={})
    assert s.gui.theme == "auto"
    assert s.dashboard.refresh_intervals == dict(portfolio=5, strategies=10, trades=2, system=30, market=120)   # keys left out keep their default


@pytest.mark.parametrize("text,expected", [
    ("[dashboard]\nrefresh_intervals = trade: 2\n", "unknown key 'trade' (did you mean 'trades'?)"),
    ("[dashboard]\nrefresh_intervals = trades: fast\n", "trades: 'fast' is not a number"),
    ("[dashboard]\nrefresh_intervals = trades: 0.05\n", "trades: 0.05 is out of range"),
    ("[dashboard]\nrefresh_intervals = trades 2\n", "'trades 2' is not 'key: value'"),
    ("[dashboard]\ndefault_widgets = portfolio_summary, charts\n", "'charts' is not allowed"),
    ("[gui]\ntheme = blue\n", "'blue' is not allowed: expected one of light, dark, auto"),
])
def test_bad_dashboard_settings_name_the_key_and_what_is_allowed(project, text, expected):
    (project / "settings.ini").write_text(text)
    with pytest.raises(SettingsError) as e: load_settings(project / "settings.ini", env={})
    assert expected in str(e.value) and "settings.ini:2" in str(e.value), str(e.value)


def test_old_dashboard_names_still_work_with_a_warning_naming_the_new_key(project):
    (project / "settings.ini").write_text("[logging]\nmax_log_entries = 50\n[dashboard]\nwidgets = portfolio, pnl, trades, logs\n"
                                          "refresh_interval = 2\nchart_refresh_interval = 30\n")
    s = load_settings(project / "settings.ini", env={"ATS_LOGGING__MAX_LOG_ENTRIES": "77"})
    assert s.gui.max_log_entries == 77                                       # the environment still wins, under its old name too
    assert s.dashboard.default_widgets == ["portfolio_summary", "recent_trades"]
    assert s.dashboard.refresh_intervals == dict(portfolio=2, strategies=2, trades=2, system=2, market=60)
    msgs = [str(p) for p in s.problems]
    assert any("settings.ini:2: [logging] max_log_entries" in m and "write it as [gui] max_log_entries" in m for m in msgs), msgs
    assert any("[dashboard] widgets" in m and "write it as [dashboard] default_widgets" in m for m in msgs), msgs
    assert any("env ATS_LOGGING__MAX_LOG_ENTRIES" in m and "ATS_GUI__MAX_LOG_ENTRIES" in m for m in msgs), msgs
    assert any("chart_refresh_interval" in m and "no longer a setting" in m and "refresh_intervals" in m for m in msgs), msgs
    assert all(p.level == "warning" for p in s.problems)
    # when both are written, the guide's name wins
    (project / "settings.ini").write_text("[dashboard]\ndefault_widgets = market_overview\nwidgets = portfolio\n")
    assert load_settings(project / "settings.ini", env={}).dashboard.default_widgets == ["market_overview"]


def test_ats_check_shows_the_deprecation_warning(project):
    from conftest import run_ats
    run_ats("init", cwd=project, check=True)
    ini = project / "settings.ini"
    ini.write_text(ini.read_text().replace("[logging]\n", "[logging]\nmax_log_entries = 50\n", 1))
    r = run_ats("check", cwd=project)
    assert "[logging] max_log_entries" in r.stdout + r.stderr and "[gui] max_log_entries" in r.stdout + r.stderr, r.stdout + r.stderr


# ---- the guide's names for monitoring, alerts, recovery, memory and performance (issue 13) -------------------------

def test_operations_settings_have_the_guides_names_defaults_and_units(project):
    s = load_settings(None, env={}, use_file=False)
    m, a, r, mem, p = s.monitoring, s.alerts, s.recovery, s.memory, s.performance
    assert (m.system_health_check, m.performance_monitoring, m.resource_monitoring, m.connection_monitoring, m.strategy_monitoring) == (True,) * 5
    assert m.alert_thresholds == dict(cpu_usage=80, memory_usage=85, disk_usage=90, connection_latency=1000, error_rate=0.05)   # percent, ms, fraction
    assert (a.email_alerts, a.sms_alerts, a.gui_alerts, a.log_alerts) == (False, False, True, True)
    assert a.alert_levels == ["ERROR", "CRITICAL"] and a.alert_frequency_limit == 300 and a.emergency_contacts == []
    assert (r.auto_recovery, r.recovery_timeout, r.max_recovery_attempts, r.recovery_notification, r.fallback_mode) == (True, 300, 3, True, "safe")
    assert (mem.max_memory_usage, mem.data_retention_days, mem.cleanup_interval, mem.cache_cleanup_threshold, mem.garbage_collection_interval) \
        == (4096, 365, 3600, 0.8, 300)
    assert (p.thread_pool_size, p.message_queue_size, p.data_cache_size) == (4, 1000, 100)


def test_guide_forms_dotted_dict_keys_and_sizes_with_units(project):
    "The guide writes `alert_thresholds.cpu_usage = 80` and `max_memory_usage = '4GB'`: both are read."
    (project / "settings.ini").write_text("[monitoring]\nalert_thresholds = error_rate: 0.1\nalert_thresholds.cpu_usage = 70\n"
                                          "[memory]\nmax_memory_usage = 2GB\n[dashboard]\nrefresh_intervals.trades = 2\n")
    s = load_settings(project / "settings.ini", env={})
    assert s.monitoring.alert_thresholds["cpu_usage"] == 70 and s.monitoring.alert_thresholds["error_rate"] == 0.1
    assert s.monitoring.alert_thresholds["disk_usage"] == 90                           # left out: the default
    assert s.memory.max_memory_usage == 2048 and s.dashboard.refresh_intervals["trades"] == 2
    (project / "settings.ini").write_text("[monitoring]\nalert_thresholds.cpu = 70\n")
    msgs = problems(project / "settings.ini")
    assert any("settings.ini:2" in m and "unknown key 'cpu'" in m for m in msgs), msgs


def test_old_operations_names_are_read_as_the_guides_with_the_unit_converted(project):
    (project / "settings.ini").write_text("[monitoring]\nenabled = false\ncpu_threshold = 0.7\ndisk_threshold = 0.95\n"
                                          "[recovery]\nauto_restart = false\n[performance]\nworker_threads = 2\nevent_queue_size = 5\n"
                                          "[alerts]\nmin_level = WARNING\nsmtp_tls = true\nrate_limit = 4\n")
    s = load_settings(project / "settings.ini", env={})
    assert not s.monitoring.system_health_check and not s.recovery.auto_recovery and s.performance.thread_pool_size == 2
    assert s.monitoring.alert_thresholds["cpu_usage"] == 70 and s.monitoring.alert_thresholds["disk_usage"] == 95   # fractions -> percent
    assert s.alerts.alert_levels == ["WARNING", "ERROR", "CRITICAL"] and s.alerts.smtp_security == "starttls"
    msgs = [str(p) for p in s.problems]
    assert any("cpu_threshold" in m and "write it as [monitoring] alert_thresholds = cpu_usage: 70" in m for m in msgs), msgs
    assert any("rate_limit" in m and "no longer a setting" in m and "alert_frequency_limit" in m for m in msgs), msgs
    assert any("event_queue_size" in m and "no longer a setting" in m for m in msgs), msgs
    assert all(p.level == "warning" for p in s.problems)


@pytest.mark.parametrize("env,expected", [
    ({"ATS_ALERTS__EMAIL_ALERTS": "true"}, "[alerts] email_to: empty while email_alerts = true"),
    ({"ATS_ALERTS__EMAIL_ALERTS": "true", "ATS_ALERTS__EMAIL_TO": "ops at example"}, "'ops at example' is not an e-mail address"),
    ({"ATS_ALERTS__SMS_ALERTS": "true"}, "[alerts] notify_urls: empty while sms_alerts = true: set ATS_ALERTS__NOTIFY_URLS"),
    ({"ATS_ALERTS__NOTIFY_URLS": "nosuchservice://x/y"}, "nosuchservice://… is not a URL apprise can send to"),
    ({"ATS_ALERTS__EMERGENCY_CONTACTS": "bob"}, "'bob': neither an e-mail address nor an apprise URL"),
    ({"ATS_ALERTS__EMAIL_ALERTS": "true", "ATS_ALERTS__EMAIL_TO": "a@b.co", "ATS_ALERTS__SMTP_USER": "mailer"},
     "smtp_user = mailer logs in, but no password is set: put ATS_ALERTS__SMTP_PASSWORD in .env"),
    ({"ATS_JOBS__TIMEZONE": "New York"}, "[jobs] timezone: 'New York' is not a time zone name"),
    ({"ATS_MONITORING__ALERT_THRESHOLDS": "cpu_usage: 0.8"}, "cpu_usage: 0.8 is a percentage (not a fraction)"),
    ({"ATS_MONITORING__ALERT_THRESHOLDS": "disk_usage: 150"}, "disk_usage: 150 is a percentage above 100"),
])
def test_check_says_when_alerts_cannot_reach_anyone_or_settings_cannot_work(project, env, expected):
    rep, _ = validate_configuration(None, env=env, open_store=False)
    msgs = [r.message for r in rep.results if r.check == "operations" and r.status in ("error", "warning")]
    assert any(expected in m for m in msgs), msgs


def test_check_of_working_alert_settings_is_ok(project):
    env = {"ATS_ALERTS__EMAIL_ALERTS": "true", "ATS_ALERTS__EMAIL_TO": "desk@example.com", "ATS_ALERTS__SMTP_USER": "mailer",
           "ATS_ALERTS__SMTP_PASSWORD": "pw", "ATS_ALERTS__SMTP_SECURITY": "starttls", "ATS_ALERTS__SMTP_HOST": "smtp.example.com",
           "ATS_ALERTS__NOTIFY_URLS": "ntfy://ats-desk", "ATS_ALERTS__SMS_ALERTS": "true", "ATS_ALERTS__EMERGENCY_CONTACTS": "oncall@example.com, tgram://123:abc/456"}
    rep, _ = validate_configuration(None, env=env, open_store=False)
    ops = [r for r in rep.results if r.check == "operations"]
    assert [r.status for r in ops] == ["ok"] and "alerts by e-mail, chat/SMS" in ops[0].message, [r.message for r in ops]


# ---- the guide's profile sections: DEV_CONFIG and PROD_CONFIG (issue 17) ----------------------------------------------

def test_profile_sections_give_the_defaults_their_keys_name(project):
    dev = load_settings(None, env={}, use_file=False)
    assert (dev.development.paper_trading, dev.development.debug_mode, dev.development.mock_data, dev.development.reduced_logging,
            dev.development.development_port, dev.development.test_strategies) == (True, True, False, False, 7497, ["test_strategy.py"])
    assert (dev.ib.port, dev.ib.paper_trading, dev.logging.level, dev.backup.auto_backup) == (7497, True, "DEBUG", True)
    prod = load_settings(None, env={"ENVIRONMENT": "production"}, use_file=False)
    p = prod.production
    assert (p.paper_trading, p.debug_mode, p.enhanced_logging, p.monitoring_enabled, p.backup_enabled, p.production_port) == (False, False, True, True, True, 7496)
    assert (prod.ib.port, prod.ib.paper_trading, prod.logging.level, prod.logging.enhanced, prod.backup.auto_backup) == (7496, False, "INFO", True, True)
    assert str(prod.source("ib", "port")) == "profile (production)"
    # each key does what its name says
    (project / "settings.ini").write_text("[development]\ndevelopment_port = 4002\ndebug_mode = false\nreduced_logging = true\nmock_data = true\n"
                                          "[production]\nproduction_port = 4001\nmonitoring_enabled = false\nbackup_enabled = false\n")
    s = load_settings(project / "settings.ini", env={})
    assert (s.ib.port, s.logging.level, s.ib.gateway_type, s.gateway.data, s.data.default_source) == (4002, "WARNING", "paper", "random", "random")
    s = load_settings(project / "settings.ini", env={"ENVIRONMENT": "production"})
    assert (s.ib.port, s.monitoring.system_health_check, s.backup.auto_backup) == (4001, False, False)
    # a value set for the key itself still wins over the profile's default
    (project / "settings.ini").write_text("[development]\ndevelopment_port = 4002\n[ib]\nport = 7000\n")
    assert load_settings(project / "settings.ini", env={}).ib.port == 7000


def test_a_development_only_strategy_is_never_started_in_production(project):
    from ats.runtime import Runtime
    from ats.store import Store, StrategyConfig
    from runtime_helpers import make_project, PROBE
    s, st = make_project(project, strategies=dict(probe=PROBE, test_strategy=PROBE),
                         configs=[StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.2),
                                  StrategyConfig("test_strategy.py", "trial", True, dict(qty=1), {}, 0.2)])
    env = {"ENVIRONMENT": "production", "ATS_PRODUCTION__PAPER_TRADING": "true", "ATS_PRODUCTION__PRODUCTION_PORT": "7497"}
    rt = Runtime(load_settings(project / "settings.ini", env=env), st)
    assert [c.strategy_name for c in rt._configs()] == ["probe"]
    assert any("trial is not started: its file test_strategy.py is listed in [development] test_strategies" in a["message"] for a in rt.alerts)
    rt = Runtime(load_settings(project / "settings.ini", env={}), st)            # in development it runs
    assert sorted(c.strategy_name for c in rt._configs()) == ["probe", "trial"]


def test_the_guides_nested_data_source_keys_are_read(project):
    "EXTERNAL_DATA = {'yfinance': {'rate_limit': ...}} is written `yfinance.rate_limit` (or yfinance_rate_limit) in [data]."
    (project / "settings.ini").write_text("[data]\nyfinance.enabled = false\nyfinance.rate_limit = 100\nyfinance.timeout = 5\n"
                                          "alpha_vantage.enabled = true\nalpha_vantage.rate_limit = 25\nquandl.enabled = true\n")
    d = load_settings(project / "settings.ini", env={}).data
    assert (d.yfinance_enabled, d.yfinance_rate_limit, d.yfinance_timeout, d.alpha_vantage_enabled, d.alpha_vantage_rate_limit, d.quandl_enabled) \
        == (False, 100, 5, True, 25, True)
    (project / "settings.ini").write_text("[data]\nalpha_vantage.api_key = abc123\n")
    msgs = problems(project / "settings.ini")
    assert any("secrets must not be written in settings.ini" in m and "ALPHA_VANTAGE_API_KEY" in m for m in msgs), msgs


def test_settings_ini_names_each_key_of_a_dict_setting_as_the_guide_does():
    "alert_thresholds.cpu_usage = 80 and refresh_intervals.portfolio = 5 are lines of settings.ini, written as the guide writes them, and read back as the defaults."
    text = render_ini()
    for line in ("alert_thresholds.cpu_usage = 80", "alert_thresholds.memory_usage = 85", "alert_thresholds.disk_usage = 90",
                 "alert_thresholds.connection_latency = 1000", "alert_thresholds.error_rate = 0.05", "refresh_intervals.portfolio = 5",
                 "refresh_intervals.strategies = 10", "refresh_intervals.trades = 5", "refresh_intervals.system = 30",
                 "refresh_intervals.market = 60"):
        assert f"\n{line}\n" in text, line
    assert "connection_latency ms" in text and "error_rate fraction of events" in text
    s = load_settings(ROOT / "settings.ini", env={})
    assert s.monitoring.alert_thresholds["connection_latency"] == 1000 and s.dashboard.refresh_intervals["market"] == 60
    assert not s.problems
