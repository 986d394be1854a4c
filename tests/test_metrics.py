"""The metrics of the official XTREME-R scorer on hand-checked cases and against independent computations."""

from __future__ import annotations

import random

import pytest

from hpcxlt.evaluate import metrics as M

# --- accuracy ----------------------------------------------------------------------------------


def test_accuracy_hand_case_in_points():
    assert M.accuracy(
        ["entailment", "neutral", "contradiction", "neutral"], ["entailment", "neutral", "neutral", "entailment"]
    ) == {"accuracy": 50.0}


def test_accuracy_agrees_with_scikit_learn():
    from sklearn.metrics import accuracy_score

    rng = random.Random(7)
    gold = [rng.randrange(3) for _ in range(500)]
    pred = [g if rng.random() < 0.7 else rng.randrange(3) for g in gold]
    assert M.accuracy(gold, pred)["accuracy"] == pytest.approx(100 * accuracy_score(gold, pred))


def test_accuracy_refuses_misaligned_or_empty_input():
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        M.accuracy(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="no examples"):
        M.accuracy([], [])


# --- seqeval entity F1 -------------------------------------------------------------------------


def test_seqeval_iob2_entity_spans_hand_derived():
    # gold entities: PER(0-1), LOC(3); predicted: PER(0-1), ORG(3) -> 1 of 2 right each way
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert M.seqeval_f1(gold, pred) == pytest.approx({"f1": 50.0, "precision": 50.0, "recall": 50.0})


def test_seqeval_i_without_b_opens_an_entity():
    # conlleval rule: an I- after O starts an entity, so I-PER I-PER equals B-PER I-PER ...
    assert M.seqeval_f1([["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]])["f1"] == 100.0
    # ... and a lone I-PER inside a gold B-PER I-PER span is a different (shorter) entity.
    assert M.seqeval_f1([["B-PER", "I-PER", "O"]], [["O", "I-PER", "O"]])["f1"] == 0.0


def test_seqeval_entities_do_not_cross_sentences():
    # B-PER | I-PER in two sentences are two entities; predicting only the first: P=1, R=1/2.
    scores = M.seqeval_f1([["B-PER"], ["I-PER"]], [["B-PER"], ["O"]])
    assert scores["precision"] == 100.0 and scores["recall"] == 50.0
    assert scores["f1"] == pytest.approx(200 / 3)


def test_seqeval_on_upos_tags_follows_the_official_quirk():
    # seqeval reads 'NOUN' as prefix 'N' + type 'OUN': a run of equal tags is one chunk.
    # gold chunks: NOUN(0-1), VERB(2); predicted: NOUN(0), ADJ(1), VERB(2) -> tp=1, P=1/3, R=1/2, F1=0.4
    scores = M.seqeval_f1([["NOUN", "NOUN", "VERB"]], [["NOUN", "ADJ", "VERB"]])
    assert scores["precision"] == pytest.approx(100 / 3)
    assert scores["recall"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(40.0)
    # tags starting with S ('SYM') are single-token chunks, so SYM SYM is two of them and one is found ...
    assert M.seqeval_f1([["SYM", "SYM"]], [["SYM", "NOUN"]])["f1"] == pytest.approx(50.0)
    # ... while NOUN NOUN is one chunk, and a predicted NOUN(0) alone does not match it.
    assert M.seqeval_f1([["NOUN", "NOUN"]], [["NOUN", "VERB"]])["f1"] == 0.0


def test_seqeval_without_predicted_entities_scores_zero():
    assert M.seqeval_f1([["B-LOC", "O"]], [["O", "O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_seqeval_refuses_misaligned_sentences():
    with pytest.raises(ValueError, match="sentence 2 has 1 predicted tags for 2 gold tags"):
        M.seqeval_f1([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="1 predicted sentences for 2"):
        M.seqeval_f1([["O"], ["O"]], [["O"]])


# --- SQuAD v1.1 --------------------------------------------------------------------------------


def test_squad_normalisation():
    assert M.squad_normalize("The  Quick, brown fox!") == "quick brown fox"
    assert M.squad_normalize("an apple a day") == "apple day"


def test_squad_max_over_gold_answers_and_unanswered_questions():
    golds = {"q1": ["Denver Broncos", "the Broncos from Denver"], "q2": ["Paris"]}
    # q1: EM 0; F1 vs "denver broncos" = 2*(1*0.5)/1.5 = 2/3, vs "broncos from denver" = 2*(1*1/3)/(4/3) = 1/2 -> max 2/3
    # q2 is unanswered and counts as 0; the prediction for an unknown id is ignored.
    scores = M.squad_em_f1(golds, {"q1": "Broncos", "q9": "Paris"})
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(100 * (2 / 3) / 2)
    assert M.squad_em_f1(golds, {"q1": "the Denver Broncos.", "q2": "paris"}) == {"exact_match": 100.0, "f1": 100.0}


def test_squad_empty_prediction_edge_cases():
    # An empty answer against a real one scores 0; against an answer that normalises to nothing,
    # SQuAD v1.1 gives EM 1 but F1 0 (no common token) - kept as in the official script.
    assert M.squad_em_f1({"q": ["Paris"]}, {"q": ""}) == {"exact_match": 0.0, "f1": 0.0}
    assert M.squad_em_f1({"q": ["The"]}, {"q": ""}) == {"exact_match": 100.0, "f1": 0.0}


def test_squad_drops_only_ascii_punctuation_but_mlqa_drops_unicode_punctuation():
    golds = {"q": ["Paris"]}
    assert M.squad_em_f1(golds, {"q": "«Paris»"}) == {"exact_match": 0.0, "f1": 0.0}
    assert M.mlqa_em_f1(golds, {"q": "«Paris»"}, "en") == {"exact_match": 100.0, "f1": 100.0}


def test_qa_refuses_a_question_without_answers():
    with pytest.raises(ValueError, match="'q7' has no gold answer"):
        M.squad_em_f1({"q7": []}, {"q7": "x"})


# --- MLQA normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        ("en", "The cat.", "cat"),
        ("es", "La casa de los abuelos", "casa de abuelos"),
        ("de", "Der Hund und das Haus!", "hund und haus"),
        ("vi", "cái bàn của tôi", "bàn tôi"),
        # Arabic: every "ال" becomes a space, also inside a word; Arabic comma (U+060C) is punctuation.
        ("ar", "الكتاب، القلم", "كتاب قلم"),
        ("ar", "مال", "م"),
        # Hindi: no articles; the danda (U+0964) is punctuation.
        ("hi", "भारत की राजधानी।", "भारत की राजधानी"),
        # Chinese: every CJK character is a token, other runs split on spaces; full-width punctuation dropped.
        ("zh", "北京大学", "北 京 大 学"),
        ("zh", "iPhone 11手机，很好。", "iphone 11 手 机 很 好"),
        # Unicode symbols (category S, e.g. €) are not punctuation; ASCII ones ($) are.
        ("en", "€100 and $100", "€100 and 100"),
    ],
)
def test_mlqa_normalisation_per_language(lang, text, expected):
    assert M.mlqa_normalize(text, lang) == expected


def test_mlqa_chinese_f1_is_character_level():
    # "北京" vs "北京大学": 2 common characters, P=1, R=1/2 -> F1 = 2/3; SQuAD sees two different tokens.
    assert M.mlqa_em_f1({"q": ["北京大学"]}, {"q": "北京"}, "zh")["f1"] == pytest.approx(200 / 3)
    assert M.squad_em_f1({"q": ["北京大学"]}, {"q": "北京"})["f1"] == 0.0


def test_mlqa_german_articles_make_an_exact_match():
    assert M.mlqa_em_f1({"q": ["die Berliner Mauer"]}, {"q": "Berliner Mauer"}, "de")["exact_match"] == 100.0
    assert M.squad_em_f1({"q": ["die Berliner Mauer"]}, {"q": "Berliner Mauer"})["exact_match"] == 0.0


def test_mlqa_refuses_unknown_language():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        M.mlqa_em_f1({"q": ["x"]}, {"q": "x"}, "fr")


# --- mAP@k -------------------------------------------------------------------------------------


def test_map_single_gold_is_reciprocal_rank_within_top_20():
    golds = {"m1": ["Q1"], "m2": ["Q2"], "m3": ["Q3"], "m4": ["Q4"]}
    rankings = {
        "m1": ["Q9", "Q1"],  # rank 2 -> 1/2
        "m2": ["Q2"],  # rank 1 -> 1
        "m3": [f"X{i}" for i in range(20)] + ["Q3"],  # rank 21 -> 0
        # m4 has no ranking -> 0
    }
    assert M.map_at_k(golds, rankings) == {"map_at_20": pytest.approx(100 * 1.5 / 4)}


def test_average_precision_with_several_relevant_and_duplicates():
    assert M.average_precision_at_k({"a", "b", "c"}, ["a", "x", "b", "y", "c"]) == pytest.approx(
        (1 + 2 / 3 + 3 / 5) / 3
    )
    # a repeated id counts once: hits at ranks 1 and 3 -> (1 + 2/3) / 2
    assert M.average_precision_at_k({"a", "b"}, ["a", "a", "b"]) == pytest.approx((1 + 2 / 3) / 2)
    # the divisor is min(#relevant, k): 25 relevant, the top 20 all relevant -> 1
    relevant = [f"r{i}" for i in range(25)]
    assert M.average_precision_at_k(relevant, relevant, k=20) == pytest.approx(1.0)


def test_map_agrees_with_scikit_learn_average_precision_when_k_covers_all():
    import numpy as np
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    ids = [f"c{i}" for i in range(30)]
    scores = rng.normal(size=(6, 30))  # continuous: no ties
    relevant = [set(rng.choice(ids, size=4, replace=False)) for _ in range(6)]
    ranked = M.rank_candidates(scores, ids, k=30)
    ours = M.map_at_k({str(q): relevant[q] for q in range(6)}, {str(q): ranked[q] for q in range(6)}, k=30)["map_at_30"]
    theirs = np.mean([average_precision_score([c in relevant[q] for c in ids], scores[q]) for q in range(6)])
    assert ours == pytest.approx(100 * theirs)


def test_rank_candidates_breaks_ties_by_candidate_order():
    ranked = M.rank_candidates([[0.5, 0.9, 0.5, 0.9]], ["a", "b", "c", "d"])
    assert ranked == [["b", "d", "a", "c"]]
    # so with ties the first-listed relevant candidate wins: d is second, b first.
    assert M.map_at_k({"q": ["d"]}, {"q": ranked[0]})["map_at_20"] == 50.0
    assert M.rank_candidates([[3.0, 1.0, 2.0]], ["a", "b", "c"], k=2) == [["a", "c"]]


def test_rank_candidates_refuses_nan_and_wrong_shapes():
    with pytest.raises(ValueError, match="NaN"):
        M.rank_candidates([[float("nan"), 1.0]], ["a", "b"])
    with pytest.raises(ValueError, match="do not match 3 candidates"):
        M.rank_candidates([[1.0, 2.0]], ["a", "b", "c"])
