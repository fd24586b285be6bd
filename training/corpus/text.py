"""Sentence text: a GRID-like command grammar plus phonetically varied sentences.

Word lists are data; they are chosen so every English phone and the common
diphones (lip closures next to rounded and spread vowels, f/v next to open
vowels, clusters) occur often. Deterministic for a numpy Generator.
"""

from __future__ import annotations

import numpy as np

# GRID (Cooke et al. 2006): command colour preposition letter digit adverb.
GRID = {
    "command": ["bin", "lay", "place", "set"],
    "colour": ["blue", "green", "red", "white"],
    "preposition": ["at", "by", "in", "with"],
    "letter": list("abcdefghijklmnopqrstuvxyz"),
    "digit": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "adverb": ["again", "now", "please", "soon"],
}

WORDS = {
    "name": [
        "Paul",
        "Maggie",
        "Bob",
        "Vera",
        "Fiona",
        "Theo",
        "Judy",
        "Chuck",
        "Yvonne",
        "Walter",
        "Shirley",
        "George",
        "Martha",
        "Boris",
        "Nora",
        "Hugh",
        "Zoe",
        "Oliver",
        "Ruth",
        "Miko",
    ],
    "adj": [
        "big",
        "small",
        "purple",
        "thick",
        "smooth",
        "cheap",
        "few",
        "brave",
        "vivid",
        "warm",
        "shiny",
        "old",
        "young",
        "foolish",
        "beautiful",
        "rough",
        "pale",
        "huge",
        "moody",
        "lazy",
        "awful",
        "fresh",
        "gentle",
        "proud",
        "quiet",
        "bright",
        "muddy",
        "wooden",
        "frozen",
        "yellow",
        "heavy",
        "sharp",
        "mellow",
        "zany",
        "joyful",
        "thin",
    ],
    "noun": [
        "boat",
        "map",
        "bubble",
        "fox",
        "village",
        "pump",
        "thumb",
        "voice",
        "shoe",
        "judge",
        "church",
        "measure",
        "beach",
        "moon",
        "sheep",
        "wolf",
        "bottle",
        "feather",
        "mirror",
        "owl",
        "boy",
        "cow",
        "fire",
        "hour",
        "orange",
        "umbrella",
        "bridge",
        "puppy",
        "vase",
        "wheel",
        "ribbon",
        "museum",
        "apple",
        "engine",
        "mouth",
        "zebra",
        "youth",
        "garage",
        "pillow",
        "balloon",
        "violin",
        "crown",
        "toy",
        "whale",
        "bird",
        "nurse",
        "car",
        "pair",
    ],
    "verb": [
        "moves",
        "pushes",
        "breathes",
        "fetches",
        "buys",
        "owns",
        "rubs",
        "finds",
        "pulls",
        "wipes",
        "watches",
        "thinks of",
        "loves",
        "bumps",
        "views",
        "shapes",
        "chews",
        "wins",
        "measures",
        "jumps over",
        "mops",
        "paints",
        "weaves",
        "blows",
        "throws",
        "hugs",
        "follows",
        "avoids",
        "pours",
        "opens",
    ],
    "place": [
        "the barn",
        "the shop",
        "the zoo",
        "the beach",
        "the harbour",
        "my office",
        "the museum",
        "the valley",
        "the bathroom",
        "the pub",
        "the farm",
        "the church",
        "the north wall",
        "the big room",
        "the old mill",
        "the movie theatre",
    ],
    "prep": ["near", "behind", "above", "beneath", "inside", "beyond", "with", "from", "over", "under", "by", "past"],
    "time": [
        "at noon",
        "every morning",
        "on Thursday",
        "by midnight",
        "in June",
        "before lunch",
        "after the show",
        "all week",
        "twice a month",
        "this evening",
        "at five past nine",
    ],
    "number": [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "twelve",
        "twenty",
        "thirty",
        "fifty",
        "ninety",
        "a hundred",
    ],
    "interjection": ["oh", "well", "look", "wow", "hmm", "ah", "yes", "no", "okay", "please"],
}

TEMPLATES = [
    "The {adj} {noun} {verb} the {noun}.",
    "{name} {verb} a {adj} {noun} {prep} {place}.",
    "{interjection}, the {noun} is {prep} {place} {time}.",
    "Did {name} see the {adj} {noun} {time}?",
    "Maybe {number} {adj} {noun}s will move {prep} {place}.",
    "{name} and {name} bought {number} {adj} {noun}s {time}.",
    "Why would the {noun} {prep} the {noun} be so {adj}?",
    "Please bring me the {adj} {noun} from {place}.",
    "{interjection}, I think {name} {verb} the {noun} {time}.",
    "We found {number} {noun}s, a {adj} {noun}, and a {adj} {noun} {prep} {place}.",
    "Every {adj} {noun} {verb} a {noun} when {name} is {prep} {place}.",
    "Could you put the {noun} {prep} the {adj} {noun}, {name}?",
]


def grid_sentence(rng: np.random.Generator) -> str:
    return " ".join(str(rng.choice(GRID[slot])) for slot in GRID)


def varied_sentence(rng: np.random.Generator) -> str:
    template = str(rng.choice(TEMPLATES))
    out, i = [], 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        k = template.index("}", j)
        out.append(template[i:j])
        out.append(str(rng.choice(WORDS[template[j + 1 : k]])))
        i = k + 1
    text = "".join(out)
    return text[0].upper() + text[1:]


def utterance_text(rng: np.random.Generator, grid_share: float = 0.3) -> str:
    """One utterance: a GRID command, or one or two varied sentences (2-8 s of speech)."""
    if rng.random() < grid_share:
        return grid_sentence(rng)
    n = 1 if rng.random() < 0.4 else 2
    return " ".join(varied_sentence(rng) for _ in range(n))
