"""``scripts/simulate``: run seeds, print what failed with its trace, and the figures."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator, List, Optional, Sequence

from tools.simulation.faults import ALL_FAULTS, FaultSpecError, parse_faults
from tools.simulation.simulation import SITE_NAMES, Options, Result, Simulation

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/simulate",
        description="Run the real agents on an in-memory database under faults, deterministically by seed, "
                    "and check every invariant after every step.",
        epilog="Exit codes: 0 every invariant held; 1 one failed (the seed and its trace are printed); "
               "2 bad arguments. Fault names: " + ", ".join(ALL_FAULTS),
    )
    p.add_argument("--seeds", type=_positive, default=100, metavar="N", help="run seeds 1..N (default 100)")
    p.add_argument("--seed", type=int, metavar="S", help="run only seed S (replays a failure exactly)")
    p.add_argument("--steps", type=_positive, default=Options.steps, metavar="M",
                   help=f"steps per seed (default {Options.steps})")
    p.add_argument("--sites", type=_positive, default=Options.sites, metavar="K",
                   help=f"sites, at most {len(SITE_NAMES)} (default {Options.sites})")
    p.add_argument("--run-once", type=int, default=Options.run_once, metavar="R",
                   help="how many of the sites (the last ones) run once per agent, in a loop that starts the "
                        "next agent after a short monitoring step, as the original site loop does (default 0)")
    p.add_argument("--faults", default="all", metavar="SPEC",
                   help="fault classes: 'all', 'none', names, '-name' to leave one out, comma-separated "
                        "(default all)")
    p.add_argument("--trace-lines", type=_positive, default=120, metavar="L",
                   help="lines of trace printed for a failing seed (default 120)")
    p.add_argument("--keep-going", action="store_true", help="run every seed even after one failed")
    p.add_argument("--jobs", type=_positive, default=1, metavar="J",
                   help="run seeds in J processes at once (default 1); the output is the same as with one")
    p.add_argument("--max-failures", type=_positive, metavar="K",
                   help="run every site but the first with 'enqueue run --max-failures K' (its commands fail one "
                        "time in five, so sites drain themselves; the admin's drain fault and the heal undrain "
                        "them); default: off, so that the seeds of the default runs stay as they were")
    return p


def run_seed(seed: int, options: Options, traces: bool = False) -> Result:
    """One seed's result; a passing seed's trace is dropped (only a failure prints one) unless ``traces``."""
    result = Simulation(seed, options).run()
    if result.ok and not traces:
        result.trace = []
    return result


def results(seeds: List[int], options: Options, jobs: int, traces: bool = False) -> Iterator[Result]:
    """Each seed's result, in the order of ``seeds`` whatever the number of processes.

    A passing seed's trace comes back only with ``traces`` (tests that read it); a failing one's always.
    """
    if jobs == 1 or len(seeds) == 1:
        yield from (run_seed(seed, options, traces) for seed in seeds)
        return
    # Forked workers inherit the parent's modules as they are (a broken variant patched in included).
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        chunk = max(1, min(20, len(seeds) // (4 * jobs)))
        try:
            yield from pool.map(run_seed, seeds, [options] * len(seeds), [traces] * len(seeds), chunksize=chunk)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.sites > len(SITE_NAMES):
        print(f"simulate: --sites {args.sites}: at most {len(SITE_NAMES)} sites; use a smaller number",
              file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.run_once <= args.sites:
        print(f"simulate: --run-once {args.run_once}: between 0 and --sites ({args.sites})", file=sys.stderr)
        return EXIT_USAGE
    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        print(f"simulate: --faults {args.faults!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = Options(sites=args.sites, steps=args.steps, faults=faults, run_once=args.run_once,
                      max_failures=args.max_failures)
    seeds: List[int] = [args.seed] if args.seed is not None else list(range(1, args.seeds + 1))
    started = time.monotonic()
    steps = commands = on_grant = 0
    failed: List[Result] = []
    for result in results(seeds, options, args.jobs):
        steps += result.steps
        commands += result.commands
        on_grant += result.on_grant
        if not result.ok:
            failed.append(result)
            report_failure(result, options, args.trace_lines, args.faults)
            if not args.keep_going:
                break
    elapsed = time.monotonic() - started
    ran = seeds.index(failed[-1].seed) + 1 if failed and not args.keep_going else len(seeds)
    which = f" ({', '.join(str(r.seed) for r in failed)})" if failed else ""
    print(f"seeds: {ran} run, {len(failed)} failed{which}; "
          f"steps: {steps}; {steps / elapsed if elapsed > 0 else 0.0:.0f} steps/s; {elapsed:.1f} s; "
          f"commands: {commands} ({on_grant} started on the grant alone); "
          f"faults: {','.join(sorted(faults)) if faults != frozenset(ALL_FAULTS) else 'all'}")
    return EXIT_FAILED if failed else EXIT_OK


def report_failure(result: Result, options: Options, trace_lines: int, faults: str = "all") -> None:
    print(f"seed {result.seed} FAILED after {result.steps} steps ({result.true_time:.3f} s of simulated time):")
    for text in result.violations:
        print(f"  violation: {text}")
    print(f"  trace (last {min(trace_lines, len(result.trace))} lines; true time, who, what):")
    for line in result.trace[-trace_lines:]:
        print(f"    {line}")
    replay = f"scripts/simulate --seed {result.seed} --steps {options.steps} --sites {options.sites}"
    if faults != "all":
        replay += f" --faults '{faults}'"
    if options.run_once:
        replay += f" --run-once {options.run_once}"
    if options.max_failures is not None:
        replay += f" --max-failures {options.max_failures}"
    print(f"  replay: {replay}")
