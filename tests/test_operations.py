"""Unattended operation end to end: what goes wrong while nobody watches reaches a person by e-mail, through a real SMTP
server on loopback (aiosmtpd): a lost IB connection seen by the runtime on the paper gateway, and a failed scheduled job."""
import email, email.policy, time
import pytest
from aiosmtpd.controller import Controller
from ats.alerts import alert_history
from ats.gateway.service import GatewayThread
from ats.store import StrategyConfig
from ats.supervisor import free_port
from runtime_helpers import PROBE, Session, make_project, wait_for

pytestmark = pytest.mark.timeout(240)


class Inbox:
    "aiosmtpd handler: every accepted message, parsed."
    def __init__(self): self.messages = []
    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"
    def subjects(self) -> list[str]: return [str(m["Subject"]) for _, m in self.messages]


@pytest.fixture
def smtp():
    inbox, port = Inbox(), free_port()
    c = Controller(inbox, hostname="127.0.0.1", port=port); c.start()
    yield inbox, port
    c.stop()


def mail_env(port: int, extra: str = "") -> str:
    return (f"ATS_ALERTS__EMAIL_ALERTS=true\nATS_ALERTS__SMTP_HOST=127.0.0.1\nATS_ALERTS__SMTP_PORT={port}\n"
            f"ATS_ALERTS__EMAIL_TO=trader@example.com\nATS_ALERTS__EMERGENCY_CONTACTS=oncall@example.com\n" + extra)


def test_a_lost_connection_reaches_a_person_by_email_and_a_dead_gateway_reaches_the_emergency_contact(project, smtp):
    inbox, port = smtp
    s, st = make_project(project, env=mail_env(port, "ATS_IB__RECONNECT_ATTEMPTS=1\n"),
                         strategies=dict(probe=PROBE), configs=[StrategyConfig("probe.py", "probe", True, dict(qty=1), {}, 0.2)])
    gw = GatewayThread(data="sample", speed=0, start="2006-01-03", state_path=project / "gw.json").start()
    sess, gw_up = Session(s, st, gw), True
    try:
        sess.start()
        # TWS lost its own connection to IB's servers (1100): strategies get nothing until it is back
        gw.call(lambda: gw.gw.system_message(1100))
        assert wait_for(lambda: any("1100" in x or "connectivity" in x.lower() for x in inbox.subjects()), 30), inbox.subjects()
        rcpts, msg = next((r, m) for r, m in inbox.messages if "connectivity" in str(m["Subject"]).lower() or "1100" in str(m["Subject"]))
        assert rcpts == ["trader@example.com"] and str(msg["Subject"]).startswith("[ats ERROR]"), (rcpts, msg["Subject"])
        # the gateway goes away for good: reconnection fails and the CRITICAL alert also reaches the emergency contact
        gw.stop(); gw_up = False
        assert wait_for(lambda: any(r == ["oncall@example.com"] for r, _ in inbox.messages), 60), inbox.subjects()
        crit = next(m for r, m in inbox.messages if r == ["oncall@example.com"])
        assert str(crit["Subject"]).startswith("[ats CRITICAL]"), crit["Subject"]
    finally:
        try: sess.stop()
        except Exception: pass
        if gw_up: gw.stop()
    h = alert_history(st)
    assert {"ERROR", "CRITICAL"} <= set(h["level"]) and h["sent"].any()              # and every alert is in the history


def test_a_failed_scheduled_job_reaches_a_person_by_email(project, smtp):
    "`ats scheduler` runs a job that fails in its real kernel; the ERROR alert arrives by e-mail and is in `ats alerts list`."
    import datetime as dt, json, nbformat
    from ats.scheduler import add_schedule
    from conftest import run_ats
    inbox, port = smtp
    s, st = make_project(project, env=mail_env(port))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('the data vendor answered 503')")])
    nb.metadata["kernelspec"] = dict(name="python3", display_name="Python 3", language="python")
    nbformat.write(nb, str(project / "data_and_research" / "jobs" / "nightly_prices.ipynb"))
    # due every minute since three minutes ago: `--once` runs the latest missed time now
    add_schedule(st, s, "nightly", "nightly_prices", "* * * * *", now=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3))
    r = run_ats("scheduler", "--once", cwd=project, timeout=180)
    assert r.returncode == 1, r.stdout + r.stderr
    assert wait_for(lambda: inbox.messages, 20), r.stdout + r.stderr
    rcpts, msg = inbox.messages[0]
    body = msg.get_body(("plain",)).get_content()
    assert rcpts == ["trader@example.com"] and str(msg["Subject"]).startswith("[ats ERROR]"), msg["Subject"]
    assert "nightly" in str(msg["Subject"]) + body and "the data vendor answered 503" in body, body
    listed = json.loads(run_ats("alerts", "list", "--json", cwd=project, check=True).stdout)
    assert any(a["source"] == "scheduler" and "503" in a["message"] and a["sent"] for a in listed), listed
