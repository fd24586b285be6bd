"""The denoiser's attention is what the issue describes, and its split is exact."""

import torch
import torch.nn.functional as F

from training.denoiser.model import Denoiser, DenoiserConfig, aligned_cross_attention, alibi_bias, alibi_slopes

CFG = DenoiserConfig(n_layers=2, audio_dim=24, dropout=0.0)


def test_aligned_cross_attention_equals_masked_sdpa():
    torch.manual_seed(0)
    B, H, T, dh = 2, 4, 9, 8
    q = torch.randn(B, H, T, dh)
    k_s, v_s = torch.randn(B, H, 1, dh), torch.randn(B, H, 1, dh)
    k_a, v_a = torch.randn(B, H, T, dh), torch.randn(B, H, T, dh)
    # memory = [step token | audio frames]; frame i sees the token and audio frame i only
    keys, values = torch.cat([k_s, k_a], 2), torch.cat([v_s, v_a], 2)
    mask = torch.zeros(T, T + 1, dtype=torch.bool)
    mask[:, 0] = True
    mask[torch.arange(T), torch.arange(T) + 1] = True
    ref = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    torch.testing.assert_close(aligned_cross_attention(q, k_s, v_s, k_a, v_a), ref, atol=1e-6, rtol=1e-5)


def test_alibi_is_symmetric_distance_penalty():
    bias = alibi_bias(torch.zeros(1, 5, 1), alibi_slopes(4))
    assert bias.shape == (4, 5, 5)
    assert torch.allclose(bias, bias.transpose(1, 2))
    assert bias[0, 0, 3].item() == -3 * 2**-2 and bias[3, 1, 1].item() == 0


def test_context_step_split_and_batch_independence():
    torch.manual_seed(1)
    model = Denoiser(CFG).eval()
    x, a = torch.randn(3, 20, 53), torch.randn(3, 20, 24)
    t = torch.tensor([0, 500, 999])
    null = torch.tensor([0.0, 1.0, 0.0])
    with torch.no_grad():
        full = model(x, t, a, null)
        split = model.step(x, t, model.context(a, null))
        one = model(x[2:], t[2:], a[2:], null[2:])
        # null audio ignores the audio: row 1 with other audio is unchanged
        other = model(x[1:2], t[1:2], torch.randn(1, 20, 24), null[1:2])
    torch.testing.assert_close(full, split)
    torch.testing.assert_close(full[2:], one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full[1:2], other, atol=1e-5, rtol=1e-5)
    assert full.shape == (3, 20, 53)


def test_audio_frame_only_reaches_its_own_query_in_cross_attention():
    """The alignment mask: in one layer (self-attention runs before cross-attention)
    audio frame 5 reaches output frame 5 and no other."""
    torch.manual_seed(2)
    model = Denoiser(DenoiserConfig(n_layers=1, audio_dim=24, dropout=0.0)).eval()
    x, a = torch.randn(1, 40, 53), torch.randn(1, 40, 24)
    a2 = a.clone()
    a2[0, 5] += 3.0
    with torch.no_grad():
        d = (model(x, torch.tensor([10]), a) - model(x, torch.tensor([10]), a2)).abs().sum(-1)[0]
    assert d[5] > 1e-3
    assert d[torch.arange(40) != 5].max() < 1e-6
