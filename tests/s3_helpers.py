"""A real S3-compatible server on loopback for the S3 tests: moto's server mode in a child process (its own GIL, so
the ArcticDB traffic of the processes under test does not compete with the test process)."""
import os, subprocess, sys, time, uuid
from dataclasses import dataclass
import boto3
import pytest
from ats.supervisor import free_port, port_open

ACCESS, SECRET = "ats-test-access", "S3cr3t-n3ver-sh0wn-7f3a9"     # moto (without auth) accepts any keys


@dataclass
class S3Server:
    port: int
    proc: subprocess.Popen

    @property
    def endpoint_url(self) -> str: return f"http://127.0.0.1:{self.port}"

    def client(self, access=ACCESS, secret=SECRET):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=access, aws_secret_access_key=secret)

    def bucket(self, name: str | None = None) -> str:
        "A new, empty bucket."
        name = name or f"ats-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def uri(self, bucket: str, prefix: str = "ats", scheme: str = "s3") -> str:
        return f"{scheme}://127.0.0.1:{bucket}?port={self.port}&path_prefix={prefix}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out, kw = [], dict(Bucket=bucket, Prefix=prefix)
        while True:
            r = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"): return out
            kw["ContinuationToken"] = r["NextContinuationToken"]


def start_moto(auth: bool = False) -> S3Server:
    "Start `python -m moto.server` on a free loopback port; with `auth`, it checks access keys (none is valid)."
    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0") if auth else None
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill(); raise RuntimeError(f"moto server did not start on port {port}")
        time.sleep(0.05)
    return S3Server(port, proc)


def stop(server: S3Server) -> None:
    server.proc.terminate()
    try: server.proc.wait(10)
    except subprocess.TimeoutExpired: server.proc.kill()


@pytest.fixture(scope="module")
def s3():
    "One moto S3 server for the module."
    srv = start_moto()
    yield srv
    stop(srv)


def s3_project(project, s3: S3Server, prefix: str = "ats") -> tuple[str, dict]:
    """Point a project at a new bucket: the URI in settings.ini (no keys there), the keys in .env; returns the bucket and
    the environment for `run_ats` (nothing: the project's files say it all)."""
    bucket = s3.bucket()
    (project / "settings.ini").write_text(f"[arctic]\nuri = {s3.uri(bucket, prefix)}\n")
    (project / ".env").write_text(f"ATS_ARCTIC__S3_ACCESS_KEY={ACCESS}\nATS_ARCTIC__S3_SECRET_KEY={SECRET}\n")
    return bucket, {}
