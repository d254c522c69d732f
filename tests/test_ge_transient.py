"""The Ge transient response (mipssim.ge_transient): adaptation, prompt fraction, hook, latents."""
import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from mipssim.config import SimConfig, load_config
from mipssim.ge_transient import TransientModel, TransientState
from mipssim.observe import simulate

# the slow component alone (no hook): the tests written before the hook
MODEL = TransientModel(prompt_fraction=0.85, tau_ref_s=3600.0, ref_dn_s=300.0, tau_power=0.5,
                       hook_fraction=0.0, hook_tau_s=10.0)
DT = 0.131072
NREADS = 80          # one 10 MIPS-s DCE


def _hooked(**kw) -> TransientModel:
    """The simulator's default transient model (hook on), with ``kw`` replaced."""
    cfg = SimConfig()
    model = TransientModel(prompt_fraction=cfg.transient_prompt_fraction,
                           tau_ref_s=cfg.transient_tau_ref_s, ref_dn_s=cfg.transient_ref_dn_s,
                           tau_power=cfg.transient_tau_power,
                           hook_fraction=cfg.transient_hook_fraction,
                           hook_tau_s=cfg.transient_hook_tau_s)
    return dataclasses.replace(model, **kw)


def test_a_pixel_adapted_to_its_illumination_answers_fully():
    st = TransientState(MODEL)
    sky = np.full((2, 3), 300.0)
    st.relax(sky, 0.0)
    np.testing.assert_allclose(st.factors(sky, DT, 80), 1.0)


def test_a_small_step_is_seen_at_the_prompt_fraction():
    st = TransientState(MODEL)
    sky, step = 300.0, 3.0
    st.relax(np.array([[sky]]), 0.0)
    f = st.factors(np.array([[sky + step]]), DT, 80)
    delivered = (sky + step) * f[0, 0, 0] - sky
    assert delivered == pytest.approx(MODEL.prompt_fraction * step, rel=0.02)


def test_bright_steps_are_compressed_more_and_adapt_faster():
    st = TransientState(MODEL)
    sky = np.array([[300.0, 300.0]])
    st.relax(sky, 0.0)
    f = st.factors(np.array([[600.0, 30000.0]]), DT, 80)
    assert f[0, 0, 1] < f[0, 0, 0] < 1                      # compressed, more when brighter
    assert MODEL.tau_s(np.array(30000.0)) < MODEL.tau_s(np.array(600.0))
    # the exact law at the first read: (A / I)^(1 - b)
    assert f[0, 0, 1] == pytest.approx((300.0 / 30000.0) ** 0.15)
    assert f[-1, 0, 1] > f[0, 0, 1]                          # adapting during the DCE


def test_a_flash_leaves_a_latent_that_decays():
    st = TransientState(MODEL)
    sky = np.array([[300.0]])
    st.relax(sky, 0.0)
    st.factors(sky + 10000.0, DT, 80)                        # a stim flash
    st.relax(sky, 1.0)
    first = st.factors(sky, DT, 80)
    st.relax(sky, 600.0)
    later = st.factors(sky, DT, 80)
    assert first[0, 0, 0] > later[0, 0, 0] > 1.0             # the sky reads high, less and less


# --- the hook ---------------------------------------------------------------------------------

def _step_response(model: TransientModel, before: float, after: float, n_dce: int,
                   gap_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Times (s since the step, at each read interval's start) and ln(delivered / before) of a
    pixel adapted to ``before`` that sees ``after`` over ``n_dce`` DCEs of 80 reads, separated by
    gaps of ``gap_s`` under the same illumination (the state carries over), all through the
    public API."""
    st = TransientState(model)
    st.relax(np.array([[before]]), 0.0)
    times, logs = [], []
    t0 = 0.0
    for i in range(n_dce):
        if i and gap_s:
            st.relax(np.array([[after]]), gap_s)
            t0 += gap_s
        f = st.factors(np.array([[after]]), DT, NREADS)[:, 0, 0]
        times.append(t0 + DT * np.arange(NREADS))
        logs.append(np.log(after * f / before))
        t0 += DT * NREADS
    return np.concatenate(times), np.concatenate(logs)


def _expected(model: TransientModel, after: float, step: float):
    """The model's closed form for a step ``step`` (ln after/before): the time of the extremum
    after the prompt response and the response there (see the module docstring)."""
    b, h, th = model.prompt_fraction, model.hook_fraction, model.hook_tau_s
    tau = float(model.tau_s(np.array(after)))
    t_ext = tau * th / (tau - th) * np.log(h * tau / ((1 - b + h) * th))
    y = step * (1 - (1 - b + h) * np.exp(-t_ext / tau) + h * np.exp(-t_ext / th))
    # sampling on the read grid: the sampled extremum is within DT / 2 of t_ext in time and,
    # the response being quadratic about it, within 1/2 max|y''| (DT / 2)^2 in value
    curv = abs(step) * ((1 - b + h) / tau ** 2 + h / th ** 2)
    return t_ext, y, DT / 2 + 1e-9, 0.5 * curv * (DT / 2) ** 2 + 1e-12


@pytest.mark.parametrize("before, after", [(300.0, 3000.0), (3000.0, 300.0)])
def test_a_step_with_the_hook_overshoots_dips_then_adapts(before, after):
    """Step up: prompt jump, dip (the hook), slow rise; step down: the mirror image."""
    model = _hooked()
    step = np.log(after / before)
    sign = np.sign(step)
    t, y = _step_response(model, before, after, n_dce=8)
    t_ext, y_ext, dt_tol, y_tol = _expected(model, after, step)
    assert 0 < t_ext < t[-1]
    i = int(np.argmin(sign * y))                              # bottom of the dip (top if down)
    assert y[0] == pytest.approx(model.prompt_fraction * step, rel=1e-12)   # the prompt part
    assert abs(t[i] - t_ext) <= dt_tol                        # the hook's time ...
    assert abs(y[i] - y_ext) <= y_tol                         # ... and depth, as derived
    depth = sign * (y[0] - y[i])
    assert depth > 0.5 * model.hook_fraction * abs(step)      # a real dip, of the hook's order
    assert np.all(sign * np.diff(y[: i + 1]) <= 0)            # falls back to it ...
    assert np.all(sign * np.diff(y[i:]) >= 0)                 # ... then recovers slowly
    assert sign * (y[-1] - y[0]) < 0                          # still below the prompt level
    # the state carries over DCE gaps: with 1 s gaps the extremum is at the same time since the step
    tg, yg = _step_response(model, before, after, n_dce=8, gap_s=1.0)
    ig = int(np.argmin(sign * yg))
    assert abs(tg[ig] - t_ext) <= dt_tol + 1.0                # a gap hides up to 1 s of the curve
    assert sign * (yg[0] - yg[ig]) == pytest.approx(depth, abs=y_tol + 1e-3 * abs(step))


def test_the_adapted_level_is_reached_slowly_after_the_hook():
    """Hours later (gaps relax under the same light) the pixel reads its full level."""
    model = _hooked()
    tau = float(model.tau_s(np.array(3000.0)))
    st = TransientState(model)
    st.relax(np.array([[300.0]]), 0.0)
    st.factors(np.array([[3000.0]]), DT, NREADS)
    st.relax(np.array([[3000.0]]), 20 * tau)
    f = st.factors(np.array([[3000.0]]), DT, NREADS)
    np.testing.assert_allclose(f, 1.0, atol=(1 + model.hook_fraction) * np.log(10) * np.exp(-20))


def test_without_the_hook_a_step_is_monotonic():
    for before, after in [(300.0, 3000.0), (3000.0, 300.0)]:
        _, y = _step_response(_hooked(hook_fraction=0.0), before, after, n_dce=8)
        assert np.all(np.sign(np.log(after / before)) * np.diff(y) >= 0)


def test_steady_state_is_exact_with_the_hook():
    st = TransientState(_hooked())
    sky = np.array([[0.0, 5.0, 300.0, 3.0e4]])               # dead, faint, sky, bright
    st.relax(sky, 0.0)
    for _ in range(3):
        np.testing.assert_array_equal(st.factors(sky, DT, NREADS), 1.0)
        st.relax(sky, 3.0)
    np.testing.assert_array_equal(st.factors(sky, DT, NREADS), 1.0)


def test_a_flash_with_the_hook_first_reads_low_then_high():
    """After a flash the bulk field is still lowered (the hook's mirror): the sky reads low for
    ~tau_h, then high (the slow latent), then decays."""
    model = _hooked()
    st = TransientState(model)
    sky = np.array([[300.0]])
    st.relax(sky, 0.0)
    st.factors(sky + 10000.0, DT, NREADS)
    st.relax(sky, 1.0)
    first = st.factors(sky, DT, NREADS)
    st.relax(sky, 20 * model.hook_tau_s)
    later = st.factors(sky, DT, NREADS)
    assert first[0, 0, 0] < 1.0 < later[0, 0, 0]


def test_hook_parameters_are_validated():
    with pytest.raises(ValueError, match="transient_hook_fraction"):
        load_config(transient_hook_fraction=1.0)
    with pytest.raises(ValueError, match="transient_hook_fraction"):
        load_config(transient_hook_fraction=-0.1)
    with pytest.raises(ValueError, match="transient_hook_tau_s"):
        load_config(transient_hook_tau_s=0.0)


def _raw(obs):
    out = {}
    for p in sorted((obs / "raw").glob("*_raw.fits")):
        with fits.open(p) as hdul:
            hdr = hdul[0].header
            cards = [(c.keyword, c.value) for c in hdr.cards if c.keyword != "HISTORY"]
            out[p.name] = (hdul[0].data.copy(), cards)
    return out


def test_default_simulation_unchanged_by_hook_parameters(tmp_path):
    """include_transient False (the default): the hook's parameters change nothing in the raw data
    (only the provenance HISTORY, which carries the configuration's digest)."""
    base = dict(band=70, n_dce=3, seed=5)
    assert not load_config(**base).include_transient
    simulate(load_config(**base, transient_hook_fraction=0.0, transient_hook_tau_s=1.0),
             tmp_path / "a")
    simulate(load_config(**base, transient_hook_fraction=0.5, transient_hook_tau_s=100.0),
             tmp_path / "b")
    a, b = _raw(tmp_path / "a"), _raw(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 3
    for name in a:
        assert a[name][0].dtype == b[name][0].dtype
        assert a[name][0].tobytes() == b[name][0].tobytes()
        assert a[name][1] == b[name][1]


def test_the_simulation_drives_the_hook(tmp_path):
    """With the transient on, the hook's parameters reach the raw data."""
    base = dict(band=70, n_dce=3, seed=5, include_transient=True)
    simulate(load_config(**base, transient_hook_fraction=0.0), tmp_path / "a")
    simulate(load_config(**base, transient_hook_fraction=0.3), tmp_path / "b")
    a, b = _raw(tmp_path / "a"), _raw(tmp_path / "b")
    assert any(a[n][0].tobytes() != b[n][0].tobytes() for n in a)
