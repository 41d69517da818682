import hashlib
import subprocess

from kdflow.registry.lineage import file_md5, fingerprint, git_state


def test_file_md5_is_plain_content_md5(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert file_md5(path, chunk=1 << 16) == hashlib.md5(b"x" * 3_000_000).hexdigest()


def test_fingerprint_depends_on_content_not_order():
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1", "b": "2"}) != fingerprint({"a": "1", "b": "3"})


def test_git_state(tmp_path):
    assert git_state(tmp_path) == {"git_commit": "unknown", "git_dirty": "false"}
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "c")
    state = git_state(tmp_path)
    assert len(state["git_commit"]) == 40 and state["git_dirty"] == "false"
    (tmp_path / "f").write_text("2")
    assert git_state(tmp_path)["git_dirty"] == "true"
