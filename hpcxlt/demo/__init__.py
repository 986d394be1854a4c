"""The synthetic world of the demo and the tests: a tiny XLM-R with a locally trained tokenizer
(`tiny.py`) and a synthetic XTREME-R benchmark in the real data sets' schemas (`synth.py`, built from
`lexicon.py` and `grammar.py`).

None of it is used by a real run: the product code (`hpcxlt.data`, `hpcxlt.model`, `train`, ...)
never imports this package; only `hpcxlt build-tiny` / `hpcxlt synth`, `make demo` and the tests do.
"""
