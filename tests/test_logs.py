"Logging: rotation, the dashboard ring, and secrets that never reach any output."
import logging
from ats.config import load_settings
from ats.logs import setup_logging, get_logger, recent_logs


def test_secrets_never_logged(project, capsys):
    env = {"ALPHA_VANTAGE_API_KEY": "AVK-123456", "QUANDL_API_KEY": "QK-654321", "ATS_ALERTS__SMTP_PASSWORD": "smtp-pass-99",
           "ATS_LOGGING__CONSOLE": "true",
           # alert channels by URL hold tokens: each URL of the list is a secret of its own
           "ATS_ALERTS__NOTIFY_URLS": "tgram://bot111/chat1, ntfy://topic222, slack://tokA/tokB/tokC, json://h/hook444"}
    s = load_settings(None, env=env, use_file=False)
    setup_logging(s, log_file=project / "logs" / "ats.log")
    log = get_logger("test")
    log.info("av key %s quandl %s", "AVK-123456", "QK-654321")
    log.info("connecting smtp with password=smtp-pass-99 and token: abc.def.ghi")
    log.warning("url https://user:dash-pass-77@host/x and Authorization: Bearer eyJhbGciOi")
    log.warning("delivery to tgram://bot111/chat1 and slack://tokA/tokB/tokC failed")
    try:
        raise RuntimeError("failed with api_key=AVK-123456")
    except RuntimeError:
        log.exception("boom")
    for h in logging.getLogger("ats").handlers: h.flush()
    outputs = [(project / "logs" / "ats.log").read_text(), capsys.readouterr().err, "\n".join(r["message"] for r in recent_logs())]
    for out in outputs:
        assert "connecting smtp" in out
        for secret in ("AVK-123456", "QK-654321", "smtp-pass-99", "dash-pass-77", "abc.def.ghi", "eyJhbGciOi", "tgram://bot111/chat1", "tokA/tokB"):
            assert secret not in out, (secret, out)


def test_rotation_and_ring(project):
    s = load_settings(None, env={"ATS_LOGGING__MAX_FILE_SIZE": "0.01", "ATS_LOGGING__BACKUP_COUNT": "3",
                                 "ATS_LOGGING__MAX_LOG_ENTRIES": "50", "ATS_LOGGING__CONSOLE": "false"}, use_file=False)
    setup_logging(s, log_file=project / "a.log")
    for i in range(1000): get_logger("rot").info("message number %05d %s", i, "y" * 50)
    files = sorted(p.name for p in project.glob("a.log*"))
    assert files == ["a.log", "a.log.1", "a.log.2", "a.log.3"]
    assert all(p.stat().st_size <= 10_485 + 200 for p in project.glob("a.log*"))
    ring = recent_logs()
    assert len(ring) == 50 and "00999" in ring[-1]["message"] and "00950" in ring[0]["message"]
    assert recent_logs(level="WARNING") == []


def test_the_guides_logging_names_each_do_what_they_say(project, capsys):
    "file_logging, log_file, max_file_size with a unit, console_logging, gui_logging, log_format: the guide's names and defaults."
    s = load_settings(None, env={}, use_file=False)
    L = s.logging
    assert (L.file_logging, L.log_file, L.max_file_size, L.backup_count, L.console_logging, L.gui_logging) == (True, "logs/ats_system.log", 10, 5, True, True)
    assert L.log_format == "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    (project / "settings.ini").write_text("[logging]\nlog_file = logs/mine.log\nmax_file_size = 1MB\nconsole_logging = false\n"
                                          "log_format = %(levelname)s|%(name)s|%(message)s\n")
    s = load_settings(project / "settings.ini", env={})
    setup_logging(s)
    get_logger("test").warning("hello %s", "there")
    for h in logging.getLogger("ats").handlers: h.flush()
    assert (project / "logs" / "mine.log").read_text().splitlines()[-1] == "WARNING|ats.test|hello there"
    assert "hello there" not in capsys.readouterr().err                              # console_logging = false
    assert recent_logs()[-1]["message"] == "WARNING|ats.test|hello there"          # gui_logging: the dashboard's ring
    (project / "settings.ini").write_text("[logging]\nfile_logging = false\ngui_logging = false\n")
    s = load_settings(project / "settings.ini", env={})
    setup_logging(s)
    get_logger("test").warning("not kept")
    assert recent_logs() == [] and not (project / "logs" / "ats_system.log").exists()
    # the old names still work, with a warning naming the guide's
    (project / "settings.ini").write_text("[logging]\nfile = logs/old.log\nconsole = false\nformat = %(message)s\n")
    s = load_settings(project / "settings.ini", env={})
    assert (s.logging.log_file, s.logging.console_logging, s.logging.log_format) == ("logs/old.log", False, "%(message)s")
    assert {p.key for p in s.problems} == {"file", "console", "format"} and all("write it as [logging]" in p.message for p in s.problems)
