"""The ranking table in ``model_recommendations``' metadata: it says how many rows it shows, and rounds."""

import pandas as pd

from assets.model_recommendations import ranking_markdown


def _ranking(n: int) -> pd.DataFrame:
    return pd.DataFrame({"rank": range(n), "model": [f"m{i}" for i in range(n)], "score": [0.7242235995792949] * n})


def test_a_cut_table_says_how_many_it_shows_and_where_the_rest_is():
    text = ranking_markdown(_ranking(25), 10)
    assert text.startswith("10 of 25 models (all of them: metadata `full_ranking`")
    assert "| m9 " in text and "| m10 " not in text
    assert "0.724 " in text and "0.7242" not in text


def test_a_whole_table_says_so():
    text = ranking_markdown(_ranking(5), 10)
    assert text.startswith("5 of 5 models\n")
    assert "full_ranking" not in text and "| m4 " in text
