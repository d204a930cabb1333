"""Print the mutation score per module from a finished ``mutmut run`` (``make mutate`` calls this).

    .venv/bin/python scripts/mutation_score.py [MUTANTS_DIR]

Reads mutmut's per-file results (``mutants/**/*.py.meta``) and prints, per mutated module, how
many mutants the tests killed (a test failed or timed out), how many survived (every test passed:
a change to the code that nothing noticed) and how many no test reached, plus the score
``killed / (killed + survived)``. Mutants no test reaches count apart: they say a module has no
test at all for that function, which the score alone would hide.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit-code meanings (mutmut/stats.py): 1 and 3 killed, 0 survived, 5 and 33 no tests,
# 24/-24/36/152/255 timeout (the mutant made a test hang: a kill).
_KILLED = {1, 3, 24, -24, 36, 152, 255}
_SURVIVED = {0}
_NO_TESTS = {5, 33}


def module_counts(mutants_dir: Path) -> dict[str, Counter]:
    """``{module path: Counter(killed=, survived=, no_tests=, other=)}`` over every meta file."""
    out: dict[str, Counter] = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if not codes:
            continue
        counts = Counter()
        for code in codes.values():
            kind = ("killed" if code in _KILLED else "survived" if code in _SURVIVED
                    else "no_tests" if code in _NO_TESTS else "other")
            counts[kind] += 1
        out[str(meta.relative_to(mutants_dir))[: -len(".meta")]] = counts
    return out


def score(counts: Counter) -> float:
    tested = counts["killed"] + counts["survived"]
    return counts["killed"] / tested if tested else 0.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mutants_dir = Path(argv[0] if argv else "mutants")
    per_module = module_counts(mutants_dir)
    if not per_module:
        print(f"no mutmut results under {mutants_dir}/ (run `make mutate` first)", file=sys.stderr)
        return 1
    print(f"{'module':<44}{'mutants':>8}{'killed':>8}{'survived':>9}{'no test':>8}{'score':>8}")
    total = Counter()
    for module, counts in per_module.items():
        total += counts
        print(f"{module:<44}{sum(counts.values()):>8}{counts['killed']:>8}{counts['survived']:>9}"
              f"{counts['no_tests']:>8}{score(counts):>8.1%}")
    print(f"{'all':<44}{sum(total.values()):>8}{total['killed']:>8}{total['survived']:>9}"
          f"{total['no_tests']:>8}{score(total):>8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
