"ats.auth: users, argon2 passwords, lockout, TOTP, sessions, roles, rate limits, the audit, and `ats users`."
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pyotp, pytest
from ats.auth import (UserStore, AuthError, WeakPassword, LoginRefused, Forbidden, SessionExpired, RateLimited, ACTIONS)
from ats.config import SecuritySettings
from ats.cli import main
from conftest import ROOT

PW, PW2, PW3 = "Correct-Horse-9", "Another-Pass-42", "Third-Secret-77"


class Clock:
    "A clock the test moves by hand."
    def __init__(self, t: float = 1_800_000_000.0): self.t = t
    def __call__(self) -> float: return self.t


def store(tmp_path, clock=None, **kw) -> UserStore:
    return UserStore(tmp_path / "keys" / "users.db", SecuritySettings(**kw), clock=clock or Clock())


def refused(f, *a, **kw) -> LoginRefused:
    with pytest.raises(LoginRefused) as e: f(*a, **kw)
    return e.value


def test_argon2_hash_only_no_plain_text_in_the_file(tmp_path):
    st = store(tmp_path)
    st.add("ada", "admin", PW)
    s = st.login("ada", PW, source="10.0.0.1")
    st.passwd("ada", PW2)
    st.login("ada", PW2)
    path = tmp_path / "keys" / "users.db"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir())          # the db and any WAL
    assert b"$argon2id$" in raw
    for secret in (PW, PW2, s.token):
        assert secret.encode() not in raw
    assert s.token not in repr(s)                                         # a logged Session does not leak its token
    assert refused(st.login, "ada", PW).reason == "password"            # the old password no longer works


def test_complexity_message_names_what_is_missing(tmp_path):
    st = store(tmp_path)
    with pytest.raises(WeakPassword, match=r"needs at least 12 characters, an upper-case letter, a digit, a symbol"): st.add("ada", "admin", "lowercase")
    with pytest.raises(WeakPassword, match=r"needs a digit \(\[security\] password_complexity\)$"): st.add("ada", "admin", "NoDigitsHere!!")
    assert st.users() == []
    relaxed = store(tmp_path / "b", password_complexity=False)
    relaxed.add("ada", "admin", "simple")
    assert relaxed.login("ada", "simple").user == "ada"


def test_lockout_unlock_and_cool_down(tmp_path):
    clock = Clock()
    st = store(tmp_path, clock, max_login_attempts=3, lockout_time=600)
    st.add("ada", "admin", PW)
    for i in range(2): assert refused(st.login, "ada", "wrong").reason == "password"
    e = refused(st.login, "ada", "wrong")
    assert "ada is locked after 3 failed logins: an admin runs `ats users unlock ada`, or try again in 10 min" in str(e)
    e = refused(st.login, "ada", PW)                                     # the right password, still refused
    assert e.reason == "locked" and "ats users unlock ada" in str(e)
    assert any(r["action"] == "lockout" and r["user"] == "ada" for r in st.audit_log())
    st.unlock("ada")
    assert st.login("ada", PW).user == "ada"
    for i in range(3): refused(st.login, "ada", "wrong")
    clock.t += 599
    assert refused(st.login, "ada", PW).reason == "locked"
    clock.t += 2                                                          # the cool-down has run out
    assert st.login("ada", PW).user == "ada"
    assert st.users()[0].failed == 0 and st.users()[0].locked_until is None


def test_unknown_user_gets_the_same_message(tmp_path):
    st = store(tmp_path)
    st.add("ada", "admin", PW)
    a, b = refused(st.login, "ada", "wrong"), refused(st.login, "nobody", "wrong")
    assert str(a) == str(b) == "wrong user name or password: check both and try again"


def test_failures_from_a_source_slow_it_down(tmp_path):
    clock = Clock()
    st = store(tmp_path, clock, max_login_attempts=100, api_rate_limiting=False)
    st.add("ada", "admin", PW)
    waits = [refused(st.login, "ada", "wrong", source="10.0.0.9").retry_after for _ in range(8)]
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert refused(st.login, "ada", "wrong", source="10.0.0.10").retry_after == 0.5    # another source is not slowed
    clock.t += 901                                                       # 15 minutes later the source starts afresh
    assert refused(st.login, "ada", "wrong", source="10.0.0.9").retry_after == 0.5


def test_login_rate_limit_per_source(tmp_path):
    clock = Clock()
    st = store(tmp_path, clock, login_rate_limit=5, max_login_attempts=100)
    st.add("ada", "admin", PW)
    for _ in range(4): refused(st.login, "ada", "wrong", source="1.2.3.4")
    assert st.login("ada", PW, source="1.2.3.4")
    e = refused(st.login, "ada", PW, source="1.2.3.4")
    assert e.reason == "rate" and "too many login attempts from 1.2.3.4" in str(e) and e.retry_after >= 1
    assert st.login("ada", PW, source="5.6.7.8")                        # per source
    clock.t += 61
    assert st.login("ada", PW, source="1.2.3.4")
    off = store(tmp_path / "off", Clock(), login_rate_limit=1, api_rate_limiting=False)
    off.add("ada", "admin", PW)
    for _ in range(3): off.login("ada", PW, source="1.2.3.4")


def test_totp_accepted_once_wrong_code_counts(tmp_path):
    clock = Clock()
    st = store(tmp_path, clock, two_factor_auth=True, max_login_attempts=3)
    uri = st.add("ada", "admin", PW)
    assert uri.startswith("otpauth://totp/ats:ada?") and "issuer=ats" in uri
    totp = pyotp.parse_uri(uri)
    code = totp.at(clock.t)
    assert refused(st.login, "ada", PW).reason == "code"                # no code
    assert st.login("ada", PW, code=code).user == "ada"
    e = refused(st.login, "ada", PW, code=code)
    assert e.reason == "code" and str(e) == "that code was already used: wait for the next one"
    clock.t += 30
    assert st.login("ada", PW, code=totp.at(clock.t))
    bad = "000000" if totp.at(clock.t) != "000000" else "111111"
    refused(st.login, "ada", PW, code=bad); refused(st.login, "ada", PW, code=bad)
    assert refused(st.login, "ada", PW, code=bad).reason == "code"
    assert refused(st.login, "ada", PW, code=totp.at(clock.t + 30)).reason == "locked"   # wrong codes lock too
    uri2 = st.enroll_totp("ada")
    st.unlock("ada")
    clock.t += 60
    assert refused(st.login, "ada", PW, code=totp.at(clock.t)).reason == "code"          # the old secret is gone
    assert st.login("ada", PW, code=pyotp.parse_uri(uri2).at(clock.t))


def test_session_idle_expiry_and_touch(tmp_path):
    clock = Clock()
    st = store(tmp_path, clock, session_timeout=600)
    st.add("ada", "admin", PW)
    s = st.login("ada", PW, source="10.0.0.1")
    clock.t += 500
    assert st.session(s.token).last_seen == clock.t                     # touched: idle time restarts
    clock.t += 500
    assert st.session(s.token, touch=False).user == "ada"
    clock.t += 101
    assert st.session(s.token) is None
    clock.t -= 1000
    assert st.session(s.token) is None                                   # deleted, not only hidden
    assert st.session("not-a-token") is None and st.session("") is None
    s2 = st.login("ada", PW)
    st.logout(s2.token)
    with pytest.raises(SessionExpired, match="log in again"): st.authorize(s2.token, "view")


def test_authorize_roles_and_audit(tmp_path):
    st = store(tmp_path)
    st.add("ada", "admin", PW); st.add("tom", "trader", PW2); st.add("vic", "viewer", PW3)
    vic, tom, ada = st.login("vic", PW3, source="10.0.0.7"), st.login("tom", PW2), st.login("ada", PW)
    assert st.authorize(vic.token, "view").role == "viewer"
    with pytest.raises(Forbidden) as e: st.authorize(vic.token, "kill", detail="all")
    assert str(e.value).startswith("viewer vic may not kill: ask an admin")
    row = st.audit_log(1)[0]
    assert (row["user"], row["action"], row["outcome"], row["detail"], row["source"]) == ("vic", "kill", "refused: role", "all", "10.0.0.7")
    assert st.authorize(tom.token, "kill", detail="all").user == "tom"
    assert st.audit_log(1)[0]["user"] == "tom" and st.audit_log(1)[0]["outcome"] == "allowed"
    with pytest.raises(Forbidden, match="trader tom may not risk_limits"): st.authorize(tom.token, "risk_limits")
    for action in ACTIONS: st.authorize(ada.token, action)
    with pytest.raises(AuthError, match="unknown action"): st.authorize(ada.token, "launch")
    st.set_role("vic", "trader")                                         # takes effect on the live session
    assert st.authorize(vic.token, "kill")


def test_command_rate_limit_per_user(tmp_path):
    clock = Clock()
    st = store(tmp_path, clock, command_rate_limit=3)
    st.add("tom", "trader", PW2); st.add("ann", "trader", PW3)
    tom, ann = st.login("tom", PW2), st.login("ann", PW3)
    for _ in range(3): st.authorize(tom.token, "stop")
    for _ in range(10): st.authorize(tom.token, "view")                 # looking is not a command
    with pytest.raises(RateLimited, match="command_rate_limit") as e: st.authorize(tom.token, "start")
    assert e.value.retry_after >= 1 and st.audit_log(1)[0]["outcome"] == "refused: rate"
    st.authorize(ann.token, "start")                                     # per user
    clock.t += 61
    st.authorize(tom.token, "start")


def test_last_admin_is_protected(tmp_path):
    st = store(tmp_path)
    st.add("ada", "admin", PW); st.add("tom", "trader", PW2)
    with pytest.raises(AuthError, match="ada is the last admin: add another admin first"): st.remove("ada")
    with pytest.raises(AuthError, match="last admin"): st.set_role("ada", "trader")
    st.set_role("tom", "admin")
    st.set_role("ada", "viewer")
    st.remove("ada")
    assert [(u.name, u.role) for u in st.users()] == [("tom", "admin")]


WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ats.auth import UserStore
    from ats.config import SecuritySettings
    st = UserStore(Path(sys.argv[1]), SecuritySettings(api_rate_limiting=False, max_login_attempts=100))
    for i in range(int(sys.argv[3])):
        s = st.login(sys.argv[2], sys.argv[4], source=sys.argv[2])
        st.authorize(s.token, "start", detail=str(i))
        st.audit(sys.argv[2], "note", "ok")
        st.logout(s.token)
    print("done")
""")


def test_two_processes_share_the_file(tmp_path):
    path = tmp_path / "keys" / "users.db"
    st = UserStore(path, SecuritySettings(api_rate_limiting=False))
    st.add("tom", "trader", PW2); st.add("ann", "trader", PW3)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ps = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), u, "15", pw], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for u, pw in (("tom", PW2), ("ann", PW3))]
    outs = [p.communicate(timeout=300) for p in ps]
    for p, (out, err) in zip(ps, outs):
        assert p.returncode == 0 and out.strip() == "done", err
        assert "database is locked" not in err
    log = st.audit_log(1000)
    for u in ("tom", "ann"):
        assert sum(r["user"] == u and r["action"] == "start" and r["outcome"] == "allowed" for r in log) == 15


# --- the CLI -------------------------------------------------------------------------------------------------------

@pytest.fixture
def proj(project):
    (project / "settings.ini").write_text("[security]\nmax_login_attempts = 2\n")
    return project


def ats(capsys, monkeypatch, *args, stdin=None):
    "Run `ats ARGS` in-process; (exit code, stdout, stderr)."
    import io
    if stdin is not None: monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def users_db(proj) -> UserStore:
    from ats.config import load_settings
    return UserStore.from_settings(load_settings(proj / "settings.ini"))


def test_cli_add_list_passwd_unlock_remove_audit(proj, capsys, monkeypatch):
    assert ats(capsys, monkeypatch, "users", "add", "ada", "--role", "admin", "--password-stdin", stdin=PW + "\n")[:2] == (0, "added admin ada\n")
    assert ats(capsys, monkeypatch, "users", "add", "tom", "--role", "trader", "--password-stdin", stdin=PW2)[0] == 0
    code, out, _ = ats(capsys, monkeypatch, "users", "list", "--json")
    rows = json.loads(out)
    assert [(r["name"], r["role"], r["totp"], r["locked"]) for r in rows] == [("ada", "admin", False, False), ("tom", "trader", False, False)]
    st = users_db(proj)
    assert st.login("ada", PW).user == "ada"                             # the trailing newline was not part of it
    assert ats(capsys, monkeypatch, "users", "passwd", "tom", "--password-stdin", stdin=PW3 + "\n")[:2] == (0, "password of tom changed; their sessions ended\n")
    assert st.login("tom", PW3).user == "tom"
    for _ in range(2): refused(st.login, "tom", "wrong")
    assert "locked" in ats(capsys, monkeypatch, "users", "list")[1]
    assert ats(capsys, monkeypatch, "users", "unlock", "tom")[:2] == (0, "unlocked tom\n")
    assert st.login("tom", PW3)
    assert ats(capsys, monkeypatch, "users", "role", "tom", "admin")[:2] == (0, "tom is now admin\n")
    assert ats(capsys, monkeypatch, "users", "remove", "tom")[:2] == (0, "removed tom\n")
    code, out, _ = ats(capsys, monkeypatch, "users", "audit", "--json", "--user", "tom")
    outcomes = [(r["action"], r["outcome"]) for r in json.loads(out)]
    assert ("users", "added") in outcomes and ("lockout", "locked") in outcomes and ("unlock", "unlocked") in outcomes and outcomes[-1] == ("users", "removed")
    assert all(r["user"] == "tom" for r in json.loads(out))
    code, out, _ = ats(capsys, monkeypatch, "users", "audit", "-n", "2")
    assert code == 0 and "removed" in out and len(out.strip().splitlines()) == 4    # header, rule, 2 rows
    text = (proj / "keys" / "users.db").read_bytes()
    assert PW.encode() not in text and PW3.encode() not in text


def test_cli_getpass_typed_twice(proj, capsys, monkeypatch):
    import getpass
    answers = iter([PW, PW])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert ats(capsys, monkeypatch, "users", "add", "ada", "--role", "admin")[:2] == (0, "added admin ada\n")
    answers = iter([PW2, PW2 + "x"])
    code, out, err = ats(capsys, monkeypatch, "users", "add", "bob", "--role", "viewer")
    assert code == 2 and err == "error: the two passwords differ: nothing changed; run the command again\n"
    assert [u.name for u in users_db(proj).users()] == ["ada"]


def test_cli_totp_enrolment_printed_once(proj, capsys, monkeypatch):
    (proj / "settings.ini").write_text("[security]\ntwo_factor_auth = true\n")
    code, out, _ = ats(capsys, monkeypatch, "users", "add", "ada", "--role", "admin", "--password-stdin", stdin=PW)
    assert code == 0 and out.startswith("added admin ada\nscan this QR code") and "otpauth://totp/ats:ada?secret=" in out and "█" in out
    secret = pyotp.parse_uri(next(l for l in out.splitlines() if l.startswith("otpauth://"))).secret
    code, out, _ = ats(capsys, monkeypatch, "users", "list")
    assert "yes" in out and secret not in out
    code, out, _ = ats(capsys, monkeypatch, "users", "totp", "ada")
    assert code == 0 and "otpauth://" in out and secret not in out
    assert secret not in ats(capsys, monkeypatch, "users", "audit", "--json")[1]


def _snapshot(proj):
    st = users_db(proj)
    return [(u.name, u.role, u.failed, u.locked_until) for u in st.users()], [r["hash"] for r in _hashes(proj)]


def _hashes(proj):
    import sqlite3
    con = sqlite3.connect(proj / "keys" / "users.db"); con.row_factory = sqlite3.Row
    try: return con.execute("SELECT name, hash FROM users ORDER BY name").fetchall()
    finally: con.close()


BAD = [
    (("users", "add", "bob", "--role", "boss", "--password-stdin"), PW, "unknown role 'boss': use one of viewer, trader, admin"),
    (("users", "add", "bad name", "--role", "viewer", "--password-stdin"), PW, "bad user name 'bad name': use 1-64 letters"),
    (("users", "add", "-x", "--role", "viewer", "--password-stdin"), PW, None),                         # argparse: an option, exit 2
    (("users", "add", "ada", "--role", "viewer", "--password-stdin"), PW, "user 'ada' exists already"),
    (("users", "add", "ADA", "--role", "viewer", "--password-stdin"), PW, "user 'ADA' exists already"),
    (("users", "add", "bob", "--role", "viewer", "--password-stdin"), "weakpass", "the password is too weak: it needs at least 12 characters, an upper-case letter, a digit, a symbol"),
    (("users", "add", "bob", "--role", "viewer", "--password-stdin"), "", "no password on standard input"),
    (("users", "add", "bob", "--role", "viewer", "--password-stdin"), "\n", "no password on standard input"),
    (("users", "passwd", "nobody", "--password-stdin"), PW, "no user 'nobody': see `ats users list`"),
    (("users", "passwd", "ada", "--password-stdin"), "Short1!", "the password is too weak: it needs at least 12 characters"),
    (("users", "passwd", "ada", "--password-stdin"), "", "no password on standard input"),
    (("users", "remove", "nobody"), None, "no user 'nobody'"),
    (("users", "unlock", "nobody"), None, "no user 'nobody'"),
    (("users", "totp", "nobody"), None, "no user 'nobody'"),
    (("users", "remove", "ada"), None, "ada is the last admin: add another admin first (`ats users add NAME --role admin`)"),
    (("users", "role", "ada", "trader"), None, "ada is the last admin"),
    (("users", "role", "tom", "root"), None, "unknown role 'root'"),
    (("users", "role", "nobody", "viewer"), None, "no user 'nobody'"),
]


def test_cli_bad_inputs_change_nothing(proj, capsys, monkeypatch):
    ats(capsys, monkeypatch, "users", "add", "ada", "--role", "admin", "--password-stdin", stdin=PW)
    ats(capsys, monkeypatch, "users", "add", "tom", "--role", "trader", "--password-stdin", stdin=PW2)
    before = _snapshot(proj)
    for args, stdin, msg in BAD:
        try: code, out, err = ats(capsys, monkeypatch, *args, stdin=stdin)
        except SystemExit as e: code, (out, err) = e.code, capsys.readouterr()     # argparse's own usage errors
        assert code == 2, (args, out, err)
        if msg: assert err.startswith(f"error: {msg}"), (args, err)
        assert out == "" and "Traceback" not in err, args
        assert _snapshot(proj) == before, args
    assert len(BAD) >= 12


def test_cli_subprocess_password_stdin(proj):
    "The real console script: a password piped in, never on the command line."
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATS_")}
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([sys.executable, "-c", "from ats.cli import console; console()", "users", "add", "ada", "--role", "admin", "--password-stdin"],
                       input=PW + "\n", cwd=proj, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "added admin ada\n", r.stderr
    r = subprocess.run([sys.executable, "-c", "from ats.cli import console; console()", "users", "list", "--json"], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=120)
    assert json.loads(r.stdout)[0]["name"] == "ada"


def test_hash_is_upgraded_when_the_parameters_change(tmp_path):
    import sqlite3
    from argon2 import PasswordHasher
    st = store(tmp_path)
    st.add("ada", "admin", PW)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PW)     # as an older ats would have stored it
    con = sqlite3.connect(tmp_path / "keys" / "users.db")
    with con: con.execute("UPDATE users SET hash = ? WHERE name = 'ada'", (old,))
    con.close()
    assert st.login("ada", PW).user == "ada"
    con = sqlite3.connect(tmp_path / "keys" / "users.db")
    new = con.execute("SELECT hash FROM users").fetchone()[0]
    con.close()
    assert new != old and not PasswordHasher().check_needs_rehash(new)
    assert st.login("ada", PW).user == "ada"
