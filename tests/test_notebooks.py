"""Every notebook runs top to bottom on a fresh kernel (marker `notebooks`); the repo keeps them without outputs."""

import json
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "momentlens-test"


def test_there_are_six_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for this interpreter (the venv's python) in a temporary JUPYTER_PATH, and one feature
    cache for all notebooks (as a user's would be)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "momentlens tests", "language": "python"}))
    return {"JUPYTER_PATH": str(root), "MOMENTLENS_CACHE": str(tmp_path_factory.mktemp("notebook-cache"))}


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, shared_data, kernel_env, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MOMENTLENS_DATA", str(shared_data))
    kernel_tmp = tmp_path / "kernel-tmp"  # the kernel's temporary folder: its scratch goes when it stops
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, for a look when debugging
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # the saved copy keeps its widgets' state (nbclient's default, as `jupyter nbconvert --execute` does): plotly's
    # code once, not once per figure (a notebook with an Explorer was ~44 MB)
    size = (tmp_path / path.name).stat().st_size
    print(f"{path.name}: {size / 2**20:.1f} MiB saved")
    assert size < 12 * 2**20, f"{path.name} saved at {size / 2**20:.1f} MiB"
    assert any(o.output_type == "stream" for o in outputs)  # every notebook prints what it found
    # scratch files (clips cut for training, trained models) do not pile up in /tmp run after run (05 left 26 MB)
    left = [p.name for p in kernel_tmp.iterdir() if p.name.startswith("momentlens-")]
    assert not left, f"{path.name} left {left} in the temporary folder after its kernel stopped"


def test_each_kernel_has_its_own_scratch_and_dead_kernels_leave_nothing(tmp_path, monkeypatch):
    """Notebooks 05/06 write clips and models to `paths.scratch_dir`: a second kernel running the same notebook must
    not empty the first one's folder (one shared folder did), and a stopped kernel's files go at the next run."""
    import subprocess
    import sys

    from backends.core import paths

    monkeypatch.setenv("MOMENTLENS_CACHE", str(tmp_path))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another kernel, running
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # one that has stopped
    gone.wait()
    try:
        base = tmp_path / "notebooks" / "05"
        for pid in (other.pid, gone.pid):
            (base / str(pid)).mkdir(parents=True)
            (base / str(pid) / "adapter.pt").write_bytes(b"x" * 10)
        (base / "walkers.mp4").write_bytes(b"x")  # the older one-folder layout's file
        own = paths.scratch_dir("05")
        (own / "mine.mp4").write_bytes(b"x")
        assert own.parent == base and list(own.iterdir()) == [own / "mine.mp4"]
        assert (base / str(other.pid) / "adapter.pt").is_file()  # the running kernel's files stay
        assert not (base / str(gone.pid)).exists() and not (base / "walkers.mp4").exists()
        assert paths.scratch_dir("05") == own and not any(own.iterdir())  # a rerun empties its own folder
    finally:
        other.kill()
        other.wait()
