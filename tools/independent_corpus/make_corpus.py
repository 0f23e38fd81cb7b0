#!/usr/bin/env python3
"""Independent synthetic "how-to" video corpus generator.

Written only from the public data-format descriptions (a summary of the datasets'
release formats given to its author); it imports no project code.  Only the Python standard library, numpy, pillow and PyAV are used.

    python tools/independent_corpus/make_corpus.py OUT --videos 400 --clips 150 \
        --seed 0 --workers 2

See README.md next to this file for the world, the noise model and the files.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
import zlib
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# ----------------------------------------------------------------------------
# World definition (fixed; does not depend on --seed)
# ----------------------------------------------------------------------------

# verb -> pattern name (== verb), synonym forms "base|3rd|ing|past|pp",
# typical duration (s), suffixes used by the clean (annotation) sentences.
VERBS = {
    "crack": (["crack|cracks|cracking|cracked|cracked", "break|breaks|breaking|broke|broken",
               "crack open|cracks open|cracking open|cracked open|cracked open"], 5, ["", " open", " on the side of the bowl"]),
    "pour": (["pour|pours|pouring|poured|poured", "tip|tips|tipping|tipped|tipped",
              "add|adds|adding|added|added"], 7, ["", " slowly", ""]),
    "add": (["add|adds|adding|added|added", "put in|puts in|putting in|put in|put in",
             "throw in|throws in|throwing in|threw in|thrown in", "toss in|tosses in|tossing in|tossed in|tossed in"],
            5, ["", "", " to the mix"]),
    "whisk": (["whisk|whisks|whisking|whisked|whisked", "beat|beats|beating|beat|beaten",
               "whisk up|whisks up|whisking up|whisked up|whisked up"], 9, ["", " until smooth", " together"]),
    "heat": (["heat|heats|heating|heated|heated", "heat up|heats up|heating up|heated up|heated up",
              "warm up|warms up|warming up|warmed up|warmed up", "preheat|preheats|preheating|preheated|preheated"],
             8, ["", " on the stove", " over medium heat"]),
    "flip": (["flip|flips|flipping|flipped|flipped", "turn over|turns over|turning over|turned over|turned over",
              "flip over|flips over|flipping over|flipped over|flipped over"], 6, ["", " with a spatula", " once"]),
    "cut": (["cut|cuts|cutting|cut|cut", "chop|chops|chopping|chopped|chopped", "dice|dices|dicing|diced|diced",
             "cut up|cuts up|cutting up|cut up|cut up"], 10, ["", " into small pieces", " into chunks"]),
    "stir": (["stir|stirs|stirring|stirred|stirred", "swirl|swirls|swirling|swirled|swirled",
              "stir up|stirs up|stirring up|stirred up|stirred up"], 8, ["", " with a spoon", " well"]),
    "scoop": (["scoop out|scoops out|scooping out|scooped out|scooped out", "scoop|scoops|scooping|scooped|scooped",
               "spoon out|spoons out|spooning out|spooned out|spooned out"], 7, ["", " with a spoon", ""]),
    "squeeze": (["squeeze|squeezes|squeezing|squeezed|squeezed", "juice|juices|juicing|juiced|juiced",
                 "squeeze out|squeezes out|squeezing out|squeezed out|squeezed out"], 6, ["", " by hand", ""]),
    "mash": (["mash|mashes|mashing|mashed|mashed", "smash|smashes|smashing|smashed|smashed",
              "mash up|mashes up|mashing up|mashed up|mashed up"], 9, ["", " with a fork", " until smooth"]),
    "dip": (["dip|dips|dipping|dipped|dipped", "soak|soaks|soaking|soaked|soaked", "dunk|dunks|dunking|dunked|dunked"],
            6, ["", " in the egg mixture", " on both sides"]),
    "fry": (["fry|fries|frying|fried|fried", "cook|cooks|cooking|cooked|cooked", "toast|toasts|toasting|toasted|toasted"],
            10, ["", " in the pan", " until golden"]),
    "slice": (["slice|slices|slicing|sliced|sliced", "cut|cuts|cutting|cut|cut", "slice up|slices up|slicing up|sliced up|sliced up"],
              9, ["", " into thin slices", ""]),
    "spread": (["spread|spreads|spreading|spread|spread", "smear|smears|smearing|smeared|smeared",
                "spread on|spreads on|spreading on|spread on|spread on"], 8, ["", " evenly", " with a knife"]),
    "mix": (["mix|mixes|mixing|mixed|mixed", "combine|combines|combining|combined|combined",
             "mix up|mixes up|mixing up|mixed up|mixed up"], 9, ["", " together", " with a spoon"]),
    "knead": (["knead|kneads|kneading|kneaded|kneaded", "work|works|working|worked|worked"], 12,
              ["", " on the counter", " by hand"]),
    "fold": (["fold|folds|folding|folded|folded", "fold over|folds over|folding over|folded over|folded over",
              "crease|creases|creasing|creased|creased"], 8, ["", " in half", " twice"]),
    "measure": (["measure|measures|measuring|measured|measured", "mark|marks|marking|marked|marked",
                 "measure out|measures out|measuring out|measured out|measured out"], 7, ["", " with a ruler", ""]),
    "drill": (["drill|drills|drilling|drilled|drilled", "make|makes|making|made|made", "bore|bores|boring|bored|bored"],
              8, ["", " with the drill", ""]),
    "insert": (["insert|inserts|inserting|inserted|inserted", "put in|puts in|putting in|put in|put in",
                "stick in|sticks in|sticking in|stuck in|stuck in"], 6, ["", "", " carefully"]),
    "tighten": (["tighten|tightens|tightening|tightened|tightened", "screw in|screws in|screwing in|screwed in|screwed in",
                 "tighten up|tightens up|tightening up|tightened up|tightened up"], 8, ["", " with a screwdriver", ""]),
    "attach": (["attach|attaches|attaching|attached|attached", "mount|mounts|mounting|mounted|mounted",
                "fix|fixes|fixing|fixed|fixed"], 9, ["", " in place", ""]),
    "loosen": (["loosen|loosens|loosening|loosened|loosened", "unscrew|unscrews|unscrewing|unscrewed|unscrewed",
                "undo|undoes|undoing|undid|undone"], 7, ["", " with a screwdriver", ""]),
    "remove": (["remove|removes|removing|removed|removed", "take off|takes off|taking off|took off|taken off",
                "take out|takes out|taking out|took out|taken out", "pull out|pulls out|pulling out|pulled out|pulled out"],
               6, ["", "", " carefully"]),
    "place": (["place|places|placing|placed|placed", "put|puts|putting|put|put", "set|sets|setting|set|set"],
              5, ["", " in position", ""]),
    "pump": (["pump|pumps|pumping|pumped|pumped", "inflate|inflates|inflating|inflated|inflated",
              "pump up|pumps up|pumping up|pumped up|pumped up"], 10, ["", " with the pump", ""]),
    "patch": (["patch|patches|patching|patched|patched", "repair|repairs|repairing|repaired|repaired",
               "fix|fixes|fixing|fixed|fixed"], 9, ["", " with a patch", ""]),
    "dig": (["dig|digs|digging|dug|dug", "dig out|digs out|digging out|dug out|dug out", "make|makes|making|made|made"],
            11, ["", " with a shovel", ""]),
    "press": (["press|presses|pressing|pressed|pressed", "pat down|pats down|patting down|patted down|patted down",
               "push down|pushes down|pushing down|pushed down|pushed down"], 6, ["", " down firmly", ""]),
    "water": (["water|waters|watering|watered|watered", "soak|soaks|soaking|soaked|soaked", "wet|wets|wetting|wet|wet"],
              7, ["", " thoroughly", ""]),
    "prune": (["prune|prunes|pruning|pruned|pruned", "trim|trims|trimming|trimmed|trimmed",
               "cut back|cuts back|cutting back|cut back|cut back"], 8, ["", " a little", ""]),
    "sand": (["sand|sands|sanding|sanded|sanded", "sand down|sands down|sanding down|sanded down|sanded down",
              "smooth|smooths|smoothing|smoothed|smoothed"], 10, ["", " until smooth", ""]),
    "wipe": (["wipe|wipes|wiping|wiped|wiped", "clean|cleans|cleaning|cleaned|cleaned",
              "wipe down|wipes down|wiping down|wiped down|wiped down"], 8, ["", " with a cloth", ""]),
    "paint": (["paint|paints|painting|painted|painted", "coat|coats|coating|coated|coated",
               "brush|brushes|brushing|brushed|brushed"], 12, ["", " with a brush", " evenly"]),
    "glue": (["glue|glues|gluing|glued|glued", "stick|sticks|sticking|stuck|stuck", "paste|pastes|pasting|pasted|pasted"],
             8, ["", "", " firmly"]),
    "draw": (["draw|draws|drawing|drew|drawn", "sketch|sketches|sketching|sketched|sketched",
              "trace|traces|tracing|traced|traced"], 10, ["", " with a pen", ""]),
    "spray": (["spray|sprays|spraying|sprayed|sprayed", "sprinkle|sprinkles|sprinkling|sprinkled|sprinkled",
               "spray on|sprays on|spraying on|sprayed on|sprayed on"], 6, ["", " over the card", ""]),
}
VERBS = {k: dict(forms=[tuple(f.split("|")) for f in v[0]], dur=v[1], clean=v[2]) for k, v in VERBS.items()}

# object -> shape, texture, hue, sat, val, size, article, noun forms (text, plural)
OBJECTS = {
    "egg": ("tall", "solid", .11, .20, .95, .65, "the", [("egg", 0), ("eggs", 1)]),
    "milk": ("square", "gradient", .60, .05, .97, .85, "the", [("milk", 0)]),
    "bowl": ("bowl", "rings", .56, .55, .80, 1.3, "the", [("bowl", 0), ("mixing bowl", 0)]),
    "flour": ("rounded", "speckle", .12, .06, .93, .85, "the", [("flour", 0)]),
    "batter": ("circle", "speckle", .13, .45, .90, 1.0, "the", [("batter", 0), ("mixture", 0)]),
    "pan": ("circle", "rings", .00, .00, .30, 1.3, "the", [("pan", 0), ("frying pan", 0), ("skillet", 0)]),
    "pancake": ("oval", "dots", .09, .60, .80, 1.0, "the", [("pancake", 0), ("pancakes", 1)]),
    "onion": ("drop", "rings", .85, .45, .70, .8, "the", [("onion", 0), ("onions", 1), ("red onion", 0)]),
    "tomato": ("circle", "solid", .00, .85, .85, .8, "the", [("tomato", 0), ("tomatoes", 1)]),
    "pot": ("trapezoid", "gradient", .00, .00, .60, 1.3, "the", [("pot", 0), ("saucepan", 0)]),
    "water": ("drop", "solid", .57, .60, .90, .8, "the", [("water", 0)]),
    "salt": ("tall", "dots", .00, .00, .97, .55, "", [("salt", 0)]),
    "soup": ("bowl", "solid", .03, .80, .70, 1.2, "the", [("soup", 0)]),
    "avocado": ("oval", "speckle", .25, .70, .50, .9, "the", [("avocado", 0), ("avocados", 1)]),
    "lime": ("circle", "vstripes", .22, .85, .80, .6, "the", [("lime", 0), ("limes", 1)]),
    "lemon": ("oval", "solid", .15, .90, .95, .7, "the", [("lemon", 0), ("lemons", 1)]),
    "bread": ("rounded", "dots", .08, .55, .80, 1.0, "the", [("bread", 0), ("slice of bread", 0), ("toast", 0)]),
    "cheese": ("triangle", "dots", .14, .85, .95, .8, "the", [("cheese", 0), ("cheddar", 0)]),
    "lettuce": ("crescent", "vstripes", .30, .75, .75, .9, "the", [("lettuce", 0), ("leaves", 1)]),
    "butter": ("square", "solid", .15, .50, 1.0, .6, "the", [("butter", 0)]),
    "sandwich": ("square", "hstripes", .10, .45, .85, 1.0, "the", [("sandwich", 0)]),
    "sugar": ("square", "speckle", .10, .05, .95, .7, "the", [("sugar", 0)]),
    "jug": ("trapezoid", "vstripes", .50, .30, .85, 1.2, "the", [("jug", 0), ("pitcher", 0)]),
    "lemonade": ("tall", "gradient", .16, .50, .95, 1.0, "the", [("lemonade", 0), ("drink", 0)]),
    "dough": ("oval", "gradient", .10, .30, .90, 1.0, "the", [("dough", 0)]),
    "board": ("capsule", "diag", .08, .60, .65, 1.3, "the", [("board", 0), ("plank", 0)]),
    "hole": ("oval", "rings", .07, .50, .22, .9, "the", [("hole", 0)]),
    "screw": ("hexagon", "rings", .60, .08, .72, .45, "the", [("screw", 0), ("screws", 1), ("bolt", 0)]),
    "shelf": ("capsule", "hstripes", .07, .70, .55, 1.4, "the", [("shelf", 0)]),
    "handle": ("capsule", "gradient", .12, .70, .75, .8, "the", [("handle", 0), ("door handle", 0), ("knob", 0)]),
    "wheel": ("ring", "solid", .00, .00, .15, 1.3, "the", [("wheel", 0), ("front wheel", 0)]),
    "tube": ("ring", "gradient", .00, .70, .45, 1.0, "the", [("tube", 0), ("inner tube", 0)]),
    "tire": ("ring", "diag", .00, .00, .28, 1.2, "the", [("tire", 0), ("tyre", 0)]),
    "tree": ("triangle", "speckle", .33, .80, .50, 1.2, "the", [("tree", 0), ("sapling", 0)]),
    "soil": ("trapezoid", "speckle", .07, .70, .35, 1.0, "the", [("soil", 0), ("dirt", 0), ("compost", 0)]),
    "plant": ("star", "solid", .35, .70, .65, 1.0, "the", [("plant", 0)]),
    "roots": ("cross", "vstripes", .10, .50, .50, .8, "the", [("roots", 1), ("root ball", 0)]),
    "wood": ("rounded", "diag", .09, .50, .70, 1.2, "the", [("wood", 0), ("boards", 1)]),
    "paint": ("square", "rings", .62, .80, .80, .7, "the", [("paint", 0)]),
    "paper": ("rounded", "solid", .15, .05, .98, 1.2, "the", [("paper", 0), ("card", 0)]),
    "picture": ("square", "checker", .80, .60, .80, .7, "the", [("picture", 0), ("photo", 0)]),
    "flower": ("star", "dots", .92, .70, .90, .7, "the", [("flower", 0), ("flowers", 1)]),
    "glitter": ("diamond", "speckle", .75, .50, 1.0, .6, "the", [("glitter", 0)]),
}
assert len({(v[0], v[1]) for v in OBJECTS.values()}) == len(OBJECTS)

# (task id, name, category, steps as "verb object [prep object2]")
TASKS = [
    (101, "Make Pancakes", "cooking", ["crack egg", "pour milk into bowl", "add flour", "whisk batter", "heat pan",
                                       "pour batter into pan", "flip pancake"]),
    (108, "Make Tomato Soup", "cooking", ["cut onion", "cut tomato", "heat pot", "add onion", "add tomato",
                                          "pour water into pot", "add salt", "stir soup"]),
    (115, "Make Guacamole", "cooking", ["cut avocado", "scoop avocado", "cut onion", "add salt", "squeeze lime",
                                        "mash avocado"]),
    (122, "Make French Toast", "cooking", ["crack egg", "pour milk into bowl", "whisk egg", "dip bread", "heat pan",
                                           "fry bread"]),
    (129, "Make a Sandwich", "cooking", ["slice bread", "spread butter", "add cheese", "add lettuce", "cut sandwich"]),
    (136, "Make Lemonade", "cooking", ["cut lemon", "squeeze lemon", "add sugar", "pour water into jug",
                                       "stir lemonade"]),
    (143, "Make Bread Dough", "cooking", ["pour flour into bowl", "add salt", "pour water into bowl", "mix dough",
                                          "knead dough", "fold dough"]),
    (150, "Build a Shelf", "repair", ["measure board", "cut board", "drill hole", "insert screw", "tighten screw",
                                      "attach shelf"]),
    (157, "Replace a Door Handle", "repair", ["loosen screw", "remove handle", "place handle", "tighten screw"]),
    (164, "Fix a Bike Tire", "repair", ["remove wheel", "remove tube", "pump tube", "patch tube", "insert tube",
                                        "pump tire", "attach wheel", "tighten screw"]),
    (171, "Plant a Tree", "gardening", ["dig hole", "place tree", "add soil", "press soil", "water tree"]),
    (178, "Repot a Plant", "gardening", ["remove plant", "prune roots", "add soil", "place plant", "water plant"]),
    (185, "Paint a Fence", "repair", ["sand wood", "wipe wood", "stir paint", "paint wood"]),
    (192, "Make a Greeting Card", "crafts", ["fold paper", "cut paper", "glue picture onto paper", "draw flower",
                                             "spray glitter"]),
]


def parse_step(s):
    w = s.split()
    return (w[0], w[1], w[2], w[3]) if len(w) == 4 else (w[0], w[1], None, None)


def step_name(st):
    v, o, prep, o2 = st
    art = OBJECTS[o][6]
    s = f"{v} {art + ' ' if art else ''}{o}"
    if o2:
        s += f" {prep} the {o2}"
    return s


def camel(name):
    return "".join(w[:1].upper() + w[1:] for w in name.split())


WORLD = []
_gid = 0
for _tid, _name, _cat, _steps in TASKS:
    _st = [parse_step(s) for s in _steps]
    _ids = []
    for _ in _st:
        _gid += 1
        _ids.append(_gid)
    WORLD.append(dict(id=_tid, name=_name, cat=_cat, steps=_st, names=[step_name(s) for s in _st], gids=_ids,
                      objects=sorted({x for s in _st for x in (s[1], s[3]) if x})))
    for _s in _st:
        assert _s[0] in VERBS and _s[1] in OBJECTS and (_s[3] is None or _s[3] in OBJECTS), _s
    assert all("," not in n for n in WORLD[-1]["names"]) and len(set(WORLD[-1]["names"])) == len(_st)

SURFACES = {"wood": "wooden table", "white": "white counter", "mat": "green cutting mat", "bench": "grey workbench",
            "tiles": "tiled counter", "dark": "dark table"}

# ----------------------------------------------------------------------------
# Narration language
# ----------------------------------------------------------------------------

T_BEFORE = ["so now we're going to {V} {NP}{T}", "next we're gonna {V} {NP}{T}", "next you want to {V} {NP}{T}",
            "the next thing you want to do is {V} {NP}{T}", "the next step is to {V} {NP}{T}",
            "now i'm gonna {V} {NP}{T}", "let's go ahead and {V} {NP}{T}", "what we need to do now is {V} {NP}{T}",
            "after that you {V} {NP}{T}", "then we {V} {NP}{T}", "now it's time to {V} {NP}{T}",
            "you'll want to {V} {NP}{T} {ADV}", "{V} {NP}{T} {ADV}", "i like to {V} {NP}{T} {ADV}",
            "okay so we need to {V} {NP}{T}", "and now we {V} {NP}{T}", "so i'm going to {V} {NP}{T} {ADV}"]
T_DURING = ["now i'm just {Ving} {NP}{T}", "so i'm {Ving} {NP}{T} here", "we're {Ving} {NP}{T} right now",
            "just keep {Ving} {NP}{T}", "you can see i'm {Ving} {NP}{T}", "{Ving} {NP}{T} {ADV}",
            "here i am {Ving} {NP}{T}", "make sure you {V} {NP}{T} {ADV}", "i'm {Ving} {NP}{T} {ADV}"]
T_AFTER = ["there we go {NP} {BE} {Vpp}", "okay so now {NP} {BE} {Vpp}", "and that's {NP} {Vpp}",
           "you can see {NP} {BE} {Vpp} now", "so {NP} {BE} {Vpp} {TAIL}", "alright {NP} {BE} all {Vpp}",
           "i just {Vpast} {NP}{T}", "so we {Vpast} {NP}{T} {TAIL}"]
T_BACKREF = ["now that {NP} {BE} {Vpp} {TAIL2}", "once {NP} {BE} {Vpp} {TAIL2}", "with {NP} {Vpp} {TAIL2}",
             "remember we {Vpast} {NP} earlier", "so since {NP} {BE} already {Vpp} {TAIL2}",
             "like i said {NP} should be {Vpp} by now"]
T_SKIPPED = ["normally i would {V} {NP}{T} but not today", "some people {V} {NP}{T} but i'm skipping that",
             "you could also {V} {NP}{T} if you want", "i forgot to {V} {NP}{T} oh well",
             "usually you {V} {NP}{T} but i don't bother"]
ADV = ["really well", "nice and slowly", "a little bit", "carefully", "like this", "for a few seconds",
       "until it looks good", "just like that", "nice and even", "", "", "right here", "real quick"]
TAIL = ["", "perfect", "looks good", "that looks great", "nice", "just like that", "awesome"]
TAIL2 = ["we can move on", "we can go to the next step", "it should look like this", "set that aside",
         "we're almost done", "it's ready", "that part is done", "it's time for the next part"]
DETS = ["the", "the", "the", "your", "our", "this", "that"]
PREPS = {"into": ["into", "in", "into"], "onto": ["onto", "on", "onto"]}

_NAMES = ["jo", "ma", "ri", "ke", "sam", "li", "ta", "de", "no", "ben", "ka", "mi", "ro", "el", "an", "su"]
_BRAND1 = ["zen", "nova", "blue", "peak", "fresh", "snap", "true", "bright", "hello", "green", "home", "quick"]
_BRAND2 = ["ly", "box", "io", "ware", "kit", "hub", "mart", "fy", "base", "nest", "spark", "labs"]
IRR = {
    "greet": [["hey", "hi", "hello", "what's up", "hey there", "good morning", "hi there"],
              ["guys", "everyone", "everybody", "folks", "you guys", "friends"],
              ["welcome back to", "welcome to", "and welcome to", "it's great to have you on"],
              ["my channel", "the channel", "my kitchen", "the workshop", "another video", "the garden"]],
    "name": [["my name is", "i'm", "this is", "it's"], ["{NAME}"],
             ["and", "here and", "back again and"], ["i'm so excited", "let's get started", "welcome back",
                                                     "thanks for stopping by", "this is a fun one"]],
    "intro": [["today", "in this video", "so today", "this time"],
              ["we're going to", "i'm going to", "i'll show you how to", "we're gonna", "i want to show you how to"],
              ["{TASK}"], ["", "it's really easy", "step by step", "the easy way", "in just a few minutes",
                           "like a pro", "on a budget"]],
    "sponsor": [["this video is sponsored by", "today's video is brought to you by", "big thanks to",
                 "shout out to"], ["{BRAND}"],
                ["they have a great deal", "check them out", "link in the description", "use my code for ten percent off",
                 "i've been using them for years"]],
    "subscribe": [["if you're new here", "before we start", "real quick", "by the way", "oh and"],
                  ["don't forget to", "make sure to", "please", "go ahead and"],
                  ["subscribe", "hit the like button", "turn on notifications", "leave a comment", "share this video"],
                  ["", "it really helps the channel", "so you don't miss anything", "if you enjoyed this"]],
    "anecdote": [["my grandma", "my mom", "my dad", "my brother", "my neighbor", "a friend of mine", "my roommate",
                  "my uncle"], ["used to", "always", "would", "once tried to"],
                 ["do this", "make this", "tell me about this", "laugh at me for this", "do it differently"],
                 ["every sunday", "when i was a kid", "on holidays", "back in college", "all the time", "years ago"]],
    "comment": [["honestly", "to be honest", "i think", "i really think", "you know what", "man"],
                ["this is my favorite part", "this is the fun part", "this is kind of messy", "it smells amazing in here",
                 "this part is so satisfying", "i messed this up last time", "this is where it gets tricky",
                 "it's not that hard"]],
    "chat": [["the weather", "my camera", "this lighting", "my dog", "the kids", "the neighbors"],
             ["is", "has been", "was"], ["crazy", "acting up", "really nice", "a bit weird", "so loud"],
             ["today", "this week", "lately", "all morning"]],
    "ask": [["let me know", "tell me", "comment"], ["down below", "in the comments"],
            ["what you think", "if you've tried this", "what you want to see next", "how yours turned out",
             "if you have any questions"]],
    "filler": [["okay", "alright", "so", "and", "um"], ["let's see", "give it a second", "hold on one second",
                                                        "where was i", "bear with me", "one moment"]],
    "tips": [["you can find", "you can get", "i got", "i bought"],
             ["all of these", "the stuff i used", "this", "everything"],
             ["at any store", "online", "in the description", "at the hardware store", "pretty cheap"]],
    "outro": [["and that's it", "that's all", "we're done", "there you have it", "and that's pretty much it"],
              ["for today", "for this video", "guys", "everyone"],
              ["thanks for watching", "see you next time", "bye for now", "take care", "catch you later"]],
}
IRR_MID = ["sponsor", "subscribe", "anecdote", "comment", "chat", "ask", "filler", "tips", "comment", "anecdote"]

SOUNDALIKE = {
    "cut": ["cup", "cap", "gut"], "onion": ["union", "onions"], "onions": ["unions", "onion"], "salt": ["fault", "sold"],
    "pour": ["poor", "for", "pore"], "stir": ["star", "sir", "store"], "bowl": ["ball", "bold", "bull"],
    "flour": ["flower", "floor"], "whisk": ["risk", "wisp"], "heat": ["eat", "feet", "heap"], "pan": ["pin", "ban", "pen"],
    "screw": ["crew", "scrub"], "board": ["bored", "bird"], "tighten": ["titan", "frighten"], "paint": ["pain", "pant"],
    "soil": ["oil", "soul", "spoil"], "water": ["waiter", "otter"], "wheel": ["will", "we'll"], "dough": ["doe", "though"],
    "knead": ["need", "kneed"], "lime": ["line", "lyme"], "bread": ["bred", "red", "brad"], "butter": ["better", "batter"],
    "batter": ["better", "butter"], "sand": ["send", "band"], "egg": ["ag", "leg"], "milk": ["melt", "mill"],
    "tube": ["tub", "two"], "tire": ["tired", "tower"], "tree": ["three", "free"], "hole": ["whole", "hold"],
    "plant": ["plan", "plane"], "paper": ["pepper", "piper"], "glue": ["blue", "clue"], "wood": ["would", "good"],
    "drill": ["grill", "thrill"], "sugar": ["shook"], "lemon": ["layman", "lemons"], "pot": ["pod", "pat", "hot"],
    "soup": ["soap", "sue"], "mash": ["mesh", "smash"], "fold": ["fooled", "hold"], "dip": ["deep", "tip"],
    "fry": ["fly", "fries"], "slice": ["slides", "lice"], "spread": ["spray", "shred"], "mix": ["max", "miss"],
    "wipe": ["white", "ripe"], "prune": ["prove", "prawn"], "roots": ["routes", "roofs"], "dig": ["big", "dug"],
    "place": ["plays", "plate"], "remove": ["move", "removed"], "press": ["dress", "pressed"], "pump": ["bump", "pomp"],
    "patch": ["batch", "match"], "handle": ["candle", "handled"], "shelf": ["self", "shell"], "now": ["no", "know"],
    "the": ["a", "uh", "that"], "and": ["an", "in"], "to": ["too", "two"], "you": ["ya", "your"], "we're": ["were", "where"],
    "it's": ["its", "is"], "going": ["gonna", "go"], "next": ["neck", "text"], "add": ["had", "at"],
    "crack": ["track", "craig"], "flip": ["flick", "slip"], "egg's": ["eggs"], "jug": ["jog", "judge"],
    "cheese": ["cheers", "jeez"], "lettuce": ["let us", "letters"], "tomato": ["tomatoes"], "pancake": ["pan cake"],
    "avocado": ["avocados"], "spray": ["spread", "pray"], "draw": ["drawer", "straw"], "squeeze": ["sneeze", "squeezes"],
}
RANDOM_WORDS = ("time thing way day man look good right little also very well back even want give most find here "
                "part over such take only new know year come think people could them than then these first "
                "call make long down side been work life just there about little start show bit kind sure really "
                "okay like stuff more one two three four five hand yeah actually maybe pretty nice real quick "
                "thank thanks channel video today hold place bring turn cool great keep point line top end").split()
FILLERS = ["um", "uh", "you know", "so", "like", "okay", "uh so", "um yeah"]

P_SUB, P_DROP, P_FILL, P_FILL2, P_STUTTER = 0.05, 0.03, 0.30, 0.08, 0.04


def asr_noise(words, rng):
    out = []
    for w in words:
        r = rng.random()
        if r < P_SUB:
            cand = SOUNDALIKE.get(w)
            if cand and rng.random() < 0.75:
                out.append(cand[rng.integers(len(cand))])
            else:
                out.append(RANDOM_WORDS[rng.integers(len(RANDOM_WORDS))])
        elif r < P_SUB + P_DROP and len(words) > 2:
            continue
        else:
            out.append(w)
            if rng.random() < P_STUTTER / max(1, len(words)):
                out.append(w)
    for p in (P_FILL, P_FILL2):
        if rng.random() < p:
            pos = 0 if rng.random() < 0.5 else int(rng.integers(0, len(out) + 1))
            out.insert(pos, FILLERS[rng.integers(len(FILLERS))])
    if not out:
        out = list(words[:1]) or ["um"]
    return " ".join(" ".join(out).split())


def pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def noun_phrase(rng, obj):
    noun, plural = pick(rng, OBJECTS[obj][7])
    if OBJECTS[obj][6] == "":
        det = pick(rng, ["", "", "some", "a little", "a pinch of", "the"])
    else:
        det = pick(rng, DETS + (["some"] if plural else []))
    return (det + " " + noun).strip(), plural


def step_sentence(rng, st, family):
    v, o, prep, o2 = st
    base, third, ing, past, pp = pick(rng, VERBS[v]["forms"])
    np_, plural = noun_phrase(rng, o)
    tgt = ""
    if o2 and (family not in ("after", "backref") or rng.random() < 0.5):
        tgt = " " + pick(rng, PREPS[prep]) + " " + noun_phrase(rng, o2)[0]
    tmpl = pick(rng, {"before": T_BEFORE, "during": T_DURING, "after": T_AFTER, "backref": T_BACKREF,
                      "skipped": T_SKIPPED}[family])
    s = tmpl.format(V=base, Ving=ing, Vpp=pp, Vpast=past, NP=np_, T=tgt, BE="are" if plural else "is",
                    ADV=pick(rng, ADV), TAIL=pick(rng, TAIL), TAIL2=pick(rng, TAIL2))
    return " ".join(s.split())


def irrelevant_sentence(rng, cat, task):
    parts = []
    for slot in IRR[cat]:
        x = pick(rng, slot)
        if x == "{NAME}":
            x = pick(rng, _NAMES) + pick(rng, _NAMES)
        elif x == "{BRAND}":
            x = pick(rng, _BRAND1) + pick(rng, _BRAND2)
        elif x == "{TASK}":
            x = task["name"].lower()
        parts.append(x)
    return " ".join(" ".join(parts).split())


def clean_sentence(rng, st):
    v, o, prep, o2 = st
    art = OBJECTS[o][6]
    s = f"{v} {art + ' ' if art else ''}{o}"
    if o2:
        s += f" {prep} the {o2}"
    return s + pick(rng, VERBS[v]["clean"])


def caption(rng, steps, surface):
    subj = pick(rng, ["a person", "someone", "a person", "a man", "a woman"])
    progressive = rng.random() < 0.5
    vps = []
    for st in steps:
        v, o, prep, o2 = st
        base, third, ing, past, pp = VERBS[v]["forms"][0]
        art = OBJECTS[o][6] or "some"
        vp = f"{ing if progressive else third} {art} {o}"
        if o2:
            vp += f" {prep} a {o2}"
        vps.append(vp)
    if progressive:
        s = f"{subj} is " + " and then ".join(vps)
    else:
        s = f"{subj} " + " and then ".join(vps)
    return s + f" on a {SURFACES[surface]}"


# ----------------------------------------------------------------------------
# Planning (main process, cheap, deterministic)
# ----------------------------------------------------------------------------

ID_ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ID_LAST = "AEIMQUYcgkosw048"


def make_video_id(rng, used):
    while True:
        s = "".join(ID_ALPHA[i] for i in rng.integers(0, 64, 10)) + ID_LAST[rng.integers(0, 16)]
        if s not in used:
            used.add(s)
            return s


def draw_offset(rng, dur):
    """Line start relative to step start: announce-before / during / comment-after, heavy tail."""
    r = rng.random()
    if r < 0.50:
        off = -rng.gamma(1.5, 2.0)
    elif r < 0.82:
        off = rng.uniform(0.0, 0.8) * dur
    else:
        off = dur + rng.gamma(1.5, 2.5)
    if rng.random() < 0.12:
        off += (1 if rng.random() < 0.5 else -1) * rng.exponential(10.0)
    return float(off)


def video_geometry(rng):
    w = 2 * int(rng.integers(32, 57))
    h = int(round(w * (0.75 if rng.random() < 0.5 else 9 / 16) / 2)) * 2
    fps = int(rng.integers(4, 9))
    return w, h, fps


def visual_params(rng, dur, seg_bounds):
    shots = [dict(t=0.0)]
    for b in seg_bounds:
        if 0 < b < dur - 0.5 and rng.random() < 0.45:
            shots.append(dict(t=float(b)))
    extra = rng.poisson(dur / 40.0)
    for _ in range(extra):
        shots.append(dict(t=float(rng.uniform(1, max(1.5, dur - 1)))))
    shots.sort(key=lambda s: s["t"])
    for s in shots:
        s.update(u0=float(rng.uniform(0.86, 1.12)), u1=float(rng.uniform(0.86, 1.12)),
                 ox=float(rng.uniform(-0.05, 0.05)), oy=float(rng.uniform(-0.05, 0.05)),
                 wb=[float(x) for x in rng.uniform(0.94, 1.06, 3)])
    light = dict(base=float(rng.uniform(0.8, 1.15)), amp=float(rng.uniform(0.0, 0.1)),
                 period=float(rng.uniform(15, 60)), phase=float(rng.uniform(0, 6.3)),
                 events=[[float(rng.uniform(0, dur)), float(rng.uniform(0.85, 1.15))] for _ in range(rng.poisson(0.7))],
                 noise=float(rng.uniform(1.5, 5.0)), flicker=float(rng.uniform(0.0, 0.015)),
                 shake=float(rng.uniform(0.0, 1.2)))
    return shots, light


def plan_long(vid, task, subset, ss):
    rng = np.random.default_rng(ss)
    W, H, fps = video_geometry(rng)
    n = len(task["steps"])
    n_skip = int(rng.choice([0, 1, 2], p=[0.55, 0.3, 0.15]))
    n_skip = min(n_skip, max(0, n - 3))
    skipped = set(rng.choice(n, size=n_skip, replace=False).tolist()) if n_skip else set()
    done = [j for j in range(n) if j not in skipped]
    m = len(done)
    f_bg = float(rng.uniform(0.4, 0.6))
    w = np.array([VERBS[task["steps"][j][0]]["dur"] for j in done], float) * rng.lognormal(0, 0.3, m)
    D0 = float(rng.uniform(40, 150))
    d = np.clip(w / w.sum() * (1 - f_bg) * D0, 3.0, 25.0)
    D0 = float(np.clip(max(D0, d.sum() / (1 - f_bg)), 40.0, 150.0))
    if d.sum() > (1 - f_bg) * D0:
        d *= (1 - f_bg) * D0 / d.sum()
    nframes = int(round(D0 * fps))
    D = nframes / fps
    if d.sum() > D * 0.62:
        d *= D * 0.6 / d.sum()
    G = D - d.sum()
    alpha = np.array([2.0] + [1.0] * (m - 1) + [1.5])
    gaps = rng.dirichlet(alpha) * G
    segs, t = [], 0.0
    props = [o for o in task["objects"]]

    def bg(kind_p, t0, t1):
        if t1 - t0 <= 1e-6:
            return
        kinds, probs = zip(*kind_p)
        if t1 - t0 > 6 and rng.random() < 0.3:
            mid = float(rng.uniform(t0 + 2, t1 - 2))
            bg(kind_p, t0, mid)
            bg(kind_p, mid, t1)
            return
        k = str(rng.choice(kinds, p=probs))
        np_ = int(rng.integers(0, 3))
        segs.append(dict(kind=k, t0=t0, t1=t1, props=[str(x) for x in rng.choice(props, size=np_, replace=False)]))

    step_iv = {}
    for i in range(m + 1):
        g = float(gaps[i])
        kp = ([("talk", .65), ("table", .2), ("overview", .15)] if i == 0 else
              [("talk", .6), ("table", .4)] if i == m else [("talk", .4), ("table", .55), ("overview", .05)])
        bg(kp, t, t + g)
        t += g
        if i < m:
            j = done[i]
            t1 = t + float(d[i])
            step_iv[j] = (t, t1)
            other = [o for o in props if o not in (task["steps"][j][1], task["steps"][j][3])]
            pr = [str(rng.choice(other))] if other and rng.random() < 0.4 else []
            segs.append(dict(kind="step", t0=t, t1=t1, step=list(task["steps"][j]), props=pr))
            t = t1
    segs[-1]["t1"] = D
    for a, b in zip(segs, segs[1:]):
        b["t0"] = a["t1"]
    for s in segs:
        if s["kind"] == "step":
            j = task["steps"].index(tuple(s["step"]))
            step_iv[j] = (s["t0"], s["t1"])

    # ---- narration events
    ev = []  # (desired_start, text, align)
    for j in range(n):
        st = task["steps"][j]
        if j in step_iv:
            s0, s1 = step_iv[j]
            if rng.random() < 0.20:
                continue  # never narrated
            mentions = 1 + (rng.random() < 0.20)
            for _ in range(mentions):
                off = draw_offset(rng, s1 - s0)
                fam = ("before" if off < 0 else "after" if off > s1 - s0 else
                       ("during" if rng.random() < 0.6 else "before"))
                ev.append([s0 + off, step_sentence(rng, st, fam), (s0, s1)])
            if rng.random() < 0.15:
                ev.append([s1 + rng.uniform(2, 5) + rng.exponential(8), step_sentence(rng, st, "backref"), (s0, s1)])
        else:
            if rng.random() < 0.4:
                prev = [step_iv[k][1] for k in step_iv if k < j]
                tt = (max(prev) if prev else 0.0) + rng.normal(0, 3)
                fam = "skipped" if rng.random() < 0.5 else "before"
                ev.append([tt, step_sentence(rng, st, fam), None])
    n_rel = len(ev)
    r_irr = float(rng.uniform(0.27, 0.43))
    n_irr = max(2, int(round(n_rel * r_irr / (1 - r_irr) + rng.normal(0, 0.7))))
    cats = []
    if rng.random() < 0.85:
        cats.append(("greet", rng.uniform(0, 1.0)))
    if rng.random() < 0.3:
        cats.append(("name", rng.uniform(0, 4.0)))
    if rng.random() < 0.7:
        cats.append(("intro", rng.uniform(1, 6.0)))
    if rng.random() < 0.7:
        cats.append(("outro", D - rng.uniform(3, 8)))
    cats = cats[:n_irr]
    talk_iv = [(s["t0"], s["t1"]) for s in segs if s["kind"] != "step"]
    while len(cats) < n_irr:
        if talk_iv and rng.random() < 0.6:
            a, b = talk_iv[int(rng.integers(len(talk_iv)))]
            tt = rng.uniform(a, max(a, b - 1))
        else:
            tt = rng.uniform(0, D)
        cats.append((pick(rng, IRR_MID), tt))
    for c, tt in cats:
        ev.append([tt, irrelevant_sentence(rng, c, task), None])

    for e in ev:
        e[1] = asr_noise(e[1].split(), rng)
    ev.sort(key=lambda e: e[0])
    lines, cur = [], 0.0
    for t_des, text, al in ev:
        nw = len(text.split())
        dur = float(np.clip(nw / 2.4 + rng.uniform(-0.3, 0.6), 2.0, 5.0))
        st0 = max(float(t_des), cur + float(rng.uniform(0.05, 0.6)), 0.0)
        if st0 + dur > D:
            st0 = max(cur + 0.05, D - dur)
            if st0 < cur + 0.05 or st0 + 2.0 > D:
                continue
            dur = min(dur, D - st0)
        s_r, e_r = round(st0, 2), round(min(st0 + dur, D), 2)
        if e_r - s_r < 1.99 or s_r < cur:
            continue
        lines.append(dict(start=s_r, end=e_r, text=text,
                          align=None if al is None else [round(al[0], 2), round(al[1], 2)]))
        cur = e_r
    shots, light = visual_params(rng, D, [s["t0"] for s in segs])
    return dict(kind="long", vid=vid, task=task["id"], subset=subset, W=W, H=H, fps=fps, nframes=nframes,
                duration=D, segments=segs, lines=lines, shots=shots, light=light,
                surface=str(rng.choice(list(SURFACES))), seed=int(rng.integers(2 ** 31)),
                clean=[clean_sentence(rng, task["steps"][j]) for j in range(n)],
                step_iv={int(k): [round(v[0], 2), round(v[1], 2)] for k, v in step_iv.items()})


def plan_clip(num, task, start_j, n_st, ss):
    rng = np.random.default_rng(ss)
    W, H, fps = video_geometry(rng)
    steps = [task["steps"][start_j + k] for k in range(n_st)]
    D0 = float(rng.uniform(8, 25))
    nframes = int(round(D0 * fps))
    D = nframes / fps
    f_bg = float(rng.uniform(0.05, 0.25))
    w = np.array([VERBS[s[0]]["dur"] for s in steps], float) * rng.lognormal(0, 0.2, n_st)
    d = w / w.sum() * (1 - f_bg) * D
    gaps = rng.dirichlet([1.0] * (n_st + 1)) * (D - d.sum())
    segs, t = [], 0.0
    for i in range(n_st + 1):
        if gaps[i] > 1e-6:
            segs.append(dict(kind="table", t0=t, t1=t + float(gaps[i]), props=[]))
            t += float(gaps[i])
        if i < n_st:
            segs.append(dict(kind="step", t0=t, t1=t + float(d[i]), step=list(steps[i]), props=[]))
            t += float(d[i])
    segs[-1]["t1"] = D
    for a, b in zip(segs, segs[1:]):
        b["t0"] = a["t1"]
    surface = str(rng.choice(list(SURFACES)))
    shots, light = visual_params(rng, D, [s["t0"] for s in segs])
    return dict(kind="clip", vid=f"video{num}", num=num, task=task["id"], W=W, H=H, fps=fps, nframes=nframes,
                duration=D, segments=segs, lines=[], shots=shots, light=light, surface=surface,
                seed=int(rng.integers(2 ** 31)), steps=[list(s) for s in steps], caption=caption(rng, steps, surface))


# ----------------------------------------------------------------------------
# Rendering (workers)
# ----------------------------------------------------------------------------

def hsv(h, s, v):
    h = h % 1.0
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array([r, g, b], np.float32) * 255


def smooth(x):
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def lowfreq(rng, h, w, cells):
    small = rng.random((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BICUBIC), np.float32)


def rgba_draw(w, h, fn, ss=4):
    w, h = max(2, int(round(w))), max(2, int(round(h)))
    im = Image.new("RGBA", (w * ss, h * ss), (0, 0, 0, 0))
    fn(ImageDraw.Draw(im), w * ss, h * ss)
    return im.resize((w, h), Image.LANCZOS)


def shape_mask(shape, w, h, ss=4):
    W, H = w * ss, h * ss
    im = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(im)
    m = 0.04 * min(W, H)
    box = [m, m, W - m, H - m]
    cx, cy, rx, ry = W / 2, H / 2, W / 2 - m, H / 2 - m
    if shape in ("circle", "oval", "tall"):
        d.ellipse(box, fill=255)
    elif shape == "square":
        d.rectangle([m * 2, m * 2, W - 2 * m, H - 2 * m], fill=255)
    elif shape == "rounded":
        d.rounded_rectangle(box, radius=0.3 * min(W, H), fill=255)
    elif shape == "capsule":
        d.rounded_rectangle(box, radius=(H - 2 * m) / 2, fill=255)
    elif shape == "triangle":
        d.polygon([(cx, m), (W - m, H - m), (m, H - m)], fill=255)
    elif shape == "diamond":
        d.polygon([(cx, m), (W - m, cy), (cx, H - m), (m, cy)], fill=255)
    elif shape == "hexagon":
        d.polygon([(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in np.arange(6) * math.pi / 3], fill=255)
    elif shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            r = 1.0 if k % 2 == 0 else 0.45
            pts.append((cx + rx * r * math.cos(a), cy + ry * r * math.sin(a)))
        d.polygon(pts, fill=255)
    elif shape == "ring":
        d.ellipse(box, fill=255)
        d.ellipse([cx - rx * 0.5, cy - ry * 0.5, cx + rx * 0.5, cy + ry * 0.5], fill=0)
    elif shape == "bowl":
        d.chord([m, -H + 2 * m, W - m, H - m], 0, 180, fill=255)
    elif shape == "crescent":
        d.ellipse(box, fill=255)
        d.ellipse([m + 0.45 * W, m - 0.1 * H, W + 0.3 * W, H - m - 0.1 * H], fill=0)
    elif shape == "trapezoid":
        d.polygon([(m, m), (W - m, m), (W - 0.2 * W, H - m), (0.2 * W, H - m)], fill=255)
    elif shape == "cross":
        d.rectangle([cx - 0.17 * W, m, cx + 0.17 * W, H - m], fill=255)
        d.rectangle([m, cy - 0.17 * H, W - m, cy + 0.17 * H], fill=255)
    elif shape == "drop":
        d.ellipse([m, 0.35 * H, W - m, H - m], fill=255)
        d.polygon([(cx, m), (W - 1.5 * m, 0.62 * H), (1.5 * m, 0.62 * H)], fill=255)
    else:
        raise ValueError(shape)
    return np.asarray(im.resize((w, h), Image.BOX), np.float32) / 255.0


SHAPE_ASPECT = {"circle": 1.0, "oval": 1.5, "tall": 0.62, "square": 1.0, "rounded": 1.4, "capsule": 2.2,
                "triangle": 1.1, "diamond": 0.85, "hexagon": 1.12, "star": 1.0, "ring": 1.0, "bowl": 1.7,
                "crescent": 1.0, "trapezoid": 1.4, "cross": 1.0, "drop": 0.8}


def texture(kind, h, w, c1, c2, rng):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    p = float(rng.uniform(2.5, 4.5))
    ph = float(rng.uniform(0, p))
    if kind == "solid":
        m = lowfreq(rng, h, w, 3) * 0.25
    elif kind == "hstripes":
        m = (((y + ph) // p) % 2).astype(np.float32)
    elif kind == "vstripes":
        m = (((x + ph) // p) % 2).astype(np.float32)
    elif kind == "diag":
        m = (((x + y + ph) // p) % 2).astype(np.float32)
    elif kind == "checker":
        m = (((x // p) + (y // p)) % 2).astype(np.float32)
    elif kind == "dots":
        m = ((((x + ph) % p) - p / 2) ** 2 + (((y + ph) % p) - p / 2) ** 2 < (p * 0.3) ** 2).astype(np.float32)
    elif kind == "rings":
        m = ((np.sqrt((x - w / 2) ** 2 + (y - h / 2) ** 2) // (p * 0.8)) % 2).astype(np.float32)
    elif kind == "speckle":
        m = (rng.random((h, w)) < 0.3).astype(np.float32)
    elif kind == "gradient":
        m = np.broadcast_to(y / max(1, h - 1), (h, w)).astype(np.float32)
    else:
        raise ValueError(kind)
    return c1[None, None] * (1 - m[..., None]) + c2[None, None] * m[..., None]


def make_surface(kind, h, w, rng, tint):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    n1 = lowfreq(rng, h, w, 6)
    if kind == "wood":
        base = hsv(rng.uniform(0.06, 0.1), rng.uniform(0.45, 0.65), rng.uniform(0.5, 0.7))
        grain = 0.5 + 0.5 * np.sin(y * rng.uniform(0.8, 1.4) + 6 * n1)
        img = base * (0.8 + 0.25 * grain[..., None])
        plank = max(6, int(h / rng.uniform(2.5, 4)))
        img[(y.astype(int) % plank) == 0] *= 0.6
    elif kind == "white":
        img = np.full((h, w, 3), rng.uniform(200, 235), np.float32) * (0.95 + 0.08 * n1[..., None])
        img += rng.normal(0, 5, (h, w, 1)).astype(np.float32)
    elif kind == "mat":
        img = hsv(rng.uniform(0.3, 0.42), 0.6, 0.55) * (0.9 + 0.15 * n1[..., None])
        g = max(4, int(rng.uniform(5, 9)))
        img[(y.astype(int) % g == 0) | (x.astype(int) % g == 0)] *= 1.35
    elif kind == "bench":
        img = np.full((h, w, 3), rng.uniform(110, 150), np.float32) * (0.85 + 0.3 * n1[..., None])
        for _ in range(int(rng.integers(3, 8))):
            yy = int(rng.integers(0, h))
            img[yy, int(rng.integers(0, w // 2)):int(rng.integers(w // 2, w))] *= 0.7
    elif kind == "tiles":
        g = max(6, int(rng.uniform(8, 14)))
        tid = (y // g) * 97 + (x // g)
        img = hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.9)) * (
            0.92 + 0.1 * ((np.sin(tid * 12.9898) * 43758.5453) % 1.0)[..., None])
        img[(y.astype(int) % g == 0) | (x.astype(int) % g == 0)] *= 0.65
    elif kind == "dark":
        img = hsv(rng.uniform(0.02, 0.1), 0.4, rng.uniform(0.18, 0.3)) * (0.8 + 0.4 * n1[..., None])
    elif kind == "wall":
        img = hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.6, 0.9)) * (
            0.85 + 0.25 * (y / h)[..., None] * rng.uniform(-1, 1) + 0.1 * n1[..., None])
        if rng.random() < 0.6:  # a picture frame or shelf on the wall
            fx, fy = int(rng.uniform(0.05, 0.7) * w), int(rng.uniform(0.05, 0.3) * h)
            fw, fh = int(rng.uniform(0.12, 0.25) * w), int(rng.uniform(0.12, 0.25) * h)
            img[fy:fy + fh, fx:fx + fw] = hsv(rng.uniform(0, 1), 0.5, 0.5)
            img[fy + 1:fy + fh - 1, fx + 1:fx + fw - 1] = hsv(rng.uniform(0, 1), 0.3, 0.8)
    else:
        raise ValueError(kind)
    return np.clip(img * tint, 0, 255).astype(np.float32)


def xform(spr, sx=1.0, sy=1.0, ang=0.0):
    im = spr
    w, h = im.size
    nw, nh = max(1, int(round(w * abs(sx)))), max(1, int(round(h * abs(sy))))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.BILINEAR)
    if sx < 0:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    if sy < 0:
        im = im.transpose(Image.FLIP_TOP_BOTTOM)
    if abs(ang) > 0.5:
        im = im.rotate(ang, resample=Image.BILINEAR, expand=True)
    a = np.asarray(im, np.float32)
    return a[..., :3], a[..., 3:] * (1.0 / 255)


def paste(cv, rgb, al, cx, cy):
    h, w = al.shape[:2]
    H, W = cv.shape[:2]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    X0, Y0, X1, Y1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if X1 <= X0 or Y1 <= Y0:
        return
    sub = cv[Y0:Y1, X0:X1]
    aa = al[Y0 - y0:Y1 - y0, X0 - x0:X1 - x0]
    sub += (rgb[Y0 - y0:Y1 - y0, X0 - x0:X1 - x0] - sub) * aa


def blit(cv, spr, x, y, sx=1.0, sy=1.0, ang=0.0, mult=None, add=None, alpha=1.0, split=0, gap=0.0, axis=1):
    rgb, al = xform(spr, sx, sy, ang)
    if mult is not None:
        rgb = rgb * np.asarray(mult, np.float32)
    if add is not None:
        rgb = rgb + np.asarray(add, np.float32)
    if alpha != 1.0:
        al = al * alpha
    if split and split > 1:
        n = rgb.shape[axis]
        edges = np.linspace(0, n, split + 1).round().astype(int)
        for i in range(split):
            a, b = edges[i], edges[i + 1]
            if b <= a:
                continue
            off = (a + b) / 2 - n / 2 + (i - (split - 1) / 2) * gap
            if axis == 1:
                paste(cv, rgb[:, a:b], al[:, a:b], x + off, y)
            else:
                paste(cv, rgb[a:b], al[a:b], x, y + off)
        return rgb, al
    paste(cv, rgb, al, x, y)
    return rgb, al


def dots(cv, xs, ys, col, size=1):
    H, W = cv.shape[:2]
    xs = np.asarray(xs).astype(int)
    ys = np.asarray(ys).astype(int)
    col = np.asarray(col, np.float32)
    for dy in range(size):
        for dx in range(size):
            xx, yy = xs + dx, ys + dy
            ok = (xx >= 0) & (xx < W) & (yy >= 0) & (yy < H)
            cv[yy[ok], xx[ok]] = col


class Ctx:
    """Per-video rendering context: canvas, backgrounds, sprites, tools."""

    def __init__(self, plan):
        self.plan = plan
        self.rng = np.random.default_rng(plan["seed"])
        rng = self.rng
        self.W, self.H, self.fps = plan["W"], plan["H"], plan["fps"]
        self.Wc, self.Hc = int(round(self.W * 1.3)), int(round(self.H * 1.3))
        self.u = self.Hc
        tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        self.table = make_surface(plan["surface"], self.Hc, self.Wc, rng, tint)
        self.wall = make_surface("wall", self.Hc, self.Wc, rng, tint)
        self.dsize = max(1, int(round(self.H / 48)))
        self.skin = hsv(rng.uniform(0.03, 0.09), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))
        self.sprites, self.colors = {}, {}
        self.tools = self._make_tools()
        ls = plan.get("lines", [])
        self.speak = (np.array([l["start"] for l in ls]), np.array([l["end"] for l in ls]))

    def sprite(self, name):
        if name not in self.sprites:
            shape, tex, h, s, v, size = OBJECTS[name][:6]
            r = np.random.default_rng([self.plan["seed"], zlib.crc32(name.encode())])
            h = h + r.uniform(-0.035, 0.035)
            s = float(np.clip(s * r.uniform(0.8, 1.2), 0, 1))
            v = float(np.clip(v * r.uniform(0.85, 1.1), 0.08, 1))
            c1 = hsv(h, s, v)
            c2 = hsv(h + r.uniform(-0.05, 0.05), min(1, s * 1.15 + 0.05), v * 0.62) if v > 0.4 else hsv(h, s, v + 0.25)
            side = self.u * 0.3 * size * r.uniform(0.85, 1.15)
            asp = SHAPE_ASPECT[shape]
            w, hh = max(3, int(round(side * math.sqrt(asp)))), max(3, int(round(side / math.sqrt(asp))))
            mask = shape_mask(shape, w, hh)
            rgb = texture(tex, hh, w, c1, c2, r)
            inner = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MinFilter(3)),
                               np.float32) / 255
            edge = np.clip(mask - inner, 0, 1)
            rgb = rgb * (1 - 0.45 * edge[..., None])
            a = np.dstack([np.clip(rgb, 0, 255), mask * 255]).astype(np.uint8)
            self.sprites[name] = Image.fromarray(a, "RGBA")
            self.colors[name] = c1
        return self.sprites[name]

    def _make_tools(self):
        rng, u = self.rng, self.u
        j = lambda c: tuple(int(x) for x in np.clip(np.asarray(c) * rng.uniform(0.9, 1.1), 0, 255))
        skin = tuple(int(x) for x in self.skin)
        grey, dark, wood = j((185, 190, 195)), j((45, 40, 38)), j((125, 80, 45))
        T = {}

        def knife(d, W, H):
            d.rectangle([0, H * .3, W * .35, H * .7], fill=dark)
            d.polygon([(W * .35, H * .15), (W, H * .5), (W * .35, H * .85)], fill=grey)
        T["knife"] = rgba_draw(u * .5, u * .09, knife)

        def spoon(d, W, H):
            d.rectangle([0, H * .4, W * .75, H * .6], fill=wood)
            d.ellipse([W * .68, 0, W, H], fill=wood)
        T["spoon"] = rgba_draw(u * .45, u * .1, spoon)

        def whisk(d, W, H):
            d.rectangle([0, H * .4, W * .5, H * .6], fill=dark)
            for k in range(3):
                d.ellipse([W * .45, H * (.05 + .12 * k), W, H * (.95 - .12 * k)], outline=grey, width=max(1, int(H * .08)))
        T["whisk"] = rgba_draw(u * .45, u * .16, whisk)

        def spatula(d, W, H):
            d.rectangle([0, H * .4, W * .6, H * .6], fill=dark)
            d.rectangle([W * .6, 0, W, H], fill=j((60, 60, 60)))
        T["spatula"] = rgba_draw(u * .45, u * .14, spatula)

        def masher(d, W, H):
            d.rectangle([0, H * .4, W * .6, H * .6], fill=wood)
            d.rectangle([W * .6, 0, W, H], fill=grey)
            for k in range(4):
                d.line([W * .6, H * k / 4, W, H * k / 4], fill=dark, width=max(1, int(H * .06)))
        T["masher"] = rgba_draw(u * .4, u * .16, masher)
        cloth = j(hsv(rng.uniform(0, 1), .4, .9))

        def rag(d, W, H):
            d.rounded_rectangle([0, 0, W, H], radius=H * .2, fill=cloth)
            for k in range(1, 4):
                d.line([0, H * k / 4, W, H * k / 4], fill=tuple(int(c * .8) for c in cloth), width=max(1, int(H * .05)))
        T["rag"] = rgba_draw(u * .28, u * .2, rag)

        def ruler(d, W, H):
            d.rectangle([0, 0, W, H], fill=j((230, 200, 60)))
            for k in range(1, 12):
                d.line([W * k / 12, 0, W * k / 12, H * (.5 if k % 2 else .8)], fill=dark, width=max(1, int(W * .006)))
        T["ruler"] = rgba_draw(u * .7, u * .09, ruler)
        body = j(hsv(rng.choice([.12, .55, .0]), .8, .75))

        def drill(d, W, H):
            d.rounded_rectangle([0, 0, W * .65, H * .55], radius=H * .15, fill=body)
            d.rectangle([W * .1, H * .5, W * .3, H], fill=dark)
            d.rectangle([W * .65, H * .22, W, H * .33], fill=grey)
        T["drill"] = rgba_draw(u * .38, u * .26, drill)

        def screwdriver(d, W, H):
            d.rounded_rectangle([0, 0, W * .45, H], radius=H * .3, fill=j((200, 40, 40)))
            d.rectangle([W * .45, H * .38, W, H * .62], fill=grey)
        T["screwdriver"] = rgba_draw(u * .42, u * .08, screwdriver)
        self.sprite("paint")
        self.paint_col = self.colors["paint"]

        def brush(d, W, H):
            d.rectangle([0, H * .35, W * .6, H * .65], fill=wood)
            d.rectangle([W * .6, H * .15, W * .72, H * .85], fill=grey)
            d.rectangle([W * .72, H * .1, W, H * .9], fill=tuple(int(c) for c in self.paint_col))
        T["brush"] = rgba_draw(u * .42, u * .11, brush)

        def pen(d, W, H):
            d.rectangle([0, H * .2, W * .85, H * .8], fill=j((40, 60, 170)))
            d.polygon([(W * .85, H * .2), (W, H * .5), (W * .85, H * .8)], fill=dark)
        T["pen"] = rgba_draw(u * .32, u * .05, pen)

        def pump(d, W, H):
            d.rectangle([W * .3, H * .2, W * .7, H], fill=j((90, 95, 100)))
            d.rectangle([0, 0, W, H * .1], fill=dark)
            d.rectangle([W * .45, 0, W * .55, H * .25], fill=grey)
        T["pump"] = rgba_draw(u * .16, u * .5, pump)

        def shovel(d, W, H):
            d.rectangle([0, H * .4, W * .65, H * .6], fill=wood)
            d.polygon([(W * .62, 0), (W * .9, 0), (W, H * .5), (W * .9, H), (W * .62, H)], fill=grey)
        T["shovel"] = rgba_draw(u * .55, u * .15, shovel)
        canc = j(hsv(rng.uniform(.25, .6), .7, .6))

        def can(d, W, H):
            d.rounded_rectangle([0, H * .3, W * .6, H], radius=H * .1, fill=canc)
            d.polygon([(W * .55, H * .55), (W, 0), (W, H * .12), (W * .6, H * .75)], fill=canc)
        T["can"] = rgba_draw(u * .35, u * .26, can)

        def scissors(d, W, H):
            d.polygon([(W * .35, H * .35), (W, H * .5), (W * .35, H * .6)], fill=grey)
            d.ellipse([0, 0, W * .3, H * .45], outline=j((220, 60, 60)), width=max(1, int(H * .12)))
            d.ellipse([0, H * .55, W * .3, H], outline=j((220, 60, 60)), width=max(1, int(H * .12)))
        T["scissors"] = rgba_draw(u * .28, u * .14, scissors)

        def block(d, W, H):
            d.rectangle([0, 0, W, H], fill=j((200, 170, 120)))
            d.rectangle([0, H * .75, W, H], fill=j((150, 120, 80)))
        T["block"] = rgba_draw(u * .25, u * .12, block)
        dishc, liq = j((225, 215, 195)), j((240, 200, 80))

        def dish(d, W, H):
            d.rounded_rectangle([0, 0, W, H], radius=H * .3, fill=dishc)
            d.rounded_rectangle([W * .08, H * .25, W * .92, H * .8], radius=H * .2, fill=liq)
        T["dish"] = rgba_draw(u * .55, u * .16, dish)
        self.liq = np.array(liq, np.float32)

        def bottle(d, W, H):
            d.rounded_rectangle([0, H * .25, W, H], radius=W * .2, fill=j((240, 240, 235)))
            d.polygon([(W * .3, H * .25), (W * .5, 0), (W * .7, H * .25)], fill=j((240, 140, 40)))
        T["bottle"] = rgba_draw(u * .1, u * .22, bottle)

        def patch(d, W, H):
            d.rectangle([0, 0, W, H], fill=j((200, 200, 80)))
            d.rectangle([W * .2, H * .2, W * .8, H * .8], fill=j((40, 40, 40)))
        T["patch"] = rgba_draw(u * .11, u * .11, patch)

        def hand(d, W, H):
            d.ellipse([0, 0, W, H], fill=skin)
            d.ellipse([W * .05, H * .55, W * .45, H * .95], fill=tuple(int(c * .9) for c in skin))
        T["hand"] = rgba_draw(u * .16, u * .13, hand)

        def disc(d, W, H):
            d.ellipse([0, 0, W, H], fill=(25, 18, 12))
        T["disc"] = rgba_draw(u * .2, u * .2, disc)

        # talking head parts
        hair = j(hsv(rng.uniform(0.02, 0.1), rng.uniform(0.2, 0.7), rng.uniform(0.08, 0.5)))
        shirt = j(hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)))
        fh = u * rng.uniform(0.3, 0.42)

        def head(d, W, H):
            d.ellipse([0, 0, W, H], fill=hair)
            d.ellipse([W * .06, H * .18, W * .94, H], fill=skin)
        T["head"] = rgba_draw(fh * .8, fh, head)

        def torso(d, W, H):
            d.rounded_rectangle([0, 0, W, H * 1.5], radius=W * .3, fill=shirt)
        T["torso"] = rgba_draw(fh * 1.7, fh * .9, torso)

        def mouth(d, W, H):
            d.ellipse([0, 0, W, H], fill=(90, 30, 35))
        T["mouth"] = rgba_draw(fh * .28, fh * .16, mouth)
        self.face_h = fh
        return T

    def tool_at(self, cv, name, tx, ty, ang, hand=True, sx=1.0):
        spr = self.tools[name]
        L = spr.size[0] * sx
        a = math.radians(ang)
        dx, dy = math.cos(a), -math.sin(a)
        blit(cv, spr, tx - dx * L / 2, ty - dy * L / 2, sx=sx, ang=ang)
        if hand:
            blit(cv, self.tools["hand"], tx - dx * L * 0.95, ty - dy * L * 0.95)

    def speaking(self, t):
        s, e = self.speak
        if len(s) == 0:
            return False
        i = np.searchsorted(s, t, side="right") - 1
        return i >= 0 and t < e[i]


class BgScene:
    def __init__(self, ctx, seg, rng):
        self.ctx, self.seg, self.kind = ctx, seg, seg["kind"]
        c = ctx
        self.bg = c.wall if self.kind == "talk" else c.table
        self.ph = rng.uniform(0, 6.3, 4)
        self.props = []
        for o in seg.get("props", []):
            self.props.append((c.sprite(o), rng.uniform(0.15, 0.85) * c.Wc, rng.uniform(0.3, 0.85) * c.Hc,
                               rng.uniform(-25, 25)))
        if self.kind == "overview":
            objs = WORLD_BY_ID[ctx.plan["task"]]["objects"]
            k = len(objs)
            cols = int(math.ceil(math.sqrt(k * c.Wc / c.Hc)))
            rows = int(math.ceil(k / cols))
            order = rng.permutation(k)
            self.props = [(c.sprite(objs[i]), (0.5 + n % cols) / cols * c.Wc + rng.normal(0, 1),
                           (0.5 + n // cols) / rows * c.Hc * 0.8 + c.Hc * 0.1, 0.0) for n, i in enumerate(order)]
            self.scale = min(1.0, 1.6 / max(cols, rows))
        else:
            self.scale = 1.0
        self.hand = rng.random() < 0.5
        self.fx = rng.uniform(0.3, 0.7) * c.Wc
        self.fy = c.Hc * rng.uniform(0.38, 0.5)
        self.blink = rng.uniform(2.5, 5)

    def draw(self, cv, t):
        c = self.ctx
        if self.kind == "talk":
            bob = 0.012 * c.Hc * math.sin(2 * math.pi * 0.35 * t + self.ph[0])
            sway = 0.01 * c.Wc * math.sin(2 * math.pi * 0.2 * t + self.ph[1])
            fh = c.face_h
            x, y = self.fx + sway, self.fy + bob
            blit(cv, c.tools["torso"], x, y + fh * 0.95)
            blit(cv, c.tools["head"], x, y, ang=3 * math.sin(0.5 * t + self.ph[2]))
            if (t + self.ph[3]) % self.blink > 0.18:
                ex = fh * 0.16
                dots(cv, [x - ex, x + ex], [y + fh * 0.05] * 2, (30, 25, 25), c.dsize)
            talking = c.speaking(t)
            op = (0.25 + 0.9 * abs(math.sin(2 * math.pi * 3.1 * t + 1.7 * math.sin(7.3 * t)))) if talking else 0.15
            blit(cv, c.tools["mouth"], x, y + fh * 0.3, sy=op)
            if talking and self.hand:
                blit(cv, c.tools["hand"], x + fh * (0.7 + 0.2 * math.sin(1.3 * t)), y + fh * (1.1 + 0.2 * math.sin(2.1 * t)))
        else:
            for spr, px, py, a in self.props:
                blit(cv, spr, px, py, sx=self.scale, sy=self.scale, ang=a)
            if self.hand and self.kind == "table":
                blit(cv, c.tools["hand"], c.Wc * (0.5 + 0.35 * math.sin(0.31 * t + self.ph[0])),
                     c.Hc * (0.6 + 0.25 * math.sin(0.53 * t + self.ph[1])))


class StepScene:
    def __init__(self, ctx, seg, rng):
        self.ctx, self.seg, self.rng = ctx, seg, rng
        c = ctx
        self.bg = c.table
        v, o, prep, o2 = seg["step"]
        self.v = v
        self.main = c.sprite(o)
        self.mcol = c.colors[o]
        self.tgt = c.sprite(o2) if o2 else None
        self.t0, self.dur = seg["t0"], max(0.5, seg["t1"] - seg["t0"])
        self.mx = c.Wc * (0.5 + rng.uniform(-0.1, 0.1))
        self.my = c.Hc * (0.55 + rng.uniform(-0.06, 0.06))
        self.sw, self.sh = self.main.size
        self.s = max(self.sw, self.sh)
        self.tx, self.ty = self.mx + c.Wc * rng.uniform(0.05, 0.15), self.my + c.Hc * rng.uniform(0.1, 0.2)
        if self.tgt is not None and v in ("pour",):
            self.mx, self.my = self.tx - c.Wc * rng.uniform(0.15, 0.25), self.ty - c.Hc * rng.uniform(0.3, 0.4)
        if v == "glue":
            self.tx, self.ty = self.mx, self.my
        self.ph = rng.uniform(0, 2 * math.pi)
        self.spd = rng.uniform(0.8, 1.25)
        self.dir = 1 if rng.random() < 0.5 else -1
        self.props = []
        for p in seg.get("props", []):
            px = c.Wc * (0.12 if self.mx > c.Wc / 2 else 0.88)
            self.props.append((c.sprite(p), px, c.Hc * rng.uniform(0.25, 0.8)))
        n = 60
        stepv = rng.normal(0, 1, (n, 2)).cumsum(0)
        stepv -= stepv.mean(0)
        stepv /= np.abs(stepv).max() + 1e-6
        self.path = stepv * 0.35 * np.array([self.sw, self.sh])
        self.speck = rng.uniform(-0.4, 0.4, (40, 2)) * np.array([self.sw, self.sh])
        self.fn = getattr(self, "p_" + v)

    def draw(self, cv, t):
        for spr, px, py in self.props:
            blit(cv, spr, px, py)
        tt = (t - self.t0) * self.spd
        p = min(max((t - self.t0) / self.dur, 0.0), 1.0)
        self.fn(cv, tt, p)

    # helpers
    def M(self, cv, x=None, y=None, **kw):
        return blit(cv, self.main, self.mx if x is None else x, self.my if y is None else y, **kw)

    def fr(self):
        return self.ctx.rng

    # ---- verb patterns
    def p_stir(self, cv, tt, p):
        self.M(cv, ang=6 * math.sin(2.1 * tt + self.ph))
        a = 2 * math.pi * tt / 1.5 + self.ph
        r = 0.22 * self.s
        self.ctx.tool_at(cv, "spoon", self.mx + r * math.cos(a), self.my + 0.5 * r * math.sin(a), -50)

    def p_whisk(self, cv, tt, p):
        self.M(cv, sx=1 + 0.06 * math.sin(2 * math.pi * 2.5 * tt), sy=1 - 0.04 * math.sin(2 * math.pi * 2.5 * tt))
        a = 2 * math.pi * 2.2 * tt + self.ph
        self.ctx.tool_at(cv, "whisk", self.mx + 0.15 * self.s * math.cos(a), self.my + 0.08 * self.s * math.sin(a),
                         -55 + 6 * math.sin(a))
        r = self.fr()
        ang = r.uniform(0, 2 * math.pi, 3)
        dots(cv, self.mx + 0.55 * self.s * np.cos(ang), self.my + 0.4 * self.s * np.sin(ang),
             np.minimum(self.mcol * 1.2, 255), self.ctx.dsize)

    def p_mix(self, cv, tt, p):
        self.M(cv, sx=1 + 0.04 * math.sin(2 * math.pi * 1.2 * tt), ang=4 * math.sin(tt))
        a = 2 * math.pi * tt / 1.6 + self.ph
        self.ctx.tool_at(cv, "spoon", self.mx + 0.3 * self.s * math.sin(a), self.my + 0.15 * self.s * math.sin(2 * a),
                         -60)

    def p_cut(self, cv, tt, p):
        k = 1 + min(3, int(p * 4.5))
        self.M(cv, split=k, gap=1 + 0.08 * self.s * min(1.0, p * 1.5))
        xk = self.mx + ((p * 4.5) % 1 - 0.5) * 0.6 * self.sw
        self.ctx.tool_at(cv, "knife", xk, self.my - 0.1 * self.sh - 0.35 * self.s * abs(math.sin(math.pi * 2.5 * tt)), -90)

    def p_slice(self, cv, tt, p):
        k = 1 + min(4, int(p * 5))
        self.M(cv, split=k, gap=1 + 0.06 * self.s * min(1.0, p * 1.5), axis=0)
        yk = self.my - 0.5 * self.sh + ((p * 5) % 1) * self.sh
        self.ctx.tool_at(cv, "knife", self.mx + 0.55 * self.sw + 0.25 * self.s * math.sin(2 * math.pi * 1.8 * tt), yk, 0)

    def p_pour(self, cv, tt, p):
        c = self.ctx
        if self.tgt is not None:
            blit(cv, self.tgt, self.tx, self.ty)
            fill = smooth((p - 0.2) / 0.6)
            if fill > 0.02:
                tw, th = self.tgt.size
                paste_blob(cv, self.tx, self.ty, tw * 0.55 * (0.4 + 0.6 * fill), th * 0.25, self.mcol, 0.8)
        ang = 105 * smooth(p / 0.2) * (1 - smooth((p - 0.82) / 0.15))
        self.M(cv, ang=-ang)
        if ang > 45:
            th = math.radians(-ang)
            r = 0.5 * self.sw
            sx, sy = self.mx + r * math.cos(th), self.my - r * math.sin(th)
            ty = self.ty - 0.1 * self.s if self.tgt is not None else self.my + 0.6 * self.s
            n = 14
            f = (np.arange(n) / n + tt * 2.5) % 1
            xs = sx + (self.tx - sx) * f * 0.3 + self.fr().normal(0, 0.5, n)
            ys = sy + f * (ty - sy)
            dots(cv, xs, ys, np.minimum(self.mcol * 1.1, 255), c.dsize)

    def p_add(self, cv, tt, p):
        q = smooth(p / 0.35)
        y = -0.6 * self.s + (self.my + 0.6 * self.s) * q
        if p > 0.35:
            y -= 0.08 * self.s * abs(math.sin(math.pi * (p - 0.35) * 6)) * math.exp(-(p - 0.35) * 8)
        self.M(cv, y=y)
        if p < 0.45:
            blit(cv, self.ctx.tools["hand"], self.mx, y - 0.5 * self.sh)
        if 0.3 < p < 0.65:
            r = self.fr()
            dots(cv, self.mx + r.normal(0, 0.35 * self.s, 6), self.my + r.uniform(0.3, 0.7, 6) * self.s,
                 np.minimum(self.mcol * 1.15, 255), self.ctx.dsize)

    def _heat(self, cv, tt, p, jitter):
        fl = 1 + 0.08 * math.sin(2 * math.pi * 5.3 * tt + self.ph) + 0.04 * self.fr().normal()
        mult = np.array([1 + 0.35 * p, 1 - 0.15 * p, 1 - 0.45 * p], np.float32) * fl
        r = self.fr()
        jx, jy = (r.integers(-1, 2), r.integers(-1, 2)) if jitter else (0, 0)
        self.M(cv, x=self.mx + jx, y=self.my + jy, mult=mult)
        m = 2 + int(6 * p)
        k = np.arange(m)
        f = (tt * 0.7 + k / m) % 1
        dots(cv, self.mx + 0.3 * self.s * np.sin(k * 2.3 + tt), self.my - 0.5 * self.sh - f * 0.6 * self.s,
             (225, 225, 225), self.ctx.dsize)
        fx = self.mx + r.uniform(-0.4, 0.4, 4) * self.sw
        dots(cv, fx, np.full(4, self.my + 0.55 * self.sh), (255, 140 + 60 * r.random(), 20), self.ctx.dsize)
        if jitter:
            a = r.uniform(0, 2 * math.pi, 5)
            dots(cv, self.mx + 0.5 * self.sw * np.cos(a), self.my + 0.5 * self.sh * np.sin(a), (250, 240, 200),
                 self.ctx.dsize)

    def p_heat(self, cv, tt, p):
        self._heat(cv, tt, p, False)

    def p_fry(self, cv, tt, p):
        self._heat(cv, tt, p, True)

    def p_flip(self, cv, tt, p):
        T = 2.2
        k = int(tt / T)
        q = (tt % T) / T
        sign = -1 if k % 2 else 1
        if q < 0.45:
            u = q / 0.45
            y = self.my - 0.7 * self.s * math.sin(math.pi * u)
            sy = sign * math.cos(math.pi * u)
        else:
            y, sy = self.my, -sign
        if abs(sy) < 0.08:
            sy = 0.08 if sy >= 0 else -0.08
        self.M(cv, y=y, sy=sy)
        self.ctx.tool_at(cv, "spatula", self.mx - 0.05 * self.s, y + 0.5 * self.sh * abs(sy) + 1, 10)

    def p_scoop(self, cv, tt, p):
        self.M(cv, sx=1 - 0.3 * p, sy=1 - 0.3 * p)
        q = (tt / 1.8) % 1
        x = self.mx + 0.9 * self.s * q
        y = self.my - 0.5 * self.s * math.sin(math.pi * q)
        self.ctx.tool_at(cv, "spoon", x, y, -40)
        r = self.fr()
        if 0.1 < q < 0.9:
            dots(cv, x + r.normal(0, 1, 3), y + r.normal(0, 1, 3), self.mcol, self.ctx.dsize)
        n = int(3 + 12 * p)
        rr = np.random.default_rng(7)
        dots(cv, self.mx + 0.9 * self.s + rr.normal(0, 0.12 * self.s, n), self.my + rr.normal(0, 0.08 * self.s, n),
             self.mcol, self.ctx.dsize)

    def p_squeeze(self, cv, tt, p):
        cc = max(0.0, math.sin(2 * math.pi * tt / 1.3))
        sx, sy = 1 - 0.35 * cc, 1 + 0.08 * cc
        self.M(cv, sx=sx, sy=sy)
        h = self.ctx.tools["hand"]
        blit(cv, h, self.mx - 0.5 * self.sw * sx - 0.05 * self.s, self.my)
        blit(cv, h, self.mx + 0.5 * self.sw * sx + 0.05 * self.s, self.my, sx=-1)
        if cc > 0.3:
            k = np.arange(4)
            f = (tt * 2 + k / 4) % 1
            dots(cv, self.mx + (k - 1.5) * 0.06 * self.s, self.my + 0.5 * self.sh + f * 0.5 * self.s,
                 np.minimum(self.mcol * 1.15, 255), self.ctx.dsize)

    def p_mash(self, cv, tt, p):
        cc = max(0.0, math.sin(2 * math.pi * tt / 0.9)) ** 2
        f = 1 - 0.4 * p
        sy, sx = f * (1 - 0.2 * cc), (1 + 0.3 * p) * (1 + 0.1 * cc)
        y = self.my + 0.5 * self.sh * (1 - sy)
        self.M(cv, y=y, sx=sx, sy=sy)
        self.ctx.tool_at(cv, "masher", self.mx + 0.15 * self.s * math.sin(tt * 1.3),
                         y - 0.5 * self.sh * sy - 0.3 * self.s * (1 - cc), -90)

    def p_knead(self, cv, tt, p):
        cc = max(0.0, math.sin(2 * math.pi * tt / 1.6))
        x = self.mx + 0.1 * self.s * math.sin(2 * math.pi * tt / 3.2)
        self.M(cv, x=x, sy=1 - 0.25 * cc, sx=1 + 0.15 * cc, ang=12 * math.sin(2 * math.pi * tt / 3.2))
        h = self.ctx.tools["hand"]
        for sgn in (-1, 1):
            blit(cv, h, x + sgn * 0.2 * self.s, self.my - 0.35 * self.sh + 0.15 * self.s * cc)

    def p_press(self, cv, tt, p):
        cc = max(0.0, math.sin(2 * math.pi * tt / 1.0))
        sy = 1 - 0.2 * cc
        self.M(cv, y=self.my + 0.5 * self.sh * (1 - sy), sy=sy, sx=1 + 0.08 * cc)
        blit(cv, self.ctx.tools["hand"], self.mx + 0.1 * self.s * math.sin(tt * 0.7),
             self.my - 0.5 * self.sh * sy - 0.15 * self.s + 0.12 * self.s * cc + self.sh * (1 - sy) * 0.5)

    def p_dip(self, cv, tt, p):
        blit(cv, self.ctx.tools["dish"], self.tx, self.ty)
        q = (tt / 2.4) % 1
        yu = self.ty - 0.7 * self.s
        y = yu + (self.ty - yu) * math.sin(math.pi * q) ** 2
        k = 0.5 * smooth(p / 0.8)
        mult = (1 - k) + k * self.ctx.liq / np.maximum(self.mcol, 30)
        self.M(cv, x=self.tx, y=y, mult=np.clip(mult, 0.3, 3))
        blit(cv, self.ctx.tools["hand"], self.tx - 0.5 * self.sw, y - 0.2 * self.sh)

    def p_spread(self, cv, tt, p):
        sx, sy = 1 + 0.6 * p, 1 - 0.45 * p
        self.M(cv, sx=sx, sy=sy)
        self.ctx.tool_at(cv, "knife", self.mx + 0.45 * self.sw * sx * math.sin(2 * math.pi * tt / 1.3),
                         self.my - 0.5 * self.sh * sy + 1, -15)

    def p_fold(self, cv, tt, p):
        sy = 1 - 0.5 * smooth((p - 0.1) / 0.25)
        sx = 1 - 0.5 * smooth((p - 0.55) / 0.25)
        self.M(cv, sx=sx, sy=sy)
        y = self.my
        xs = np.arange(int(self.mx - 0.45 * self.sw * sx), int(self.mx + 0.45 * self.sw * sx) + 1)
        dots(cv, xs, np.full(len(xs), y), self.mcol * 0.5, 1)
        h = self.ctx.tools["hand"]
        blit(cv, h, self.mx - 0.55 * self.sw * sx, self.my - 0.3 * self.sh * sy)
        blit(cv, h, self.mx + 0.55 * self.sw * sx, self.my - 0.3 * self.sh * sy)

    def p_measure(self, cv, tt, p):
        self.M(cv)
        tip = self.mx - 0.6 * self.s + 1.4 * self.s * smooth(p / 0.5)
        self.ctx.tool_at(cv, "ruler", tip, self.my - 0.15 * self.sh, 0, hand=p < 0.55)
        if p > 0.55:
            marks = [self.mx - 0.2 * self.sw, self.mx + 0.25 * self.sw]
            n = 1 if p < 0.75 else 2
            dots(cv, marks[:n], [self.my + 0.1 * self.sh] * n, (20, 20, 20), self.ctx.dsize + 1)
            self.ctx.tool_at(cv, "pen", marks[n - 1], self.my + 0.1 * self.sh, -60)

    def p_drill(self, cv, tt, p):
        r = self.fr()
        self.M(cv, x=self.mx + r.integers(-1, 2) * 0.6, y=self.my)
        rad = smooth(p / 0.8)
        if rad > 0.05:
            blit(cv, self.ctx.tools["disc"], self.mx, self.my, sx=rad * 0.9 * self.s / self.ctx.tools["disc"].size[0],
                 sy=rad * 0.9 * self.s / self.ctx.tools["disc"].size[0])
        self.ctx.tool_at(cv, "drill", self.mx + r.normal(0, 0.5), self.my - 0.05 * self.s + r.normal(0, 0.5), -90)
        a = r.uniform(0, 2 * math.pi, 6)
        rr = r.uniform(0.2, 0.45, 6) * self.s
        dots(cv, self.mx + rr * np.cos(a), self.my + rr * np.sin(a), np.minimum(self.mcol * 1.3 + 30, 255),
             self.ctx.dsize)

    def _move(self, cv, x, y, hand=True, ang=0.0):
        self.M(cv, x=x, y=y, ang=ang)
        if hand:
            blit(cv, self.ctx.tools["hand"], x, y - 0.45 * self.sh)

    def p_place(self, cv, tt, p):
        q = 1 - (1 - smooth(p / 0.55)) ** 2
        x = self.mx + self.dir * (1 - q) * 0.8 * self.ctx.Wc
        self._move(cv, x, self.my - 0.15 * self.s * (1 - q), hand=p < 0.7)

    def p_insert(self, cv, tt, p):
        q = 1 - (1 - smooth(p / 0.5)) ** 2
        x = self.mx + self.dir * (1 - q) * 0.7 * self.ctx.Wc
        self._move(cv, x, self.my, hand=p < 0.8, ang=-90 * max(0.0, p - 0.5) * 2)

    def p_attach(self, cv, tt, p):
        q = 1 - (1 - smooth(p / 0.4)) ** 2
        x = self.mx + self.dir * (1 - q) * 0.7 * self.ctx.Wc
        cc = max(0.0, math.sin(2 * math.pi * tt / 0.7)) if p > 0.45 else 0.0
        self.M(cv, x=x + (self.fr().integers(-1, 2) if cc > 0.8 else 0), sy=1 - 0.05 * cc)
        blit(cv, self.ctx.tools["hand"], x + 0.3 * self.sw, self.my - 0.5 * self.sh - 0.1 * self.s * (1 - cc))

    def p_remove(self, cv, tt, p):
        q = smooth((p - 0.1) / 0.7) ** 2
        x = self.mx + self.dir * q * 0.8 * self.ctx.Wc
        self._move(cv, x, self.my - 0.1 * self.s * q, hand=p > 0.05)

    def _screw(self, cv, tt, p, sign):
        e = smooth(p)
        s = 1 - 0.15 * e if sign < 0 else 0.85 + 0.15 * e
        self.M(cv, sx=s, sy=s, ang=sign * 540 * e)
        self.ctx.tool_at(cv, "screwdriver", self.mx, self.my, -90 + 4 * math.sin(2 * math.pi * tt / 0.5))

    def p_tighten(self, cv, tt, p):
        self._screw(cv, tt, p, -1)

    def p_loosen(self, cv, tt, p):
        self._screw(cv, tt, p, 1)

    def p_pump(self, cv, tt, p):
        s = 0.7 + 0.3 * smooth(p) + 0.04 * math.sin(2 * math.pi * tt / 0.8)
        self.M(cv, sx=s, sy=s)
        pu = self.ctx.tools["pump"]
        px = self.mx + 0.6 * self.s + 0.08 * pu.size[0]
        blit(cv, pu, px, self.my)
        blit(cv, self.ctx.tools["hand"], px, self.my - 0.5 * pu.size[1] - 0.15 * self.s * abs(math.sin(math.pi * tt / 0.8)))

    def p_patch(self, cv, tt, p):
        self.M(cv)
        q = smooth((p - 0.1) / 0.35)
        ex, ey = self.mx + 0.15 * self.sw, self.my - 0.1 * self.sh
        sx0, sy0 = self.mx + 0.7 * self.s, self.my - 0.7 * self.s
        x, y = sx0 + (ex - sx0) * q, sy0 + (ey - sy0) * q
        blit(cv, self.ctx.tools["patch"], x, y)
        if p < 0.9:
            cc = max(0.0, math.sin(2 * math.pi * tt / 0.8)) if p > 0.45 else 0.0
            blit(cv, self.ctx.tools["hand"], x, y - 0.12 * self.s * (1 - cc) - 0.05 * self.s)

    def p_glue(self, cv, tt, p):
        if self.tgt is not None:
            blit(cv, self.tgt, self.tx, self.ty)
        n = int(12 * smooth(p / 0.35))
        if n:
            dots(cv, self.tx + self.speck[:n, 0] * 0.8, self.ty + self.speck[:n, 1] * 0.8, (250, 250, 245), self.ctx.dsize)
        if p < 0.35:
            i = max(0, n - 1)
            self.ctx.tool_at(cv, "bottle", self.tx + self.speck[i, 0] * 0.8, self.ty + self.speck[i, 1] * 0.8, -90)
        q = smooth((p - 0.35) / 0.25)
        if p > 0.35:
            x = self.tx + self.dir * (1 - q) * 0.6 * self.ctx.Wc
            self.M(cv, x=x, y=self.ty)
            cc = max(0.0, math.sin(2 * math.pi * tt / 0.8)) if p > 0.6 else 0.0
            if p < 0.92:
                blit(cv, self.ctx.tools["hand"], x, self.ty - 0.3 * self.sh + 0.08 * self.s * cc)

    def p_dig(self, cv, tt, p):
        s = 0.35 + 0.65 * smooth(p)
        self.M(cv, sx=s, sy=s)
        self.ctx.tool_at(cv, "shovel", self.mx + 0.1 * self.s * math.sin(tt),
                         self.my - 0.1 * self.s - 0.35 * self.s * abs(math.sin(math.pi * tt / 1.2)), -80)
        k = np.arange(6)
        f = (tt / 1.2 + k / 6) % 1
        soil = (90, 60, 35)
        dots(cv, self.mx + 0.3 * self.s + f * 0.7 * self.s, self.my - 0.2 * self.s - 2.4 * self.s * f * (1 - f), soil,
             self.ctx.dsize)
        n = int(3 + 20 * p)
        rr = np.random.default_rng(11)
        dots(cv, self.mx + 1.0 * self.s + rr.normal(0, 0.15 * self.s, n), self.my + rr.normal(0, 0.1 * self.s, n),
             soil, self.ctx.dsize)

    def p_water(self, cv, tt, p):
        self.M(cv, mult=np.full(3, 1 - 0.2 * p, np.float32))
        tx, ty = self.mx - 0.2 * self.s, self.my - 0.75 * self.s
        self.ctx.tool_at(cv, "can", tx, ty, -25)
        n = 10
        k = np.arange(n)
        f = (tt * 1.8 + k / n) % 1
        dots(cv, tx + 0.3 * self.s * f + self.fr().normal(0, 0.6, n), ty + f * 0.75 * self.s, (90, 140, 230),
             self.ctx.dsize)

    def p_spray(self, cv, tt, p):
        x0, y0 = self.mx - 0.55 * self.s, self.my
        blit(cv, self.main, x0, y0, ang=-20)
        n = 12
        r = self.fr()
        f = r.random(n)
        col = np.minimum(self.mcol * 1.2 + 20, 255)
        dots(cv, x0 + 0.4 * self.sw + f * 0.9 * self.s, y0 + (r.random(n) - 0.5) * f * 0.6 * self.s, col,
             self.ctx.dsize)
        m = int(40 * smooth(p))
        dots(cv, self.mx + 0.45 * self.s + self.speck[:m, 0], self.my + self.speck[:m, 1], col, self.ctx.dsize)

    def p_prune(self, cv, tt, p):
        sy = 1 - 0.15 * p
        self.M(cv, y=self.my + 0.5 * self.sh * (1 - sy), sy=sy)
        pts = [(-0.5, -0.3), (0.5, -0.3), (0.45, 0.3), (-0.45, 0.3)]
        i = int(tt / 1.5) % 4
        ex, ey = self.mx + pts[i][0] * self.sw, self.my + pts[i][1] * self.sh
        self.ctx.tool_at(cv, "scissors", ex, ey, (180 if pts[i][0] < 0 else 0) + 12 * abs(math.sin(2 * math.pi * 1.5 * tt)))
        f = (tt * 1.5) % 1
        dots(cv, [ex, ex + 1], [ey + f * 0.5 * self.s, ey + ((f + 0.5) % 1) * 0.5 * self.s], self.mcol, self.ctx.dsize)

    def p_sand(self, cv, tt, p):
        self.M(cv, mult=np.full(3, 1 + 0.25 * p, np.float32))
        bx = self.mx + 0.3 * self.s * math.sin(2 * math.pi * tt / 0.45)
        by = self.my - 0.1 * self.s
        blit(cv, self.ctx.tools["block"], bx, by)
        blit(cv, self.ctx.tools["hand"], bx, by - 0.1 * self.s)
        r = self.fr()
        dots(cv, bx + r.normal(0, 0.25 * self.s, 5), by + r.normal(0.1 * self.s, 0.1 * self.s, 5), (235, 225, 200),
             self.ctx.dsize)

    def p_wipe(self, cv, tt, p):
        self.M(cv, mult=np.full(3, 0.85 + 0.2 * p, np.float32))
        n = int(40 * (1 - p))
        dots(cv, self.mx + self.speck[:n, 0], self.my + self.speck[:n, 1], (60, 55, 45), self.ctx.dsize)
        rx = self.mx + 0.35 * self.s * math.sin(2 * math.pi * tt / 1.4)
        ry = self.my + 0.2 * self.s * math.cos(2 * math.pi * tt / 0.7)
        blit(cv, self.ctx.tools["rag"], rx, ry)
        blit(cv, self.ctx.tools["hand"], rx, ry - 0.05 * self.s)

    def p_paint(self, cv, tt, p):
        rgb, al = xform(self.main)
        h = rgb.shape[0]
        front = int(round(h * smooth(p / 0.9)))
        if front > 0:
            rgb = rgb.copy()
            lum = rgb[:front].mean(-1, keepdims=True) / 255
            rgb[:front] = np.clip((0.4 + 0.8 * lum) * self.ctx.paint_col, 0, 255)
        paste(cv, rgb, al, self.mx, self.my)
        self.ctx.tool_at(cv, "brush", self.mx + 0.4 * self.sw * math.sin(2 * math.pi * tt / 1.1),
                         self.my - 0.5 * h + front, -30)

    def p_draw(self, cv, tt, p):
        self.M(cv)
        n = int(len(self.path) * smooth(p / 0.9))
        if n:
            dots(cv, self.mx + self.path[:n, 0], self.my + self.path[:n, 1], (25, 25, 60), 1)
            self.ctx.tool_at(cv, "pen", self.mx + self.path[n - 1, 0], self.my + self.path[n - 1, 1], -60)

    def p_crack(self, cv, tt, p):
        if p < 0.35:
            self.M(cv, y=self.my - 0.12 * self.s * abs(math.sin(math.pi * tt * 3)))
            blit(cv, self.ctx.tools["hand"], self.mx + 0.45 * self.sw, self.my - 0.12 * self.s * abs(math.sin(math.pi * tt * 3)))
        else:
            q = smooth((p - 0.35) / 0.2)
            self.M(cv, split=2, gap=q * 0.35 * self.s)
            if p < 0.75:
                k = np.arange(4)
                f = (tt * 1.5 + k / 4) % 1
                dots(cv, np.full(4, self.mx), self.my + f * 0.6 * self.s, (250, 200, 40), self.ctx.dsize + 1)


def paste_blob(cv, x, y, rx, ry, col, a):
    H, W = cv.shape[:2]
    x0, x1 = max(0, int(x - rx)), min(W, int(x + rx) + 1)
    y0, y1 = max(0, int(y - ry)), min(H, int(y + ry) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    m = (((xx - x) / max(rx, 1)) ** 2 + ((yy - y) / max(ry, 1)) ** 2 <= 1)[..., None] * a
    cv[y0:y1, x0:x1] += (np.asarray(col, np.float32) - cv[y0:y1, x0:x1]) * m


WORLD_BY_ID = {t["id"]: t for t in WORLD}


def _x264_options():
    """libx264 settings. On CPUs with AVX-512, x264's AVX-512 kernels made the output bytes depend on leftover heap
    contents (two runs of the same frames could differ), so the instruction set is capped at AVX2 there; every
    AVX-512 CPU has AVX2. Elsewhere x264 picks its own kernels."""
    opts = {"crf": "26", "preset": "veryfast"}
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        flags = ""
    if "avx512f" in flags and " avx2" in flags:
        opts["x264-params"] = "asm=AVX2"
    return opts


X264_OPTIONS = _x264_options()


def rgb_to_yuv420p(x):
    """BT.601 limited-range RGB -> planar yuv420p (H*3/2, W) uint8.

    Done in numpy rather than by libswscale: frames converted by swscale carry uninitialised row padding that
    libx264 reads, which made the encoded bytes differ from run to run."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    h, w = r.shape
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u = u.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    out = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def render_plan(plan, path):
    t_start = time.time()
    ctx = Ctx(plan)
    W, H, fps, nf = plan["W"], plan["H"], plan["fps"], plan["nframes"]
    srng = np.random.default_rng([plan["seed"], 1])
    scenes = [(StepScene if s["kind"] == "step" else BgScene)(ctx, s, srng) for s in plan["segments"]]
    starts = np.array([s["t0"] for s in plan["segments"]])
    shots = plan["shots"]
    shot_t = np.array([s["t"] for s in shots])
    shot_end = np.append(shot_t[1:], plan["duration"])
    L = plan["light"]
    ts = np.arange(nf) / fps
    gain = L["base"] * (1 + L["amp"] * np.sin(2 * np.pi * ts / L["period"] + L["phase"]))
    for te, fct in L["events"]:
        gain = np.where(ts >= te, gain * fct, gain)
    gain = gain * (1 + L["flicker"] * ctx.rng.standard_normal(nf))
    sh = L["shake"]
    f1, f2, p1, p2 = ctx.rng.uniform(0.4, 1.5), ctx.rng.uniform(1.5, 3), ctx.rng.uniform(0, 6), ctx.rng.uniform(0, 6)
    shx = sh * (np.sin(2 * np.pi * f1 * ts + p1) + 0.5 * np.sin(2 * np.pi * f2 * ts + p2)) + ctx.rng.normal(0, 0.3 * sh + 1e-6, nf)
    shy = sh * (np.cos(2 * np.pi * f1 * 0.8 * ts + p2) + 0.5 * np.sin(2 * np.pi * f2 * 1.1 * ts + p1)) + ctx.rng.normal(0, 0.3 * sh + 1e-6, nf)
    noise_bank = ctx.rng.normal(0, L["noise"], (6, H, W, 3)).astype(np.float32)
    Wc, Hc = ctx.Wc, ctx.Hc

    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + f".tmp{os.getpid()}")
    try:
        cont = av.open(tmp, mode="w", format="mp4")
        st = cont.add_stream("libx264", rate=fps)
        st.time_base = Fraction(1, fps)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = X264_OPTIONS
        st.codec_context.thread_count = 1
        st.codec_context.gop_size = 2 * fps
        si = 0
        for i in range(nf):
            t = ts[i]
            while si + 1 < len(scenes) and t >= starts[si + 1]:
                si += 1
            sc = scenes[si]
            cv = sc.bg.copy()
            sc.draw(cv, t)
            k = int(np.searchsorted(shot_t, t, side="right") - 1)
            s = shots[k]
            fr = (t - s["t"]) / max(1e-3, shot_end[k] - s["t"])
            u = s["u0"] + (s["u1"] - s["u0"]) * fr
            vw, vh = W * u, H * u
            cx = Wc / 2 + s["ox"] * W + shx[i]
            cy = Hc / 2 + s["oy"] * H + shy[i]
            cx = min(max(cx, vw / 2), Wc - vw / 2)
            cy = min(max(cy, vh / 2), Hc - vh / 2)
            img = Image.fromarray(np.clip(cv, 0, 255).astype(np.uint8), "RGB").resize(
                (W, H), Image.BILINEAR, box=(cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2))
            a = np.asarray(img, np.float32) * (np.asarray(s["wb"], np.float32) * gain[i])
            a += noise_bank[ctx.rng.integers(6)]
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(np.clip(a, 0, 255)), format="yuv420p")
            frame.pts = i
            for pkt in st.encode(frame):
                cont.mux(pkt)
        for pkt in st.encode():
            cont.mux(pkt)
        cont.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return plan["vid"], nf, os.path.getsize(path), time.time() - t_start


def _job(args):
    plan, path = args
    return render_plan(plan, path)


# ----------------------------------------------------------------------------
# Annotation writers
# ----------------------------------------------------------------------------

def write_atomic(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, ensure_ascii=False))


def url(vid):
    return f"https://www.youtube.com/watch?v={vid}"


def write_annotations(out, longs, clips):
    A = os.path.join(out, "annotations")
    tasks = WORLD_BY_ID
    # 1. HowTo100M sentencified narration
    cap = {p["vid"]: {"start": [l["start"] for l in p["lines"]], "end": [l["end"] for l in p["lines"]],
                      "text": [l["text"] for l in p["lines"]]} for p in longs}
    write_json(os.path.join(A, "howto100m_captions.json"), cap)
    # 2. HTM-Align (validation videos only)
    htm = {}
    for p in longs:
        if p["subset"] != "validation":
            continue
        htm[p["vid"]] = [[1, l["align"][0], l["align"][1], l["text"]] if l["align"] else
                         [0, l["start"], l["end"], l["text"]] for l in p["lines"]]
    write_json(os.path.join(A, "htm_align.json"), htm)
    # 3. YouCookII
    yc = {}
    for p in longs:
        ann = []
        for k, j in enumerate(sorted(p["step_iv"])):
            s, e = p["step_iv"][j]
            si, ei = int(round(s)), int(round(e))
            ei = min(ei, int(math.floor(p["duration"])))
            ei = max(ei, si + 1)
            ann.append({"segment": [si, ei], "id": k, "sentence": p["clean"][j]})
        yc[p["vid"]] = {"duration": round(p["duration"], 2), "subset": p["subset"], "recipe_type": str(p["task"]),
                        "annotations": ann, "video_url": url(p["vid"])}
    write_json(os.path.join(A, "youcookii_annotations_trainval.json"), {"database": yc})
    # 4. COIN
    coin = {}
    for p in longs:
        t = tasks[p["task"]]
        ann = [{"id": str(t["gids"][j]), "segment": [p["step_iv"][j][0], p["step_iv"][j][1]], "label": t["names"][j]}
               for j in sorted(p["step_iv"])]
        coin[p["vid"]] = {"duration": round(p["duration"], 2), "class": camel(t["name"]),
                          "subset": "training" if p["subset"] == "training" else "testing", "recipe_type": t["id"],
                          "start": min(a["segment"][0] for a in ann), "end": max(a["segment"][1] for a in ann),
                          "video_url": url(p["vid"]), "annotation": ann}
    write_json(os.path.join(A, "COIN.json"), {"database": coin})
    # 5. CrossTask
    C = os.path.join(A, "crosstask_release")
    blocks = []
    for t in WORLD:
        blocks.append(f"{t['id']}\n{t['name']}\nhttps://www.wikihow.com/{t['name'].replace(' ', '-')}\n"
                      f"{len(t['names'])}\n{','.join(t['names'])}\n\n")
    write_atomic(os.path.join(C, "tasks_primary.txt"), "".join(blocks))
    for sub, fn in (("training", "videos.csv"), ("validation", "videos_val.csv")):
        write_atomic(os.path.join(C, fn), "".join(f"{p['task']},{p['vid']},{url(p['vid'])}\n" for p in longs
                                                  if p["subset"] == sub))
    for p in longs:
        rows = "".join(f"{j + 1},{p['step_iv'][j][0]:.2f},{p['step_iv'][j][1]:.2f}\n" for j in sorted(p["step_iv"]))
        write_atomic(os.path.join(C, "annotations", f"{p['task']}_{p['vid']}.csv"), rows)
    # 6. MSR-VTT
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "vid_key", "video_id", "sentence"])
    for i, c in enumerate(clips):
        w.writerow([f"ret{i}", f"msr{c['num']}", f"video{c['num']}", c["caption"]])
    write_atomic(os.path.join(A, "MSRVTT_JSFUSION_test.csv"), buf.getvalue())
    rng = np.random.default_rng(12345 + len(clips))
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["qid", "vid_key", "a1", "a2", "a3", "a4", "a5", "answer"])
    for i, c in enumerate(clips):
        mine = {tuple(s) for s in c["steps"]}
        verbs, objs = {s[0] for s in mine}, {s[1] for s in mine} | {s[3] for s in mine if s[3]}
        cands = []
        for d in clips:
            if d is c or d["caption"] == c["caption"] or {tuple(s) for s in d["steps"]} == mine:
                continue
            dv = {s[0] for s in d["steps"]}
            do = {s[1] for s in d["steps"]} | {s[3] for s in d["steps"] if s[3]}
            hard = len(verbs & dv) + len(objs & do)
            cands.append((-hard, rng.random(), d["caption"]))
        cands.sort()
        dis = []
        for _, _, cp in cands:
            if cp not in dis:
                dis.append(cp)
            if len(dis) == 4:
                break
        ans = int(rng.integers(0, 5))
        opts = dis[:ans] + [c["caption"]] + dis[ans:]
        w.writerow([i, f"msr{c['num']}"] + opts + [ans])
    write_atomic(os.path.join(A, "MSR_MC_test.csv"), buf.getvalue())
    # 7. MSRVTT-QA (open-ended QA on the clips) and 8. Howto-Interlink7M (clip captions of the long videos)
    write_json(os.path.join(A, "msrvtt_qa_test.json"), msrvtt_qa(clips))
    write_atomic(os.path.join(A, "howto_interlink7m.tsv"), interlink_tsv(longs))


# ----------------------------------------------------------------------------
# MSRVTT-QA and Howto-Interlink7M
# ----------------------------------------------------------------------------
# Both draw from their own streams, np.random.default_rng([plan seed, tag]): the other outputs do not depend on
# them, and they change with --seed.
QA_STREAM, INTERLINK_STREAM = 0x5141, 0x494C

# The tool that each verb's render pattern (StepScene.p_<verb>) draws; verbs done with a bare hand that is hard
# to tell from the object (add, place, attach, ...) are left out.
VERB_TOOL = {"cut": "knife", "slice": "knife", "spread": "knife", "stir": "spoon", "mix": "spoon", "scoop": "spoon",
             "whisk": "whisk", "flip": "spatula", "mash": "masher", "measure": "ruler", "drill": "drill",
             "tighten": "screwdriver", "loosen": "screwdriver", "paint": "brush", "draw": "pen", "prune": "scissors",
             "dig": "shovel", "water": "can", "wipe": "cloth", "pump": "pump", "knead": "hands", "squeeze": "hands",
             "fold": "hands", "press": "hand"}
# tighten/loosen rotate the object by -540 / +540 degrees (PIL: positive = anticlockwise).
VERB_TURN = {"tighten": "clockwise", "loosen": "counterclockwise"}
SURFACE_NOUN = {"wood": "table", "white": "counter", "mat": "mat", "bench": "workbench", "tiles": "counter",
                "dark": "table"}
QA_SUBJ = ["the person", "a person", "someone", "the person"]


def qa_facts(steps, surface):
    """Every question this clip can answer unambiguously: (weight, question templates, one-word answer). A weight
    below 1 is the probability that the question is asked at all (who / how many / when would otherwise make up
    a third of the questions, nearly all answerable from the question's words alone).

    The Xu et al. (2017) questions were generated from the MSR-VTT captions, so they ask about the caption's
    action, objects and scene; here they ask about what the clip renders: its steps, the tool each verb draws,
    the surface, the number and order of the steps. A question is only asked when one answer fits, e.g. "what is
    the person cutting?" only when one step of the clip is a cut."""
    steps = [tuple(s) for s in steps]
    verbs = [s[0] for s in steps]
    objs = [s[1] for s in steps]
    F = []
    two = len(steps) == 2
    for k, (v, o, prep, o2) in enumerate(steps):
        base, third, ing, past, pp = VERBS[v]["forms"][0]
        tgt = f" {prep} the {o2}" if o2 else ""
        if verbs.count(v) == 1:
            F.append((3.0, [f"what is {{S}} {ing}{tgt}?", f"what does {{S}} {base}{tgt}?"], o))
            if o2:
                F.append((2.0, [f"what does {{S}} {base} the {o} {prep}?", f"what is {{S}} {ing} the {o} {prep}?"], o2))
        t = [f"what does {{S}} do to the {o}?", f"what is {{S}} doing with the {o}?"] if objs.count(o) == 1 else []
        if not two:
            t += ["what is {S} doing?", "what is {S} doing?"]
        else:
            ov, oo = steps[1 - k][0], steps[1 - k][1]
            oing = VERBS[ov]["forms"][0][2]
            t += (["what does {S} do first?", f"what does {{S}} do before {oing} the {oo}?"] if k == 0 else
                  ["what does {S} do last?", f"what does {{S}} do after {oing} the {oo}?"])
        F.append((3.0, t, v))
        if v in VERB_TOOL:
            tool = VERB_TOOL[v]
            t = [f"what does {{S}} use to {base} the {o}?", f"what is {{S}} {ing} the {o} with?"]
            if not tool.startswith("hand") and [VERB_TOOL.get(x) for x in verbs].count(tool) == len(verbs):
                t += ["what tool does {S} use?", "what tool is {S} holding?"]  # the video, not the verb, tells
            F.append((2.0, t, tool))
        if v in VERB_TURN:
            F.append((2.0, [f"how does {{S}} turn the {o}?", f"how is the {o} turned?"], VERB_TURN[v]))
        if two:
            F.append((0.7, [f"when does {{S}} {base} the {o}?"], "beginning" if k == 0 else "end"))
    v, o, prep, o2 = steps[0]
    base, third, ing, past, pp = VERBS[v]["forms"][0]
    tgt = f" {prep} the {o2}" if o2 else ""
    F.append((0.8, [f"who is {ing} the {o}{tgt}?", f"who {third} the {o}{tgt}?"], "person"))
    plain = [s for s in steps if s[3] is None]
    t = ["where is {S} working?"]
    if plain:
        pv, po = plain[0][0], plain[0][1]
        t += [f"where is {{S}} {VERBS[pv]['forms'][0][2]} the {po}?", f"where is the {po}?"]
    F.append((1.2, t, SURFACE_NOUN[surface]))
    F.append((0.35, ["how many steps does {S} do?", "how many steps are shown?"], "two" if two else "one"))
    return F


def msrvtt_qa(clips):
    """MSRVTT-QA release format: [{"question", "answer", "video_id": N of video<N>, "id"}], grouped by clip."""
    out = []
    for c in clips:
        rng = np.random.default_rng([c["seed"], QA_STREAM])
        F = [f for f in qa_facts(c["steps"], c["surface"]) if f[0] >= 1 or rng.random() < f[0]]
        w = np.array([f[0] for f in F])
        k = min(len(F), int(rng.integers(4, 9)))
        seen = set()
        for i in rng.choice(len(F), size=k, replace=False, p=w / w.sum()):
            _, tmpls, ans = F[int(i)]
            q = pick(rng, tmpls).replace("{S}", pick(rng, QA_SUBJ))
            if q in seen:
                continue
            seen.add(q)
            out.append({"question": q, "answer": ans, "video_id": c["num"], "id": len(out)})
    return out


# What each verb's render pattern shows, as a captioning model would put it ({O}: the object, {O2}: the target).
VISUAL = {
    "crack": ["cracks {O} against the table; it splits in two and yellow yolk drips out"],
    "pour": ["tilts {O} over {O2} and pours it in, and {O2} slowly fills up",
             "pours {O} into {O2} in a thin stream until {O2} is filled"],
    "add": ["adds {O}, lowering it in from above by hand", "drops {O} in from above, scattering a few crumbs"],
    "whisk": ["whisks {O} quickly with a metal whisk", "beats {O} with a whisk in fast small circles"],
    "heat": ["heats {O}; it turns reddish as steam rises and small flames flicker underneath"],
    "fry": ["fries {O}; it sizzles and turns golden red, with steam, bubbles and flames around it"],
    "flip": ["flips {O} over with a spatula, tossing it up so it lands upside down"],
    "cut": ["cuts {O} with a knife, chopping it into separate pieces", "chops {O} into pieces with a kitchen knife"],
    "stir": ["stirs {O} in slow circles with a wooden spoon"],
    "scoop": ["scoops {O} out with a spoon, piling it up beside the rest", "spoons out {O} bit by bit"],
    "squeeze": ["squeezes {O} between both hands and juice drips out"],
    "mash": ["mashes {O} flat with a masher"],
    "dip": ["dips {O} into a dish of yellow liquid again and again"],
    "slice": ["slices {O} into thin strips with a knife"],
    "spread": ["spreads {O} out flat with a knife"],
    "mix": ["mixes {O} with a wooden spoon"],
    "knead": ["kneads {O} with both hands, pressing it down and turning it"],
    "fold": ["folds {O} in half and then in half again with both hands"],
    "measure": ["lays a yellow ruler along {O} and marks it with a pen"],
    "drill": ["drills {O} with a power drill; the dark hole widens as dust flies"],
    "insert": ["slides {O} in from the side and turns it into place"],
    "tighten": ["tightens {O} with a red screwdriver, turning it clockwise"],
    "attach": ["brings {O} in from the side and presses it into place by hand"],
    "loosen": ["loosens {O} with a red screwdriver, turning it counterclockwise"],
    "remove": ["removes {O}, sliding it away out of view", "takes {O} away by hand until it is out of view"],
    "place": ["places {O} down, sliding it in by hand"],
    "pump": ["pumps up {O} with a hand pump, and it inflates"],
    "patch": ["presses a small patch onto {O}"],
    "dig": ["digs {O} with a shovel, throwing soil to the side"],
    "press": ["presses {O} down firmly with one hand"],
    "water": ["waters {O} with a watering can, and drops fall onto it"],
    "prune": ["trims {O} with scissors, snipping around its edges"],
    "sand": ["sands {O} with a sanding block as pale dust falls"],
    "wipe": ["wipes {O} clean with a cloth, removing the dark specks"],
    "paint": ["paints {O} with a brush from top to bottom"],
    "glue": ["squeezes glue onto {O2} and presses {O} onto it"],
    "draw": ["draws over {O} with a blue pen, the ink line growing"],
    "spray": ["sprays {O} out in a fine cone of specks that settle on the table"],
}
assert set(VISUAL) == set(VERBS)


def _np(o):
    return f"the {o}" if OBJECTS[o][6] else f"some {o}"


def _join(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe_segment(rng, p, seg, speaking):
    """One clean sentence about what a (part of a) segment shows."""
    surf = SURFACES[p["surface"]]
    if seg["kind"] == "talk":
        if speaking:
            return pick(rng, ["A person stands in front of a wall and talks to the camera.",
                              "A person faces the camera and speaks, standing in front of a wall.",
                              "The host talks to the camera in front of a wall."])
        return pick(rng, ["A person stands in front of a wall and looks at the camera without speaking.",
                          "The host stands silently in front of a wall, facing the camera."])
    if seg["kind"] == "table":
        pr = [_np(o) for o in seg["props"]]
        if not pr:
            return pick(rng, [f"The {surf} is empty.", f"The camera shows an empty {surf}."])
        return pick(rng, [f"The {surf} is empty except for {_join(pr)}.",
                          f"Only {_join(pr)} {'is' if len(pr) == 1 else 'are'} left on the {surf}."])
    if seg["kind"] == "overview":
        objs = [_np(o) for o in WORLD_BY_ID[p["task"]]["objects"]]
        return pick(rng, [f"Everything needed is laid out on the {surf}: {_join(objs)}.",
                          f"The items for the task are arranged in a grid on the {surf}: {_join(objs)}."])
    v, o, prep, o2 = seg["step"]
    act = pick(rng, VISUAL[v]).format(O=_np(o), O2=f"the {o2}" if o2 else "")
    s = pick(rng, [f"On the {surf}, a person {act}.", f"A person {act}.", f"Someone {act}.",
                   f"At a {surf}, someone {act}."])
    if seg["props"]:
        s += f" {_np(seg['props'][0]).capitalize()} sits at the side."
    return s


def interlink_clips(p, rng):
    """Split a long video into 5-9 consecutive clips at whole seconds, cut where possible at the segment
    boundaries (the scene changes a shot detector would find), and caption each clip."""
    D = int(math.floor(p["duration"]))
    n = int(rng.integers(5, 10))
    L = D / n
    bounds = [s["t0"] for s in p["segments"][1:]]
    cuts = []
    for i in range(1, n):
        b = i * L
        near = [x for x in bounds if abs(x - b) < 0.3 * L]
        cuts.append(min(near, key=lambda x: abs(x - b)) if near else b + float(rng.uniform(-0.2, 0.2)) * L)
    edges = [0] + [int(round(x)) for x in cuts] + [D]
    if any(b - a < 2 for a, b in zip(edges, edges[1:])):
        edges = [int(round(i * L)) for i in range(n)] + [D]
    ls = p["lines"]
    out = []
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        sents, prev = [], None
        ov = [min(b, seg["t1"]) - max(a, seg["t0"]) for seg in p["segments"]]
        need = min(1.5, 0.5 * (b - a), max(ov))  # a clip split over many short segments still gets one sentence
        for seg, o in zip(p["segments"], ov):
            if o < need:
                continue
            lo, hi = max(a, seg["t0"]), min(b, seg["t1"])
            # one background stretch split in two parts shows the same thing (props are drawn on the table only)
            key = (seg["kind"], tuple(seg.get("step") or ()), tuple(seg["props"]) if seg["kind"] == "table" else ())
            if key == prev:
                continue
            prev = key
            # the talking head's mouth moves only while a narration line is on (BgScene.draw)
            speaking = any(l["start"] < hi and l["end"] > lo for l in ls)
            s = describe_segment(rng, p, seg, speaking)
            if sents:
                cut = any(abs(sh["t"] - lo) < 0.25 for sh in p["shots"])
                conn = pick(rng, ["After a cut, ", "The shot cuts and "] if cut else ["Then ", "Next, ", "After that, "])
                s = conn + s[0].lower() + s[1:]
            sents.append(s)
        cap = " ".join(sents)
        assert cap and "\t" not in cap and "\n" not in cap
        out.append({"clip_id": str(k), "clip": f"{_hms(a)} - {_hms(b)}", "caption": cap})
    return out


def _hms(t):
    return f"{t // 3600}:{t % 3600 // 60:02d}:{t % 60:02d}"


def interlink_tsv(longs):
    """Howto-Interlink7M layout: a header, then `video<TAB>clips` with clips as one JSON list per line. The JSON
    is written as is, not CSV-quoted (it holds no tab or newline), so both a plain split on the tab and a CSV/TSV
    reader get it back."""
    rows = ["video\tclips\n"]
    for p in longs:
        rng = np.random.default_rng([p["seed"], INTERLINK_STREAM])
        rows.append(f"videos/{p['vid']}.mp4\t{json.dumps(interlink_clips(p, rng), ensure_ascii=False)}\n")
    return "".join(rows)


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def build_plans(n_videos, n_clips, seed):
    root = np.random.SeedSequence(seed)
    ss_meta, ss_long, ss_clip = root.spawn(3)
    rng = np.random.default_rng(ss_meta)
    used = set()
    task_of = np.array([i % len(WORLD) for i in range(n_videos)])
    rng.shuffle(task_of)
    vids = [make_video_id(rng, used) for _ in range(n_videos)]
    # ~25% validation, stratified by task (largest-remainder so small runs still get validation videos)
    subset = ["training"] * n_videos
    n_val = int(round(n_videos * 0.25))
    counts = np.bincount(task_of, minlength=len(WORLD)) * 0.25
    quota = np.floor(counts).astype(int)
    rest = np.argsort(-(counts - quota) + rng.random(len(WORLD)) * 1e-6, kind="stable")
    for ti in rest[:n_val - quota.sum()]:
        quota[ti] += 1
    for ti in range(len(WORLD)):
        idx = np.flatnonzero(task_of == ti)
        rng.shuffle(idx)
        for k in idx[:quota[ti]]:
            subset[k] = "validation"
    longs = [plan_long(vids[i], WORLD[task_of[i]], subset[i], s)
             for i, s in enumerate(ss_long.spawn(n_videos))]
    nums = sorted(rng.choice(np.arange(7010, 10000), size=n_clips, replace=False).tolist()) if n_clips else []
    all_steps = [(ti, j) for ti, t in enumerate(WORLD) for j in range(len(t["steps"]))]
    order = rng.permutation(len(all_steps))
    clips = []
    for k, s in enumerate(ss_clip.spawn(n_clips)):
        ti, j = all_steps[order[k % len(all_steps)]]
        t = WORLD[ti]
        n_st = 2 if (rng.random() < 0.4 and j + 1 < len(t["steps"])) else 1
        clips.append(plan_clip(int(nums[k]), t, j, n_st, s))
    return longs, clips


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--videos", type=int, default=400)
    ap.add_argument("--clips", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="allow a non-empty OUT (its videos/, msrvtt/ and "
                                                         "annotations/ are removed first)")
    a = ap.parse_args(argv)
    if a.videos < 1 or a.clips < 0 or a.workers < 1:
        ap.error("--videos must be >= 1, --clips >= 0, --workers >= 1")
    if a.clips and a.clips < 6:
        ap.error("--clips must be 0 or >= 6 (MSR-VTT multiple choice needs 4 distractors)")
    if os.path.isdir(a.out) and os.listdir(a.out):
        if not a.force:
            print(f"error: {a.out} is not empty (use --force to overwrite)", file=sys.stderr)
            return 2
        for sub in ("videos", "msrvtt", "annotations"):
            shutil.rmtree(os.path.join(a.out, sub), ignore_errors=True)
    t0 = time.time()
    longs, clips = build_plans(a.videos, a.clips, a.seed)
    t_plan = time.time() - t0
    os.makedirs(os.path.join(a.out, "videos"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "msrvtt", "videos"), exist_ok=True)
    jobs = [(p, os.path.join(a.out, "videos", p["vid"] + ".mp4")) for p in longs]
    jobs += [(c, os.path.join(a.out, "msrvtt", "videos", c["vid"] + ".mp4")) for c in clips]
    jobs.sort(key=lambda j: -j[0]["nframes"])
    t1 = time.time()
    frames = size = 0
    if a.workers == 1:
        res = map(_job, jobs)
        for r in res:
            frames += r[1]
            size += r[2]
    else:
        with mp.get_context("fork").Pool(a.workers) as pool:
            for r in pool.imap_unordered(_job, jobs, chunksize=1):
                frames += r[1]
                size += r[2]
    t_render = time.time() - t1
    t2 = time.time()
    write_annotations(a.out, longs, clips)
    t_ann = time.time() - t2
    n_lines = sum(len(p["lines"]) for p in longs)
    hours = sum(p["duration"] for p in longs) / 3600
    print(f"wrote {len(longs)} videos ({hours:.2f} h, {n_lines} narration lines) + {len(clips)} clips, "
          f"{frames} frames, {size / 2 ** 20:.1f} MiB video to {a.out}; plan {t_plan:.1f}s render {t_render:.1f}s "
          f"annotations {t_ann:.1f}s total {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
