"""`vae serve`: the live page's server, over a small real run, without a browser (tests/test_serve_browser.py has one).

Requests go through http.client with raw paths, so traversal attempts reach the
server exactly as written (a browser would normalize them first).  The run
folders are trained once per module: 500 MNIST images, 2 epochs, 784-32-2.
"""
import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import run_main
from numpy_vae.config import TrainConfig
from numpy_vae.serve import LiveServer, RunView
from numpy_vae.serve.images import png_size
from numpy_vae.serve.run_view import MAX_COUNT, MAX_PENDING, SAMPLES_PER_DIGIT, generate_digit, map_extent, parse_metrics
from numpy_vae.streams import draw_eps, live_stream
from numpy_vae.training import train
from numpy_vae.training.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(root: Path, data_dir: Path, name: str, latent: int = 2, **kw) -> TrainConfig:
    return TrainConfig(epochs=2, train_limit=500, hidden=(32,), latent=latent, data_dir=str(data_dir),
                       runs_dir=str(root), name=name, **kw)


@pytest.fixture(scope="module")
def run_2d(real_mnist_dir, tmp_path_factory) -> Path:
    """A trained 2-D run, plus a figure and two links the server must refuse (one to a file outside)."""
    root = tmp_path_factory.mktemp("serve_runs")
    run = train(tiny_config(root, real_mnist_dir, "r2"), progress=False, log=lambda *a: None)
    from numpy_vae.serve.images import grid_png
    (run / "curves.png").write_bytes(grid_png(np.zeros((4, 784)), 2))
    secret = root / "secret.txt"
    secret.write_text("outside the run folder")
    (run / "evil.png").symlink_to(secret)
    (run / "evaluation.json").symlink_to(secret)
    return run


def untrained_run(root: Path, name: str, latent: int, epoch: int = 1, seed: int = 0) -> Path:
    """A run folder holding config.json and a last.npz of an untrained model (no MNIST needed to make it)."""
    from numpy_vae.backends import make_backend
    config = TrainConfig(latent=latent, hidden=(16,), seed=seed, name=name, runs_dir=str(root))
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config.to_json()))
    save_checkpoint(run / "last.npz", make_backend(config).get_params(), None,
                    {"config": config.to_json(), "epoch": epoch, "metrics": [], "backend": "numpy"})
    return run


class Server:
    """A LiveServer in a thread, and raw HTTP requests to it."""

    def __init__(self, view: RunView, host: str = "127.0.0.1"):
        self.live = LiveServer(view, host=host, port=0)
        self.live.start_in_thread()

    def request(self, path: str, method: str = "GET", headers: dict | None = None):
        """(status, headers, body bytes) of ``method path`` sent as written."""
        conn = http.client.HTTPConnection("127.0.0.1", self.live.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=headers is not None and "Host" in headers,
                            skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def json(self, path: str, status: int = 200, **kw):
        code, headers, body = self.request(path, **kw)
        assert code == status, (path, code, body[:300])
        assert headers["Content-Type"] == "application/json", (path, headers)
        return json.loads(body)

    def png(self, path: str) -> bytes:
        code, headers, body = self.request(path)
        assert code == 200, (path, code, body[:300])
        assert headers["Content-Type"] == "image/png"
        return body

    def close(self):
        self.live.stop()


@pytest.fixture(scope="module")
def server(run_2d, real_mnist_dir):
    s = Server(RunView(run_2d, data_dir=real_mnist_dir))
    yield s
    s.close()


def snapshot(folder: Path) -> dict:
    """Every entry below ``folder`` (and the folder itself) with its lstat mtime, size and mode."""
    out = {".": os.lstat(folder)[7:]}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            out[str(p.relative_to(folder))] = (st.st_mtime_ns, st.st_size, st.st_mode)
    return out


# --------------------------------------------------------------------------- the page and its data
def test_the_page_and_its_script_are_served_with_a_strict_policy(server):
    code, headers, body = server.request("/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert b'src="/static/page.js"' in body and b"http" not in body.replace(b"http-equiv", b"")   # nothing from elsewhere
    for path in ("/static/page.js", "/static/page.css"):
        code, _, body = server.request(path)
        assert code == 200 and b"https://" not in body and b"http://" not in body


def test_run_summary_has_config_status_checkpoint_and_figures(server, run_2d):
    run = server.json("/api/run")
    assert run["pending"] is False and run["run"] == run_2d.name
    assert run["config"]["latent"] == 2 and run["latent"] == 2
    assert run["status"]["state"] == "finished" and run["status"]["epochs_done"] == 2
    assert run["checkpoint"]["epoch"] == 2 and "error" not in run["checkpoint"]
    assert [f["name"] for f in run["figures"]] == ["curves.png"]          # evil.png, a link, is not listed
    assert run["limits"]["count"] == [1, MAX_COUNT]


def test_metrics_are_metrics_csv(server, run_2d):
    metrics = server.json("/api/metrics")
    with open(run_2d / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert metrics["columns"] == list(rows[0])
    assert len(metrics["rows"]) == 2
    for got, want in zip(metrics["rows"], rows):
        assert got["epoch"] == int(want["epoch"])
        assert got["backend"] == want["backend"] == "numpy"                # which backend ran the epoch
        assert all(got[k] == pytest.approx(float(want[k]), rel=1e-12) for k in want if k not in ("epoch", "backend"))


def test_metrics_parsing_keeps_bad_cells_as_null():
    columns, rows = parse_metrics("epoch,test_loss,lr\n1,100.5,nan\n2,oops,0.001\n")
    assert columns == ["epoch", "test_loss", "lr"]
    assert rows == [{"epoch": 1, "test_loss": 100.5, "lr": None}, {"epoch": 2, "test_loss": None, "lr": 0.001}]


@pytest.mark.parametrize("path, size", [
    ("/api/reconstructions", (289, 115)),                     # 10 columns, 4 rows of 29 pixels
    ("/api/samples", (289, 115)),
    ("/api/generate?digit=3&count=5", (28 + 3 + 29 * SAMPLES_PER_DIGIT - 1, 5 * 29 - 1)),
    ("/api/generate?digit=0&count=12&seed=7", (2 * 204 + 8, 6 * 29 - 1)),     # two strips a row
    ("/api/decode?x=0.5&y=-1.25", (28, 28)),
])
def test_pictures_are_pngs_of_the_expected_size(server, path, size):
    assert png_size(server.png(path)) == size


def test_generate_decodes_around_the_posteriors_of_test_digits_of_that_class(run_2d, mnist_test):
    from numpy_vae.training.restore import load_backend
    backend, config, _ = load_backend(run_2d / "last.npz")
    test_x, test_y = mnist_test
    out = generate_digit(backend, test_x, test_y, digit=3, count=4, run_seed=config.seed, request_seed=9)
    assert (test_y[out.indices] == 3).all() and len(set(out.indices.tolist())) == 4
    assert out.originals.shape == (4, 784) and out.samples.shape == (4, SAMPLES_PER_DIGIT, 784)
    rng = live_stream(config.seed, "generate", 9)                      # the same draws, redone by hand
    idx = rng.choice(np.flatnonzero(test_y == 3), size=4, replace=False)
    mu, logvar = backend.encode(test_x[idx])
    eps = draw_eps(rng, 4 * SAMPLES_PER_DIGIT, 2).reshape(4, SAMPLES_PER_DIGIT, 2)
    z = (mu[:, None] + np.exp(0.5 * logvar)[:, None] * eps).reshape(-1, 2)
    np.testing.assert_array_equal(out.indices, idx)
    np.testing.assert_allclose(out.samples.reshape(-1, 784), backend.decode(z.astype(np.float32)), atol=1e-6)
    again = generate_digit(backend, test_x, test_y, 3, 4, config.seed, 9)
    other = generate_digit(backend, test_x, test_y, 3, 4, config.seed, 10)
    np.testing.assert_array_equal(again.samples, out.samples)
    assert not np.array_equal(other.indices, out.indices)


def test_generate_over_http_is_seeded(server):
    a = server.png("/api/generate?digit=7&count=3&seed=1")
    assert server.png("/api/generate?digit=7&count=3&seed=1") == a
    assert server.png("/api/generate?digit=7&count=3&seed=2") != a


def test_latent_map_has_points_labels_and_axes(server):
    m = server.json("/api/latent")
    points = np.array(m["points"])
    assert points.shape == (2000, 2) and len(m["labels"]) == 2000 and set(m["labels"]) == set(range(10))
    for axis, (lo, hi) in enumerate((m["extent"]["x"], m["extent"]["y"])):
        assert -10 <= lo <= min(-3, points[:, axis].min()) and max(3, points[:, axis].max()) <= hi <= 10


def test_map_extent_is_clipped_to_the_accepted_coordinates():
    ext = map_extent(np.array([[-50.0, 0.0], [0.5, 40.0]]))
    assert ext["x"] == [-10.0, pytest.approx(0.5 + 0.05 * 50.5)]         # padded by 5% of the range
    assert ext["y"] == [-3.0, 10.0]                                     # at least [-3, 3], at most [-10, 10]


# --------------------------------------------------------------------------- every request checked
@pytest.mark.parametrize("query, parameter, words", [
    ("", "digit", "missing parameter 'digit': an integer from 0 to 9"),
    ("digit=12", "digit", "digit must be an integer from 0 to 9, got '12'"),
    ("digit=-1", "digit", "from 0 to 9"),
    ("digit=3.5", "digit", "from 0 to 9"),
    ("digit=three", "digit", "from 0 to 9"),
    ("digit=99999999999999999999", "digit", "from 0 to 9"),
    ("digit=3&count=0", "count", "count must be an integer from 1 to 64"),
    ("digit=3&count=65", "count", "would take too long"),
    ("digit=3&count=100000", "count", "would take too long"),
    ("digit=3&seed=-4", "seed", "seed must be an integer from 0 to 4294967295"),
    ("digit=3&digit=4", "digit", "given more than once"),
    ("digit=3&size=9", "size", "unknown parameter 'size' for /api/generate (allowed: digit, count, seed, v)"),
])
def test_bad_generate_parameters_are_a_400_naming_the_parameter_and_its_range(server, query, parameter, words):
    err = server.json(f"/api/generate?{query}", status=400)
    assert err["parameter"] == parameter and words in err["error"]


@pytest.mark.parametrize("query, parameter", [
    ("x=0", "y"), ("x=nan&y=0", "x"), ("x=0&y=inf", "y"), ("x=10.5&y=0", "x"), ("x=0&y=-1e9", "y"),
    ("x=0x10&y=0", "x"), ("x=&y=0", "x"), ("x=1_0&y=0", "x"),
])
def test_bad_latent_coordinates_are_a_400_naming_the_coordinate_and_its_range(server, query, parameter):
    err = server.json(f"/api/decode?{query}", status=400)
    assert err["parameter"] == parameter and "a number from -10 to 10" in err["error"]


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/", "/api/run/", "/index.html", "/static/../api/run",
                                  "/API/RUN", "/files", "/favicon.ico"])
def test_unknown_paths_are_a_404_in_json(server, path):
    assert "no such page" in server.json(path, status=404)["error"]


def test_queries_on_data_routes_are_checked_too(server):
    assert server.json("/api/run?x=1", status=400)["parameter"] == "x"
    assert server.json("/api/samples?v=<script>", status=400)["parameter"] == "v"
    assert server.json("/?debug=1", status=400)["parameter"] == "debug"
    assert server.json("/api/run?a=1&" + "&".join(f"b{i}=1" for i in range(40)), status=400)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"])
def test_the_server_only_reads(server, method):
    assert "only reads" in server.json("/api/run", method=method, status=405)["error"]


def test_head_answers_without_a_body(server):
    code, headers, body = server.request("/api/samples", method="HEAD")
    assert code == 200 and body == b"" and int(headers["Content-Length"]) > 0


@pytest.mark.parametrize("line, status", [(b"GET /a b c HTTP/1.1", 400), (b"GET /" + b"a" * 70000 + b" HTTP/1.1", 414)])
def test_a_malformed_request_gets_a_json_error(server, line, status):
    with socket.create_connection(("127.0.0.1", server.live.port), timeout=10) as s:
        s.sendall(line + b"\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == str(status).encode()
    assert b"Content-Type: application/json" in head and json.loads(body)["status"] == status


@pytest.mark.parametrize("path, status", [
    ("/files/../config.json", 403),
    ("/files/../../../../etc/passwd", 403),
    ("/files/%2e%2e/config.json", 403),
    ("/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 403),
    ("/files/..%2fsecret.txt", 403),
    ("/files/%252e%252e%252fsecret.txt", 404),          # decoded once only: a name with '%' is not on the list
    ("/files//etc/passwd", 403),
    ("/files/%2Fetc%2Fpasswd", 403),
    ("/files/..%5csecret.txt", 403),
    ("/files/.hidden.png", 403),
    ("/files/sub/curves.png", 403),
    ("/files/curves.png%00.json", 403),
    ("/files/%ff.png", 404),
    ("/files/last.npz", 404),                            # checkpoints are not served
    ("/files/metrics.csv.bak", 404),
    ("/files/evil.png", 403),                            # a link to a file outside the run folder
    ("/files/evaluation.json", 403),                     # an allowlisted name, but a link
    ("/files/missing.png", 404),
])
def test_only_the_run_folders_own_allowlisted_files_are_served(server, path, status):
    code, headers, body = server.request(path)
    assert code == status, (path, code, body)
    assert headers["Content-Type"] == "application/json" and json.loads(body)["error"]
    assert b"outside the run folder" not in body and b"root:" not in body


def test_the_run_folders_files_are_served(server, run_2d):
    code, headers, body = server.request("/files/config.json")
    assert code == 200 and json.loads(body) == json.loads((run_2d / "config.json").read_text())
    code, headers, body = server.request("/files/metrics.csv?v=123")
    assert code == 200 and body == (run_2d / "metrics.csv").read_bytes() and headers["Content-Type"].startswith("text/csv")
    assert server.png("/files/curves.png") == (run_2d / "curves.png").read_bytes()


def test_a_host_header_naming_another_machine_is_refused_on_loopback(server):
    assert "Host" in server.json("/api/run", headers={"Host": "attacker.example:80"}, status=403)["error"]
    assert server.json("/api/run", headers={"Host": f"localhost:{server.live.port}"})["run"]


def test_the_server_never_writes_into_the_run_folder(run_2d, real_mnist_dir):
    before = snapshot(run_2d)
    s = Server(RunView(run_2d, data_dir=real_mnist_dir))          # a fresh one: its caches start empty
    try:
        for path in ["/", "/static/page.js", "/api/run", "/api/metrics", "/api/reconstructions", "/api/samples",
                     "/api/generate?digit=3&count=64", "/api/generate?digit=3&count=65", "/api/latent",
                     "/api/decode?x=1&y=1", "/api/decode?x=99&y=1", "/files/config.json", "/files/report.html",
                     "/files/../config.json", "/files/evil.png", "/nope"]:
            s.request(path)
        s.request("/api/run", method="POST")
    finally:
        s.close()
    assert snapshot(run_2d) == before


# --------------------------------------------------------------------------- what cannot be answered
def test_a_missing_or_broken_checkpoint_is_a_clear_json_error(run_2d, real_mnist_dir, tmp_path):
    run = tmp_path / "no_ckpt"
    run.mkdir()
    for name in ("config.json", "metrics.csv"):
        shutil.copy(run_2d / name, run / name)
    s = Server(RunView(run, data_dir=real_mnist_dir))
    try:
        summary = s.json("/api/run")
        assert "no checkpoint yet" in summary["checkpoint"]["error"]
        assert summary["status"]["state"] == "finished" and len(s.json("/api/metrics")["rows"]) == 2
        for path in ("/api/reconstructions", "/api/generate?digit=3", "/api/latent", "/api/decode?x=0&y=0"):
            err = s.json(path, status=503)
            assert "no checkpoint yet" in err["error"] and "last.npz" in err["error"]
        (run / "last.npz").write_bytes(b"not a zip file at all")
        err = s.json("/api/samples", status=503)
        assert "cannot be used" in err["error"] and "Traceback" not in err["error"]
        assert "cannot be used" in s.json("/api/run")["checkpoint"]["error"]
    finally:
        s.close()


def test_missing_mnist_is_a_clear_json_error(run_2d, tmp_path):
    s = Server(RunView(run_2d, data_dir=tmp_path / "nowhere"))
    try:
        err = s.json("/api/generate?digit=1", status=503)
        assert "MNIST test set" in err["error"] and "vae data fetch" in err["error"]
        assert png_size(s.png("/api/samples")) == (289, 115)                 # what needs no MNIST still works
    finally:
        s.close()


def test_a_latent_that_is_not_2d_has_no_map_but_generates(tmp_path, real_mnist_dir):
    run = untrained_run(tmp_path, "l3", latent=3)
    s = Server(RunView(run, data_dir=real_mnist_dir))
    try:
        for path in ("/api/latent", "/api/decode?x=0&y=0"):
            assert "needs a 2-D latent; this run's latent has 3" in s.json(path, status=400)["error"]
        assert png_size(s.png("/api/generate?digit=9&count=2")) == (204, 57)
        assert s.json("/api/run")["status"]["state"] == "starting"          # no metrics.csv yet
    finally:
        s.close()


def test_a_new_checkpoint_is_picked_up_by_its_mtime(tmp_path, real_mnist_dir):
    run = untrained_run(tmp_path, "swap", latent=2, epoch=1, seed=0)
    s = Server(RunView(run, data_dir=real_mnist_dir))
    try:
        first = s.png("/api/samples")
        assert s.json("/api/run")["checkpoint"]["epoch"] == 1
        untrained_run(tmp_path, "swap", latent=2, epoch=2, seed=1)           # replaced, as training does
        assert s.json("/api/run")["checkpoint"]["epoch"] == 2
        assert s.png("/api/samples") != first
    finally:
        s.close()


def test_a_page_waiting_for_its_run_says_so_then_shows_it(run_2d, real_mnist_dir):
    view = RunView(None, data_dir=real_mnist_dir)
    s = Server(view)
    try:
        assert s.json("/api/run")["pending"] is True
        err = s.json("/api/metrics", status=503)
        assert err["pending"] is True and "first epoch" in err["error"]
        view.attach(run_2d)
        assert s.json("/api/run")["run"] == run_2d.name
    finally:
        s.close()


# --------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("argv, words", [
    (["serve", "/no/such/run"], "no such folder"),
    (["serve", "{file}"], "is a file"),
    (["serve", "{empty}"], "not a run folder"),
    (["serve", "{run}", "--port", "70000"], "--port: expected a port number from 0 to 65535"),
    (["serve", "{run}", "--port", "http"], "--port: expected a port number"),
    (["serve", "{run}", "--backend", "jax"], "--backend jax: unknown backend"),
    (["serve", "{run}", "--device", "cuda"], "the numpy backend runs on the CPU"),
    (["serve", "{run}", "--host", "256.1.1.1", "--port", "0"], "--host 256.1.1.1 --port 0: cannot listen there"),
])
def test_serve_refuses_bad_arguments_in_one_line(run_2d, tmp_path, capsys, argv, words):
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = [a.format(file=tmp_path / "f.txt", empty=tmp_path / "empty", run=run_2d) for a in argv]
    code, out, err = run_main(argv, capsys)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_a_port_in_use_names_the_way_out(run_2d, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run_main(["serve", str(run_2d), "--port", str(busy.getsockname()[1])], capsys)
    assert code == 2 and "already in use" in err and "--port 0" in err


def test_announce_says_loopback_only_or_warns(run_2d, capsys):
    from numpy_vae.cli.serve import announce, open_server
    for host in ("127.0.0.1", "0.0.0.0"):
        server = open_server(RunView(run_2d), host, 0)
        try:
            announce(server, "serving")
        finally:
            server.server_close()
        out, err = capsys.readouterr()
        assert f"serving: http://127.0.0.1:{server.port}/" in out
        if host == "127.0.0.1":
            assert "loopback only" in out and not err
        else:
            assert err.startswith("warning: listening on 0.0.0.0") and "any machine" in err


@pytest.mark.parametrize("started_with_sigint", ["default", "ignored"])
def test_vae_serve_prints_its_url_serves_and_stops_on_ctrl_c(run_2d, real_mnist_dir, tmp_path, started_with_sigint):
    """Also when started as `vae serve ... &` from a script, which begins with SIGINT ignored."""
    env = {**os.environ, "VAE_DATA_DIR": str(real_mnist_dir)}
    disposition = {"default": signal.SIG_DFL, "ignored": signal.SIG_IGN}[started_with_sigint]
    proc = subprocess.Popen([sys.executable, "-m", "numpy_vae.cli", "serve", str(run_2d), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "err", "w"), text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, disposition))
    try:
        first = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", first)[1])
        assert "loopback only" in proc.stdout.readline()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/run")
        assert json.loads(conn.getresponse().read())["run"] == run_2d.name
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_train_serve_shows_the_run_while_it_trains(real_mnist_dir, tmp_path, capsys, monkeypatch):
    import numpy_vae.training as training
    real_train, seen = training.train, []

    def watching_train(*args, on_epoch=None, **kw):
        def hook(run_dir, row, backend, config):
            on_epoch(run_dir, row, backend, config)
            port = re.search(r"live page: http://127\.0\.0\.1:(\d+)/", capsys.readouterr().out)
            if port:
                seen.append(int(port[1]))
            conn = http.client.HTTPConnection("127.0.0.1", seen[0], timeout=30)
            conn.request("GET", "/api/run")
            seen.append(json.loads(conn.getresponse().read()))
        return real_train(*args, on_epoch=hook, **kw)

    monkeypatch.setattr(training, "train", watching_train)
    code, out, err = run_main(["train", "--train-limit", "500", "--epochs", "2", "--hidden", "32", "--latent", "2",
                               "--runs-dir", str(tmp_path), "--name", "live", "--data-dir", str(real_mnist_dir),
                               "--no-figures", "--no-progress", "--serve", "--port", "0"], capsys)
    assert code == 0, err
    first, second = seen[1], seen[2]
    assert first["run"] == "live" and first["status"]["state"] == "training" and first["status"]["epochs_done"] == 1
    assert second["checkpoint"]["epoch"] == 2
    assert "stopped with the run" in out


def test_port_without_serve_is_refused(tmp_path, capsys):
    code, _, err = run_main(["train", "--port", "8001", "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "--port 8001 needs --serve" in err
    assert not any(tmp_path.iterdir())


def test_training_is_told_from_the_run_folders_lock_without_taking_it(run_2d):
    from numpy_vae.serve.run_view import training_now
    from numpy_vae.training.run_folder import RunLock
    assert training_now(run_2d) is False
    lock = RunLock(run_2d)
    try:
        assert training_now(run_2d) is True
        if os.path.exists("/proc/locks"):                 # Linux: read from /proc/locks, no lock of its own
            with open("/proc/locks") as f:
                assert sum(line.split()[4:5] == [str(os.getpid())] for line in f) == 1
    finally:
        lock.release()
    assert training_now(run_2d) is False


def test_the_torch_backend_draws_the_same_pictures(run_2d, mnist_test, real_mnist_dir):
    from numpy_vae.training.restore import load_backend
    test_x, test_y = mnist_test
    outs = [generate_digit(load_backend(run_2d / "last.npz", backend=b)[0], test_x, test_y, 5, 3, 0, 4)
            for b in ("numpy", "torch")]
    np.testing.assert_array_equal(outs[0].indices, outs[1].indices)
    np.testing.assert_allclose(outs[0].samples, outs[1].samples, atol=1e-5)
    s = Server(RunView(run_2d, backend="torch", data_dir=real_mnist_dir))
    try:
        assert png_size(s.png("/api/generate?digit=5&count=3&seed=4")) == (204, 86)
        assert s.json("/api/run")["backend"] == "torch"
    finally:
        s.close()


def test_a_bug_is_a_one_line_500_and_the_traceback_goes_to_the_log(run_2d, monkeypatch):
    view, logged = RunView(run_2d), []
    monkeypatch.setattr(view, "summary", lambda: 1 / 0)
    live = LiveServer(view, port=0, log=logged.append)
    live.start_in_thread()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
        conn.request("GET", "/api/run")
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        live.stop()
    assert resp.status == 500 and body["error"] == "internal error (ZeroDivisionError: division by zero)"
    assert "Traceback" in logged[0] and "/api/run" in logged[0]


# --------------------------------------------------------------------------- a run folder that was edited
def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fds(limit: int, seconds: float = 5.0) -> int:
    """The open descriptors, once they are down to ``limit`` (a closing socket may lag its response), or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while open_fds() > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return open_fds()


def copied_run(run_2d: Path, into: Path) -> Path:
    """config.json and metrics.csv of ``run_2d`` in a folder of their own (no checkpoint), to edit."""
    run = into / "edited"
    run.mkdir()
    for name in ("config.json", "metrics.csv"):
        shutil.copy(run_2d / name, run / name)
    return run


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc/self/fd (Linux)")
@pytest.mark.parametrize("name, make", [
    ("dir.png", os.mkdir), ("config.json", os.mkdir), ("metrics.csv", os.mkdir), ("fifo.png", os.mkfifo),
    ("report.html", os.mkfifo)])
def test_a_served_name_that_is_not_a_regular_file_is_a_404_and_leaks_nothing(run_2d, tmp_path, name, make):
    run = copied_run(run_2d, tmp_path)
    if (run / name).exists():
        (run / name).unlink()
    make(run / name)
    s = Server(RunView(run))
    try:
        s.json(f"/files/{name}", status=404)                        # a first answer: the server's threads exist
        before = open_fds()
        for _ in range(20):
            err = s.json(f"/files/{name}", status=404)
            assert err["error"] == f"{name} is not a regular file"
        assert settled_fds(before) <= before
    finally:
        s.close()


@pytest.mark.parametrize("name, text, words", [
    ("metrics.csv", "epoch,test_loss\n1,100.0\ninf,99.0\n", "line 3: epoch 'inf' is not a whole number"),
    ("metrics.csv", "epoch,test_loss\nten,100.0\n", "epoch 'ten'"),
    ("metrics.csv", "epoch,test_loss\n-1,100.0\n", "epoch '-1'"),
    ("metrics.csv", "epoch,test_loss\n1,\"" + "9" * 140_000 + "\"\n", "cannot be read as a table"),
    ("config.json", '{"epochs": "ten"}', 'epochs must be an integer, got "ten"'),
    ("config.json", '{"epochs": [1, 2]}', "epochs must be an integer"),
    ("config.json", '{"latent": true}', "latent must be an integer"),
    ("config.json", '{"epochs": NaN}', "NaN is not JSON"),
    ("config.json", '{"epochs": 2, "lr": Infinity}', "Infinity is not JSON"),
    ("config.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("config.json", "[1, 2]", "holds a JSON list, not an object"),
    ("config.json", '{"epochs": ', "is not valid JSON"),
])
def test_edited_run_files_are_a_503_naming_the_file(run_2d, tmp_path, name, text, words):
    run = copied_run(run_2d, tmp_path)
    (run / name).write_text(text)
    s = Server(RunView(run))
    try:
        paths = ["/api/run", "/api/metrics"] if name == "metrics.csv" else ["/api/run"]
        for path in paths:
            err = s.json(path, status=503)
            assert str(run / name) in err["error"] and words in err["error"], err
            assert "Traceback" not in err["error"] and "internal error" not in err["error"]
        code, _, body = s.request(f"/files/{name}")                 # the file itself is still served as it is
        assert code == 200 and body == (run / name).read_bytes()
    finally:
        s.close()


@pytest.mark.parametrize("name, make", [("config.json", os.mkdir), ("metrics.csv", os.mkdir),
                                        ("config.json", os.mkfifo), ("metrics.csv", os.mkfifo)])
def test_a_run_file_that_is_a_folder_or_a_fifo_is_a_503_naming_it(run_2d, tmp_path, name, make):
    """A FIFO used to hold the request's thread forever (an open() for reading that waits for a writer)."""
    run = copied_run(run_2d, tmp_path)
    (run / name).unlink()
    make(run / name)
    s = Server(RunView(run))
    try:
        err = s.json("/api/run", status=503)
        assert str(run / name) in err["error"] and "not a regular file" in err["error"]
    finally:
        s.close()


@pytest.mark.parametrize("host", ["[::1]evil.com", "[::1", "127.0.0.1:P, evil.com", "127.0.0.1:P", "localhost:",
                                  "localhost:99999", "127.0.0.1 evil.com", "[evil.com]", "user@127.0.0.1", ""])
def test_a_malformed_host_header_is_a_400(server, host):
    err = server.json("/api/run", headers={"Host": host}, status=400)
    assert "malformed Host header" in err["error"]


def test_a_well_formed_loopback_host_header_is_answered(server):
    for host in ("127.0.0.1", f"127.0.0.1:{server.live.port}", "LOCALHOST", "[::1]:80", "127.1.2.3"):
        assert server.json("/api/run", headers={"Host": host})["run"]
    assert "refused" in server.json("/api/run", headers={"Host": "[2001:db8::1]:80"}, status=403)["error"]


# --------------------------------------------------------------------------- cheap requests never wait for a decode
def test_cheap_requests_never_wait_for_a_decode_and_pictures_queue_boundedly(run_2d, real_mnist_dir):
    """A decode held still: files, the run's data and cached pictures are answered at once; pictures that would
    need the model queue up to MAX_PENDING, and the next ones are a 503 with Retry-After, without waiting."""
    view = RunView(run_2d, data_dir=real_mnist_dir)
    s = Server(view)
    entered, release = threading.Event(), threading.Event()
    try:
        s.png("/api/samples")                                      # computed now: cached from here on
        backend = view.model().backend
        decode = backend.decode

        def held_decode(z):
            entered.set()
            release.wait(60)
            return decode(z)
        backend.decode = held_decode
        results = []

        def ask(path):
            results.append((path, *s.request(path)))
        first = threading.Thread(target=ask, args=("/api/generate?digit=1&seed=101",))
        first.start()
        assert entered.wait(30), "the generate request never reached its decode"
        for path in ("/api/run", "/api/metrics", "/files/config.json", "/files/metrics.csv", "/files/curves.png",
                     "/api/samples", "/"):
            conn = http.client.HTTPConnection("127.0.0.1", s.live.port, timeout=10)
            try:                                                     # a timeout here: it waited for the decode
                conn.request("GET", path)
                resp = conn.getresponse()
                assert resp.status == 200, (path, resp.status, resp.read()[:200])
                resp.read()
            finally:
                conn.close()
        extra = 3
        others = [threading.Thread(target=ask, args=(f"/api/generate?digit=2&seed={seed}",))
                  for seed in range(MAX_PENDING - 1 + extra)]
        for t in others:
            t.start()
        deadline = time.monotonic() + 30
        while sum(r[1] == 503 for r in results) < extra and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = [r for r in results if r[1] == 503]
        assert len(refused) == extra and len(results) == extra, [r[:2] for r in results]
        for _, _, headers, body in refused:
            assert headers["Retry-After"] == "1" and json.loads(body)["busy"] is True
    finally:
        release.set()
    for t in [first, *others]:
        t.join(60)
    s.close()
    assert sorted(r[1] for r in results) == [200] * MAX_PENDING + [503] * extra
