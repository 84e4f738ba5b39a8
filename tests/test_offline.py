"""The suite is offline: the guard blocks and reports non-loopback connections."""

import os
import socket
import threading
from pathlib import Path

import pytest

import gendet_env


def test_offline_variables_are_set():
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE"):
        assert os.environ[key] == "1"
    assert os.environ["YOLO_AUTOINSTALL"] == "False"
    for key in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "HF_HOME"):
        assert Path(os.environ[key]).is_dir()


def test_a_checkout_that_cannot_be_written_keeps_its_caches_elsewhere(tmp_path, monkeypatch):
    """The caches went to the checkout's .cache/ only: in a read-only checkout (a container image,
    a shared install) every command, --help included, failed at import with a PermissionError."""
    import tempfile

    blocked = tmp_path / "checkout"  # a file: nothing can be made under it, even by root
    blocked.write_text("")
    monkeypatch.setattr(gendet_env, "ROOT", blocked)
    monkeypatch.delenv("GENDET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gendet_env._cache_folder() == tmp_path / "xdg" / "gendet"
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert gendet_env._cache_folder() == tmp_path / "tmp" / f"gendet-cache-{os.getuid()}"
    own = tmp_path / "tmp" / f"gendet-cache-{os.getuid()}"
    own.chmod(0o775)  # made by an older gendet under a loose umask: made private, and used
    assert gendet_env._cache_folder() == own and own.stat().st_mode & 0o777 == 0o700
    own.rmdir()
    (tmp_path / "planted").mkdir()
    own.symlink_to(tmp_path / "planted")  # a link someone put there, to a folder they can swap: not used
    assert gendet_env._cache_folder() == blocked / ".cache"  # none is usable; the error comes where a cache is
    monkeypatch.setenv("GENDET_CACHE", str(tmp_path / "mine"))
    assert gendet_env._cache_folder() == tmp_path / "mine"
    # a cache variable set to a folder nobody can write: a warning naming it, not a traceback
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import gendet_env"], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "YOLO_CONFIG_DIR": str(blocked / "yolo")})
    assert done.returncode == 0 and done.stderr.startswith(f"warning: YOLO_CONFIG_DIR={blocked / 'yolo'}: cannot "
                                                           "write there ("), done.stderr


def test_loading_a_local_model_draws_no_progress_bar(tmp_path):
    """transformers 5 draws a "Loading weights" bar for each load, instant for our small local
    models; every entry point's first import turns those bars off (ours, e.g. sampling's, stay)."""
    import subprocess
    import sys

    code = ("import gendet_env, torch\n"
            "from transformers import CLIPTextConfig, CLIPTextModel\n"
            "m = CLIPTextModel(CLIPTextConfig(vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=1,"
            " num_attention_heads=2, max_position_embeddings=4))\n"
            f"m.save_pretrained({str(tmp_path)!r}); CLIPTextModel.from_pretrained({str(tmp_path)!r})\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=gendet_env.ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Loading weights" not in run.stderr and "Writing model shards" not in run.stderr, run.stderr[-500:]


def test_plain_streamlit_run_from_the_root_is_offline_and_local():
    """`streamlit run ui` without make's flags: the repository's .streamlit/config.toml turns off the
    browser's usage statistics (a request to Streamlit's servers) and binds loopback only. Checked
    in a fresh process without our STREAMLIT_ variable, which the server would not see in time."""
    import subprocess
    import sys

    code = ("import streamlit.config as c\n"
            "c.get_config_options(force_reparse=True)\n"
            "print(c.get_option('browser.gatherUsageStats'), c.get_option('server.address'),"
            " c.get_option('client.toolbarMode'))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=gendet_env.ROOT, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["False", "127.0.0.1", "viewer"]


def test_fonts_are_seeded_from_dejavu():
    fonts = gendet_env.seed_fonts()
    assert fonts and all(f.stat().st_size > 100_000 for f in fonts)
    assert {f.name for f in fonts} == {"Arial.ttf", "Arial.Unicode.ttf"}


def test_outbound_connection_is_caught(network_violations):
    # 203.0.113.0/24 is TEST-NET-3: never routed, so nothing leaves even if the guard failed.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(
        OSError, match="blocked socket.connect"
    ):
        sock.settimeout(0.5)
        sock.connect(("203.0.113.7", 80))
    with pytest.raises(OSError, match="blocked socket.getaddrinfo"):
        socket.getaddrinfo("huggingface.co", 443)
    assert network_violations[-2:] == ["socket.connect to '203.0.113.7'", "socket.getaddrinfo to 'huggingface.co'"]
    network_violations.clear()  # provoked on purpose: do not fail this test


def test_loopback_is_allowed():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = threading.Thread(target=lambda: server.accept()[0].close())
    accepted.start()
    with socket.create_connection(("localhost", port), timeout=2):
        pass
    accepted.join(2)
    server.close()


def test_ultralytics_sync_is_off():
    gendet_env.ultralytics()
    from ultralytics.utils import SETTINGS

    assert SETTINGS["sync"] is False


def test_datasets_is_ours():
    import datasets

    assert Path(datasets.__file__).resolve().parent == gendet_env.ROOT / "datasets"


def test_ultralytics_font_check_stays_local():
    gendet_env.ultralytics()
    from ultralytics.utils import USER_CONFIG_DIR
    from ultralytics.utils.checks import check_font

    for name in gendet_env.FONT_NAMES:
        assert Path(check_font(name)) == USER_CONFIG_DIR / name  # found locally, no download


def test_network_use_at_import_time_fails_the_session(tmp_path):
    """An attempt outside any test (a module that connects on import) still fails the run."""
    import subprocess
    import sys

    (tmp_path / "test_connects_on_import.py").write_text(
        "import socket\n"
        "try:\n    socket.create_connection(('203.0.113.9', 80), timeout=0.1)\nexcept OSError:\n    pass\n"
        "def test_nothing():\n    assert True\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                          str(tmp_path)], capture_output=True, text=True, cwd=gendet_env.ROOT, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "NETWORK USE OUTSIDE TESTS (blocked): socket.getaddrinfo to '203.0.113.9'" in run.stderr


def test_user_warnings_print_as_one_line_for_the_terminal():
    """Ours (a prompt cut to the model's tokens) read 'warning: ...'; other kinds, and a user's own
    UserWarning in a process that imported gendet, keep Python's format."""
    import subprocess
    import sys

    code = ("import gendet_env, warnings\n"
            "warnings.warn('prompt is long; truncated', gendet_env.GendetWarning)\n"
            "warnings.warn('old api', FutureWarning)\n"
            "warnings.warn('my own')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=gendet_env.ROOT)
    lines = run.stderr.splitlines()
    assert lines[0] == "warning: prompt is long; truncated"
    assert "FutureWarning: old api" in lines[1]
    assert lines[2] == "<string>:4: UserWarning: my own"
