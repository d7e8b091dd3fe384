"""The Grafana dashboard (deploy/grafana/dfget.json) against a real Prometheus (Debian's) scraping
a daemon that served pulls: every panel's every PromQL expression returns a non-empty result."""
import json, os, shutil, textwrap, urllib.parse
import pytest
from lib import procs
from lib.client import curl, sha
from test_operations import ops_daemon, small_blobs

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def query(prom, expr):
    r = curl("-s", f"http://127.0.0.1:{prom}/api/v1/query?query={urllib.parse.quote(expr)}", check=False)
    return json.loads(r.stdout) if r.stdout.startswith(b"{") else {"status": "no answer", "body": r.stdout[:200]}


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (scripts/install-deps.sh)")
def test_every_dashboard_panel_has_data_in_a_real_prometheus(daemon_factory, registry, images, tmp_path):
    d = ops_daemon(daemon_factory, registry)
    blob, _ = small_blobs(images)[0]
    for _ in range(3):  # a miss, then hits
        assert sha(curl("-o", "-", f"{d.url}/v2/test/img/blobs/{blob}").stdout) == blob
    target = d.ops.split("//")[1]
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(textwrap.dedent(f"""\
        global: {{scrape_interval: 1s}}
        scrape_configs:
          - job_name: dfget
            static_configs: [{{targets: ["{target}"]}}]
        """))
    port = procs.free_port()
    p = procs.Proc("prometheus", ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                  f"--web.listen-address=127.0.0.1:{port}"], str(tmp_path))
    try:
        # Three scrapes at least, so that every rate() has two points.
        procs.wait_until(lambda: float((query(port, "count_over_time(dfget_cache_hits_total[5m])").get("data", {}).get("result")
                                        or [{"value": [0, "0"]}])[0]["value"][1]) >= 3, timeout=60, what="three scrapes")
        # Traffic between scrapes too: every rate over the window has something to see.
        for _ in range(3):
            assert sha(curl("-o", "-", f"{d.url}/v2/test/img/blobs/{blob}").stdout) == blob
        procs.wait_until(lambda: float((query(port, "sum(increase(dfget_cache_hits_total[5m]))").get("data", {}).get("result")
                                        or [{"value": [0, "0"]}])[0]["value"][1]) > 0, timeout=30, what="hits seen by prometheus")
        dash = json.load(open(os.path.join(ROOT, "deploy", "grafana", "dfget.json")))
        empty = []
        for panel in dash["panels"]:
            for t in panel["targets"]:
                r = query(port, t["expr"])
                if r.get("status") != "success" or not r["data"]["result"]:
                    empty.append((panel["title"], t["expr"], r.get("status"), r.get("error")))
        assert not empty, empty
        assert len(dash["panels"]) >= 10
    finally:
        p.stop()
