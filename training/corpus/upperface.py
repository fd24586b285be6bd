"""Motion weakly tied to the speech, drawn at random: blinks, brow movements, slow states.

One utterance has many plausible faces. These tracks come from their own random
stream, so two draws of one utterance differ above the mouth while the lips
(articulation) agree. Each draw is a *rendition*: besides its own events it
draws its own mood, blink and brow liveliness and left/right balance around the
speaker's style, as one person saying the same sentence twice would.

Rates, amplitudes and time constants, with where they come from ("our choice"
where the literature gives the behaviour but no number that fits a synthetic head):

- Blinks: speakers' mean spontaneous rates 15-26 per minute (Bentivoglio et al.
  1997: 26/min in conversation, 17/min at rest, 4.5/min reading). Blinks cluster
  in pauses and at phrase boundaries (von Cramon & Schuri 1980; Nakano & Kitazawa
  2010) and just after speech starts again (Cummins 2012): the rate is 4x the base
  inside pauses and 3x in the 0.4 s after speech onset (our choice), scaled so the
  utterance keeps the speaker's mean rate. Lids close in 75-100 ms, stay shut about
  one frame and reopen in 150-250 ms, 300-400 ms in all (Evinger et al. 1991;
  VanderWerf et al. 2003), and always close fully: the face (face.py) turns the
  0..1 envelope into the blink weight that brings the lid rims together whatever
  the brows and squint do. Bilateral and synchronous, as spontaneous blinks are.
- Brow movements as batons on pitch accents (Ekman 1979; Cavé et al. 1996;
  Krahmer & Swerts 2007), on some accents only (Flecha-García 2010 finds most
  accents without one): a stressed vowel gets one with probability 0.7 x the
  speaker's brow_activity (0.2-1.0, and x0.74-1.35 per rendition), i.e. about
  15-70 %, and a phrase start with 0.4 x.
  Mostly raises (75 %), some inner-brow raises (10 %) and lowerings (15 %); they
  start 100-250 ms before the vowel's centre, rise in 150 ms, hold 150-600 ms and
  fall in 250-400 ms (our choice, after Flecha-García's few-hundred-ms raises).
  Amplitude 0.4-1.0 of a full raise (2.5-6 mm brow lift on the stand-in head).
- Slow states (smile, mouth-corner frown, brow frown, squint, eyes wide, a tonic
  brow raise) follow a valence and an arousal that drift with time constants of
  2-6 s around a level drawn per rendition; felt smiles come as episodes of
  0.7-4 s (Ekman & Friesen 1982), about one per 7 s, more in a good mood; a smile
  narrows the eyes (Duchenne: Ekman, Davidson & Friesen 1990).
- Left/right: every rendition draws its own balance around the speaker's
  asymmetry (sd 0.08 of the movement), every brow event its own (sd 0.1);
  spontaneous expressions are asymmetric, the left hemiface often more intense
  (Sackeim, Gur & Saucy 1978).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .phones import SIL, VOWELS

FRAME_S = 0.04  # 25 fps: a blink holds shut for at least one whole frame
# Blinks
BLINK_RATE_PER_MIN = (15.0, 26.0)  # speakers' mean rates (Bentivoglio et al. 1997)
BLINK_RATE_SD = 0.15  # log-sd of a rendition's rate around the speaker's
BLINK_REFRACTORY = 0.5  # s: no blink starts within this of the last one's start
BLINK_CLOSE = (0.075, 0.1)  # s, lid down
BLINK_HOLD = 0.02  # s, shut at least this long (and one whole frame)
BLINK_OPEN = (0.15, 0.25)  # s, lid up
PAUSE_MIN = 0.15  # s: a silence this long is a pause
PAUSE_GAIN = 4.0  # blink rate in pauses, relative to speech
ONSET_GAIN = 3.0  # ... and just after speech starts again
ONSET_WINDOW = 0.4  # s
# Brow batons
BROW_PROB = 0.7  # per stressed vowel, x brow_activity
BROW_PHRASE_PROB = 0.4  # per speech onset, x brow_activity
BROW_ACTIVITY_SD = 0.3  # log-sd of a rendition's activity around the speaker's
BROW_KINDS = (("brow_raise", 0.75), ("brow_inner_raise", 0.10), ("brow_frown", 0.15))
BROW_AMP = (0.4, 1.0)
BROW_LEAD = (0.1, 0.25)  # s before the vowel centre
BROW_RISE, BROW_HOLD, BROW_FALL = 0.15, (0.15, 0.6), (0.25, 0.4)  # s
# Slow states
MOOD_TAU = (2.0, 6.0)  # s: time scale of valence and arousal drift
MOOD_SD = 0.3  # drift around the rendition's level
VALENCE_SD = 0.15  # rendition level around the speaker's smile_bias
AROUSAL_SD = 0.3  # rendition level around 0
SMILE_EPISODES = 0.15  # per s at neutral valence
SMILE_DURATION = (0.7, 4.0)  # s (Ekman & Friesen 1982)
SMILE_AMP = (0.25, 0.6)
DUCHENNE = 0.35  # squint per unit of smile
ASYM_SD = 0.08  # a rendition's left/right balance around the speaker's
EVENT_ASYM_SD = 0.1  # a brow event's around the rendition's


def _bump(t, start, rise, hold, fall):
    up = np.clip((t - start) / rise, 0, 1)
    down = np.clip(1 - (t - start - rise - hold) / fall, 0, 1)
    y = np.minimum(up, down)
    return y * y * (3 - 2 * y)  # smoothstep: no corners


def _add_bump(out: np.ndarray, t: np.ndarray, amp: float, start, rise, hold, fall) -> None:
    """out = max(out, amp * bump) where the bump is non-zero (long clips: no full-length arrays)."""
    a, b = np.searchsorted(t, [start, start + rise + hold + fall])
    if b > a:
        out[a:b] = np.maximum(out[a:b], amp * _bump(t[a:b], start, rise, hold, fall))


def _smooth_noise(n: int, rate: int, tau: float, sd: float, rng) -> np.ndarray:
    """Slow Gaussian noise (time scale tau s), made at 20 Hz and interpolated up to `rate`.
    Scaled by the std of the whole generated stretch, so short clips are not blown up."""
    low = 20
    m = n * low // rate + 2
    full = gaussian_filter1d(rng.normal(0, 1, m + 8 * int(tau * low) + 8), tau * low / 2, mode="wrap")
    x = np.interp(np.arange(n) / rate, np.arange(m) / low, full[:m])
    return sd * x / max(float(full.std()), 1e-9)


def pauses(phones, duration: float) -> list[tuple[float, float]]:
    """Silences of at least PAUSE_MIN s (the leading and trailing ones included)."""
    return [(s, e) for s, e, lab in phones if lab == SIL and e - s >= PAUSE_MIN and s < duration]


def speech_onsets(phones, duration: float) -> list[float]:
    """Where speech starts after a pause."""
    return [e for s, e in pauses(phones, duration) if e < duration - 0.05]


def blink_intensity(t: np.ndarray, phones, rate_hz: float) -> np.ndarray:
    """Blinks per second at each sample: `rate_hz` on average, more in pauses and just after
    speech starts, before the refractory time (which blink_onsets corrects for)."""
    g = np.ones_like(t)
    for s, e in pauses(phones, t[-1] + 1e-9):
        g[(t >= s) & (t < e)] += PAUSE_GAIN - 1
    for s in speech_onsets(phones, t[-1] + 1e-9):
        g[(t >= s) & (t < s + ONSET_WINDOW)] += ONSET_GAIN - 1
    lam = rate_hz * g / g.mean()
    # dead time: a Poisson process at r with refractory tau shows r / (1 + r tau) events
    return lam / (1 - np.minimum(lam * BLINK_REFRACTORY, 0.8))


def blink_onsets(t: np.ndarray, intensity: np.ndarray, rng: np.random.Generator) -> list[float]:
    dt = t[1] - t[0]
    hits = np.nonzero(rng.random(len(t)) < intensity * dt)[0]
    out: list[float] = []
    for k in hits:
        if not out or t[k] - out[-1] >= BLINK_REFRACTORY:
            out.append(float(t[k]))
    return out


def blink_envelope(t: np.ndarray, onsets: list[float], rng: np.random.Generator) -> np.ndarray:
    """0..1 lid closure; each blink is 1 for at least one whole 25 fps frame, so the frame
    averages (articulation.to_frames) keep the full closure."""
    out = np.zeros_like(t)
    for t0 in onsets:
        close, opening = rng.uniform(*BLINK_CLOSE), rng.uniform(*BLINK_OPEN)
        shut = t0 + close
        first_frame = np.ceil(shut / FRAME_S + 1e-6) * FRAME_S
        hold = max(BLINK_HOLD, first_frame + FRAME_S - shut)
        _add_bump(out, t, 1.0, t0, close, hold, opening)
    return out


def rendition(style: dict, rng: np.random.Generator) -> dict:
    """One rendition's liveliness and mood around the speaker's style."""
    lo, hi = (r / 60 for r in BLINK_RATE_PER_MIN)
    return {
        "blink_rate": float(np.clip(style["blink_rate"], lo, hi) * np.exp(rng.normal(0, BLINK_RATE_SD))),
        "brow_activity": float(np.clip(style["brow_activity"] * np.exp(rng.normal(0, BROW_ACTIVITY_SD)), 0.05, 1.5)),
        "valence": float(style["smile_bias"] + rng.normal(0, VALENCE_SD)),
        "arousal": float(rng.normal(0, AROUSAL_SD)),
        "asymmetry": float(style["asymmetry"] + rng.normal(0, ASYM_SD)),
        "tau_valence": float(rng.uniform(*MOOD_TAU)),
        "tau_arousal": float(rng.uniform(*MOOD_TAU)),
    }


def _sides(tracks: dict, name: str, v: np.ndarray, asym: float) -> None:
    """Add `v` to both halves of control `name`, left x (1 + asym), right x (1 - asym)."""
    for side, gain in (("L", 1 + asym), ("R", 1 - asym)):
        key = f"{name}_{side}"
        tracks[key] = tracks.get(key, 0.0) + gain * v


def brow_batons(t, phones, accents, r: dict, rng) -> dict:
    """Brow raises / lowerings on some accents and phrase starts: control name -> (L, R) tracks."""
    out = {name: [np.zeros_like(t), np.zeros_like(t)] for name, _ in BROW_KINDS}
    kinds, p_kind = [k for k, _ in BROW_KINDS], [p for _, p in BROW_KINDS]
    events = [(a, BROW_PROB) for a in accents] + [(s + 0.15, BROW_PHRASE_PROB) for s in speech_onsets(phones, t[-1])]
    for centre, p in sorted(events):
        if rng.random() >= p * r["brow_activity"]:
            continue
        kind = kinds[int(rng.choice(len(kinds), p=p_kind))]
        amp = rng.uniform(*BROW_AMP)
        start, hold, fall = centre - rng.uniform(*BROW_LEAD), rng.uniform(*BROW_HOLD), rng.uniform(*BROW_FALL)
        asym = r["asymmetry"] + rng.normal(0, EVENT_ASYM_SD)
        for k, gain in enumerate((1 + asym, 1 - asym)):
            _add_bump(out[kind][k], t, gain * amp, start, BROW_RISE, hold, fall)
    return out


def smile_episodes(t, valence: float, rng) -> np.ndarray:
    rate = SMILE_EPISODES * np.exp(2.0 * valence)
    out = np.zeros_like(t)
    now = rng.exponential(1 / rate) - 1.0  # one may already be on at the start
    while now < t[-1]:
        dur = rng.uniform(*SMILE_DURATION)
        on, off = rng.uniform(0.3, 0.8), rng.uniform(0.5, 1.0)
        _add_bump(out, t, rng.uniform(*SMILE_AMP), now, on, max(dur - on, 0.0), off)
        now += dur + off + rng.exponential(1 / rate)
    return out


def upper_face(t: np.ndarray, phones, accents: list[float], style: dict, rng: np.random.Generator) -> dict:
    """Control tracks (name -> (N,)) at the sample times `t` (s), left and right halves
    (`<control>_L` / `_R`). `blink_*` are 0..1 closure envelopes (face.py closes the lids)."""
    rate = int(round(1.0 / (t[1] - t[0]))) if len(t) > 1 else 100
    n = len(t)
    r = rendition(style, rng)
    blink = blink_envelope(t, blink_onsets(t, blink_intensity(t, phones, r["blink_rate"]), rng), rng)
    tracks = {"blink_L": blink, "blink_R": blink.copy()}
    for name, (left, right) in brow_batons(t, phones, accents, r, rng).items():
        tracks[f"{name}_L"], tracks[f"{name}_R"] = left, right
    valence = r["valence"] + _smooth_noise(n, rate, r["tau_valence"], MOOD_SD, rng)
    arousal = r["arousal"] + _smooth_noise(n, rate, r["tau_arousal"], MOOD_SD, rng)
    smile = np.maximum(valence, 0.0) + smile_episodes(t, r["valence"], rng)
    asym = r["asymmetry"]
    _sides(tracks, "smile", smile, asym)
    _sides(tracks, "frown", 0.5 * np.maximum(-valence, 0.0), asym)
    focus = np.maximum(-arousal - 0.1, 0.0)  # low arousal reads as concentration: brows down, eyes narrow
    _sides(tracks, "brow_frown", 0.5 * np.maximum(-valence, 0.0) + 0.5 * focus, asym)
    _sides(tracks, "squint", DUCHENNE * smile + 0.4 * focus, asym)
    _sides(tracks, "eye_wide", 0.5 * np.maximum(arousal - 0.1, 0.0), asym)
    _sides(tracks, "brow_raise", 0.7 * np.maximum(arousal, 0.0), asym)
    _sides(tracks, "nose_wrinkle", np.abs(_smooth_noise(n, rate, 1.0, 0.03, rng)), asym)
    # one unit is a control's full natural movement (training/head/semantics.py): no more
    return {k: v if k.startswith("blink") else np.clip(v, 0.0, 1.0) for k, v in tracks.items()}


def accent_times(phones, stressed: list[bool] | None = None) -> list[float]:
    """Centres of stressed vowels (espeak's stress marks), or else of the longest vowels."""
    vowels = [(s, e) for (s, e, lab) in phones if lab in VOWELS]
    if stressed is not None and any(stressed):
        return [0.5 * (s + e) for (s, e, lab), st in zip(phones, stressed) if st and lab in VOWELS]
    if not vowels:
        return []
    cut = np.percentile([e - s for s, e in vowels], 70)
    return [0.5 * (s + e) for s, e in vowels if e - s >= cut]
