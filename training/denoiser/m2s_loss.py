"""L_m2s: the frozen M2S listens to the predicted motion and is compared with the
input speech (its log-mel and speech units; speaker embedding from the input
audio), with the same form as M2S's own loss: 10 L1(mel) + CE(units).

Targets come from the M2S trainer's cached splits (`training.m2s.data`), matched
to the denoiser's windows by utterance id and start frame.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.errors import ConfigError
from training.m2s.train import MEL_WEIGHT


class M2SLoss:
    def __init__(self, m2s, splits: list):
        self.m2s = m2s.eval()
        for p in self.m2s.parameters():
            p.requires_grad_(False)
        self.rows = {}
        for split in splits:
            for i, uid in enumerate(split.ids):
                self.rows[str(uid)] = (split, i)

    def targets(self, ids, starts, n: int) -> dict:
        mel, units, spk = [], [], []
        for uid, s in zip(ids, starts):
            if uid not in self.rows:
                raise KeyError(f"no M2S targets for utterance {uid!r} (M2S cache built from another corpus?)")
            split, i = self.rows[uid]
            a = int(split.offsets[i]) + int(s)
            mel.append(split.mel[4 * a : 4 * (a + n)])
            units.append(split.units[2 * a : 2 * (a + n)])
            spk.append(split.speaker[i])
        return {
            "mel": torch.from_numpy(np.stack(mel)).float(),
            "units": torch.from_numpy(np.stack(units)).long(),
            "speaker": torch.from_numpy(np.stack(spk)).float(),
        }

    def __call__(self, pred: torch.Tensor, batch: dict, k: int) -> torch.Tensor:
        n = pred.shape[1]
        tg = self.targets(batch["ids"][:k], batch["starts"][:k], n)
        tg = {k: v.to(pred.device) for k, v in tg.items()}
        mel, logits = self.m2s(pred[..., :50], pred[..., 50:], tg["speaker"])
        l1 = (mel - tg["mel"]).abs().mean()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tg["units"].reshape(-1))
        return MEL_WEIGHT * l1 + ce


def build_m2s_loss(m2s_run, head_dir, corpus, encoder_path, units_path, cache, limit=None, val_limit=None):
    """Frozen M2S + its cached targets for the train and val splits."""
    from training.m2s.data import cache_key, load_split
    from training.m2s.train import load_m2s
    from training.speech.encoder import load_encoder
    from training.speech.units import Units

    model, ckpt = load_m2s(m2s_run, head_dir)
    key = cache_key(encoder_path, units_path)  # the same key as the M2S trainer's caches
    prov = ckpt.get("provenance", {})
    # a run unpacked from a bundle keeps the original run's record under "original"
    trained_on = (prov.get("data") or {}).get("units_sha256") or prov.get("original", {}).get("data", {}).get(
        "units_sha256"
    )
    if trained_on and trained_on != key["units_sha256"]:  # unit i of its logits is not unit i of these
        raise ConfigError(
            f"{m2s_run} was trained on speech units {trained_on[:12]}, but --units {units_path} is "
            f"{key['units_sha256'][:12]}: pass the units it was trained on (refitting units renames them)"
        )
    encoder, units = load_encoder(encoder_path), Units.load(units_path)
    splits = [
        load_split(cache, corpus, s, encoder, units, key, lim) for s, lim in (("train", limit), ("val", val_limit))
    ]
    return M2SLoss(model, splits)
