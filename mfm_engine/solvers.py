"""ODE solvers for the velocity field: tiny fixed-step classes found by name, and adaptive dopri5.

Every solver integrates ``dx/dt = f(x, t)`` from ``t_start`` to ``t_end``. Direction is only the
order of the time grid: contrast→native integrates the same field from t=1 to t=0, native→contrast
from 0 to 1, through the same code. ``f(x, t)`` gets ``x`` shaped like ``x0`` (any shape, e.g.
``(B, C, H, W)``) and ``t`` as a 0-dim tensor on ``x``'s device and dtype; it returns the velocity
shaped like ``x``.

    solver = get_solver("heun")
    result = solver.integrate(f, x0, 1.0, 0.0, steps=4)   # result.x, result.nfe == 8, result.ts

Fixed-step solvers take ``steps`` equal intervals; ``dopri5`` uses ``steps`` only for its first
step-size guess. See docs/solvers.md for the table of orders, NFE per step and test references.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from mfm_engine.errors import MFMError

__all__ = [
    "SOLVERS",
    "Adams",
    "Dopri5",
    "Euler",
    "FixedStepSolver",
    "Heun",
    "Midpoint",
    "RK3",
    "RK4",
    "SolveResult",
    "Solver",
    "SolverError",
    "get_solver",
    "nfe_for",
    "time_grid",
]

VelocityField = Callable[[Tensor, Tensor], Tensor]
"""``f(x, t) -> v``: x shaped like the state, t a 0-dim tensor on x's device/dtype, v shaped like x."""

StepCallback = Callable[[int, float, Tensor], None]
"""``callback(step, t, x)`` after each accepted step: 1-based step index, time reached, state (read-only)."""


class SolverError(MFMError, ValueError):
    """A solver was asked for something it cannot do: unknown name, bad steps/options, or it failed."""


@dataclass
class SolveResult:
    """The end state, the number of field evaluations spent, and the times the state passed through."""

    x: Tensor
    nfe: int
    ts: list[float]


def _check_steps(steps: object) -> int:
    # bool is an int subclass; steps=True is surely a mistake.
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise SolverError(f"steps must be a whole number >= 1, got {steps!r}")
    if steps < 1:
        raise SolverError(f"steps must be >= 1, got {steps}")
    return steps


def _check_time(name: str, value: object) -> float:
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SolverError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(t):
        raise SolverError(f"{name} must be finite, got {t}")
    return t


def time_grid(t_start: float, t_end: float, steps: int) -> list[float]:
    """``steps + 1`` equally spaced times from t_start to t_end (either order), both ends exact."""
    steps = _check_steps(steps)
    span = t_end - t_start
    ts = [t_start + span * i / steps for i in range(steps)]
    ts.append(t_end)
    return ts


class _CountedField:
    """f seen by the solvers: python-float time in, 0-dim t tensor built, calls counted, output checked."""

    __slots__ = ("calls", "device", "dtype", "f", "shape")

    def __init__(self, f: VelocityField, like: Tensor) -> None:
        self.f = f
        self.dtype = like.dtype
        self.device = like.device
        self.shape = like.shape
        self.calls = 0

    def __call__(self, x: Tensor, t: float) -> Tensor:
        self.calls += 1
        # torch.full, not torch.tensor: no host-to-device copy (and no sync) on CUDA.
        v = self.f(x, torch.full((), t, dtype=self.dtype, device=self.device))
        if not isinstance(v, Tensor) or v.shape != self.shape:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise SolverError(f"the velocity field returned {got} for a state of shape {tuple(self.shape)}")
        if v.dtype != self.dtype:
            # Under autocast a network answers in bf16/fp16; combine stages at the state's precision.
            v = v.to(self.dtype)
        return v


class Solver(abc.ABC):
    """Integrates dx/dt = f(x, t) from t_start to t_end and reports the NFE it spent."""

    name: ClassVar[str] = ""
    adaptive: ClassVar[bool] = False
    order: int

    @property
    def options(self) -> dict[str, Any]:
        """The options this solver was built with (for provenance records)."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({opts})"

    @abc.abstractmethod
    def nfe(self, steps: int) -> int | None:
        """Number of f calls integrate() will make for `steps` (None when adaptive: not known ahead)."""

    def integrate(
        self,
        f: VelocityField,
        x0: Tensor,
        t_start: float,
        t_end: float,
        steps: int,
        callback: StepCallback | None = None,
    ) -> SolveResult:
        """Integrate dx/dt = f(x, t) from (t_start, x0) to t_end; x0 is never modified."""
        steps = _check_steps(steps)
        t_start = _check_time("t_start", t_start)
        t_end = _check_time("t_end", t_end)
        if t_start == t_end:
            raise SolverError(f"t_start and t_end are both {t_start}: nothing to integrate")
        if not isinstance(x0, Tensor) or not x0.is_floating_point():
            got = x0.dtype if isinstance(x0, Tensor) else type(x0).__name__
            raise SolverError(f"x0 must be a floating-point tensor, got {got}")
        counted = _CountedField(f, x0)
        x, ts = self._integrate(counted, x0, t_start, t_end, steps, callback)
        return SolveResult(x=x, nfe=counted.calls, ts=ts)

    @abc.abstractmethod
    def _integrate(
        self,
        f: _CountedField,
        x0: Tensor,
        t_start: float,
        t_end: float,
        steps: int,
        callback: StepCallback | None,
    ) -> tuple[Tensor, list[float]]:
        """The integration loop proper, on validated arguments; returns (x, ts)."""


# ---------------------------------------------------------------------------------------------
# Fixed-step solvers: each overrides one step function (torchdiffeq's shape). ``k1`` lets a caller
# (Adams' bootstrap) pass f(x, t0) it already has, so it is not evaluated twice.


class FixedStepSolver(Solver):
    """Equal steps over a uniform grid; ``stages`` f calls per step."""

    stages: ClassVar[int]

    def nfe(self, steps: int) -> int:
        """``stages`` calls per step."""
        return _check_steps(steps) * self.stages

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """One step from (t0, x) to t1; returns the new state (x untouched)."""
        raise NotImplementedError

    def _stepper(self) -> Callable[[_CountedField, float, float, Tensor], Tensor]:
        # A fresh step function per integration, so multistep memory never leaks between calls.
        return self.step

    def _integrate(
        self,
        f: _CountedField,
        x0: Tensor,
        t_start: float,
        t_end: float,
        steps: int,
        callback: StepCallback | None,
    ) -> tuple[Tensor, list[float]]:
        ts = time_grid(t_start, t_end, steps)
        step = self._stepper()
        x = x0
        for i in range(steps):
            x = step(f, ts[i], ts[i + 1], x)
            if callback is not None:
                callback(i + 1, ts[i + 1], x)
        return x, ts


class Euler(FixedStepSolver):
    """Forward Euler: order 1, 1 f call per step."""

    name = "euler"
    order = 1
    stages = 1

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """x + h f(x, t0)."""
        if k1 is None:
            k1 = f(x, t0)
        return x.add(k1, alpha=t1 - t0)


class Midpoint(FixedStepSolver):
    """Explicit midpoint: order 2, 2 f calls per step."""

    name = "midpoint"
    order = 2
    stages = 2

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """x + h f(x + h/2 k1, t0 + h/2)."""
        h = t1 - t0
        if k1 is None:
            k1 = f(x, t0)
        k2 = f(x.add(k1, alpha=h / 2), t0 + h / 2)
        return x.add(k2, alpha=h)


class Heun(FixedStepSolver):
    """Heun's RK2 (explicit trapezoid): order 2, 2 f calls per step."""

    name = "heun"
    order = 2
    stages = 2

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """x + h/2 (k1 + f(x + h k1, t1))."""
        h = t1 - t0
        if k1 is None:
            k1 = f(x, t0)
        k2 = f(x.add(k1, alpha=h), t1)
        return x.add(k1.add(k2), alpha=h / 2)


class RK3(FixedStepSolver):
    """Kutta's third-order method: order 3, 3 f calls per step."""

    name = "rk3"
    order = 3
    stages = 3

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """c = (0, 1/2, 1), a31 = -1, a32 = 2, b = (1/6, 2/3, 1/6)."""
        h = t1 - t0
        if k1 is None:
            k1 = f(x, t0)
        k2 = f(x.add(k1, alpha=h / 2), t0 + h / 2)
        # The in-place ops below touch only tensors made here, never f's outputs: safe with autograd.
        k3 = f(x.add(k2.mul(2.0).sub_(k1), alpha=h), t1)
        acc = k1.add(k2, alpha=4.0).add_(k3)
        return x.add(acc, alpha=h / 6)


class RK4(FixedStepSolver):
    """The classic Runge–Kutta method (1/6, 1/3, 1/3, 1/6): order 4, 4 f calls per step."""

    name = "rk4"
    order = 4
    stages = 4

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """c = (0, 1/2, 1/2, 1), b = (1/6, 1/3, 1/3, 1/6)."""
        h = t1 - t0
        tm = t0 + h / 2
        if k1 is None:
            k1 = f(x, t0)
        k2 = f(x.add(k1, alpha=h / 2), tm)
        acc = k1.add(k2, alpha=2.0)
        k3 = f(x.add(k2, alpha=h / 2), tm)
        acc.add_(k3, alpha=2.0)
        k4 = f(x.add(k3, alpha=h), t1)
        acc.add_(k4)
        return x.add(acc, alpha=h / 6)


# Adams–Bashforth weights for f_n, f_{n-1}, ... (newest first).
_AB_WEIGHTS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
# Runge–Kutta of the same order for the bootstrap, so the start does not cost global order.
_AB_BOOTSTRAP: dict[int, type[FixedStepSolver]] = {2: Heun, 3: RK3, 4: RK4}


class Adams(FixedStepSolver):
    """Adams–Bashforth of order 1–4 on a uniform grid: 1 f call per step once its history is full.

    bootstrap="rk" (default) takes the first ``order - 1`` steps with Runge–Kutta of the same order
    (heun, rk3, rk4), keeping global order ``order``; NFE = b·s + (steps − b) with b = min(order − 1,
    steps) and s = order stages (order 4: steps + 9 from 3 steps on). bootstrap="ab" ramps up through
    AB1, AB2, … instead: exactly ``steps`` NFE, but the Euler first step caps global order at 2.
    """

    name = "adams"

    def __init__(self, order: int = 4, bootstrap: str = "rk") -> None:
        """Adams–Bashforth of `order` (1–4) with an "rk" or "ab" bootstrap."""
        if isinstance(order, bool) or not isinstance(order, int) or order not in _AB_WEIGHTS:
            raise SolverError(f"adams order must be one of {sorted(_AB_WEIGHTS)}, got {order!r}")
        if bootstrap not in ("rk", "ab"):
            raise SolverError(f"adams bootstrap must be 'rk' or 'ab', got {bootstrap!r}")
        self.ab_order = order
        self.bootstrap = bootstrap
        self.order = order if bootstrap == "rk" else min(order, 2)
        rk = _AB_BOOTSTRAP.get(order) if bootstrap == "rk" else None
        self._rk = rk() if rk is not None else None

    @property
    def options(self) -> dict[str, Any]:
        """order and bootstrap."""
        return {"order": self.ab_order, "bootstrap": self.bootstrap}

    def nfe(self, steps: int) -> int:
        """steps + (stages − 1) per bootstrap step (see the class docstring)."""
        steps = _check_steps(steps)
        if self._rk is None:
            return steps
        boot = min(self.ab_order - 1, steps)
        return boot * self._rk.stages + (steps - boot)

    def step(self, f: _CountedField, t0: float, t1: float, x: Tensor, k1: Tensor | None = None) -> Tensor:
        """Not available alone: a multistep method needs its history, so use integrate()."""
        raise SolverError("adams is a multistep method: it has no single step; call integrate()")

    def _stepper(self) -> Callable[[_CountedField, float, float, Tensor], Tensor]:
        history: deque[Tensor] = deque(maxlen=self.ab_order)  # f at grid points, newest first
        rk = self._rk
        full = self.ab_order

        def step(f: _CountedField, t0: float, t1: float, x: Tensor) -> Tensor:
            fn = f(x, t0)
            history.appendleft(fn)
            if rk is not None and len(history) < full:
                return rk.step(f, t0, t1, x, k1=fn)
            weights = _AB_WEIGHTS[len(history)]
            acc = history[0].mul(weights[0])
            for w, past in zip(weights[1:], list(history)[1:], strict=True):
                acc.add_(past, alpha=w)
            return x.add(acc, alpha=t1 - t0)

        return step


# ---------------------------------------------------------------------------------------------
# Dormand–Prince 5(4), FSAL: the 7th stage is f at the accepted point, reused as the next k1.

_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A: tuple[tuple[float, ...], ...] = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),  # = the 5th-order weights
)
# 5th-order minus embedded 4th-order weights, for the local error estimate.
_DP_E = (
    35 / 384 - 5179 / 57600,
    0.0,
    500 / 1113 - 7571 / 16695,
    125 / 192 - 393 / 640,
    -2187 / 6784 + 92097 / 339200,
    11 / 84 - 187 / 2100,
    -1 / 40,
)


def _combine(ks: list[Tensor], weights: tuple[float, ...]) -> Tensor:
    """Σ w_i k_i over the non-zero weights, in one fresh tensor."""
    pairs = [(w, k) for w, k in zip(weights, ks, strict=False) if w != 0.0]
    acc = pairs[0][1].mul(pairs[0][0])
    for w, k in pairs[1:]:
        acc.add_(k, alpha=w)
    return acc


class Dopri5(Solver):
    """Adaptive Dormand–Prince 5(4) with error control; ``steps`` sets only the first step (span/steps).

    A step is accepted when the RMS of err / (atol + rtol·max(|x_n|, |x_n+1|)) is ≤ 1 for every sample
    (dim 0 is the batch when x has ≥ 2 dims; the worst sample decides). NFE = 1 + 6 per attempted step.
    More than ``max_steps`` attempts raises SolverError.
    """

    name = "dopri5"
    adaptive = True
    order = 5

    def __init__(
        self,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        max_steps: int = 1000,
        safety: float = 0.9,
        min_factor: float = 0.2,
        max_factor: float = 10.0,
    ) -> None:
        """Tolerances, the attempt guard and the step-size controller's factors."""
        for key, value in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise SolverError(f"dopri5 {key} must be a finite number >= 0, got {value!r}")
        if rtol == 0 and atol == 0:
            raise SolverError("dopri5 needs rtol or atol > 0")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise SolverError(f"dopri5 max_steps must be a whole number >= 1, got {max_steps!r}")
        if not (0 < safety <= 1 and 0 < min_factor < 1 < max_factor):
            raise SolverError("dopri5 needs 0 < safety <= 1 and 0 < min_factor < 1 < max_factor")
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = max_steps
        self.safety = float(safety)
        self.min_factor = float(min_factor)
        self.max_factor = float(max_factor)

    @property
    def options(self) -> dict[str, Any]:
        """Tolerances and the attempt guard."""
        return {"rtol": self.rtol, "atol": self.atol, "max_steps": self.max_steps}

    def nfe(self, steps: int) -> None:
        """Not known before integrating: it depends on the field."""
        _check_steps(steps)
        return None

    def _error_ratio(self, err: Tensor, x: Tensor, x_new: Tensor) -> float:
        scale = torch.maximum(x.abs(), x_new.abs()).mul_(self.rtol).add_(self.atol)
        sq = err.div(scale).square_()
        per_sample = sq.flatten(1).mean(dim=1) if sq.ndim >= 2 else sq.mean().reshape(1)
        return float(per_sample.max().sqrt())

    def _integrate(
        self,
        f: _CountedField,
        x0: Tensor,
        t_start: float,
        t_end: float,
        steps: int,
        callback: StepCallback | None,
    ) -> tuple[Tensor, list[float]]:
        span = t_end - t_start
        h = span / steps
        t, x = t_start, x0
        k1 = f(x, t)
        ts = [t_start]
        attempts = 0
        while t != t_end:
            if attempts >= self.max_steps:
                raise SolverError(
                    f"dopri5 reached max_steps={self.max_steps} step attempts at t={t:.6g} "
                    f"(from {t_start} to {t_end}) with rtol={self.rtol:g}, atol={self.atol:g}: "
                    "loosen the tolerances or raise max_steps"
                )
            attempts += 1
            remaining = t_end - t
            # Land exactly on t_end rather than leave a sliver of an interval behind.
            last = abs(h) * (1 + 1e-9) >= abs(remaining)
            if last:
                h = remaining
            t_new = t_end if last else t + h
            ks = [k1]
            for i in range(1, 7):
                xi = x.add(_combine(ks, _DP_A[i]), alpha=h)
                ks.append(f(xi, t_new if i >= 5 else t + _DP_C[i] * h))
            x_new = xi  # the 7th stage point is the 5th-order solution (FSAL)
            with torch.no_grad():
                ratio = self._error_ratio(_combine(ks, _DP_E).mul_(h), x, x_new)
            if not math.isfinite(ratio):
                raise SolverError(f"dopri5: the state or its velocity became non-finite near t={t:.6g}")
            if ratio <= 1.0:
                t, x, k1 = t_new, x_new, ks[6]
                ts.append(t)
                if callback is not None:
                    callback(len(ts) - 1, t, x)
            factor = self.max_factor if ratio == 0.0 else self.safety * ratio**-0.2
            factor = min(self.max_factor, max(self.min_factor, factor))
            if ratio > 1.0:
                factor = min(factor, 1.0)
            h *= factor
            if t != t_end and abs(h) <= 1e-14 * abs(span):
                raise SolverError(
                    f"dopri5: step size underflow at t={t:.6g}; the field may be stiff or singular"
                )
        return x, ts


SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (Euler, Midpoint, Heun, RK3, RK4, Adams, Dopri5)}
"""Every solver by name."""


def get_solver(name: str, **options: Any) -> Solver:
    """The solver called `name`, built with `options` (e.g. adams order=3, dopri5 rtol=1e-4)."""
    key = name.strip().lower() if isinstance(name, str) else None
    cls = SOLVERS.get(key) if key is not None else None
    if cls is None:
        raise SolverError(f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)}")
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes: {', '.join(accepted)}" if accepted else "it takes no options"
        raise SolverError(f"solver {key!r} got unknown option(s) {', '.join(unknown)}; {takes}")
    return cls(**options)


def nfe_for(name: str, steps: int, **options: Any) -> int | None:
    """NFE solver `name` spends on `steps` steps (None for adaptive dopri5)."""
    return get_solver(name, **options).nfe(steps)
