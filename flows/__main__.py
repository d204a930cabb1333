"""Run a flow in this process, without a deployment or a worker:

    python -m flows synth-understanding --param source=demo:8 --param batch_size=4
    python -m flows synth-perception --params '{"limit": 10, "execution": {"runner": "dask"}}'
    python -m flows demo                      # the whole pipeline on the demo scenes
    python -m flows --list

Values of ``--param k=v`` are read as JSON when they parse (``8``, ``null``, ``{"runner": "dask"}``)
and as text otherwise, as ``prefect deployment run --param`` does. With ``PREFECT_API_URL`` set the
run is recorded by that server; without it Prefect starts a throwaway local one.
Prints the flow's summary as JSON; exit status 0 when the flow run completed, 1 when it failed.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

FLOWS = {
    "synth-understanding": "flows.understanding:synth_understanding",
    "synth-perception": "flows.perception:synth_perception",
    "synth-reasoning": "flows.reasoning:synth_reasoning",
    "publish-reviewed": "flows.publish:publish_reviewed",
    "import-dataset": "flows.dataset_import:import_dataset",
    "demo": "flows.demo:demo",
}


def load_flow(name: str):
    module, attr = FLOWS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(pairs: list[str], blob: str | None) -> dict:
    params = dict(json.loads(blob)) if blob else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param expects KEY=VALUE, got {pair!r}")
        params[key] = _value(value)
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows", description="run a pipeline flow in this process")
    parser.add_argument("flow", nargs="?", choices=sorted(FLOWS), help="flow name")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="one flow parameter")
    parser.add_argument("--params", default=None, metavar="JSON", help="several parameters as a JSON object")
    parser.add_argument("--list", action="store_true", help="list the flows")
    args = parser.parse_args(argv)
    if args.list or not args.flow:
        for name, target in FLOWS.items():
            print(f"{name:22s} {target}")
        return 0
    flow = load_flow(args.flow)
    state = flow(**parse_params(args.param, args.params), return_state=True)
    if not state.is_completed():
        print(f"{args.flow}: {state.type.value}: {state.message}", file=sys.stderr)
        return 1
    if args.flow != "demo":  # the demo's flow prints its own report (where everything is, what next)
        print(json.dumps(state.result(), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
