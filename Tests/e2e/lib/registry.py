"""Debian's docker-registry on 127.0.0.1 with images built offline (OCI layouts) and pushed by skopeo."""
import hashlib, json, os, subprocess, sys
from . import procs

HERE = os.path.dirname(os.path.abspath(__file__))


def build_image(out, *args):
    """An OCI layout from make_oci.py (deterministic digests); returns (manifest digest, [layer digests])."""
    if not os.path.exists(os.path.join(out, "index.json")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_oci.py"), "--out", out, "--tag", "1", *args],
                       check=True, stdout=subprocess.DEVNULL)
    idx = json.load(open(os.path.join(out, "index.json")))
    mdig = idx["manifests"][0]["digest"]
    manifest = json.load(open(os.path.join(out, "blobs", "sha256", mdig.split(":")[1])))
    return mdig, [l["digest"] for l in manifest["layers"]] + [manifest["config"]["digest"]]


def blob_path(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":")[1])


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def write_config(path, rootdir, addr, extra_config=""):
    """A docker-registry config: filesystem storage under `rootdir`, listening on `addr`."""
    with open(path, "w") as f:
        f.write(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {rootdir}
  delete:
    enabled: true
http:
  addr: {addr}
{extra_config}""")


class Registry:
    def __init__(self, workdir, extra_config="", scheme="http"):
        self.scheme = scheme
        self.port = procs.free_port()
        self.dir = os.path.join(workdir, f"registry-{self.port}")
        os.makedirs(self.dir, exist_ok=True)
        cfg = os.path.join(self.dir, "config.yml")
        write_config(cfg, f"{self.dir}/data", f"127.0.0.1:{self.port}", extra_config)
        self.proc = procs.Proc(f"registry-{self.port}", ["docker-registry", "serve", cfg], self.dir)
        procs.wait_until(lambda: procs.port_open(self.port), what=f"docker-registry on {self.port}")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def push(self, layout, repo, host=None, tls_certdir=None, creds=None):
        tls = ["--dest-cert-dir", tls_certdir] if tls_certdir else ["--dest-tls-verify=false"]
        auth = ["--dest-creds", creds] if creds else []
        subprocess.run(["skopeo", "copy", "-q", *tls, *auth, f"oci:{layout}:1", f"docker://{host or self.addr}/{repo}:1"],
                       check=True)

    def log(self):
        return self.proc.output()

    def stop(self):
        self.proc.stop()


def origin_bytes(log_text, blob, method="GET"):
    """Body bytes docker-registry wrote for `method` requests of a blob, from its 'response completed' lines."""
    total = 0
    for line in log_text.splitlines():
        if "response completed" not in line or f"/blobs/{blob}" not in line or f"http.request.method={method}" not in line:
            continue
        for field in line.split():
            if field.startswith("http.response.written="):
                total += int(field.split("=", 1)[1])
    return total
