"""Create ``.venv`` and install the project into it; idempotent (a stamp records what was installed).

Run by ``make``; needs only a Python >= 3.10 on PATH and the package registry. torch and
torchvision are pinned in the same pip command so pip takes the local CPU wheel instead of a
multi-GB CUDA build. Where the CUDA-only torchvision cannot import next to CPU torch, the start-up
hook ``scripts/tv_cpu_ops.py`` is added to the venv (see its docstring).
"""
import hashlib
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"
TORCH_PINS = ["torch==2.13.0", "torchvision==0.28.0"]


def _python() -> Path:
    return VENV / "bin" / "python"


def _wanted_stamp() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "scripts/install_env.py", "scripts/tv_cpu_ops.py"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _site_packages() -> Path:
    out = subprocess.check_output(
        [str(_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    )
    return Path(out.strip())


def _torchvision_imports() -> bool:
    return subprocess.run([str(_python()), "-c", "import torchvision"], capture_output=True).returncode == 0


def _install_tv_hook() -> None:
    site = _site_packages()
    shutil.copyfile(ROOT / "scripts" / "tv_cpu_ops.py", site / "_tv_cpu_ops.py")
    (site / "_tv_cpu_ops.pth").write_text("import _tv_cpu_ops\n")


def _run_quietly(cmd: list[str]) -> None:
    """Run pip, dropping the machine's pip-config noise about absent local index folders."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "is ignored: it is neither a file nor a directory" not in line:
            sys.stdout.write(line)
    if proc.wait() != 0:
        raise SystemExit(f"pip install failed (exit {proc.returncode}): {' '.join(cmd)}")


def main() -> int:
    wanted = _wanted_stamp()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return 0
    if not _python().exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("installing the project and its pinned dependencies (3-4 minutes on an idle 2-core machine)", flush=True)
    _run_quietly(pip + ["-e", f"{ROOT}[all]", *TORCH_PINS])
    if not _torchvision_imports():
        _install_tv_hook()
        if not _torchvision_imports():
            print("torchvision still fails to import after the CPU-ops hook", file=sys.stderr)
            return 1
        print("torchvision: native ops unavailable for this torch build; CPU NMS hook installed", flush=True)
    STAMP.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
