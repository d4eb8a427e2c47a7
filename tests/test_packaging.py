"""The image's build, without Docker: the Dockerfile's own pip steps, run here.

The build context is what the Dockerfile COPYs (so a file the wheel needs and the COPY
forgets fails here); the build stage's `pip wheel` fills a wheelhouse; a fresh venv
installs from it with the final stage's `pip install --no-index`, so every dependency
must have landed in the wheelhouse; the installed `remediator` then runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import dockerfile

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
WHEELS = "/wheels"  # where the Dockerfile keeps the wheelhouse


def pip_steps(stage: int) -> list[list[str]]:
    """The `pip ...` commands of a stage's RUN instructions, `--mount` options dropped."""
    steps = []
    for instruction in dockerfile.instructions(DOCKERFILE):
        if instruction.keyword == "RUN" and instruction.stage == stage:
            words = [w for w in instruction.words() if not w.startswith("--mount=")]
            if words[0] == "pip":
                steps.append(words[1:])
    return steps


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_the_dockerfile_pip_steps_build_a_runnable_remediator(tmp_path: Path) -> None:
    context = tmp_path / "src"
    context.mkdir()
    for source in dockerfile.copied_sources(DOCKERFILE):
        origin = ROOT / source
        if origin.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(origin, context / source, ignore=ignore)
        else:
            shutil.copy2(origin, context / source)
    wheels = tmp_path / "wheels"

    locked, project = pip_steps(stage=0)
    # The dependencies from the lock file, hashes checked; the project alone on top.
    assert locked[0] == "wheel" and "--require-hashes" in locked
    assert project[0] == "wheel" and "--no-deps" in project
    for build in (locked, project):
        run(
            [sys.executable, "-m", "pip", *(w.replace(WHEELS, str(wheels)) for w in build)], context
        )
    assert list(wheels.glob("remediator-*.whl"))

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    (install,) = pip_steps(stage=1)
    assert install[0] == "install" and "--no-index" in install
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    run([*pip, *(w.replace(WHEELS, str(wheels)) for w in install)], tmp_path)

    remediator = str(venv / "bin" / "remediator")
    run([remediator, "--help"], tmp_path)
    assert "--concurrency" in run([remediator, "run", "--help"], tmp_path).stdout
    # The loader, its JSON Schema and the templates, from the installed package alone.
    assert run([remediator, "validate", str(ROOT / "rules")], tmp_path).stdout.startswith("ok")
    installed = run(
        [str(venv / "bin" / "python"), "-c", "import remediator; print(remediator.__file__)"],
        tmp_path,
    )
    assert str(venv) in installed.stdout, "the installed package, not the source tree"
    # The web console's files travel in the wheel (package-data), not only in the source tree.
    console = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from importlib import resources; "
            "folder = resources.files('remediator.http') / 'console'; "
            "print(sorted(p.name for p in folder.iterdir()))",
        ],
        tmp_path,
    )
    from remediator.http.consolefiles import ASSETS, INDEX

    assert console.stdout.strip() == str(sorted([*ASSETS, INDEX]))  # every file it serves
