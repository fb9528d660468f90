"Alerts reach a person: real SMTP (aiosmtpd on loopback, plain, STARTTLS and SSL with login), a real webhook via apprise, ArcticDB history."
import email, email.policy, json, logging, socket, subprocess, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ats.alerts import Alerter, alert_history
from ats.config import load_settings
from ats.store import Store
from conftest import run_ats

USER, PASSWORD = "ats-mailer", "s3cret-Pa55word"


# ---- real servers on loopback -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

class _Inbox:
    "aiosmtpd handler: keeps every message it accepts."
    def __init__(self): self.messages, self.logins = [], []
    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"

def _authenticator(inbox):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        if ok: inbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)      # handled=False: the server answers 535 itself
    return check

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    "A self-signed certificate for 127.0.0.1 (the client trusts it through SSL_CERT_FILE, as a private CA would be trusted)."
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"

@pytest.fixture
def smtp(request, cert, monkeypatch):
    "smtp(security='none'|'starttls'|'ssl', login=False) -> (inbox, port): a real SMTP server on loopback."
    import ssl
    started = []
    def start(security="none", login=False):
        inbox, port = _Inbox(), _free_port()
        kw = {}
        if security != "none":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); ctx.load_cert_chain(*map(str, cert))
            kw = dict(tls_context=ctx, require_starttls=True) if security == "starttls" else dict(ssl_context=ctx)
            monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; on an ssl port the whole session is TLS anyway
        if login: kw.update(authenticator=_authenticator(inbox), auth_required=True, auth_require_tls=security == "starttls")
        c = Controller(inbox, hostname="127.0.0.1", port=port, **kw); c.start(); started.append(c)
        return inbox, port
    yield start
    for c in started: c.stop()

@pytest.fixture
def webhook():
    "A local HTTP server standing in for a chat webhook: (posts, port); every POST body is kept as JSON."
    posts = []
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append((self.path, json.loads(body)))
            self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
        def log_message(self, *a): pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield posts, srv.server_address[1]
    srv.shutdown(); srv.server_close()

@pytest.fixture
def blackhole():
    "A server that accepts connections and never says a word (a hung mail server or webhook): (port, connected event)."
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(50)
    connected, conns, stop = threading.Event(), [], threading.Event()
    def serve():
        ls.settimeout(0.2)
        while not stop.is_set():
            try: conns.append(ls.accept()[0]); connected.set()
            except OSError: pass
    threading.Thread(target=serve, daemon=True).start()
    yield ls.getsockname()[1], connected
    stop.set()
    for c in conns: c.close()
    ls.close()


# ---- helpers --------------------------------------------------------------------------------------
def _settings(**alerts):
    "Effective settings with [alerts] keys set as a user would (environment layer; lists comma separated)."
    env = {f"ATS_ALERTS__{k.upper()}": (", ".join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v))
           for k, v in alerts.items()}
    return load_settings(env=env, use_file=False)

def _mail(port, **kw):
    return dict(dict(email_alerts=True, email_to=["trader@example.com", "desk@example.com"], smtp_host="127.0.0.1", smtp_port=port,
                     email_from="ats@example.com"), **kw)

def _wait(pred, timeout=10.0):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if pred(): return True
        time.sleep(0.02)
    return False

@pytest.fixture
def store(project):
    return Store(f"lmdb://{project}/db")


# ---- tests ----------------------------------------------------------------------------------------
def test_error_alert_arrives_by_email_with_subject_context_and_is_recorded(project, smtp, store):
    inbox, port = smtp()
    al = Alerter.from_settings(_settings(**_mail(port)), store=store, source="runner")
    al.alert("ERROR", "account DU0000001 halted: drawdown 5.2% exceeds emergency_stop_loss 5%\nall orders cancelled")
    assert al.flush(15); al.close()
    assert len(inbox.messages) == 1
    rcpts, msg = inbox.messages[0]
    assert sorted(rcpts) == ["desk@example.com", "trader@example.com"]
    assert msg["Subject"] == "[ats ERROR] account DU0000001 halted: drawdown 5.2% exceeds emergency_stop_loss 5%"
    body = msg.get_content()
    assert "all orders cancelled" in body and "ERROR from runner at" in body
    assert f"host: {socket.gethostname()}" in body and "account: the first managed account (paper" in body
    h = alert_history(store)
    assert len(h) == 1 and h.loc[0, "source"] == "runner" and bool(h.loc[0, "sent"]) and not h.loc[0, "suppressed"]
    assert h.loc[0, "failed"] == 0
    assert [(d["channel"], d["target"], d["ok"]) for d in h.loc[0, "deliveries"]] == [
        ("log", "ats.alerts", True), ("email", "trader@example.com, desk@example.com", True)]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login_with_password_from_settings(project, smtp, store, security):
    inbox, port = smtp(security, login=True)
    s = _settings(**_mail(port, smtp_security=security, smtp_user=USER, smtp_password=PASSWORD))
    al = Alerter.from_settings(s, store=store, source="scheduler", log=False)
    al.alert("CRITICAL", "job download_us_stock_data failed 3 times")
    assert al.flush(15); al.close()
    assert inbox.logins == [USER] and len(inbox.messages) == 1
    assert inbox.messages[0][1]["Subject"] == "[ats CRITICAL] job download_us_stock_data failed 3 times"
    # a wrong password: a failed delivery that says why, and the password appears nowhere
    bad = Alerter.from_settings(_settings(**_mail(port, smtp_security=security, smtp_user=USER, smtp_password="wrong-pass-1")),
                                store=store, source="scheduler", log=False)
    bad.alert("ERROR", "second alert")
    assert bad.flush(15); bad.close()
    d = bad.recent[-1].deliveries[0]
    assert not d.ok and "SMTPAuthenticationError" in d.error and f"SMTP 127.0.0.1:{port}, {security}" in d.error
    rows = alert_history(store)
    assert rows.loc[0, "failed"] == 1 and "wrong-pass-1" not in rows.to_json() and PASSWORD not in rows.to_json()


def test_plain_smtp_refuses_when_server_requires_starttls(project, smtp, store):
    _, port = smtp("starttls")
    al = Alerter.from_settings(_settings(**_mail(port)), store=store, log=False)
    al.alert("ERROR", "x"); assert al.flush(15); al.close()
    d = al.recent[-1].deliveries[0]
    assert not d.ok and "STARTTLS" in d.error.upper()


def test_webhook_receives_alert_via_apprise_and_stored_target_is_masked(project, webhook, store):
    posts, port = webhook
    url = f"json://127.0.0.1:{port}/hooks/T0K3N-abcdef"
    al = Alerter.from_settings(_settings(sms_alerts=True, notify_urls=[url]), store=store, source="supervisor", log=False)
    al.alert("ERROR", "runner restarted after a crash (exit -9)")
    assert al.flush(15); al.close()
    assert len(posts) == 1
    path, doc = posts[0]
    assert path == "/hooks/T0K3N-abcdef"
    assert doc["title"] == "[ats ERROR] runner restarted after a crash (exit -9)" and "runner restarted" in doc["message"]
    h = alert_history(store)
    assert h.loc[0, "deliveries"] == [dict(channel="notify", target=f"json://127.0.0.1:{port}/***", ok=True, error="", ms=h.loc[0, "deliveries"][0]["ms"])]
    assert "T0K3N" not in h.to_json()


def test_frequency_limit_sends_once_and_next_reports_repeats(project, smtp, store):
    inbox, port = smtp()
    al = Alerter.from_settings(_settings(**_mail(port, alert_frequency_limit=1.5)), store=store, source="runner", log=False)
    al.alert("ERROR", "3 orders rejected by the broker")
    al.alert("ERROR", "4 orders rejected by the broker")          # the same alert (numbers do not count)
    al.alert("ERROR", "margin call")                              # another alert: sent
    assert al.flush(15)
    assert sorted(m["Subject"] for _, m in inbox.messages) == ["[ats ERROR] 3 orders rejected by the broker", "[ats ERROR] margin call"]
    time.sleep(1.6)
    al.alert("ERROR", "5 orders rejected by the broker")
    assert al.flush(15); al.close()
    assert len(inbox.messages) == 3
    assert "5 orders rejected by the broker (repeated 1 time since" in inbox.messages[-1][1].get_content()
    h = alert_history(store).iloc[::-1].reset_index(drop=True)      # oldest first
    assert list(h["message"]) == ["3 orders rejected by the broker", "4 orders rejected by the broker", "margin call",
                                  "5 orders rejected by the broker"]
    assert list(h["suppressed"]) == [False, True, False, False] and list(h["sent"]) == [True, False, True, True]
    assert list(h["repeats"]) == [0, 1, 0, 1] and h.loc[1, "deliveries"] == []


def test_critical_reaches_emergency_contacts_and_warning_is_only_stored(project, smtp, webhook, store):
    inbox, port = smtp()
    posts, wport = webhook
    s = _settings(**_mail(port, emergency_contacts=["cro@example.com", f"json://127.0.0.1:{wport}/pager"]))
    al = Alerter.from_settings(s, store=store, source="runner", log=False)
    al.alert("WARNING", "latency 900 ms above 500 ms")
    al.alert("CRITICAL", "kill switch engaged")
    assert al.flush(15); al.close()
    assert [sorted(r) for r, _ in inbox.messages] == [["desk@example.com", "trader@example.com"], ["cro@example.com"]]
    assert all(m["Subject"] == "[ats CRITICAL] kill switch engaged" for _, m in inbox.messages)
    assert [(p, d["title"]) for p, d in posts] == [("/pager", "[ats CRITICAL] kill switch engaged")]
    h = alert_history(store)
    warn = h[h["level"] == "WARNING"].iloc[0]
    assert not warn["sent"] and not warn["suppressed"] and warn["deliveries"] == []
    crit = h[h["level"] == "CRITICAL"].iloc[0]
    assert [d["channel"] for d in crit["deliveries"]] == ["email", "emergency", "emergency"] and crit["failed"] == 0
    assert list(alert_history(store, level="ERROR")["level"]) == ["CRITICAL"]


def test_dead_and_hung_servers_never_slow_the_caller(project, store, blackhole):
    hung_port, connected = blackhole
    dead_port = _free_port()                                   # nothing listens there
    seen = []
    handler = logging.Handler(); handler.emit = seen.append
    logging.getLogger("ats.alerts").addHandler(handler)
    try:
        s = _settings(**_mail(dead_port, delivery_timeout=1, sms_alerts=True,
                              notify_urls=[f"json://127.0.0.1:{hung_port}/hook"], email_to=["a@example.com"]))
        al = Alerter.from_settings(s, store=store, source="runner", log=False)
        t0 = time.perf_counter(); al.alert("ERROR", "broker connection lost"); first = time.perf_counter() - t0
        assert connected.wait(10)                              # the delivery thread is now stuck on the hung webhook
        t0 = time.perf_counter(); al.alert("ERROR", "still no connection"); second = time.perf_counter() - t0
        assert first < 0.05 and second < 0.05
        assert al.flush(20); al.close()
    finally:
        logging.getLogger("ats.alerts").removeHandler(handler)
    h = alert_history(store)
    assert list(h["failed"]) == [2, 2] and not h["sent"].any()
    email_d, notify_d = h.loc[1, "deliveries"]
    assert email_d["channel"] == "email" and "ConnectionRefusedError" in email_d["error"] and f"127.0.0.1:{dead_port}" in email_d["error"]
    assert notify_d["channel"] == "notify" and not notify_d["ok"] and "Read timed out" in notify_d["error"]
    assert notify_d["target"] == f"json://127.0.0.1:{hung_port}/***"
    assert any("alert delivery failed: email to a@example.com" in r.getMessage() for r in seen)


def test_full_queue_drops_the_oldest_and_reports_the_count(project, store, blackhole):
    hung_port, connected = blackhole
    s = _settings(smtp_host="127.0.0.1", smtp_port=hung_port, delivery_timeout=2, emergency_contacts=["cro@example.com"])
    al = Alerter(s.alerts, store=store, source="runner", queue_size=10, log=False)
    al.alert("CRITICAL", "account halted")                     # keeps the delivery thread busy on a hung mail server
    assert connected.wait(10)
    for i in range(15): al.alert("WARNING", f"warning {chr(65 + i)}")
    assert al.dropped_total == 5
    assert al.flush(20); al.close()
    h = alert_history(store).iloc[::-1].reset_index(drop=True)
    assert list(h["message"]) == ["account halted"] + [f"warning {chr(65 + i)}" for i in range(5, 15)]
    assert list(h["dropped"]) == [0, 5] + [0] * 9
    assert "(5 earlier alerts were dropped: the alert queue was full)" in al.recent[1].text()


def test_cli_alerts_test_and_list(project, smtp, cert):
    inbox, port = smtp("starttls", login=True)
    run_ats("init", cwd=project, check=True)
    (project / ".env").write_text(f"ATS_ALERTS__SMTP_PASSWORD={PASSWORD}\n")
    env = dict(ATS_ALERTS__EMAIL_ALERTS="true", ATS_ALERTS__EMAIL_TO="trader@example.com", ATS_ALERTS__SMTP_HOST="127.0.0.1",
               ATS_ALERTS__SMTP_PORT=str(port), ATS_ALERTS__SMTP_SECURITY="starttls", ATS_ALERTS__SMTP_USER=USER,
               ATS_ALERTS__ALERT_LEVELS="CRITICAL", SSL_CERT_FILE=str(cert[0]))
    r = run_ats("alerts", "test", cwd=project, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("email      trader@example.com  ok")
    assert inbox.logins == [USER] and inbox.messages[0][1]["Subject"].startswith("[ats ERROR] Test alert from `ats alerts test`")
    # a channel that fails: exit 1 and the reason
    r = run_ats("alerts", "test", "--level", "CRITICAL", cwd=project, env=env | dict(ATS_ALERTS__SMTP_PORT=str(_free_port())))
    assert r.returncode == 1 and "FAILED: ConnectionRefusedError" in r.stdout
    # no channel: what to set
    r = run_ats("alerts", "test", cwd=project)
    assert r.returncode == 2 and "email_to" in r.stderr and "ATS_ALERTS__SMTP_PASSWORD" in r.stderr
    r = run_ats("alerts", "list", "--json", cwd=project, check=True)
    rows = json.loads(r.stdout)
    assert [(x["level"], x["source"], x["sent"], x["failed"]) for x in rows] == [("CRITICAL", "cli", False, 1), ("ERROR", "cli", True, 0)]
    assert PASSWORD not in r.stdout
    r = run_ats("alerts", "list", "--level", "CRITICAL", cwd=project, check=True)
    assert "CRITICAL" in r.stdout and "recorded, 1 failed" in r.stdout and "ERROR " not in r.stdout
