"""The reference data for the relevance rules to come (LRP, DeepLIFT, AttnLRP; issue 17) is sound.

The .npz files in tests/reference/ were written by Zennit 0.5.1 and Captum 0.9.0 (scripts beside
them); these tests need neither. They check what the parity tests rely on: Captum's DeepLIFT maps
satisfy summation-to-delta where its rules apply, and the hand-written numpy AttnLRP passes its
own rule-by-rule checks and conserves relevance. That the Flax twins reproduce the torch models
(logits and input gradients to 1e-10) is checked by ``python tests/lrp_models.py`` and, in the
suite, by the LRP maps themselves agreeing with Zennit's to 1e-8 (tests/test_lrp.py).
"""

from pathlib import Path

import attnlrp_numpy
import numpy as np
import pytest

REF = Path(__file__).parent / "reference"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_captum_deeplift_sums_to_the_output_difference(model):
    z = np.load(REF / f"deeplift_{model}.npz")
    t = z["target"]
    rows = np.arange(len(t))
    suffix = "_maxrule" if model == "cnn" else ""  # Captum applies its max-pool rule there only
    dl = z["deeplift" + suffix]
    want = z["logits"][rows, t] - z["logits_baseline"][0, t]  # one baseline for all inputs
    np.testing.assert_allclose(dl.reshape(len(t), -1).sum(1), want, rtol=0, atol=1e-10)
    shap = z["deeplift_shap" + suffix]  # mean over baselines of per-pair maps
    want = z["logits"][rows, t] - z["logits_baselines_shap"][:, t].T.mean(1)
    np.testing.assert_allclose(shap.reshape(len(t), -1).sum(1), want, rtol=0, atol=1e-10)
    for key in ("deeplift", "deeplift_shap"):  # Captum against the documented formulas
        np.testing.assert_allclose(z[key + suffix], z["independent_" + key + suffix], rtol=0,
                                   atol=1e-12)


def test_captum_skips_its_maxpool_rule_when_a_relu_module_feeds_the_pool():
    # Recorded quirk of Captum 0.9.0 (see make_captum_deeplift.py): relu1 -> pool1 directly gets
    # the ordinary max-pool gradient, so DeepLiftShap no longer sums to the output difference.
    z = np.load(REF / "deeplift_cnn.npz")
    assert np.abs(z["deeplift_shap_delta"]).max() > 1e-2
    assert np.abs(z["deeplift_shap_delta_maxrule"]).max() < 1e-10


def test_numpy_attnlrp_rules_and_conservation():
    r = attnlrp_numpy.check(verbose=False)
    assert r["linear_lrp0_vs_grad_x_input"] < 1e-12
    assert r["matmul_uniform_conservation"] < 1e-12
    assert r["layernorm_bias_free_conservation"] < 1e-12
    for key in ("matmul_uniform_vs_half_grad_x_input", "softmax_vs_taylor",
                "layernorm_vs_frozen_c_taylor"):  # against finite differences (h = 1e-6)
        assert r[key] < 1e-8, key
    for act in ("gelu", "relu"):  # bias-free: input relevance + softmax share = logit
        assert r[f"{act}_nobias:conservation_err"] < 1e-9
        assert r[f"{act}_nobias:sum_R"] > 0.5 * r[f"{act}_nobias:logit"]
