"""What orchestration costs: the ``synth-understanding`` flow vs. the same job as a plain CLI run.

    python bench/orchestration.py [--scenes 40] [--batch-size 8] [--repeats 1]

Both sides are fresh processes doing the same work on the same input (``demo:N`` scenes,
classical CPU backends, the same batch size, so both write the same sample keys, which is
checked), and both render the contact sheet the flow's report carries:

* CLI:  ``python -m datagen understanding --source demo:N --batch-size B ...`` then
  ``python -m datagen contact-sheet MANIFEST``;
* flow: ``python -m flows synth-understanding ...`` (flow run, batch tasks, progress / table /
  markdown artifacts, contact sheet) reporting to a Prefect server on 127.0.0.1, started before
  timing, as a deployment's flow run would report to the stack's server. The server's CPU during
  the flow run is part of the flow's cost.

Each side runs at two sizes, one batch (``B`` scenes) and ``N`` scenes, so that its cost splits
into a fixed part per run and a part per batch (a straight line through the two points). Printed:
both parts for both sides in wall and CPU seconds, the difference (what orchestration adds per
run and per batch), and the flow / CLI ratio at ``N`` scenes (target <= 1.15). CPU seconds (of
the process tree, plus the server for the flow) are the figures to trust on a busy machine.
With ``--repeats`` the runs alternate and the best of each is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def _timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, stdout)."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, cpu, done.stdout


def _tree_cpu(pid: int) -> float:
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _keys(data_dir: Path) -> list[str]:
    from datagen.shards.layout import committed_shards

    keys: list[str] = []
    for shard in committed_shards(data_dir):
        keys += shard.load_sidecar()["keys"]
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=40, help="demo scenes (about 7.5 samples each)")
    parser.add_argument("--batch-size", type=int, default=8, help="scenes per flow batch task")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each; the best counts")
    args = parser.parse_args(argv)

    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("stack", ROOT / "scripts" / "stack.py")
    stack_mod = module_from_spec(spec)
    sys.modules["stack"] = stack_mod  # dataclasses look their module up there
    spec.loader.exec_module(stack_mod)

    work = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    stack = stack_mod.Stack(home=work / "prefect", port=stack_mod.free_port(), root=ROOT)
    print(f"starting a Prefect server on {stack.api_url} (not timed) ...", file=sys.stderr)
    stack.start_server()
    env = stack.env()
    sizes = (args.batch_size, args.scenes)
    best: dict = {}
    try:
        for rep in range(args.repeats):
            for scenes in sizes:
                for side in ("cli", "flow"):
                    run = _run_side(side, scenes, args.batch_size, work / f"{side}{scenes}-{rep}", env, stack)
                    key = (side, scenes)
                    if key not in best or run["cpu"] < best[key]["cpu"]:
                        best[key] = run
                    print(f"repeat {rep + 1}: {side} {scenes} scenes: wall {run['wall']:.2f}s CPU {run['cpu']:.2f}s",
                          file=sys.stderr)
    finally:
        stack.stop("server")

    small, large = sizes
    same = all(best[("cli", n)]["keys"] == best[("flow", n)]["keys"] for n in sizes)
    batches = {n: -(-n // args.batch_size) for n in sizes}
    print(f"input: demo:{large} (classical backends), {len(best[('flow', large)]['keys'])} samples, "
          f"{batches[large]} batches of {args.batch_size} scenes (and demo:{small}, one batch, for the fixed part)")
    print(f"same samples (keys) from CLI and flow: {same}")
    parts = {}
    for side in ("cli", "flow"):
        for what in ("wall", "cpu"):
            a, b = best[(side, small)][what], best[(side, large)][what]
            per_batch = (b - a) / (batches[large] - batches[small])
            parts[(side, what)] = (a - per_batch * batches[small], per_batch)
        (fw, bw), (fc, bc) = parts[(side, "wall")], parts[(side, "cpu")]
        label = "CLI  understanding + contact-sheet" if side == "cli" else "flow synth-understanding (+ server)"
        print(f"{label}: fixed {fw:6.2f} s wall {fc:6.2f} s CPU | per batch {bw:6.2f} s wall {bc:6.2f} s CPU")
    for what in ("wall", "cpu"):
        (cf, cb), (ff, fb) = parts[("cli", what)], parts[("flow", what)]
        print(f"orchestration adds ({what}): {ff - cf:+.2f} s per run, {(fb - cb) * 1000:+.0f} ms per batch")
    cli, flow = best[("cli", large)], best[("flow", large)]
    print(f"of which the Prefect server's CPU: {best[('flow', small)]['server_cpu']:.2f} s at demo:{small}, "
          f"{flow['server_cpu']:.2f} s at demo:{large}")
    print(f"ratio flow / CLI at demo:{large}: wall {flow['wall'] / cli['wall']:.3f}, "
          f"CPU {flow['cpu'] / cli['cpu']:.3f}  (target <= 1.15)")
    return 0 if same else 1


def _run_side(side: str, scenes: int, batch_size: int, out: Path, env: dict, stack) -> dict:
    """One timed run of the CLI (job + contact sheet) or the flow: wall, CPU (flow: + server), keys."""
    source = f"demo:{scenes}"
    manifests = out / "manifests"
    if side == "cli":
        job = [sys.executable, "-m", "datagen", "understanding", "--source", source, "--out", str(out),
               "--name", "cli", "--manifests", str(manifests), "--batch-size", str(batch_size), "--no-progress"]
        sheet = [sys.executable, "-m", "datagen", "contact-sheet", str(manifests / "cli.json"),
                 "-o", str(out / "cli.contact-sheet.png")]
        wall, cpu, _ = _timed(job, env)
        wall2, cpu2, _ = _timed(sheet, env)
        return {"wall": wall + wall2, "cpu": cpu + cpu2, "keys": set(_keys(out))}
    params = {"source": source, "out": str(out), "name": "flow", "manifest_dir": str(manifests),
              "batch_size": batch_size}
    flow = [sys.executable, "-m", "flows", "synth-understanding", "--params", json.dumps(params)]
    server0 = _tree_cpu(stack.pid("server"))
    wall, cpu, _ = _timed(flow, env)
    server_cpu = _tree_cpu(stack.pid("server")) - server0
    return {"wall": wall, "cpu": cpu + server_cpu, "server_cpu": server_cpu, "keys": set(_keys(out))}


if __name__ == "__main__":
    sys.exit(main())
