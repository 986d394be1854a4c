"""UD CoNLL-U files -> (words, UPOS tags) the way XTREME builds its UD-POS data.

XTREME (google-research/xtreme, `scripts/download_data.sh`) converts each UD treebank with
`third_party/ud-conversion-tools/conllu_to_conll.py --lang L --replace_subtokens_with_fused_forms`, then
`utils_preprocess.py --task udpos`. What that does to the words and tags, as reimplemented here:

- A multiword token (`26-27 am` over `26 an`, `27 dem`) keeps its *surface* form as one word, tagged
  with the UPOS of its span head; the other subtokens disappear. The span head is the span token with
  the fewest ancestors in the dependency graph (basic heads plus the enhanced DEPS heads); on a tie,
  the first of the tied tokens in a language-specific UPOS precedence list (below).
- Empty nodes (`8.1`) are ignored; a sentence whose words are all '_' but at most one is dropped;
  U+200C and spaces inside a word are removed.

The Hugging Face `google/xtreme` `udpos.*` configs differ: they drop the multiword line and keep the
subtokens (`an`, `dem`), so hub and XTREME-converted test sets do not have the same words.
"""

from __future__ import annotations

from pathlib import Path

from hpcxlt.data.readers import DataFileError, Problems, text_lines

# UPOS precedence used to break ties between equally high span tokens, per --lang
# (conllu_to_conll.py's POSRANKPRECEDENCEDICT; 'default' for every other language).
SPAN_HEAD_PRECEDENCE = {
    "default": (
        "VERB",
        "NOUN",
        "PROPN",
        "PRON",
        "ADJ",
        "NUM",
        "ADV",
        "INTJ",
        "AUX",
        "ADP",
        "DET",
        "PART",
        "CCONJ",
        "SCONJ",
        "X",
        "PUNCT",
    ),
    "es": ("VERB", "AUX", "PRON", "ADP", "DET"),
    "fr": ("VERB", "AUX", "PRON", "NOUN", "ADJ", "ADV", "ADP", "DET", "PART", "SCONJ", "CONJ"),
    "it": ("VERB", "AUX", "ADV", "PRON", "ADP", "DET", "INTJ"),
}
COLUMNS = 10


def _ancestor_counts(heads: dict[int, set[int]]) -> dict[int, int]:
    """Number of distinct ancestors of every word in the graph head -> dependent."""
    counts = {}
    for word in heads:
        seen: set[int] = set()
        todo = list(heads[word])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(heads.get(node, ()))
        counts[word] = len(seen)
    return counts


def _span_head(span: list[int], upos: dict[int, str], depth: dict[int, int], precedence: tuple[str, ...]) -> int:
    highest = min(depth[i] for i in span)
    tied = [i for i in span if depth[i] == highest]
    if len(tied) == 1:
        return tied[0]
    rank = {tag: n for n, tag in enumerate(precedence)}
    return min(tied, key=lambda i: (rank.get(upos[i], len(precedence)), span.index(i)))


def _convert(
    words: dict[int, tuple[str, str]],
    heads: dict[int, set[int]],
    multiword: dict[int, tuple[int, str]],
    precedence: tuple[str, ...],
) -> tuple[list[str], list[str]]:
    upos = {i: tag for i, (_, tag) in words.items()}
    depth = _ancestor_counts(heads)
    replaced: dict[int, str] = {}
    dropped: set[int] = set()
    for start, (end, form) in multiword.items():
        span = [i for i in range(start, end + 1) if i in words]
        if not span:
            continue
        head = _span_head(span, upos, depth, precedence)
        replaced[head] = form
        dropped.update(i for i in span if i != head)
    tokens, tags = [], []
    for i in sorted(words):
        if i in dropped:
            continue
        form = replaced.get(i, words[i][0])
        tokens.append("".join(form.replace("\u200c", "").split(" ")))
        tags.append(words[i][1])
    return tokens, tags


def read_conllu(path: str | Path, lang: str, tag_names: tuple[str, ...] = ()) -> list[tuple[list[str], list[str]]]:
    """Sentences of a UD CoNLL-U file as (words, UPOS tags), converted as XTREME does (module docstring).
    Comment lines (`#`, the format's own rule) are skipped; a line without the 10 columns, an empty FORM,
    a bad ID or HEAD, or a word's UPOS outside `tag_names` is refused with the others of the file."""
    path = Path(path)
    problems = Problems(path)
    allowed = set(tag_names)
    precedence = SPAN_HEAD_PRECEDENCE.get(lang, SPAN_HEAD_PRECEDENCE["default"])
    sentences: list[tuple[list[str], list[str]]] = []
    words: dict[int, tuple[str, str]] = {}
    heads: dict[int, set[int]] = {}
    multiword: dict[int, tuple[int, str]] = {}

    def finish() -> None:
        if words:
            tokens, tags = _convert(words, heads, multiword, precedence)
            empty = sum(token == "_" for token in tokens)
            if empty == 0 or empty < len(tokens) - 1:
                sentences.append((tokens, tags))
        words.clear()
        heads.clear()
        multiword.clear()

    for number, line in enumerate(text_lines(path, problems), 1):
        if not line.strip():
            finish()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != COLUMNS:
            problems.add(number, f"{len(fields)} tab-separated field(s); a CoNLL-U word line has {COLUMNS}")
            continue
        ident, form, _, tag, _, _, head, _, deps, _ = fields
        if "." in ident:  # empty node of the enhanced graph: no word
            continue
        if not form.strip():
            problems.add(number, f"empty FORM in word {ident!r}; CoNLL-U writes '_' for an unknown form")
            continue
        try:
            if "-" in ident:
                start, end = (int(x) for x in ident.split("-"))
                multiword[start] = (end, form)
                continue
            word = int(ident)
            parents = {int(head)} if head != "_" else set()
        except ValueError:
            problems.add(number, f"bad ID {ident!r} or HEAD {head!r}; expected integers")
            continue
        if allowed and tag not in allowed:
            problems.add(number, f"UPOS {tag!r} of word {ident!r} is not one of {sorted(allowed)}")
        if deps != "_":  # enhanced heads count as ancestors in XTREME's graph too
            parents |= {int(pair.split(":")[0]) for pair in deps.split("|") if pair.split(":")[0].isdigit()}
        words[word] = (form, tag)
        heads[word] = parents
    finish()
    problems.raise_any()
    if not sentences:
        raise DataFileError(path, [(None, "holds no sentence")])
    return sentences


__all__ = ["SPAN_HEAD_PRECEDENCE", "read_conllu"]
