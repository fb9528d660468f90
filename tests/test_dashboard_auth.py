"""The dashboard behind a login over HTTPS, as the production profile serves it: a real Voila server (ats.ui.auth), a
certificate made in the test, real HTTP(S) requests and headless Chromium."""
import contextlib, http.client, json, re, sqlite3, ssl, subprocess, time, urllib.parse
import pytest
from conftest import run_ats
from browser_helpers import needs_chromium, served, CHROMIUM, ARGS

pytestmark = needs_chromium
PAGES = ("control", "settings", "data", "jobs")
PASSWORDS = {"tina": "Trader-pass-2026!", "vic": "Viewer-pass-2026!", "ada": "Admin-pass-2026!"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "A project with three users (trader, viewer, admin) and its dashboard served over HTTPS with login; yields what the tests need."
    import os
    from ats.auth import UserStore
    from ats.config import load_settings
    project = tmp_path_factory.mktemp("authsite")
    (project / "strategies").mkdir()
    env = {"ATS_SETTINGS": str(project / "settings.ini"), "ENVIRONMENT": "production"}     # the production profile: login over HTTPS
    r = run_ats("init", cwd=project, check=True, env=env)
    assert "self-signed" in r.stdout and "ats users add" in r.stdout, r.stdout
    s = load_settings(project / "settings.ini", env=env)
    assert s.security.enable_authentication and s.encryption.ssl_enabled
    r = run_ats("check", cwd=project, env=env)              # nobody could log in yet: said before anything is served
    assert "ats users add NAME --role admin" in r.stdout, r.stdout
    cert = s.path(s.encryption.certificate_file)
    users = UserStore.from_settings(s)
    for name, role in (("tina", "trader"), ("vic", "viewer"), ("ada", "admin")): users.add(name, role, PASSWORDS[name])
    old_cwd = os.getcwd(); os.chdir(project)
    try:
        with served(project, "control", env) as url:
            u = urllib.parse.urlparse(url)
            yield dict(project=project, settings=s, users=users, url=url, host=u.hostname, port=u.port, cert=cert,
                       tls=ssl.create_default_context(cafile=str(cert)))
    finally: os.chdir(old_cwd)


def request(site, method, path, body=None, headers=None, cookies=None):
    "One HTTPS request, the certificate checked against the one the test made; (status, headers, text)."
    c = http.client.HTTPSConnection(site["host"], site["port"], context=site["tls"], timeout=60)
    h = dict(headers or {})
    if cookies: h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    out = r.status, r.headers, r.read().decode(errors="replace")
    c.close()
    return out


def login(site, name, password, code=None):
    "The login form as a browser posts it (XSRF token from the form and its cookie); (status, cookies, text)."
    st, h, text = request(site, "GET", "/login")
    jar = dict(re.findall(r"(_xsrf)=([^;]+)", h.get("Set-Cookie", "")))
    token = re.search(r"name=\"_xsrf\" value=\"([^\"]+)\"", text).group(1)
    form = dict(_xsrf=token, username=name, password=password, next="/voila/render/control.ipynb") | ({"code": code} if code else {})
    st, h, text = request(site, "POST", "/login", urllib.parse.urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"}, jar)
    set_cookie = " ".join(h.get_all("Set-Cookie") or [])
    jar |= dict(re.findall(r"(ats_session)=([^;]+)", set_cookie))
    if "ats_session" in jar:          # a cookie scripts cannot read, never sent cross-site, never over plain HTTP
        assert all(a in set_cookie for a in ("HttpOnly", "SameSite=Strict", "Secure")), set_cookie
    return st, jar, text


def test_nothing_is_served_without_a_login_and_plain_http_gets_no_answer(site):
    for p in PAGES:          # every page sends the browser to the login
        st, h, _ = request(site, "GET", f"/voila/render/{p}.ipynb")
        assert st == 302 and h["Location"].startswith("/login?next="), (p, st, h.get("Location"))
    st, _, _ = request(site, "GET", "/api/kernels/0b7f2b3c-1111-2222-3333-444455556666")      # the kernel API
    assert st in (302, 403), st
    st, _, _ = request(site, "GET", "/voila/tree")           # the page list
    assert st in (302, 403, 404), st
    # the kernel websocket and the kernel shutdown refuse too (no 101 Switching Protocols)
    st, _, _ = request(site, "GET", "/api/kernels/0b7f2b3c-1111-2222-3333-444455556666/channels",
                       headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert st in (302, 403), st
    st, _, _ = request(site, "POST", "/voila/api/shutdown/0b7f2b3c-1111-2222-3333-444455556666", body="")
    assert st == 403
    # a forged session cookie is nobody
    st, h, _ = request(site, "GET", "/voila/render/control.ipynb", cookies={"ats_session": "forged-token"})
    assert st == 302
    # the port speaks HTTPS only: a plain-HTTP request gets no HTTP answer
    c = http.client.HTTPConnection(site["host"], site["port"], timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        c.request("GET", "/login"); c.getresponse().read()


def test_a_wrong_password_is_refused_and_the_login_sets_a_strict_cookie(site):
    st, jar, text = login(site, "tina", "not-her-password")
    assert st == 403 and "ats_session" not in jar and "ats-login-error" in text and "wrong user name or password" in text
    site["users"].unlock("tina")
    st, jar, _ = login(site, "tina", PASSWORDS["tina"])
    assert st == 302 and jar.get("ats_session")
    st, h, text = request(site, "GET", "/voila/render/settings.ipynb", cookies=jar)
    assert st == 200, (st, text[:300])
    # logging out ends the session on the server: the same cookie opens nothing any more
    request(site, "GET", "/logout", cookies=jar)
    st, _, _ = request(site, "GET", "/voila/render/settings.ipynb", cookies=jar)
    assert st == 302


def test_wrong_passwords_lock_the_user_until_an_admin_unlocks(site):
    n = site["settings"].security.max_login_attempts
    for _ in range(n):
        st, _, _ = login(site, "ada", "Wrong-pass-0000!")
        assert st == 403
    st, jar, text = login(site, "ada", PASSWORDS["ada"])           # the right password, too late
    assert st == 403 and "ats_session" not in jar and "locked" in text and "ats users unlock" in text
    r = run_ats("users", "unlock", "ada", cwd=site["project"], env={"ATS_SETTINGS": str(site["project"] / "settings.ini"), "ENVIRONMENT": "production"})
    assert r.returncode == 0, r.stderr
    st, jar, _ = login(site, "ada", PASSWORDS["ada"])
    assert st == 302 and jar.get("ats_session")


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try: yield b.new_context(ignore_https_errors=True, viewport={"width": 1500, "height": 1000})    # the test's own self-signed certificate
        finally: b.close()


def browser_login(ctx, site, name):
    page = ctx.new_page()
    page.goto(site["url"], timeout=60000)
    page.wait_for_selector("#ats-login", timeout=30000)           # HTTPS, and the login page first
    assert page.url.startswith("https://") and "/login" in page.url
    page.fill("#username", name); page.fill("#password", PASSWORDS[name]); page.click("#ats-login-submit")
    page.wait_for_selector(".ats-header .ats-user", timeout=90000)
    return page


def test_a_viewer_sees_the_account_but_cannot_press_the_kill_switch_and_the_attempt_is_audited(site):
    with browser() as ctx:
        page = browser_login(ctx, site, "vic")
        assert "vic" in page.inner_text(".ats-header") and "viewer" in page.inner_text(".ats-header")
        kill = page.locator(".ats-kill-switch button, button.ats-kill-switch").first
        assert kill.is_disabled()
        # pressed anyway (the button enabled by hand in the browser): the kernel refuses it and says why
        kill.evaluate("b => { b.disabled = false; }")
        kill.click()
        page.wait_for_selector(".ats-message:has-text('may not')", timeout=20000)
        # the settings window: everything shown, nothing editable
        page.goto(site["url"].replace("control.ipynb", "settings.ipynb"), timeout=60000)
        page.wait_for_selector("[class*='ats-set-risk-'] input", state="attached", timeout=60000)
        inputs = page.locator("[class*='ats-set-'] input, [class*='ats-override-']")
        assert inputs.count() > 0 and all(inputs.nth(i).is_disabled() for i in range(inputs.count()))
    refused = [a for a in site["users"].audit_log(200, user="vic") if a["action"] == "kill"]
    assert refused and refused[-1]["outcome"].startswith("refused"), refused


def test_a_trader_steers_and_the_session_ends_when_idle(site):
    with browser() as ctx:
        page = browser_login(ctx, site, "tina")
        assert "trader" in page.inner_text(".ats-header")
        assert not page.locator(".ats-kill-switch button, button.ats-kill-switch").first.is_disabled()
        # idle past session_timeout: the stored clock of the session is what counts
        with contextlib.closing(sqlite3.connect(site["settings"].path(site["settings"].security.users_file))) as con:
            cols = [r[1] for r in con.execute("PRAGMA table_info(sessions)")]
            col = "last_seen" if "last_seen" in cols else next(c for c in cols if "seen" in c)
            con.execute(f"UPDATE sessions SET {col} = {col} - 100000 WHERE user = 'tina'"); con.commit()
        page.wait_for_selector(".ats-session-ended", timeout=30000)      # the page stops showing the account
        page.goto(site["url"], timeout=60000)
        page.wait_for_selector("#ats-login", timeout=30000)
