"""Suite-wide setup: offline environment first, then a guard that fails any test
touching a non-loopback network address."""

import gendet_env  # noqa: F401  (sets offline variables before anything imports ultralytics/transformers)

import ipaddress
import socket
import sys

import pytest
import torch

# One intra-op thread: the suite's tensors are small, and on a 2-core machine two threads
# contending with ultralytics' workers (or anything else) made steps up to 50x slower.
torch.set_num_threads(1)


class NetworkBlocked(OSError):
    """Raised inside the code under test when it tries to reach the network."""


_violations: list[str] = []


def _is_loopback(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]")
    if host in ("", "localhost", "localhost.localdomain"):
        return True
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False  # a host name other than localhost needs DNS: network
    return addr.is_loopback or addr.is_unspecified


def _audit(event: str, args) -> None:
    if event == "socket.connect" or event == "socket.sendto":
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) == socket.AF_UNIX or not isinstance(address, tuple):
            return
        host = address[0]
    elif event == "socket.getaddrinfo" or event == "socket.gethostbyname":
        host = args[0]
    else:
        return
    if not _is_loopback(host):
        _violations.append(f"{event} to {host!r}")
        raise NetworkBlocked(f"gendet tests are offline: blocked {event} to {host!r}")


sys.addaudithook(_audit)  # cannot be removed: active for the whole session


@pytest.fixture
def network_violations():
    """The list of blocked attempts; a test that provokes one on purpose clears it."""
    return _violations


_outside_tests: list[str] = []  # attempts at import/collection time, outside any test


@pytest.fixture(autouse=True)
def _fail_on_network_use():
    _outside_tests.extend(_violations)  # whatever happened between tests
    del _violations[:]
    yield
    new = _violations[:]
    if new:
        del _violations[:]
        pytest.fail("test tried to reach the network: " + "; ".join(new), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """Attempts outside tests (module imports during collection) fail the run too."""
    stray = _outside_tests + _violations
    if stray:
        sys.stderr.write("\nNETWORK USE OUTSIDE TESTS (blocked): " + "; ".join(stray) + "\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """(scenes root, run folder): a yolov8n trained 2 epochs on 24 procedural 64 px scenes, once
    per session (about 15 s on CPU). Untrained in any useful sense; for plumbing tests."""
    from datasets.scenes import generate
    from detection import train as det_train

    root = tmp_path_factory.mktemp("det")
    scenes = generate(root / "scenes", n=24, size=64, seed=0, val_fraction=0.25, progress=False)
    out = root / "run"
    code = det_train.main(["--task", "catdog", "--data", str(scenes), "--model", "yolov8n.yaml", "--epochs", "2",
                           "--imgsz", "64", "--batch", "8", "--device", "cpu", "--workers", "0", "--out", str(out),
                           "--quiet", "--no-plots"])
    assert code in (0, None)
    return scenes, out
