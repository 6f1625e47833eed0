"""ODE solvers: convergence order on known solutions, agreement with torchdiffeq on a conv-net field,
NFE equal to the real number of field calls, and clear errors for bad arguments.

References per solver (also in docs/solvers.md):
- euler, midpoint, heun: ``torchdiffeq.odeint`` methods 'euler', 'midpoint', 'heun2'.
- rk3 (Kutta), rk4 (classic): torchdiffeq has no such named method ('rk4' there is the 3/8 rule), so
  ``odeint`` runs a fixed-grid solver built here from torchdiffeq's own ``rk3_step_func`` (given Kutta's
  tableau) and ``rk4_step_func`` (the classic rule); plus a Butcher-table reference written here.
- adams: a reference written here (Butcher-table RK bootstrap, Adams–Bashforth weights derived
  exactly by integrating Lagrange polynomials); the weights are also checked against torchdiffeq's
  table. torchdiffeq's 'explicit_adams' bootstraps with the 3/8 rule and a variable order, so it does
  not match step for step.
- dopri5: the exact solution of known ODEs, and on the network field torchdiffeq 'dopri8' at a very
  tight tolerance, with torchdiffeq 'dopri5' at the same tolerance as ours equally close.
"""

from __future__ import annotations

import importlib
from fractions import Fraction

import numpy as np
import pytest
import torch
from torchdiffeq import odeint
from torchdiffeq._impl.fixed_adams import _BASHFORTH_COEFFICIENTS, _DIVISOR
from torchdiffeq._impl.rk_common import rk3_step_func, rk4_step_func
from torchdiffeq._impl.solvers import FixedGridODESolver

from mfm_engine.errors import MFMError
from mfm_engine.solvers import SOLVERS, SolverError, get_solver, nfe_for, time_grid

# The module, not the function torchdiffeq._impl re-exports under the same name.
torchdiffeq_odeint_module = importlib.import_module("torchdiffeq._impl.odeint")

F64 = torch.float64
DIRECTIONS = [(0.0, 1.0), (1.0, 0.0)]

# (name, options, expected order)
FIXED_CASES = [
    ("euler", {}, 1),
    ("midpoint", {}, 2),
    ("heun", {}, 2),
    ("rk3", {}, 3),
    ("rk4", {}, 4),
    ("adams", {}, 4),
    ("adams", {"order": 3}, 3),
    ("adams", {"order": 2}, 2),
    ("adams", {"order": 1}, 1),
    ("adams", {"bootstrap": "ab"}, 2),  # AB4 after an AB1-AB2-AB3 ramp: the Euler start caps it at 2
]
ALL_CASES = [(n, o) for n, o, _ in FIXED_CASES] + [("dopri5", {}), ("dopri5", {"rtol": 1e-8, "atol": 1e-8})]


def _case_id(name: str, options: dict) -> str:
    return name + "".join(f"-{k}={v}" for k, v in options.items())


# --------------------------------------------------------------------------------------------
# Known solutions


def forced_decay(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """dy/dt = -2y + e^t."""
    return -2.0 * x + torch.exp(t)


def forced_decay_exact(t0: float, y0: np.ndarray, t: float) -> np.ndarray:
    return (y0 - np.exp(t0) / 3) * np.exp(-2 * (t - t0)) + np.exp(t) / 3


def spiral(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A damped rotation with angular speed 1 + t, on (B, 2) points."""
    w = 1.0 + t
    return torch.stack([-0.3 * x[:, 0] - w * x[:, 1], w * x[:, 0] - 0.3 * x[:, 1]], dim=1)


def spiral_exact(t0: float, y0: np.ndarray, t: float) -> np.ndarray:
    theta = (t + t * t / 2) - (t0 + t0 * t0 / 2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (y0 @ rot.T) * np.exp(-0.3 * (t - t0))


PROBLEMS = {
    "forced_decay": (forced_decay, forced_decay_exact, np.array([1.0, -0.5, 2.0])),
    "spiral": (spiral, spiral_exact, np.array([[1.0, 0.5], [-0.7, 0.2], [0.0, 1.5]])),
}


def _slope(steps: tuple[int, ...], errors: list[float]) -> float:
    """Log-log slope of error against step size."""
    return float(np.polyfit(np.log(1.0 / np.asarray(steps)), np.log(errors), 1)[0])


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("t_start,t_end", DIRECTIONS)
@pytest.mark.parametrize("name,options,order", FIXED_CASES, ids=[_case_id(n, o) for n, o, _ in FIXED_CASES])
def test_fixed_step_order_of_convergence(name, options, order, t_start, t_end, problem):
    f, exact, y0 = PROBLEMS[problem]
    solver = get_solver(name, **options)
    assert solver.order == order
    want = exact(t_start, y0, t_end)
    steps = (16, 32, 64, 128)
    errors = []
    for n in steps:
        x = solver.integrate(f, torch.tensor(y0, dtype=F64), t_start, t_end, n).x
        errors.append(float(np.abs(x.numpy() - want).max()))
    assert errors[-1] < errors[0]
    assert abs(_slope(steps, errors) - order) <= 0.3, errors


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("t_start,t_end", DIRECTIONS)
def test_dopri5_meets_tolerance_and_spends_more_as_it_tightens(problem, t_start, t_end):
    f, exact, y0 = PROBLEMS[problem]
    want = exact(t_start, y0, t_end)
    nfes = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        result = get_solver("dopri5", rtol=tol, atol=tol).integrate(
            f, torch.tensor(y0, dtype=F64), t_start, t_end, steps=4
        )
        error = float(np.abs(result.x.numpy() - want).max())
        # Local control bounds the global error only up to a modest factor.
        assert error <= 10 * tol * max(1.0, float(np.abs(want).max())), (tol, error)
        nfes.append(result.nfe)
        assert result.ts[0] == t_start and result.ts[-1] == t_end
        assert all((b - a) * (t_end - t_start) > 0 for a, b in zip(result.ts, result.ts[1:], strict=False))
    assert nfes == sorted(nfes) and nfes[-1] > 2 * nfes[0], nfes


def test_dopri5_steps_only_sets_the_first_guess():
    f, exact, y0 = PROBLEMS["spiral"]
    want = exact(0.0, y0, 1.0)
    for steps in (1, 3, 50):
        x = get_solver("dopri5", rtol=1e-8, atol=1e-8).integrate(f, torch.tensor(y0), 0.0, 1.0, steps).x
        assert np.abs(x.numpy() - want).max() < 1e-7


# --------------------------------------------------------------------------------------------
# A small random conv net as the velocity field, against torchdiffeq and hand-written references


class TinyField(torch.nn.Module):
    """Two 3×3 convolutions with t as an extra input channel: f(x (B,1,H,W), t 0-dim) -> (B,1,H,W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = t.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        return self.conv2(torch.nn.functional.silu(self.conv1(torch.cat([x, tt], dim=1))))


@pytest.fixture(scope="module")
def net_field():
    """(net, x0) in float64; fixed seed, without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        net = TinyField().to(F64)
    gen = torch.Generator().manual_seed(99)
    x0 = torch.randn(2, 1, 8, 8, generator=gen, dtype=F64)
    return net, x0


def _as_torchdiffeq(net):
    return lambda t, y: net(y, t.to(y.dtype))


class _Kutta3(FixedGridODESolver):
    """torchdiffeq's rk3_step_func given Kutta's tableau (torchdiffeq has no named method for it)."""

    order = 3

    def _step_func(self, func, t0, dt, t1, y0):
        f0 = func(t0, y0)
        tableau = [
            [0.0, 0.0, 0.0, 0.0],
            [0.5, 0.5, 0.0, 0.0],
            [1.0, -1.0, 2.0, 0.0],
            [0.0, 1 / 6, 2 / 3, 1 / 6],
        ]
        return rk3_step_func(func, t0, dt, t1, y0, butcher_tableu=tableau, f0=f0), f0


class _ClassicRK4(FixedGridODESolver):
    """torchdiffeq's classic rk4_step_func (its 'rk4' method is the 3/8 rule instead)."""

    order = 4

    def _step_func(self, func, t0, dt, t1, y0):
        f0 = func(t0, y0)
        return rk4_step_func(func, t0, dt, t1, y0, f0=f0), f0


@pytest.fixture
def torchdiffeq_methods(monkeypatch):
    """torchdiffeq's odeint with two extra fixed-grid methods built from its own step functions."""
    monkeypatch.setitem(torchdiffeq_odeint_module.SOLVERS, "mfm_test_kutta3", _Kutta3)
    monkeypatch.setitem(torchdiffeq_odeint_module.SOLVERS, "mfm_test_classic_rk4", _ClassicRK4)
    return {
        "euler": "euler",
        "midpoint": "midpoint",
        "heun": "heun2",
        "rk3": "mfm_test_kutta3",
        "rk4": "mfm_test_classic_rk4",
    }


# (A rows, b, c) written from the textbook tables, independent of mfm_engine.solvers
TABLEAUS = {
    "euler": ([[]], [1.0], [0.0]),
    "midpoint": ([[], [0.5]], [0.0, 1.0], [0.0, 0.5]),
    "heun": ([[], [1.0]], [0.5, 0.5], [0.0, 1.0]),
    "rk3": ([[], [0.5], [-1.0, 2.0]], [1 / 6, 2 / 3, 1 / 6], [0.0, 0.5, 1.0]),
    "rk4": ([[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0]),
}


def _rk_step(f, x, t0, h, tableau):
    a_rows, b, c = tableau
    ks = []
    for a_row, ci in zip(a_rows, c, strict=True):
        xi = x + h * sum(a * k for a, k in zip(a_row, ks, strict=False))
        ks.append(f(xi, torch.tensor(t0 + ci * h, dtype=x.dtype)))
    return x + h * sum(bi * k for bi, k in zip(b, ks, strict=True)), ks[0]


def rk_reference(f, x0, ts, tableau):
    """Explicit RK over the grid ts straight from a Butcher table."""
    x = x0
    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        x, _ = _rk_step(f, x, t0, t1 - t0, tableau)
    return x


def adams_bashforth_weights(k: int) -> list[Fraction]:
    """Exact AB-k weights for f_n, f_{n-1}, …: ∫_0^1 of the Lagrange basis on nodes 0, -1, …, -(k-1)."""
    weights = []
    for j in range(k):
        poly = [Fraction(1)]  # coefficients, lowest power first
        for i in range(k):
            if i == j:
                continue
            # multiply by (s + i) / (i - j)
            shifted = [Fraction(0)] + poly
            scaled = [c * i for c in poly] + [Fraction(0)]
            poly = [(a + b) / (i - j) for a, b in zip(shifted, scaled, strict=True)]
        weights.append(sum(c / (p + 1) for p, c in enumerate(poly)))
    return weights


def adams_reference(f, x0, ts, order, bootstrap):
    """Adams–Bashforth on a uniform grid from exact weights, with the documented bootstrap."""
    boot = {2: "heun", 3: "rk3", 4: "rk4"}.get(order) if bootstrap == "rk" else None
    history = []
    x = x0
    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        h = t1 - t0
        history.insert(0, f(x, torch.tensor(t0, dtype=x.dtype)))
        del history[order:]
        if boot is not None and len(history) < order:
            x, _ = _rk_step(f, x, t0, h, TABLEAUS[boot])
        else:
            weights = adams_bashforth_weights(len(history))
            x = x + h * sum(float(w) * fk for w, fk in zip(weights, history, strict=True))
    return x


def test_adams_bashforth_weights_match_torchdiffeq_table():
    for k in range(1, 5):
        theirs = [Fraction(c, _DIVISOR[k]) for c in _BASHFORTH_COEFFICIENTS[k]]
        assert adams_bashforth_weights(k) == theirs


TOLERANCE = {torch.float64: dict(rtol=1e-11, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("t_start,t_end", DIRECTIONS)
@pytest.mark.parametrize("name", ["euler", "midpoint", "heun", "rk3", "rk4"])
def test_runge_kutta_matches_torchdiffeq_on_a_network_field(
    net_field, torchdiffeq_methods, name, t_start, t_end, dtype
):
    net, x0 = net_field
    net, x0 = net.to(dtype), x0.to(dtype)
    steps = 5
    with torch.inference_mode():
        ours = get_solver(name).integrate(net, x0, t_start, t_end, steps).x
        grid = torch.tensor(time_grid(t_start, t_end, steps), dtype=F64)
        theirs = odeint(_as_torchdiffeq(net), x0, grid, method=torchdiffeq_methods[name])[-1]
        by_table = rk_reference(net, x0, time_grid(t_start, t_end, steps), TABLEAUS[name])
    # The field moves the state by O(1): make sure the comparison is not trivially small.
    assert (ours - x0).abs().max() > 0.05
    torch.testing.assert_close(ours, theirs, **TOLERANCE[dtype])
    torch.testing.assert_close(ours, by_table, **TOLERANCE[dtype])
    net.to(F64)


def test_rk4_is_the_classic_rule_not_torchdiffeqs_three_eighths(net_field):
    net, x0 = net_field
    with torch.inference_mode():
        ours = get_solver("rk4").integrate(net, x0, 0.0, 1.0, 3).x
        grid = torch.tensor(time_grid(0.0, 1.0, 3))
        three_eighths = odeint(_as_torchdiffeq(net), x0, grid, method="rk4")[-1]
    # Both fourth order, so close, but not the same method.
    assert (ours - three_eighths).abs().max() > 1e-9
    torch.testing.assert_close(ours, three_eighths, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("t_start,t_end", DIRECTIONS)
@pytest.mark.parametrize(
    "options", [{}, {"order": 3}, {"order": 2}, {"bootstrap": "ab"}], ids=["ab4", "ab3", "ab2", "ab4-ramp"]
)
def test_adams_matches_hand_written_reference_on_a_network_field(net_field, options, t_start, t_end, dtype):
    net, x0 = net_field
    net, x0 = net.to(dtype), x0.to(dtype)
    solver = get_solver("adams", **options)
    steps = 7
    with torch.inference_mode():
        ours = solver.integrate(net, x0, t_start, t_end, steps).x
        ref = adams_reference(net, x0, time_grid(t_start, t_end, steps), solver.ab_order, solver.bootstrap)
    assert (ours - x0).abs().max() > 0.05
    torch.testing.assert_close(ours, ref, **TOLERANCE[dtype])
    net.to(F64)


@pytest.mark.parametrize("t_start,t_end", DIRECTIONS)
def test_dopri5_and_torchdiffeq_dopri5_both_reach_the_tight_solution(net_field, t_start, t_end):
    net, x0 = net_field
    grid = torch.tensor([t_start, t_end], dtype=F64)
    func = _as_torchdiffeq(net)
    with torch.inference_mode():
        truth = odeint(func, x0, grid, method="dopri8", rtol=1e-13, atol=1e-13)[-1]
        theirs = odeint(func, x0, grid, method="dopri5", rtol=1e-8, atol=1e-8)[-1]
        ours = get_solver("dopri5", rtol=1e-8, atol=1e-8).integrate(net, x0, t_start, t_end, 4)
    assert (truth - x0).abs().max() > 0.05
    torch.testing.assert_close(theirs, truth, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.x, truth, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.x, theirs, rtol=0, atol=2e-6)


# --------------------------------------------------------------------------------------------
# NFE, callbacks, grid, inputs untouched, autograd


class CountingField:
    """Wraps a field and counts every call; records the times it was asked about."""

    def __init__(self, f):
        self.f = f
        self.calls = 0
        self.times = []

    def __call__(self, x, t):
        self.calls += 1
        self.times.append(float(t))
        return self.f(x, t)


EXPECTED_NFE = {
    "euler": lambda n: n,
    "midpoint": lambda n: 2 * n,
    "heun": lambda n: 2 * n,
    "rk3": lambda n: 3 * n,
    "rk4": lambda n: 4 * n,
    # classic-rk4 bootstrap for the first 3 steps (4 calls each), then 1 call per step
    "adams": lambda n: 4 * min(n, 3) + max(n - 3, 0),
}


@pytest.mark.parametrize("t_start,t_end", DIRECTIONS)
@pytest.mark.parametrize("name,options", ALL_CASES, ids=[_case_id(n, o) for n, o in ALL_CASES])
def test_reported_nfe_is_the_real_number_of_calls(name, options, t_start, t_end):
    solver = get_solver(name, **options)
    x0 = torch.tensor([[1.0, 0.5], [-0.7, 0.2]], dtype=F64)
    for steps in (1, 2, 3, 5, 8):
        counted = CountingField(spiral)
        seen: list[tuple[int, float]] = []

        def callback(i: int, t: float, x: torch.Tensor, seen: list = seen) -> None:
            seen.append((i, t))

        result = solver.integrate(counted, x0, t_start, t_end, steps, callback=callback)
        assert result.nfe == counted.calls
        assert result.ts[0] == t_start and result.ts[-1] == t_end
        assert seen == [(i, t) for i, t in enumerate(result.ts) if i > 0]
        lo, hi = min(t_start, t_end), max(t_start, t_end)
        assert all(lo <= t <= hi for t in counted.times)
        if solver.adaptive:
            assert solver.nfe(steps) is None and nfe_for(name, steps, **options) is None
            assert (result.nfe - 1) % 6 == 0  # FSAL: one start call, six per attempted step
        else:
            assert result.nfe == solver.nfe(steps) == nfe_for(name, steps, **options)
            assert result.ts == time_grid(t_start, t_end, steps)
            if not options:
                assert result.nfe == EXPECTED_NFE[name](steps)


def test_adams_ramp_bootstrap_costs_one_call_per_step():
    assert [nfe_for("adams", n, bootstrap="ab") for n in (1, 4, 10)] == [1, 4, 10]
    assert [nfe_for("adams", n, order=2) for n in (1, 2, 10)] == [2, 3, 11]


def test_euler_asks_the_field_at_the_grid_times_with_a_0dim_tensor_of_the_state_dtype():
    seen = []

    def f(x, t):
        seen.append((t.shape, t.dtype, t.device, float(t)))
        return torch.ones_like(x)

    x0 = torch.zeros(3, 2, dtype=torch.float32)
    get_solver("euler").integrate(f, x0, 1.0, 0.0, 4)
    assert [s[:3] for s in seen] == [(torch.Size([]), torch.float32, x0.device)] * 4
    assert [s[3] for s in seen] == [1.0, 0.75, 0.5, 0.25]


@pytest.mark.parametrize("name,options", ALL_CASES, ids=[_case_id(n, o) for n, o in ALL_CASES])
def test_x0_is_never_modified(name, options, net_field):
    net, x0 = net_field
    before, version = x0.clone(), x0._version
    with torch.inference_mode():
        result = get_solver(name, **options).integrate(net, x0, 1.0, 0.0, 5)
    assert torch.equal(x0, before) and x0._version == version
    assert result.x.data_ptr() != x0.data_ptr()


@pytest.mark.parametrize("name,options", ALL_CASES, ids=[_case_id(n, o) for n, o in ALL_CASES])
def test_gradients_flow_through_every_solver(name, options):
    # d y(1) / d y(0) for dy/dt = -2y + e^t is exp(-2) whatever the forcing.
    x0 = torch.tensor([0.3, -1.0], dtype=F64, requires_grad=True)
    solver = get_solver(name, **options)
    result = solver.integrate(forced_decay, x0, 0.0, 1.0, 64)
    result.x.sum().backward()
    assert x0.grad is not None
    # The discrete map's derivative carries the method's own error (step-size choices are not differentiated).
    tol = 10 * solver.rtol if solver.adaptive else {1: 0.05, 2: 1e-3, 3: 1e-4, 4: 1e-5}[solver.order]
    torch.testing.assert_close(x0.grad, torch.full_like(x0, np.exp(-2.0)), rtol=tol, atol=0)


def test_low_precision_velocity_is_combined_at_the_state_precision():
    x0 = torch.ones(4, dtype=F64)
    result = get_solver("rk4").integrate(lambda x, t: (-x).float(), x0, 0.0, 1.0, 8)
    assert result.x.dtype == F64


# --------------------------------------------------------------------------------------------
# Registry and bad arguments


def test_registry_names_and_lookup():
    assert list(SOLVERS) == ["euler", "midpoint", "heun", "rk3", "rk4", "adams", "dopri5"]
    assert get_solver("  RK4 ").name == "rk4"
    assert all(SOLVERS[n]().order >= 1 for n in SOLVERS)
    assert repr(get_solver("adams", order=3)) == "adams(order=3, bootstrap='rk')"


def test_unknown_solver_names_the_known_ones():
    with pytest.raises(SolverError) as info:
        get_solver("rk45")
    message = str(info.value)
    assert "rk45" in message
    assert all(name in message for name in SOLVERS)
    assert isinstance(info.value, MFMError) and isinstance(info.value, ValueError)
    with pytest.raises(SolverError, match="unknown solver"):
        nfe_for("leapfrog", 4)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "4", None])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_steps_must_be_a_positive_whole_number(name, steps):
    solver = get_solver(name)
    with pytest.raises(SolverError, match="steps must be"):
        solver.integrate(forced_decay, torch.ones(2), 0.0, 1.0, steps)
    with pytest.raises(SolverError, match="steps must be"):
        solver.nfe(steps)


def test_bad_options_are_clear_errors():
    with pytest.raises(SolverError, match="'euler' got unknown option.*rtol.*takes no options"):
        get_solver("euler", rtol=1e-3)
    with pytest.raises(SolverError, match="takes: order, bootstrap"):
        get_solver("adams", tol=1)
    with pytest.raises(SolverError, match="adams order must be one of"):
        get_solver("adams", order=5)
    with pytest.raises(SolverError, match="bootstrap must be"):
        get_solver("adams", bootstrap="euler")
    with pytest.raises(SolverError, match="rtol must be"):
        get_solver("dopri5", rtol=-1.0)
    with pytest.raises(SolverError, match="max_steps must be"):
        get_solver("dopri5", max_steps=0)


def test_bad_integration_arguments_are_clear_errors():
    solver = get_solver("heun")
    with pytest.raises(SolverError, match="nothing to integrate"):
        solver.integrate(forced_decay, torch.ones(2), 0.5, 0.5, 4)
    with pytest.raises(SolverError, match="t_end must be finite"):
        solver.integrate(forced_decay, torch.ones(2), 0.0, float("nan"), 4)
    with pytest.raises(SolverError, match="floating-point tensor"):
        solver.integrate(forced_decay, torch.ones(2, dtype=torch.int64), 0.0, 1.0, 4)
    with pytest.raises(SolverError, match=r"returned \(3,\) for a state of shape \(2,\)"):
        solver.integrate(lambda x, t: torch.ones(3), torch.ones(2), 0.0, 1.0, 4)


def test_dopri5_max_steps_guard():
    with pytest.raises(SolverError, match="max_steps=5 .*loosen the tolerances or raise max_steps"):
        get_solver("dopri5", rtol=1e-12, atol=1e-12, max_steps=5).integrate(
            spiral, torch.ones(1, 2, dtype=F64), 0.0, 1.0, 1
        )


def test_dopri5_non_finite_field():
    with pytest.raises(SolverError, match="non-finite"):
        get_solver("dopri5").integrate(lambda x, t: x / (t - t), torch.ones(2), 0.0, 1.0, 4)
