"""Names of the semantic controls the stand-in head's expression basis is built from.

Each bilateral control also exists as `<name>_L` / `<name>_R` (one side only);
the plain name is both sides. `mouth_left` / `mouth_right` shift the mouth sideways.
The head file's `semantic_coeffs[k]` is the psi (50) of one unit of control k, so
the corpus engine writes psi = sum_k w_k * semantic_coeffs[k]. One unit is a full,
natural-looking movement; 0 is neutral. Jaw opening is not a control: it is the
jaw bone (axis-angle x, positive opens, about 0.35 rad wide open).
"""

# name -> bilateral (gets _L / _R halves)
CONTROLS = {
    "mouth_open": False,  # lips part without the jaw
    "lip_press": True,  # lips pressed together, thinned (p, b, m hold)
    "pucker": False,  # lips forward and narrow (oo, w)
    "funnel": False,  # lips forward, rounded open (sh, ch, oo)
    "spread": True,  # lips wide, corners back (ee, i)
    "smile": True,  # corners up and back, cheeks raise
    "frown": True,  # corners down
    "lower_lip_tuck": False,  # lower lip up and in under the upper teeth (f, v)
    "upper_lip_raise": True,  # upper lip lifts, shows teeth
    "lower_lip_depress": True,  # lower lip pulls down
    "cheek_puff": True,
    "chin_raise": False,  # mentalis: lower lip and chin push up
    "lip_roll_in": False,  # both lips roll inward
    "brow_raise": True,
    "brow_frown": True,  # brows down and together
    "blink": True,  # lids close
    "squint": True,  # lower lids up
    "nose_wrinkle": True,
    "dimpler": True,  # corners pulled straight back
    "lip_stretch": True,  # corners pulled sideways and down
    "nostril_flare": True,
    "eye_wide": True,  # upper lids up
    "cheek_suck": True,
    "brow_inner_raise": True,
    "mouth_up": False,  # the whole mouth lifts
}
SHIFTS = ("mouth_left", "mouth_right")


def semantic_names() -> list[str]:
    """All control names in head-file order: plain controls, sided halves, shifts."""
    names = list(CONTROLS)
    for name, bilateral in CONTROLS.items():
        if bilateral:
            names += [f"{name}_L", f"{name}_R"]
    return names + list(SHIFTS)
