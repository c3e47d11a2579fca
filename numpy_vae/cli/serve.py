"""``vae serve RUN_DIR``: the live page of a run; and the epoch hooks of ``vae train --serve / --tensorboard``.

The page shows the training curves (polled from metrics.csv while the run
trains), reconstructions and prior samples of the latest checkpoint, the
config and metrics, the report's figures, and "generate digit" (with a
clickable latent map for a 2-D latent).  It listens on 127.0.0.1 unless
``--host`` says otherwise, and only ever reads the run folder.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
from pathlib import Path

from .args import UsageError, folder_path

DEFAULT_PORT = 8000
#: seconds a thread computing a picture may hold the interpreter before a waiting request gets its turn
#: (Python's default is 0.005: a request that reads a few files would wait that long after each read).
#: Set by `vae serve`, a process of its own; `vae train --serve` leaves the training process's setting alone.
SWITCH_INTERVAL = 0.0005
RUN_FILES = ("config.json", "metrics.csv", "last.npz")


def port_number(text: str) -> int:
    """A TCP port, 0..65535 (0: a free one, chosen by the system)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535 (0: any free port), got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("serve", help="a live page of a run: curves, images, generate digits in a browser",
                       description="Serve one page about RUN_DIR: the training curves, updated while the run "
                                   "trains; reconstructions and prior samples of its latest checkpoint; its config, "
                                   "metrics and report figures; and \"generate digit\" (test digits of a class and "
                                   "decodes around their posteriors; a clickable latent map for a 2-D latent). "
                                   "Read-only; listens on 127.0.0.1 (this machine only) unless --host is given.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `vae train` (e.g. runs/latest)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                   help=f"TCP port (default: {DEFAULT_PORT}; 0: any free port, printed)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, loopback; 0.0.0.0 lets other machines in)")
    p.add_argument("--backend", default="numpy", help="network that computes the pictures: numpy (default) or torch")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend only)")
    p.add_argument("--data-dir", type=folder_path, default=None,
                   help="folder holding MNIST/raw/ (default: $VAE_DATA_DIR, else the run's data_dir)")
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    p.set_defaults(func=run)


def check_run_dir(text: str) -> Path:
    """RUN_DIR as a resolved folder holding at least one of a run's files; UsageError naming the fix otherwise."""
    path = Path(text).expanduser()
    if path.is_file():
        raise UsageError(f"RUN_DIR {text} is a file; pass the run folder (e.g. runs/NAME or runs/latest)")
    if not path.is_dir():
        raise UsageError(f"RUN_DIR {text}: no such folder; pass a run folder written by `vae train`")
    if not any((path / name).exists() for name in RUN_FILES):
        raise UsageError(f"RUN_DIR {text} holds none of {', '.join(RUN_FILES)}: not a run folder written by "
                         f"`vae train`")
    return path.resolve()


def check_backend(backend: str, device: str) -> None:
    """UsageError for an unknown backend, or a device the numpy backend cannot use."""
    from ..backends import available_backends
    if backend not in available_backends():
        raise UsageError(f"--backend {backend}: unknown backend; available: {', '.join(available_backends())}")
    if backend == "numpy" and device != "cpu":
        raise UsageError(f"--device {device}: the numpy backend runs on the CPU; use --backend torch for cuda")


def open_server(view, host: str, port: int, log_requests: bool = False):
    """A LiveServer for ``view`` listening on host:port; UsageError naming --host/--port if it cannot listen."""
    from ..serve import LiveServer
    try:
        return LiveServer(view, host=host, port=port, log=lambda line: print(line, file=sys.stderr, flush=True),
                          log_requests=log_requests)
    except OSError as e:
        reason = e.strerror or str(e)
        if port and e.errno == errno.EADDRINUSE:
            raise UsageError(f"--port {port}: {host}:{port} is already in use; choose another --port, or --port 0 "
                             f"for a free one") from None
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({reason}); try --host 127.0.0.1, "
                         f"or --port 0") from None


def announce(server, what: str) -> None:
    """Print the page's URL and who can reach it: loopback only, or a warning for any other address."""
    from ..serve import is_loopback
    host = server.server_address[0]
    print(f"{what}: {server.url}", flush=True)
    if is_loopback(host):
        print(f"listening on {host} port {server.port}: loopback only, this machine can open it, others cannot "
              f"(--host 0.0.0.0 to share it)", flush=True)
    else:
        print(f"warning: listening on {host} port {server.port}, not loopback: any machine that can reach this "
              f"one can open the page (read-only, no password)", file=sys.stderr, flush=True)


def run(args) -> int:
    from ..backends.interface import limit_threads
    from ..serve import RunView
    run_dir = check_run_dir(args.run_dir)
    check_backend(args.backend, args.device)
    view = RunView(run_dir, backend=args.backend, device=args.device, data_dir=args.data_dir)
    server = open_server(view, args.host, args.port, log_requests=args.verbose)
    sys.setswitchinterval(SWITCH_INTERVAL)
    limiter = limit_threads(1)          # the page's decodes are small: one BLAS thread leaves a core to requests
    announce(server, f"serving {run_dir}")
    # A job started with `&` from a script begins with SIGINT ignored; "Ctrl-C stops it" (or kill -INT) must hold.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print("Ctrl-C stops it", flush=True)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
        del limiter
    return 0


# --------------------------------------------------------------------- `vae train --serve / --tensorboard`
class EpochHooks:
    """What `vae train` hangs on ``train(on_epoch=...)``: the live page (--serve) and the TensorBoard log.

    The page's server starts at once, in a background thread; a new run's folder is
    known only when its first epoch ends, so the page says "waiting" until then.
    """

    def __init__(self, server=None, tensorboard=None):
        self.server = server
        self.tensorboard = tensorboard

    def attach(self, run_dir: Path) -> None:
        if self.server is not None:
            self.server.view.attach(run_dir)

    def __call__(self, run_dir, row, backend, config) -> None:
        """``on_epoch(run_dir, row, backend, config)``: point the page at the run, log the epoch to TensorBoard."""
        self.attach(run_dir)
        if self.tensorboard is not None:
            self.tensorboard(run_dir, row, backend, config)

    @property
    def active(self) -> bool:
        return self.server is not None or self.tensorboard is not None

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.server is not None:
            self.server.stop()
            print("the live page stopped with the run; `vae serve RUN_DIR` shows it again", flush=True)


@contextlib.contextmanager
def epoch_hooks(args, run_dir: Path | None = None):
    """The ``on_epoch`` hook for ``vae train``'s options (None without --serve and --tensorboard), closed on exit.

    Checks first, before any training: --port needs --serve, --tensorboard needs the
    tensorboard package (a one-line UsageError naming the pip extra).
    """
    serve, port, tensorboard = getattr(args, "serve", False), getattr(args, "port", None), getattr(args, "tensorboard", False)
    if port is not None and not serve:
        raise UsageError(f"--port {port} needs --serve (the live page's port)")
    hooks = EpochHooks()
    if tensorboard:
        from ..report.tensorboard import TensorBoardLog, TensorBoardUnavailable
        try:
            hooks.tensorboard = TensorBoardLog(data_dir=getattr(args, "data_dir", None))
        except TensorBoardUnavailable as e:
            raise UsageError(str(e)) from None
    if serve:
        from ..serve import RunView
        view = RunView(run_dir, data_dir=getattr(args, "data_dir", None))
        hooks.server = open_server(view, "127.0.0.1", DEFAULT_PORT if port is None else port)
        hooks.server.start_in_thread()
        announce(hooks.server, "live page")
    try:
        yield hooks if hooks.active else None
    finally:
        hooks.close()
