"""`vidlang study` table and argument checks (the study's training runs are exercised by tests/test_integration.py
through the same pipeline stages)."""

from __future__ import annotations

import pytest

from vidlang.errors import ConfigError
from vidlang.study import _parse_pair, study_table

R5 = "clip-youcookii / t2v / R@5"


def _runs(*r5: float) -> list[dict]:
    return [{R5: v} for v in r5]


def test_study_table_pairs_every_variant_with_infonce_and_extra_pairs_with_their_own_baseline():
    results = {"s400": {"infonce": _runs(50, 52, 51), "norton": _runs(51, 51, 53),
                        "infonce_hn": _runs(40, 41, 42), "norton_hn": _runs(43, 43, 45)}}
    table = study_table(results, pairs=[("norton_hn", "infonce_hn")])
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if "paired" in line}
    assert set(rows) == {"norton − infonce, paired", "infonce_hn − infonce, paired",
                         "norton_hn − infonce, paired", "norton_hn − infonce_hn, paired"}
    # R@5 is the first metric: paired differences 3, 2, 3 -> mean +2.7, 3/3 seeds better
    assert rows["norton_hn − infonce_hn, paired"].split("|")[2].strip() == "+2.7 ± 0.6 (3/3)"
    assert rows["norton − infonce, paired"].split("|")[2].strip() == "+0.7 ± 1.5 (2/3)"  # +1, -1, +2


def test_pair_must_name_two_variants():
    assert _parse_pair("norton_hn:infonce_hn", ["infonce", "norton_hn", "infonce_hn"]) == ("norton_hn", "infonce_hn")
    with pytest.raises(ConfigError, match="expected VARIANT:BASELINE"):
        _parse_pair("norton_hn", ["norton_hn"])
    with pytest.raises(ConfigError, match="'infonce_x' is not a --variant"):
        _parse_pair("norton_hn:infonce_x", ["infonce", "norton_hn"])
