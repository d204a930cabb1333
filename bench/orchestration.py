"""What orchestration costs: the ``synth-understanding`` flow vs. the same job as a plain CLI run.

    python bench/orchestration.py [--scenes 40] [--batch-size 8] [--repeats 1]

Both runs are fresh processes on the same input (``demo:N`` scenes, classical CPU backends, the
CLI's default settings, so both write the same sample keys, which is checked):

* CLI:  ``python -m datagen understanding --source demo:N ...``
* flow: ``python -m flows synth-understanding ...`` (flow run, batch tasks, progress / table /
  markdown artifacts, contact sheet) reporting to a Prefect server on 127.0.0.1, started before
  timing, as a deployment's flow run would report to the stack's server.

Printed: wall-time ratio flow / CLI (target <= 1.15 for a few hundred samples) and the same
ratio in CPU seconds of the run's process tree (the figure to trust on a busy machine); the
per-batch overhead, both as the flow's extra wall time spread over its batches and measured
inside the flow as (batch-loop wall time - time spent inside ``run_batch``) / batches; and the
server's own CPU seconds during the flow run. With ``--repeats`` the runs alternate and the best
of each is kept.
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
    source = f"demo:{args.scenes}"
    best = {"cli": None, "flow": None}
    try:
        for rep in range(args.repeats):
            cli_out, flow_out = work / f"cli{rep}", work / f"flow{rep}"
            cli = [sys.executable, "-m", "datagen", "understanding", "--source", source, "--out", str(cli_out),
                   "--name", "cli", "--manifests", str(work / "manifests"), "--no-progress"]
            params = {"source": source, "out": str(flow_out), "name": "flow", "manifest_dir": str(work / "manifests"),
                      "batch_size": args.batch_size}
            flow = [sys.executable, "-m", "flows", "synth-understanding", "--params", json.dumps(params)]
            wall, cpu, _ = _timed(cli, env)
            run = {"wall": wall, "cpu": cpu, "samples": len(_keys(cli_out)), "keys": set(_keys(cli_out))}
            if best["cli"] is None or wall < best["cli"]["wall"]:
                best["cli"] = run
            server0 = _tree_cpu(stack.pid("server"))
            wall, cpu, stdout = _timed(flow, env)
            server_cpu = _tree_cpu(stack.pid("server")) - server0
            summary = json.loads(stdout[stdout.index("{"):])
            markers = [json.loads(m.read_text()) for m in (flow_out / ".jobs").glob("*.done.json")]
            inside = sum(m["seconds"] for m in markers)
            run = {"wall": wall, "cpu": cpu, "server_cpu": server_cpu, "summary": summary, "inside": inside,
                   "samples": len(_keys(flow_out)), "keys": set(_keys(flow_out))}
            if best["flow"] is None or wall < best["flow"]["wall"]:
                best["flow"] = run
            print(f"repeat {rep + 1}: cli {best['cli']['wall']:.2f}s flow {run['wall']:.2f}s", file=sys.stderr)
    finally:
        stack.stop("server")

    cli, flow = best["cli"], best["flow"]
    batches = flow["summary"]["batches"]
    same = cli["keys"] == flow["keys"]
    print(f"input: {source} (classical backends), {flow['samples']} samples, {batches} batches of {args.batch_size} scenes")
    print(f"same samples (keys) from CLI and flow: {same}")
    print(f"CLI  `python -m datagen understanding`: wall {cli['wall']:.2f} s, CPU {cli['cpu']:.2f} s")
    print(f"flow `synth-understanding`:              wall {flow['wall']:.2f} s, CPU {flow['cpu']:.2f} s "
          f"(+ server CPU {flow['server_cpu']:.2f} s)")
    print(f"ratio flow / CLI: wall {flow['wall'] / cli['wall']:.3f}, CPU {flow['cpu'] / cli['cpu']:.3f}  (target <= 1.15)")
    extra = (flow["wall"] - cli["wall"]) / batches
    loop = (flow["summary"]["batch_seconds"] - flow["inside"]) / batches
    print(f"per-batch overhead: {extra * 1000:.0f} ms of extra wall time per batch (all fixed costs included); "
          f"{loop * 1000:.0f} ms per batch task inside the flow (task run + state changes + progress artifact)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
