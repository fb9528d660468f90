"Logging: rotation, the dashboard ring, and secrets that never reach any output."
import logging
from ats.config import load_settings
from ats.logs import setup_logging, get_logger, recent_logs


def test_secrets_never_logged(project, capsys):
    env = {"ALPHA_VANTAGE_API_KEY": "AVK-123456", "QUANDL_API_KEY": "QK-654321", "ATS_ALERTS__SMTP_PASSWORD": "smtp-pass-99",
           "ATS_SECURITY__PASSWORD": "dash-pass-77", "ATS_LOGGING__CONSOLE": "true",
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
