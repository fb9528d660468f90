"Encryption (ats.crypto): the key ring, the encrypted file format, encrypted rotated logs, `ats keys`, `ats logs`, `ats check`."
import logging, os, stat, struct
from pathlib import Path
import pytest
from ats.cli import main
from ats.config import load_settings
from ats.crypto import (CryptoError, MAGIC, Keyring, key_ring, encryption_needed, encrypt_file, decrypt_file,
                        iter_decrypted, is_encrypted, database_protection)
from ats.logs import setup_logging, get_logger

TAG = 16


def _mode(p): return stat.S_IMODE(Path(p).stat().st_mode)

def _header_len(ring): return len(MAGIC) + 1 + len(ring.current) + 8 + 4

@pytest.fixture
def ring(tmp_path):
    return Keyring.create(tmp_path / "keys" / "encryption.key")

def _settings(project, text=""):
    (project / "settings.ini").write_text(text)
    return project / "settings.ini"

def _run(capsys, project, *args):
    code = main(["--settings", str(project / "settings.ini"), *args])
    out = capsys.readouterr()
    return code, out.out, out.err

def _tree(root):
    "Every file under root with its bytes and mode: 'nothing changed on disk' is this before == after."
    return {str(p.relative_to(root)): (p.read_bytes(), _mode(p)) for p in sorted(Path(root).rglob("*")) if p.is_file()}


# ---- the file format ----

@pytest.mark.parametrize("size,chunk", [(0, 1 << 20), (1000, 1 << 20), (3_500_000, 64 << 10), (4 * 4096, 4096)])
def test_round_trip(tmp_path, ring, size, chunk):
    data = os.urandom(size)
    (tmp_path / "a").write_bytes(data)
    encrypt_file(tmp_path / "a", tmp_path / "a.enc", ring, chunk=chunk)
    enc = (tmp_path / "a.enc").read_bytes()
    assert enc.startswith(MAGIC) and is_encrypted(tmp_path / "a.enc") and not is_encrypted(tmp_path / "a")
    assert ring.current.encode() in enc[:100] and (size < 32 or data[:32] not in enc)
    decrypt_file(tmp_path / "a.enc", tmp_path / "b", ring)
    assert (tmp_path / "b").read_bytes() == data
    assert b"".join(iter_decrypted(tmp_path / "a.enc", ring)) == data


def _encrypted(tmp_path, ring, size=100_000, chunk=4096):
    (tmp_path / "a").write_bytes(os.urandom(size))
    encrypt_file(tmp_path / "a", tmp_path / "a.enc", ring, chunk=chunk)
    return bytearray((tmp_path / "a.enc").read_bytes())

def _refused(tmp_path, ring, enc: bytes, *texts):
    (tmp_path / "bad.enc").write_bytes(enc)
    with pytest.raises(CryptoError) as e: decrypt_file(tmp_path / "bad.enc", tmp_path / "out", ring)
    for t in texts: assert t in str(e.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))     # nothing written, no temp left
    return str(e.value)

def test_a_changed_byte_names_its_chunks_offset_and_writes_nothing(tmp_path, ring):
    enc, h = _encrypted(tmp_path, ring), _header_len(ring)
    start = h + 3 * (4096 + TAG)                     # the 4th chunk
    enc[start + 100] ^= 0x01
    msg = _refused(tmp_path, ring, enc, f"failed authentication at byte {start}", "it was changed or is incomplete; nothing was written")
    assert str(tmp_path / "bad.enc") in msg

def test_truncated_appended_and_reordered_files_fail(tmp_path, ring):
    enc, h, n = _encrypted(tmp_path, ring), _header_len(ring), 4096 + TAG
    _refused(tmp_path, ring, enc[:-10], "failed authentication")                 # cut inside the last chunk
    _refused(tmp_path, ring, enc[:h + 5 * n], "failed authentication")           # cut exactly at a chunk boundary
    _refused(tmp_path, ring, enc + b"more", "failed authentication")
    _refused(tmp_path, ring, enc + enc[h:h + n], "failed authentication")       # a whole valid chunk appended
    swapped = enc[:h + n] + enc[h + 2 * n:h + 3 * n] + enc[h + n:h + 2 * n] + enc[h + 3 * n:]
    _refused(tmp_path, ring, swapped, f"failed authentication at byte {h + n}")
    _refused(tmp_path, ring, enc[:h - 2], "incomplete or damaged header")
    _refused(tmp_path, ring, b"hello, plain text\n", "is not an ats encrypted file")

def test_a_wrong_key_ring_names_the_key_id(tmp_path, ring):
    enc = _encrypted(tmp_path, ring)
    other = Keyring.create(tmp_path / "other" / "k.key")
    msg = _refused(tmp_path, other, enc, f"was encrypted with key {ring.current}, which is not in {other.path}",
                   "`ats keys rotate` keeps old keys")
    for k in (*ring.keys.values(), *other.keys.values()): assert k.hex() not in msg and repr(k) not in msg
    assert "keys=" not in repr(ring) and repr(ring.keys[ring.current]) not in repr(ring)


# ---- the key ring ----

def test_key_file_is_0600_in_a_0700_folder_and_refused_when_open(tmp_path, ring):
    assert _mode(ring.path) == 0o600 and _mode(ring.path.parent) == 0o700
    assert len(ring.keys[ring.current]) == 32 and ring.current.startswith("k") and "-" in ring.current
    assert Keyring.load(ring.path).keys == ring.keys
    os.chmod(ring.path, 0o644)
    with pytest.raises(CryptoError, match=r"readable by group/others \(mode 0644\): run `chmod 600 .*encryption.key`"):
        Keyring.load(ring.path)
    with pytest.raises(CryptoError, match="exists and is kept"): Keyring.create(ring.path)

def test_rotation_keeps_old_files_readable_and_new_ones_use_the_new_key(tmp_path, ring):
    old_id = ring.current
    (tmp_path / "a").write_bytes(b"before rotation")
    encrypt_file(tmp_path / "a", tmp_path / "old.enc", ring)
    new_id = ring.rotate()
    assert new_id != old_id and _mode(ring.path) == 0o600
    again = Keyring.load(ring.path)
    assert again.current == new_id and set(again.keys) == {old_id, new_id}
    assert b"".join(iter_decrypted(tmp_path / "old.enc", again)) == b"before rotation"
    encrypt_file(tmp_path / "a", tmp_path / "new.enc", again)
    assert new_id.encode() in (tmp_path / "new.enc").read_bytes()[:60] and old_id.encode() not in (tmp_path / "new.enc").read_bytes()[:60]


# ---- logs ----

LOGGING = "[logging]\nmax_file_size = 0.01\nbackup_count = 2\nconsole_logging = false\n"

def test_rotated_logs_are_encrypted_and_readable_with_ats_logs_show(project, capsys):
    ini = _settings(project, LOGGING + "[encryption]\nencrypt_logs = true\n")
    assert _run(capsys, project, "keys", "create")[0] == 0
    s = load_settings(ini)
    assert encryption_needed(s)
    try:
        setup_logging(s)
        log = get_logger("test")
        log.warning("order 42 filled for account DU999999")
        for i in range(130): log.info("filler line %03d %s", i, "x" * 60)          # ~11 KB: one rotation
        logs = project / "logs"
        assert (logs / "ats_system.log.1.enc").is_file() and not (logs / "ats_system.log.1").exists()
        assert b"DU999999" not in (logs / "ats_system.log.1.enc").read_bytes()
        assert b"filler" in (logs / "ats_system.log").read_bytes()                   # the live file stays plain
        code, out, _ = _run(capsys, project, "logs", "show", "ats_system.log.1.enc")
        assert code == 0 and "order 42 filled for account DU999999" in out
        code, out, _ = _run(capsys, project, "logs", "show", "ats_system.log.1.enc", "--tail", "2")
        assert code == 0 and len(out.splitlines()) == 2 and "DU999999" not in out
        code, out, _ = _run(capsys, project, "logs", "list")
        assert code == 0 and "ats_system.log.1.enc" in out and "encrypted" in out and "plain" in out
        for i in range(600): log.info("more %03d %s", i, "y" * 60)                  # several rotations: backup_count bounds them
        assert sorted(p.name for p in logs.iterdir()) == ["ats_system.log", "ats_system.log.1.enc", "ats_system.log.2.enc"]
    finally:
        for h in list(logging.getLogger("ats").handlers): logging.getLogger("ats").removeHandler(h); h.close()

def test_encrypt_logs_without_a_key_ring_fails_at_start_with_what_to_do(project):
    s = load_settings(_settings(project, LOGGING + "[encryption]\nencrypt_logs = true\n"))
    with pytest.raises(CryptoError, match=r"no key file at .*encryption.key: run `ats init` or `ats keys create`"):
        setup_logging(s)
    for h in list(logging.getLogger("ats").handlers): logging.getLogger("ats").removeHandler(h); h.close()


# ---- ats keys, ats init, ats check ----

def test_keys_create_rotate_list_never_print_a_key(project, capsys):
    _settings(project)
    code, out, _ = _run(capsys, project, "keys", "create")
    assert code == 0 and "mode 0600" in out
    r1 = key_ring(load_settings(project / "settings.ini"))
    code, out, _ = _run(capsys, project, "keys", "rotate")
    r2 = key_ring(load_settings(project / "settings.ini"))
    assert code == 0 and r2.current in out and r2.current != r1.current and set(r2.keys) == {r1.current, r2.current}
    code, out, _ = _run(capsys, project, "keys", "list")
    assert code == 0 and f"{r2.current}  (current)" in out and r1.current in out and "mode 0600" in out and str(r2.path) in out
    import base64
    for k in r2.keys.values():
        assert base64.b64encode(k).decode() not in out and k.hex() not in out

def test_init_creates_the_key_ring_when_encryption_is_needed(project, capsys):
    _settings(project, "[encryption]\nencrypt_backups = true\n")
    code, out, _ = _run(capsys, project, "init")
    p = project / "keys" / "encryption.key"
    assert code == 0 and p.is_file() and _mode(p) == 0o600 and f"keys: created {p}" in out
    before = p.read_bytes()
    assert _run(capsys, project, "init")[0] == 0 and p.read_bytes() == before         # never replaced

def test_check_says_what_protects_the_database_and_flags_the_key_file(project, capsys):
    _settings(project, "[encryption]\nencrypt_database = true\nencrypt_backups = true\n")
    code, out, _ = _run(capsys, project, "check")
    assert code == 1
    assert "encrypt_database is on but ArcticDB cannot encrypt and" in out and "not an encrypted volume: put it on a LUKS/dm-crypt volume" in out
    assert "encrypt_backups is on but there is no key file" in out and "run `ats init`" in out
    _run(capsys, project, "keys", "create")
    os.chmod(project / "keys" / "encryption.key", 0o640)
    code, out, _ = _run(capsys, project, "check")
    assert code == 1 and "chmod 600" in out
    os.chmod(project / "keys" / "encryption.key", 0o600)
    code, out, _ = _run(capsys, project, "check")
    assert code == 0 and "encryption  ok" in out and "WARN    encrypt_database is on" in out

def test_database_protection_recognises_a_dm_crypt_volume_and_s3(project, tmp_path):
    s = load_settings(_settings(project, "[encryption]\nencrypt_database = true\n"))
    db = project / "data_and_research" / "db"; db.mkdir(parents=True)
    st = db.stat()
    fake = tmp_path / "sys"
    dm = fake / "devices" / "dm-3"; (dm / "dm").mkdir(parents=True)
    (dm / "dm" / "uuid").write_text("CRYPT-LUKS2-0123abcd-luks\n")
    (fake / "dev" / "block").mkdir(parents=True)
    (fake / "dev" / "block" / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}").symlink_to(dm)
    [(level, msg)] = database_protection(s, sys_root=str(fake))
    assert level == "info" and f"the database folder {db} is on an encrypted volume" in msg
    [(level, msg)] = database_protection(s)
    assert level == "warning" and "not an encrypted volume" in msg
    s3 = load_settings(_settings(project, "[encryption]\nencrypt_database = true\n[arctic]\nuri = s3://s3.example.com:bucket?path_prefix=p\n"),
                       env={"ATS_ARCTIC__S3_ACCESS_KEY": "a-key", "ATS_ARCTIC__S3_SECRET_KEY": "b-secret"})
    [(level, msg)] = database_protection(s3)
    assert level == "warning" and "server-side encryption" in msg and "ats cannot verify" in msg and "b-secret" not in msg
    assert database_protection(load_settings(_settings(project, ""))) == []


# ---- bad inputs: a clear message, exit 2, nothing changed on disk ----

def _key(project): return project / "keys" / "encryption.key"

def _with_ring(project):
    Keyring.create(_key(project))

def _write_key(text, mode=0o600):
    def make(project):
        _key(project).parent.mkdir(mode=0o700); _key(project).write_text(text); os.chmod(_key(project), mode)
    return make

def _log_enc(mutate=None, other_ring=False):
    def make(project):
        r = Keyring.create(_key(project))
        (project / "logs").mkdir()
        (project / "logs" / "ats.log.1").write_text("a line of the log\n" * 500)
        if other_ring: r = Keyring.create(project / "elsewhere" / "k.key")
        encrypt_file(project / "logs" / "ats.log.1", project / "logs" / "ats.log.1.enc", r, chunk=1024)
        (project / "logs" / "ats.log.1").unlink()
        if mutate:
            p = project / "logs" / "ats.log.1.enc"; p.write_bytes(mutate(bytearray(p.read_bytes())))
    return make

def _flip(b): b[-200] ^= 4; return b

BAD = [
    ("keys rotate, no key file", None, ["keys", "rotate"], "no key file at {key}: run `ats init` or `ats keys create`"),
    ("keys list, no key file", None, ["keys", "list"], "no key file at {key}: run `ats init` or `ats keys create`"),
    ("keys create, one exists", _with_ring, ["keys", "create"], "key file {key} exists and is kept"),
    ("key file not JSON", _write_key("not json"), ["keys", "rotate"], "key file {key} is malformed (not JSON"),
    ("key file without keys", _write_key('{"current": "k1", "keys": {}}'), ["keys", "list"], "key file {key} is malformed (expected"),
    ("key of the wrong length", _write_key('{"current": "k1", "keys": {"k1": "c2hvcnQ="}}'), ["keys", "rotate"], "key 'k1' is not a 32-byte base64 key"),
    ("current key missing", _write_key('{"current": "k2", "keys": {"k1": "' + "A" * 43 + '="}}'), ["keys", "rotate"], "its current key 'k2' is not one of its keys (k1)"),
    ("key file 0644", _write_key('{"current": "k1", "keys": {"k1": "' + "A" * 43 + '="}}', 0o644), ["keys", "rotate"], "(mode 0644): run `chmod 600 {key}`"),
    ("logs show, missing file", _with_ring, ["logs", "show", "nope.log"], "no log file nope.log in {logs}: `ats logs list` shows them"),
    ("logs show, no file named", _with_ring, ["logs", "show"], "name the file: ats logs show FILE"),
    ("logs show, tampered", _log_enc(_flip), ["logs", "show", "ats.log.1.enc"], "failed authentication at byte"),
    ("logs show, truncated", _log_enc(lambda b: b[:-700]), ["logs", "show", "ats.log.1.enc"], "it was changed or is incomplete"),
    ("logs show, other key", _log_enc(other_ring=True), ["logs", "show", "ats.log.1.enc"], "which is not in {key}: put back the key file"),
    ("logs show, no key file", _log_enc(), ["logs", "show", "ats.log.1.enc", "--tail", "3"], "no key file at {key}"),
    ("logs show, --tail 0", _log_enc(), ["logs", "show", "ats.log.1.enc", "--tail", "0"], "--tail must be 1 or more lines, not 0"),
]

@pytest.mark.parametrize("name,make,args,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_are_refused_clearly_and_change_nothing(project, capsys, name, make, args, expected):
    _settings(project)
    if make: make(project)
    if name == "logs show, no key file": _key(project).unlink()
    before = _tree(project)
    code, out, err = _run(capsys, project, *args)
    assert code == 2, (out, err)
    assert expected.format(key=_key(project), logs=project / "logs") in err, err
    assert "Traceback" not in err and "a line of the log" not in out + err
    assert _tree(project) == before
