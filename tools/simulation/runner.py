"""A fake runner that keeps the supervisor's deadline rule exactly, on the host's clock.

It stands where ``enqueue.runner.Runner`` and its supervisor process stand,
and keeps their rules (see enqueue.supervisor):

* a start whose SIGTERM moment (``deadline - kill_grace``) has passed is
  refused (``spawn_failed``, ``how: fenced``); a start while a command runs
  is refused too;
* SIGTERM at ``deadline - kill_grace``, SIGKILL at ``deadline``, on the
  host's monotonic clock; ``extend`` moves both later, but is ignored once
  the SIGTERM moment has passed, and when it is not later;
* ``stop(reason)`` sends SIGTERM now and SIGKILL a grace later (or at the
  deadline, if sooner); the first cause to end a turn is the one reported;
* that deadline arithmetic is the supervisor's own (``enqueue.fenced_turn``),
  not a copy: a variant that breaks it there breaks it here;
* the agent gone (crashed) stops the command like ``stop`` (``agent-gone``);
* it reports what the real driver hands the agent: ``CommandStarted``, then
  ``CommandEnded`` with exit code, how and the duration on the host's
  clock, or ``StartFailed``; always later, never inside the call.

Every command's true life (start and death in true time, its turn, who ran
it) goes into the shared ``Ledger``, which checks at each start that nothing
else is alive and that the fencing token grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

from enqueue.events import CommandEnded, CommandStarted, RunnerReport, StartFailed
from enqueue.fenced_turn import FencedTurn, past_sigterm_moment
from enqueue.outcomes import Outcome

from tools.simulation.world import SiteClock, World


@dataclass
class Command:
    """One command's true life."""

    site: str
    instance: str
    turn: int
    start: float
    natural_end: float
    natural_code: int
    ignores_term: bool
    reaction_s: float
    fence: FencedTurn  # the supervisor's deadline arithmetic, on the host's monotonic clock
    term_sent_true: Optional[float] = None
    end: Optional[float] = None
    how: Optional[str] = None
    reason: Optional[str] = None
    exit_code: Optional[int] = None

    @property
    def term_at(self) -> float:
        return self.fence.term_at

    @property
    def kill_at(self) -> float:
        return self.fence.kill_at

    def alive_at(self, moment: float) -> bool:
        return self.start <= moment and (self.end is None or self.end > moment)

    def describe(self) -> str:
        end = "still alive" if self.end is None else f"until {self.end:.3f} ({self.how}, exit {self.exit_code})"
        return f"turn {self.turn} of {self.site} ({self.instance}) from {self.start:.3f} {end}"


class Ledger:
    """Every command that ever started, and the violations seen at starts."""

    def __init__(self) -> None:
        self.commands: List[Command] = []
        self.runners: List["SimRunner"] = []
        self.violations: List[str] = []

    def starting(self, cmd: Command, now: float) -> None:
        for runner in self.runners:
            runner.settle(now)
        for other in self.commands:
            if other.alive_at(now):
                self.violations.append(f"[overlap] two commands alive at once: {other.describe()} and turn "
                                       f"{cmd.turn} of "
                                       f"{cmd.site} ({cmd.instance}) started at {now:.3f}")
        highest = max((c.turn for c in self.commands), default=0)
        if cmd.turn <= highest:
            same = [c for c in self.commands if c.turn == cmd.turn]
            what = "started twice" if same else f"started after turn {highest}"
            self.violations.append(f"[token] fencing token {cmd.turn} {what}: {cmd.site} ({cmd.instance}) at {now:.3f}"
                                   + (f"; first {same[0].describe()}" if same else ""))
        self.commands.append(cmd)


class SimRunner:
    """One agent instance's supervisor, simulated."""

    def __init__(self, world: World, ledger: Ledger, clock: SiteClock, site: str, instance: str,
                 kill_grace_s: float, deliver: Callable[[RunnerReport], object]) -> None:
        self.world = world
        self.ledger = ledger
        self.clock = clock
        self.site = site
        self.instance = instance
        self.kill_grace_s = kill_grace_s
        self._deliver = deliver
        self.current: Optional[Command] = None
        self.closed = False
        self.supervisor_pid = 0
        self._tick_generation = 0
        ledger.runners.append(self)

    @property
    def busy(self) -> bool:
        return self.current is not None

    # -- the runner's interface ------------------------------------------------

    def start(self, turn: int, argv: List[str], env: dict, deadline: float) -> None:
        if not math.isfinite(deadline):
            raise ValueError("deadline must be finite")
        self.settle(self.world.now)
        local = self.clock.monotonic()
        if self.closed or self.current is not None:
            self._emit_later(StartFailed(turn=turn, error="not started: busy or closed"))
            return
        if past_sigterm_moment(local, deadline, self.kill_grace_s):
            self.world.note(self.site, f"runner refuses turn {turn}: past its SIGTERM moment")
            self._emit_later(StartFailed(turn=turn, how=Outcome.FENCED.value,
                                         error="not started: past its SIGTERM moment"))
            return
        assert str(turn) == env.get("ENQUEUE_TURN"), (turn, env)
        rng = self.world.rng
        long_run = rng.random() < 0.15
        duration = rng.uniform(2.0, 12.0) if long_run else rng.uniform(0.05, 2.0)
        cmd = Command(
            site=self.site, instance=self.instance, turn=turn, start=self.world.now,
            natural_end=self.world.now + duration,
            natural_code=0 if rng.random() < 0.8 else rng.choice((1, 2, 3)),
            ignores_term=rng.random() < 0.2,
            reaction_s=rng.uniform(0.0, self.kill_grace_s * 0.9),
            fence=FencedTurn(turn, 10000 + turn, local, deadline, self.kill_grace_s),
        )
        self.world.note(self.site, f"command of turn {turn} starts (runs {duration:.2f} s unless stopped)")
        self.ledger.starting(cmd, self.world.now)
        self.current = cmd
        self._emit_later(CommandStarted(turn=turn, pid=10000 + turn))
        self._wake_at_next()

    def extend(self, deadline: float) -> None:
        self.settle(self.world.now)
        cmd = self.current
        if cmd is None or cmd.end is not None or self.closed:
            return
        cmd.fence.extend(deadline, self.clock.monotonic())
        self._wake_at_next()

    def stop(self, reason: str) -> None:
        self._stop("stopped", reason)

    def close(self) -> None:
        """Shut the supervisor down: the command is stopped with the grace; nothing more is delivered."""
        self._stop("stopped", "shutdown")
        self.closed = True

    def agent_gone(self) -> None:
        """The agent died: the supervisor reads EOF on its control pipe and stops the command."""
        self._stop("agent-gone", None)
        self.closed = True

    # -- the supervisor's clockwork -------------------------------------------

    def _stop(self, how: str, reason: Optional[str]) -> None:
        self.settle(self.world.now)
        cmd = self.current
        if cmd is None or cmd.end is not None:
            return
        if cmd.how is None:
            cmd.how, cmd.reason = how, reason
        cmd.fence.stop(how, reason, self.clock.monotonic())
        self.settle(self.world.now)
        self._wake_at_next()

    def settle(self, now: float) -> None:
        """Bring the command's state up to true time ``now``: signals sent, death, its report."""
        cmd = self.current
        if cmd is None or cmd.end is not None:
            return
        term_true = cmd.term_sent_true if cmd.term_sent_true is not None else self.clock.true_time_of(cmd.term_at)
        kill_true = self.clock.true_time_of(cmd.kill_at)
        if cmd.natural_end <= min(term_true, kill_true, now):
            self._died(cmd, cmd.natural_end, cmd.natural_code, cmd.how or "exited")
            return
        if term_true <= now and cmd.term_sent_true is None:
            cmd.fence.due_signals(cmd.term_at)  # SIGTERM, sent at its moment
            cmd.term_sent_true = term_true
            cmd.how = cmd.how or "fenced"
        death_candidates = [kill_true]
        if cmd.term_sent_true is not None:
            death_candidates.append(cmd.natural_end)
            if not cmd.ignores_term:
                death_candidates.append(cmd.term_sent_true + cmd.reaction_s)
        death = min(death_candidates)
        if death <= now:
            if death == cmd.natural_end:
                code = cmd.natural_code
            elif death == kill_true:
                code = 137
            else:
                code = 143
            cmd.how = cmd.how or "fenced"
            self._died(cmd, death, code, cmd.how)

    def _died(self, cmd: Command, at: float, code: int, how: str) -> None:
        cmd.end, cmd.exit_code, cmd.how = at, code, how
        cmd.fence.exited(code, self.clock.monotonic())
        self.current = None
        self.world.note(self.site, f"command of turn {cmd.turn} dead ({how}, exit {code})")
        if not self.closed:
            duration = (at - cmd.start) * self.clock.rate
            self._emit_at(at, CommandEnded(turn=cmd.turn, exit_code=code, how=how, reason=cmd.reason,
                                           duration_s=round(duration, 6)))

    def _wake_at_next(self) -> None:
        """Schedule one tick at the next moment the command's state can change by itself."""
        cmd = self.current
        if cmd is None:
            return
        moments = [cmd.natural_end, self.clock.true_time_of(cmd.kill_at)]
        if cmd.term_sent_true is None:
            moments.append(self.clock.true_time_of(cmd.term_at))
        elif not cmd.ignores_term:
            moments.append(cmd.term_sent_true + cmd.reaction_s)
        upcoming = [m for m in moments if m >= self.world.now]
        if not upcoming:
            return
        self._tick_generation += 1
        generation = self._tick_generation
        self.world.at(min(upcoming), lambda: self._tick(generation), f"supervisor {self.instance}")

    def _tick(self, generation: int) -> bool:
        if generation != self._tick_generation:
            return False
        self.settle(self.world.now)
        self._wake_at_next()
        return True

    def _emit_later(self, event: RunnerReport) -> None:
        self._emit_at(self.world.now, event)

    def _emit_at(self, moment: float, event: RunnerReport) -> None:
        # The supervisor's report reaches the agent a moment after the fact.
        self._deliver_at(moment + self.world.rng.uniform(0.0005, 0.005), event)

    def _deliver_at(self, moment: float, event: RunnerReport) -> None:
        self.world.at(moment, lambda: False if self.closed else self._deliver(event), f"runner {type(event).__name__}")
