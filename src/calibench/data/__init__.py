"""The data stage: everything that makes, reads or describes a calibration set.

Layout (each module has one job)::

    calibset.py       the CalibrationSet artifact: windows, masks, manifest, hashes
    tokenizer.py      a tokenizer's identity and the BOS policy of windows
    sampling.py       pure math of placing disjoint windows
    token_stream.py   tokenizing a corpus once, cached
    draw.py           drawing k disjoint sets of windows from one text source
    sources/          where text comes from: hub corpora, offline packs, files, random vocabulary
    generation/       the model writes its own calibration text (self-calibration)
    curation/         COLA: choose samples in activation space
    stats/            text statistics of a set (perplexity, coverage, diversity, Zipf)
"""
