"""The study report: tables, statistics, plots and rendering, one module each.

* :mod:`.frame`: the study's results as a long DataFrame, and its per-item samples (the only store reads);
* :mod:`.tables`: every table as a DataFrame (spread across sets, gaps, noise floor, paired comparisons);
* :mod:`.stats`: the paired statistics (bootstrap CIs, sign-flip and McNemar tests, Holm, sample sizes);
* :mod:`.plots`: matplotlib setup, style and atomic PNG save for all of calibench, and the study's plots;
* :mod:`.render`: one list of :class:`~.render.Section` objects to Markdown and to HTML;
* :mod:`.sections`: the registry of section providers, in report order;
* :mod:`.notes`: the note lines under the title; :mod:`.study`: ``write_report``, the assembly.

Nothing is imported here, so ``calibench.core.stats`` costs no pandas or matplotlib.
"""
