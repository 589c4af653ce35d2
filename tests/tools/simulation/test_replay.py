"""A seed replays exactly; the command line says what failed, how to replay it, and refuses bad input."""

from __future__ import annotations

import re

from tools.simulation import cli
from tools.simulation.faults import parse_faults
from tools.simulation.simulation import Options, Simulation
from tools.simulation.variants import VARIANTS


def test_a_seed_replays_exactly() -> None:
    options = Options(steps=800)
    first, second = Simulation(7, options).run(), Simulation(7, options).run()
    assert first.trace == second.trace
    assert (first.steps, first.true_time, first.commands, first.fault_counts) == \
           (second.steps, second.true_time, second.commands, second.fault_counts)
    assert Simulation(8, options).run().trace != first.trace


def test_a_failure_prints_the_seed_its_trace_and_how_to_replay_it(capsys) -> None:
    variant = VARIANTS["fresh-leader-doc-at-start"]
    with variant.patch():
        code = cli.main(["--seed", "1", "--faults", variant.faults, "--trace-lines", "30"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILED
    assert "seed 1 FAILED" in out and "violation: [" in out
    assert "replay: scripts/simulate --seed 1" in out
    assert out.count("\n    ") >= 30  # the trace
    assert "seeds: 1 run, 1 failed (1)" in out and "steps/s" in out


def test_a_clean_run_exits_0_with_its_figures(capsys) -> None:
    assert cli.main(["--seeds", "2", "--steps", "300", "--faults", "none"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "seeds: 2 run, 0 failed; steps: 600;" in out and "steps/s" in out


def test_bad_arguments_are_one_line_and_exit_2(capsys) -> None:
    assert cli.main(["--faults", "all,-no-such-fault"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown fault 'no-such-fault'" in err
    assert cli.main(["--sites", "11"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 10 sites" in err


def test_fault_specs_add_and_leave_out() -> None:
    assert parse_faults("none") == frozenset()
    assert parse_faults("slow,crash") == {"slow", "crash"}
    assert "init" not in parse_faults("all,-init") and "crash" in parse_faults("all,-init")


def _without_speed(out: str) -> str:
    """The output with the figures that depend on the machine's speed (steps/s, seconds) left out."""
    return re.sub(r"; [0-9]+ steps/s; [0-9.]+ s;", ";", out)


def test_several_processes_print_what_one_prints(capsys) -> None:
    variant = VARIANTS["fresh-leader-doc-at-start"]
    args = ["--seeds", "4", "--steps", "400", "--faults", variant.faults, "--trace-lines", "5", "--keep-going"]
    with variant.patch():
        one = cli.main(args)
        out_one = capsys.readouterr().out
        two = cli.main(args + ["--jobs", "2"])
        out_two = capsys.readouterr().out
    assert one == two == cli.EXIT_FAILED
    assert _without_speed(out_one) == _without_speed(out_two)
    assert "FAILED" in out_one and f"--faults '{variant.faults}'" in out_one
