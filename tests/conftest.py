"""Shared fixtures. The pipeline fixture copies the repository into a temporary git+DVC repo,
applies tests/pipeline_overrides.yaml on top of params.yaml (smaller, faster settings), and runs
real `dvc repro` there once per test session; stage tests inspect that run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = ""  # stages import sim2real from the copy's cwd (python -m)
    env.update(YOLO_OFFLINE="true", WANDB_MODE="offline", SIM2REAL_NO_PROGRESS="1", OMP_WAIT_POLICY="PASSIVE",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd=repo, check=check)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [f for f in out.stdout.splitlines() if f and (ROOT / f).is_file()]


def make_repo(dest: Path, overrides: dict | None = None) -> Path:
    """Copy the project's files into ``dest`` and make it a fresh git + DVC repository."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in tracked_files():
        if rel.startswith(("data/", "reports/")) or rel == "dvc.lock":
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    (dest / "reports").mkdir(exist_ok=True)
    (dest / "data").mkdir(exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = yaml.safe_load((ROOT / "tests" / "pipeline_overrides.yaml").read_text()) or {}
    params = deep_merge(params, over)
    if overrides:
        params = deep_merge(params, overrides)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], cwd=dest)
    if not (dest / ".dvc").exists():
        dvc(dest, "init", "-q")
    run(["git", "add", "-A"], cwd=dest)
    run(["git", "commit", "-q", "-m", "test repo"], cwd=dest)
    return dest


@pytest.fixture(scope="module")
def cluster():
    """A real 2-process Dask cluster on loopback (no dashboard), one per test module: (cluster, client)."""
    import distributed
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=50) as lc:
        with distributed.Client(lc, set_as_default=False) as client:
            yield lc, client


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory, worker_id) -> Path:
    """A repo where `dvc repro` ran the whole pipeline once on the miniature world.

    Without xdist: built in place. Under ``pytest -n`` (``make test``): the first worker that needs
    it builds it once into the session's shared temporary folder (under a file lock) and leaves it
    untouched; every worker then works on its own copy, so tests that rerun stages or edit
    params.yaml in their worker never race with another worker's tests."""
    if worker_id == "master":
        repo = make_repo(tmp_path_factory.mktemp("pipeline") / "repo")
        dvc(repo, "repro")
        return repo
    import fcntl

    shared = tmp_path_factory.getbasetemp().parent / "pipeline-shared"
    shared.mkdir(exist_ok=True)
    built, done, failed = shared / "repo", shared / "built", shared / "failed"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another worker builds
        if failed.exists():
            pytest.fail(f"the shared pipeline run failed in another worker: {failed.read_text()[-2000:]}")
        if not done.exists():
            try:
                make_repo(built)
                dvc(built, "repro")
            except BaseException as exc:
                failed.write_text(f"{worker_id}: {exc}")
                raise
            done.write_text(worker_id)
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(built, repo, symlinks=True)
    return repo


# The test file that starts the shared pipeline run: queued first (the run is the longest unit).
PIPELINE_ANCHOR = "tests/detect/test_detect_pipeline.py"


def pipeline_files() -> set[str]:
    """Test files (node-id form) that use the session pipeline, found by name without importing them."""
    here = Path(__file__).resolve().parent
    return {f"{p.relative_to(ROOT).as_posix()}" for p in here.rglob("test_*.py") if "pipeline_repo" in p.read_text()}


def pytest_collection_modifyitems(config, items):
    """Order the work for ``pytest -n 2 --dist loadscope --no-loadscope-reorder`` (``make test``;
    one unit of work per file): the file that starts the shared pipeline run first, then every file
    that does not need the pipeline, then the other pipeline files, which either worker takes
    once the run is done (a worker that gets one earlier waits for it)."""
    files = pipeline_files()

    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return 0 if path == PIPELINE_ANCHOR else 2 if path in files else 1

    items.sort(key=rank)  # stable: file order and test order within a file are kept
