"ats backup / ats restore on a real LMDB ArcticDB: consistent copies under a live writer, checksums, tampering, restore safety."
import datetime as dt, json, os, shutil, subprocess, sys, tarfile, threading, time
from decimal import Decimal as D
from pathlib import Path
import pandas as pd
import pytest
from conftest import ROOT, run_ats
from ats.backup import (BackupError, FREQUENCY_CRON, create_backup, list_backups, prune_backups, restore_backup, verify_backup)
from ats.cli import main
from ats.config import load_settings
from ats.ledger import Fill, LedgerStore
from ats.store import Store, StrategyConfig

UTC = dt.timezone.utc
INI = "[backup]\nbackup_location = backups\nverify_backups = {verify}\ncompress_backups = {compress}\n"


def _project(project, verify=False, compress=True):
    (project / "settings.ini").write_text(INI.format(verify=str(verify).lower(), compress=str(compress).lower()))
    (project / "strategies" / "mine.py").write_text("# my strategy\n")
    (project / "logs").mkdir()
    (project / "logs" / "ats_system.log").write_text("today\n")
    (project / "logs" / "ats_system.log.1").write_text("yesterday\n")
    (project / ".env").write_text("ALPHA_VANTAGE_API_KEY=topsecret\n")
    (project / "keys").mkdir()
    (project / "keys" / "encryption.key").write_text("KEY MATERIAL\n")
    s = load_settings(project / "settings.ini")
    st = Store(s.arctic_uri)
    st.library("market_data").write("AAPL", pd.DataFrame({"close": [1.0, 2.0, 3.0]}))
    return s, st


def _fills(st, n=3):
    t = dt.datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
    fills = [Fill(f"e{i}", "mine", 265598, "AAPL", D(10 + i), D("187.25") + i, t + dt.timedelta(minutes=i)) for i in range(n)]
    LedgerStore(st).append_fills(fills)
    return fills


def _snapshot(root: Path) -> dict:
    "Every file of the project (but the database's files, which a reader's open touches) with its bytes."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "data_and_research/db" not in p.as_posix()}


APPENDER = r"""
import os, sys, time, pandas as pd
from ats.store import Store
st = Store(sys.argv[1]); lib = st.library("market_data"); i = 0
lib.write("TICK", pd.DataFrame({"n": [0]}, index=pd.DatetimeIndex([pd.Timestamp("2024-01-01")])))
while True:
    i += 1
    lib.append("TICK", pd.DataFrame({"n": [i]}, index=pd.DatetimeIndex([pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=i)])))
    open(sys.argv[2] + ".tmp", "w").write(str(i)); os.replace(sys.argv[2] + ".tmp", sys.argv[2])   # never read half-written
"""


def test_backup_under_a_live_writer_restores_a_consistent_prefix_and_the_ledger_and_configs(project, capsys):
    s, st = _project(project, verify=True)
    fills = _fills(st)
    cfg = StrategyConfig("mine.py", "mine", True, dict(lookback=12), dict(max_position_size=0.1), 0.25)
    st.save_strategy_config(cfg)
    counter = project / "appended"
    w = subprocess.Popen([sys.executable, "-c", APPENDER, s.arctic_uri, str(counter)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        for _ in range(600):
            if counter.exists() and counter.read_text() and int(counter.read_text()) >= 20: break
            time.sleep(0.05)
        assert counter.exists(), "the writer did not start"
        assert main(["backup", "--no-progress"]) == 0             # verify_backups: the new archive was checked too
        during = int(counter.read_text())
        time.sleep(0.3)
    finally:
        w.kill(); w.wait()
    out = capsys.readouterr()
    [info] = list_backups(s)
    assert f"backup written: {info.path}" in out.out and info.path.name.endswith(".tar.gz") and info.components == ["database", "configurations", "logs", "strategies"]
    assert ".env left out: it holds secrets and this archive is not encrypted" in out.err

    assert main(["restore", str(info.path), "--to", str(project / "copy")]) == 0
    out = capsys.readouterr().out
    assert "opens and reads: 6 libraries" in out and "restore into the new project" in out
    new = load_settings(project / "copy" / "settings.ini")
    assert new.path(new.arctic.path) == project / "copy" / "data_and_research" / "db"
    rst = Store(new.arctic_uri, create=False)
    final = st.library("market_data").read("TICK").data
    got = rst.library("market_data").read("TICK").data
    assert 20 <= len(got) <= len(final) and len(got) <= during + 2
    pd.testing.assert_frame_equal(got, final.iloc[:len(got)])             # a prefix: a state the source really had
    for name in rst.arctic.list_libraries():                                # every library and symbol reads
        for sym in rst.library(name).list_symbols(): rst.library(name).read(sym)
    assert LedgerStore(rst).fills() == fills
    assert rst.load_strategy_config("mine") == cfg
    assert (project / "copy" / "strategies" / "mine.py").read_text() == "# my strategy\n"
    assert (project / "copy" / "logs" / "ats_system.log.1").read_text() == "yesterday\n"
    assert not (project / "copy" / ".env").exists() and not (project / "copy" / "keys").exists()


def test_manifest_lists_every_file_with_its_checksum_and_never_the_key(project):
    import hashlib
    s, st = _project(project)
    a = create_backup(s, progress=False)
    with tarfile.open(a) as tar:
        names = tar.getnames()
        m = json.loads(tar.extractfile("manifest.json").read())
        data = {n: tar.extractfile(n).read() for n in names if n != "manifest.json"}
    assert names[0] == "manifest.json" and sorted(f["name"] for f in m["files"]) == sorted(data)
    for f in m["files"]:
        assert f["size"] == len(data[f["name"]]) and f["sha256"] == hashlib.sha256(data[f["name"]]).hexdigest()
    assert (m["format_version"], m["profile"], m["encrypted"], m["key_id"]) == (1, "development", False, None)
    assert {"configurations/settings.ini", "logs/ats_system.log", "logs/ats_system.log.1", "strategies/mine.py",
            "database/_arctic_cfg/data.mdb", "database/market_data/data.mdb"} <= set(data)
    assert not any("encryption.key" in n or n.endswith(".env") for n in data)
    assert all(b"KEY MATERIAL" not in d and b"topsecret" not in d for d in data.values())


def _flip(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes()); b[offset] ^= 0xFF; path.write_bytes(bytes(b))


def test_a_tampered_or_damaged_archive_fails_verify_naming_the_problem(project, capsys):
    s, st = _project(project, compress=False)
    plain = create_backup(s, progress=False)
    with tarfile.open(plain) as tar: off = tar.getmember("strategies/mine.py").offset_data
    bad = plain.with_name("ats-backup-20200101T000000Z.tar"); shutil.copy(plain, bad); _flip(bad, off + 3)
    assert main(["backup", "verify", str(plain)]) == 0 and ": OK, " in capsys.readouterr().out
    assert main(["backup", "verify", str(bad)]) == 1
    assert "checksum mismatch: strategies/mine.py (the archive was changed or damaged)" in capsys.readouterr().err

    s2 = load_settings(project / "settings.ini", env={"ATS_BACKUP__COMPRESS_BACKUPS": "true"})
    gz = create_backup(s2, progress=False)
    _flip(gz, gz.stat().st_size // 2)
    rep = verify_backup(s, gz)
    assert not rep.ok and ("archive truncated or damaged" in rep.message or "checksum mismatch" in rep.message), rep.message
    assert main(["backup", "verify", str(gz)]) == 1


def test_restore_refuses_while_a_runner_is_live_and_says_to_stop_it(project, capsys):
    from ats.status import write_status
    s, st = _project(project)
    a = create_backup(s, progress=False)
    stop = threading.Event()
    def runner():                       # a live runner publishes its status every second (ats.status.publish_loop)
        while not stop.is_set():
            write_status(st, dict(as_of=dt.datetime.now(UTC).isoformat(), running=True, pid=os.getpid())); stop.wait(0.5)
    beat = threading.Thread(target=runner); beat.start()
    before = _snapshot(project)
    try: assert main(["restore", str(a), "--yes"]) == 2
    finally: stop.set(); beat.join()
    err = capsys.readouterr().err
    assert "a runner is live on" in err and "stop it with `ats shutdown`" in err
    assert _snapshot(project) == before and not list(project.glob("restore-aside-*"))


def test_restore_in_place_moves_what_it_replaces_aside_and_loses_nothing(project, capsys):
    s, st = _project(project)
    a = create_backup(s, progress=False)
    (project / "strategies" / "mine.py").write_text("# edited after the backup\n")
    (project / "strategies" / "new.py").write_text("# added after the backup\n")
    (project / "settings.ini").write_text((project / "settings.ini").read_text() + "\n[risk]\nmax_position_size = 0.05\n")
    old_ini = (project / "settings.ini").read_text()
    assert main(["restore", str(a), "--components", "configurations,strategies,logs", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "now there: 2 file(s)" in out and "moved aside (not deleted)" in out
    [aside] = project.glob("restore-aside-*")
    assert (project / "strategies" / "mine.py").read_text() == "# my strategy\n" and not (project / "strategies" / "new.py").exists()
    assert (aside / "strategies" / "new.py").read_text() == "# added after the backup\n"
    assert (aside / "strategies" / "mine.py").read_text() == "# edited after the backup\n"
    assert (aside / "settings.ini").read_text() == old_ini and "max_position_size" not in (project / "settings.ini").read_text()
    assert (aside / "logs" / "ats_system.log").read_text() == "today\n"


def test_prune_deletes_only_old_ats_archives_and_keeps_the_newest(project):
    s, _ = _project(project)
    loc = project / "backups"; loc.mkdir()
    names = ["ats-backup-20200101T000000Z.tar.gz", "ats-backup-20200301T000000Z.tar", "ats-backup-20240420T000000Z.tar.gz.enc",
             "ats-backup-20240501T000000Z.tar.gz", "notes-20200101.tar.gz", "ats-backup-old.tar"]
    for n in names: (loc / n).write_bytes(b"x")
    now = dt.datetime(2024, 5, 10, tzinfo=UTC)
    assert sorted(p.name for p in prune_backups(s, now=now)) == names[:2]
    assert sorted(p.name for p in loc.iterdir()) == sorted(names[2:])
    for n in names[2:4]: (loc / n).unlink()
    assert prune_backups(s, now=now + dt.timedelta(days=400)) == []       # the newest stays, however old
    assert sorted(p.name for p in loc.iterdir()) == ["ats-backup-old.tar", "notes-20200101.tar.gz"]


def test_the_scheduler_keeps_the_backup_schedule_in_line_with_the_settings(project):
    from ats.scheduler import Scheduler, list_schedules
    s, st = _project(project)
    jobs = s.path("data_and_research/jobs"); jobs.mkdir(parents=True)
    shutil.copy(ROOT / "data_and_research" / "jobs" / "backup.ipynb", jobs)
    def start(**env):
        sch = Scheduler(st, load_settings(project / "settings.ini", env=env), reload_every=0)
        sch.reload(); sch.stop("test", terminate=False)
        return {x.name: x for x in list_schedules(st)}.get("backup")
    b = start()
    assert (b.job, b.cron, b.timezone, b.paused, b.parameters) == ("backup", "30 2 * * *", "America/New_York", False, {"progress": False})
    assert start(ATS_BACKUP__BACKUP_FREQUENCY="hourly").cron == "15 * * * *"
    assert start(ATS_BACKUP__BACKUP_FREQUENCY="weekly", ATS_JOBS__TIMEZONE="Europe/London").cron == FREQUENCY_CRON["weekly"] == "30 2 * * 0"
    off = start(ATS_BACKUP__AUTO_BACKUP="false")
    assert off.paused and off.cron == "30 2 * * 0"
    again = start(ATS_BACKUP__BACKUP_FREQUENCY="weekly", ATS_JOBS__TIMEZONE="Europe/London")
    assert not again.paused and again.timezone == "Europe/London"


def test_bad_inputs_say_what_is_wrong_and_change_nothing(project, capsys, monkeypatch):
    s, st = _project(project)
    a = create_backup(s, progress=False, components=["logs"])
    loc = a.parent
    (loc / "notes.tar").write_text("not a tar at all\n")
    stray = loc / "stray.tar"
    with tarfile.open(stray, "w") as t: t.add(project / "strategies" / "mine.py", arcname="mine.py")
    trunc = loc / "ats-backup-20200101T000000Z.tar.gz"; trunc.write_bytes(a.read_bytes()[: a.stat().st_size // 2])
    (project / "full").mkdir(); (project / "full" / "x").write_text("x")
    before = _snapshot(project)
    cases = [
        (["restore", str(loc / "nope.tar.gz"), "--yes"], 2, "no archive at"),
        (["backup", "verify", str(loc / "nope.tar.gz")], 2, "no archive at"),
        (["backup", "verify"], 2, "name the archive: ats backup verify ARCHIVE"),
        (["backup", "verify", str(loc / "notes.tar")], 1, "not a tar archive"),
        (["backup", "verify", str(stray)], 1, "not an ats backup: stray.tar has no manifest.json"),
        (["backup", "verify", str(trunc)], 1, "archive truncated or damaged"),
        (["restore", str(trunc), "--yes"], 2, "failed verification, nothing was restored: archive truncated or damaged"),
        (["backup", "--components", "database,logz"], 2, "unknown backup component(s) 'logz'; components: database, configurations, logs, strategies"),
        (["restore", str(a), "--components", "logz", "--yes"], 2, "unknown backup component(s) 'logz'"),
        (["restore", str(a), "--components", "database", "--yes"], 2, "holds no database; it holds: logs"),
        (["restore", str(a), "--to", str(project / "full")], 2, "the folder is not empty"),
        (["backup", "list-all"], 2, "invalid choice"),
    ]
    for argv, code, msg in cases:
        try: got = main(argv)
        except SystemExit as e: got = e.code            # argparse's own refusals
        err = capsys.readouterr().err
        assert got == code and msg in err, (argv, got, err)
    monkeypatch.setenv("ATS_ARCTIC__URI", "s3://bucket:ats?region=us-east-1")
    assert main(["backup", "--components", "database"]) == 2
    err = capsys.readouterr().err
    assert "is not LMDB" in err and "versioning / replication" in err and "no archive was written" in err
    monkeypatch.delenv("ATS_ARCTIC__URI")
    r = run_ats("restore", str(a), cwd=project, env={"PYTHONPATH": str(ROOT)})           # no terminal, no --yes
    assert r.returncode == 2 and "no terminal to ask on: run again with --yes" in r.stderr, r.stderr
    assert _snapshot(project) == before and not list(project.glob("restore-aside-*")) and not list(loc.glob(".ats-*"))


def test_an_encrypted_backup_holds_env_never_the_key_and_a_wrong_key_or_tampering_fails_verify(project, capsys):
    from ats.crypto import Keyring
    s, st = _project(project)
    shutil.rmtree(project / "keys")
    ring = Keyring.create(project / "keys" / "encryption.key")
    s = load_settings(project / "settings.ini", env={"ATS_ENCRYPTION__ENCRYPT_BACKUPS": "true"})
    a = create_backup(s, progress=False)
    assert a.name.endswith(".tar.gz.enc") and b"topsecret" not in a.read_bytes()
    key = (project / "keys" / "encryption.key").read_bytes()
    assert key not in a.read_bytes()
    rep = verify_backup(s, a)
    assert rep.ok and rep.manifest["key_id"] == ring.current and rep.manifest["encrypted"], rep.message
    assert "configurations/.env" in {f["name"] for f in rep.manifest["files"]}
    assert not any("encryption.key" in f["name"] for f in rep.manifest["files"])
    [info] = list_backups(s)
    assert info.encrypted and info.components is None
    restore_backup(s, a, to=project / "copy", out=lambda *x: None)
    assert (project / "copy" / ".env").read_text() == "ALPHA_VANTAGE_API_KEY=topsecret\n" and not (project / "copy" / "keys" / "encryption.key").exists()

    bad = a.with_name("ats-backup-20200101T000000Z.tar.gz.enc"); shutil.copy(a, bad); _flip(bad, bad.stat().st_size // 2)
    rep = verify_backup(s, bad)
    assert not rep.ok and "cannot decrypt" in rep.message, rep.message
    (project / "keys" / "encryption.key").rename(project / "keys" / "kept.key")
    Keyring.create(project / "keys" / "encryption.key")                 # another installation's key
    assert main(["--settings", str(project / "settings.ini"), "backup", "verify", str(a)]) == 1 and "cannot decrypt" in capsys.readouterr().err
    rep = verify_backup(s, a)
    assert not rep.ok and "cannot decrypt" in rep.message and ring.current in rep.message, rep.message
