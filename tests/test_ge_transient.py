"""The Ge transient response (mipssim.ge_transient): adaptation, prompt fraction, latents."""
import numpy as np
import pytest

from mipssim.ge_transient import TransientModel, TransientState

MODEL = TransientModel(prompt_fraction=0.85, tau_ref_s=3600.0, ref_dn_s=300.0, tau_power=0.5)
DT = 0.131072


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
