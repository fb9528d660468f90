"""`ats backup` / `ats backup verify` against their baselines, measured in one run on one database.

    .venv/bin/python benchmarks/bench_backup.py [--symbols 300] [--years 10]

Data: daily bars of a seeded random walk (`--symbols` x `--years`) written to ArcticDB on LMDB in a temporary project
(not timed), with a few MB of logs and the shipped strategies.

- ats backup: the database copied by LMDB in a child process (consistent under a live writer), configurations, logs and
  strategies, a manifest with the SHA-256 of every file, gzip; and the same encrypted (AES-256-GCM).
- baseline: `tar -czf` of the same folders, a plain file copy of the database (what an operator would script; unsafe
  while the runner writes).
- ats backup verify: decryption, every checksum, and the database opened and every symbol read in a child process;
  baseline: `tar -xzf` of the same archive.
Ratios above 1 are what the safety costs. Also: one argon2 password check (the login's cost, by design).
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_project(d: Path, symbols: int, years: int) -> "Settings":
    from ats.config import load_settings
    from ats.store import Store
    (d / "strategies").mkdir(parents=True)
    for f in (ROOT / "strategies").glob("*.py"): shutil.copy(f, d / "strategies")
    (d / "logs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3): (d / "logs" / f"ats_system.log{'.' + str(i) if i else ''}").write_text("".join(f"2026-12-01 INFO line {k} {rng.random()}\n" for k in range(40000)))
    (d / "settings.ini").write_text("[backup]\nbackup_location = backups\nverify_backups = false\n[encryption]\nencrypt_backups = false\n")
    s = load_settings(d / "settings.ini", env={})
    st = Store.from_settings(s, create=True)
    idx = pd.bdate_range("2015-01-01", periods=252 * years, tz="UTC")
    lib = st.library("market_data")
    for k in range(symbols):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(idx))))
        lib.write(f"S{k:04d}.1d", pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                                               "volume": rng.integers(1e5, 1e6, len(idx)).astype(float)}, index=idx))
    return s


def timed(f):
    t = time.perf_counter(); out = f(); return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=10)
    a = ap.parse_args()
    from ats.backup import create_backup, verify_backup
    from ats.config import load_settings
    from ats.crypto import key_ring
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "proj"
        s = make_project(d, a.symbols, a.years)
        db = s.path(s.arctic.path)
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
        t_ats, arch = timed(lambda: create_backup(s, progress=False))
        t_tar, _ = timed(lambda: subprocess.run(["tar", "-czf", str(Path(tmp) / "plain.tar.gz"), "-C", str(d), "data_and_research", "logs",
                                                 "strategies", "settings.ini"], check=True))
        t_cp, _ = timed(lambda: shutil.copytree(db, Path(tmp) / "dbcopy"))
        (d / "settings.ini").write_text((d / "settings.ini").read_text().replace("encrypt_backups = false", "encrypt_backups = true"))
        s2 = load_settings(d / "settings.ini", env={}); key_ring(s2, create=True)
        t_enc, arch2 = timed(lambda: create_backup(s2, progress=False))
        t_ver, rep = timed(lambda: verify_backup(s2, arch2))
        out = Path(tmp) / "x"; out.mkdir()
        t_untar, _ = timed(lambda: subprocess.run(["tar", "-xzf", str(Path(tmp) / "plain.tar.gz"), "-C", str(out)], check=True))
        from argon2 import PasswordHasher
        ph = PasswordHasher(); h = ph.hash("Trader-pass-2026!")
        t_argon, _ = timed(lambda: ph.verify(h, "Trader-pass-2026!"))
        rows = [("project size", f"{size / 2**20:.1f} MB ({a.symbols} symbols x {a.years} years of daily bars, 3 log files)"),
                ("ats backup (gzip)", f"{t_ats:.2f} s  archive {arch.stat().st_size / 2**20:.1f} MB"),
                ("  baseline tar -czf (unsafe under a writer)", f"{t_tar:.2f} s  ratio {t_ats / t_tar:.2f}x"),
                ("  baseline plain copy of the database alone", f"{t_cp:.2f} s"),
                ("ats backup (gzip + AES-256-GCM)", f"{t_enc:.2f} s  ratio to tar {t_enc / t_tar:.2f}x, to ats unencrypted {t_enc / t_ats:.2f}x"),
                ("ats backup verify (decrypt, checksums, read every symbol)", f"{t_ver:.2f} s  ok={rep.ok}  ratio to tar -xzf {t_ver / t_untar:.2f}x"),
                ("  baseline tar -xzf", f"{t_untar:.2f} s"),
                ("argon2 check of one password (login)", f"{t_argon * 1000:.0f} ms")]
        w = max(len(k) for k, _ in rows)
        for k, v in rows: print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    main()
