"""``recommend_all``: the top k of every user of a log, one row per item, as ``recommend`` gives each user's list."""

from __future__ import annotations

import datasets
import pytest

import hf_metaid as hm
from ranking_checks import assert_same_recommendations

pytestmark = pytest.mark.numerics  # lists from batches of several prompts compared with one-prompt lists


def log(rows: list[tuple[str, str]]) -> datasets.Dataset:
    """An interaction table as load_interactions reads it, every user kept."""
    users, items = zip(*rows, strict=True)
    return hm.load_interactions(datasets.Dataset.from_dict({"user": users, "item": items}), min_interactions=1)


# u1..u4 with histories of known items; "new" is unknown with known items, "ghost" knows nothing the model knows.
ROWS = [("u1", "i1"), ("u1", "i2"), ("u2", "i3"), ("u3", "i4"), ("u3", "i5"), ("u3", "i6"), ("u4", "i7")]
ROWS += [("new", "i8"), ("new", "zz"), ("ghost", "zz"), ("ghost", "yy")]


def test_every_user_gets_its_top_k_as_recommend_gives_it(model, tokenizer):
    with pytest.warns(hm.DataWarning) as caught:
        table = hm.recommend_all(model, tokenizer, log(ROWS), k=4, batch_size=2, progress=False)
    assert table.column_names == ["user", "rank", "item", "score"]
    assert list(dict.fromkeys(table["user"])) == ["u1", "u2", "u3", "u4", "new"]  # ghost: nothing to ask with
    assert table["rank"] == [1, 2, 3, 4] * 5
    histories = {"u1": ["i1", "i2"], "u2": ["i3"], "u3": ["i4", "i5", "i6"], "u4": ["i7"], "new": ["i8"]}
    for user, history in histories.items():
        mine = [(row["item"], row["score"]) for row in table if row["user"] == user]
        alone = model.recommend(
            tokenizer, user=None if user == "new" else user, history=history, k=4, exclude_seen=True
        )
        assert_same_recommendations(mine, alone, atol=1e-4)
        assert not {item for item, _ in mine} & set(history)  # no pair repeats: the history is left out
    message = str(caught[0].message)
    assert "2 of 6 users are not in the ID vocabulary: 1 asked as new users from the history items it knows" in message
    assert "1 with no known item left without recommendations" in message
    assert "3 of 11 interactions name items the ID vocabulary does not know" in message


def test_the_history_stays_in_the_ranking_where_users_come_back_to_items(model, tokenizer):
    """exclude_seen=None decides from the data (decide_exclude_seen): a repeated pair keeps the history in."""
    repeats = log([("u1", "i1"), ("u1", "i2"), ("u1", "i1"), ("u2", "i3")])
    decided = hm.recommend_all(model, tokenizer, repeats, k=5, progress=False)
    kept = hm.recommend_all(model, tokenizer, repeats, k=5, exclude_seen=False, progress=False)
    left_out = hm.recommend_all(model, tokenizer, repeats, k=5, exclude_seen=True, progress=False)
    assert decided["item"] == kept["item"]
    assert not {row["item"] for row in left_out if row["user"] == "u1"} & {"i1", "i2"}


def test_other_data_and_bad_arguments_are_refused(model, tokenizer):
    other = log([("a", "x"), ("b", "y")])
    with (
        pytest.raises(hm.UnknownDataError, match="knows none of the 2 users and none of the 2 items"),
        pytest.warns(hm.DataWarning),
    ):
        hm.recommend_all(model, tokenizer, other, progress=False)
    with pytest.raises(hm.InvalidArgumentError, match="k must be"):
        hm.recommend_all(model, tokenizer, log(ROWS[:2]), k=0)
    with pytest.raises(hm.InvalidArgumentError, match=r"interactions must be a datasets\.Dataset"):
        hm.recommend_all(model, tokenizer, {"user": ["u1"], "item": ["i1"]})
