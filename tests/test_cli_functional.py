"""The CLI as a user runs it: a real process, output piped (so no progress bars)."""

import json

import pytest
from conftest import run_cli, tree_snapshot

COMMANDS = ["import", "adopt", "ls", "search", "show", "verify", "rm", "rebuild-index"]


def test_help_lists_every_command(root):
    result = run_cli(root, "--help", check=True)
    for command in COMMANDS:
        assert command in result.stdout


def test_import_list_show_search_verify_rm(root, make_model):
    src = make_model("detail.safetensors")
    out = run_cli(root, "import", str(src), "--type", "loras", check=True)
    assert out.stdout.strip() == "imported loras/detail.safetensors (1.5 KiB, copy)" or (
        "imported loras/detail.safetensors" in out.stdout
    )
    assert out.stderr == ""  # piped: no progress bar noise

    [listed] = json.loads(run_cli(root, "ls", "--json", check=True).stdout)
    assert listed["name"] == "detail.safetensors"
    shown = json.loads(run_cli(root, "show", listed["hashes"]["sha256"][:15], "--json").stdout)
    assert shown["id"] == listed["id"]
    assert [m["id"] for m in json.loads(run_cli(root, "search", "deta", "--json").stdout)] == [
        listed["id"]
    ]
    verified = json.loads(run_cli(root, "verify", "--json", check=True).stdout)
    assert verified[0]["health"] == "ok"
    run_cli(root, "rm", "detail.safetensors", check=True)
    assert json.loads(run_cli(root, "ls", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["import", "{tmp}/missing.safetensors", "--type", "loras"], "SOURCE_NOT_FOUND"),
        (["import", "{trunc}", "--type", "loras"], "CORRUPT_FILE"),
        (["import", "{src}", "--type", "loras", "--name", "../x.safetensors"], "UNSAFE_NAME"),
        (["import", "{src}", "--type", "pictures"], "UNKNOWN_TYPE"),
        (["import", "{src}", "--type", "loras", "--name", "taken.safetensors"], "NAME_EXISTS"),
        (["show", "no-such-model"], "MODEL_NOT_FOUND"),
        (["rm", "no-such-model"], "MODEL_NOT_FOUND"),
    ],
)
def test_bad_input_gives_one_clear_line_and_changes_nothing(root, make_model, tmp_path, args, code):
    taken = make_model("taken.safetensors", folder=tmp_path / "first", seed=1)
    run_cli(root, "import", str(taken), "--type", "loras", check=True)
    src = make_model("fresh.safetensors", seed=2)
    trunc = make_model("trunc.safetensors", seed=3)
    trunc.write_bytes(trunc.read_bytes()[:-7])
    argv = [a.format(tmp=tmp_path, src=src, trunc=trunc) for a in args]
    before_lib, before_src = tree_snapshot(root), tree_snapshot(src.parent)

    result = run_cli(root, *argv)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error [{code}]: ")
    assert "Traceback" not in result.stderr
    assert tree_snapshot(root) == before_lib
    assert tree_snapshot(src.parent) == before_src


def test_names_without_extension(root, make_model, tmp_path):
    """``show a`` finds ``loras/a.safetensors``; a stem two models share is ambiguous and the
    error lists both; the type folder narrows it down."""
    run_cli(root, "import", str(make_model("a.safetensors", seed=1)), "--type", "loras", check=True)
    shown = json.loads(run_cli(root, "show", "a", "--json", check=True).stdout)
    assert (shown["type"], shown["name"]) == ("loras", "a.safetensors")
    other = make_model("a.safetensors", folder=tmp_path / "other", seed=2)
    run_cli(root, "import", str(other), "--type", "vae", "--name", "sub/a.pt", check=True)

    result = run_cli(root, "show", "a")
    assert result.returncode == 2
    assert result.stderr.startswith("error [AMBIGUOUS_MODEL]: ")
    assert "loras/a.safetensors" in result.stderr and "vae/sub/a.pt" in result.stderr
    shown = json.loads(run_cli(root, "show", "vae/a", "--json", check=True).stdout)
    assert (shown["type"], shown["name"]) == ("vae", "sub/a.pt")
    assert run_cli(root, "show", "a.safe").returncode == 2  # a stem is whole, not a prefix


def test_json_errors_are_machine_readable(root):
    result = run_cli(root, "show", "nothing", "--json")
    assert json.loads(result.stdout) == {
        "error": {"code": "MODEL_NOT_FOUND", "message": "no model matches 'nothing'"}
    }


def test_root_from_environment(tmp_path, make_model, monkeypatch):
    import subprocess
    import sys

    lib = tmp_path / "env-root"
    env = {"MODEL_SHELF_ROOT": str(lib), "PATH": "/usr/bin:/bin"}
    src = make_model()
    subprocess.run(
        [sys.executable, "-m", "model_shelf", "import", str(src), "--type", "vae"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert (lib / "vae" / src.name).is_file()


def test_progress_bar_on_a_terminal(root, tmp_path):
    """Under a real pseudo-terminal, a long import draws a progress bar on stderr."""
    import os
    import pty
    import subprocess
    import sys

    from conftest import write_big_safetensors

    src = write_big_safetensors(tmp_path / "big.safetensors", 256 * 1024 * 1024)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_shelf",
            "--root",
            str(root),
            "import",
            str(src),
            "--type",
            "checkpoints",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    text = output.decode(errors="replace")
    assert "import big.safetensors" in text and "%|" in text, repr(text)  # tqdm bar
