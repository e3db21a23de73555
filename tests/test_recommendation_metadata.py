"""The ranking table in ``model_recommendations``' metadata: it says how many rows it shows, and rounds."""

import pandas as pd

from assets.model_recommendations import INLINE_COLUMNS, INLINE_MARKDOWN_CHARS, ranking_markdown


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


def test_the_inline_table_keeps_the_main_columns_under_the_ui_inline_limit():
    table = _ranking(25).assign(prior_score=0.5, nearest_datasets="a (0.912), b (0.871), c (0.850)",
                                latency_ms_b1=1.23456, on_front=False, gflops=0.1)
    text = ranking_markdown(table, 10, INLINE_COLUMNS, INLINE_MARKDOWN_CHARS)
    assert len(text) < INLINE_MARKDOWN_CHARS  # else the UI hides it behind "[Show Markdown]"
    header = text.split("\n")[2]
    assert [c.strip() for c in header.strip("|").split("|")] == ["rank", "model", "score", "prior_score",
                                                                  "latency_ms_b1", "on_front"]
    assert "| m0 " in text and "full_ranking" in text
    wide = ranking_markdown(table.assign(model=[f"a_long_model_name_{i:03d}_in_the_zoo" for i in range(25)]), 10,
                            INLINE_COLUMNS, INLINE_MARKDOWN_CHARS)
    assert len(wide) < INLINE_MARKDOWN_CHARS and wide.startswith(tuple(f"{k} of 25 models" for k in range(1, 10)))
    assert ranking_markdown(_ranking(5), 10, INLINE_COLUMNS, INLINE_MARKDOWN_CHARS).startswith("5 of 5 models\n")
