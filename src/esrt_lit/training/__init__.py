"""The training library under ``python -m esrt_lit.train``: the LightningModule (:mod:`.module`), its
callbacks (:mod:`.callbacks`), and the checks (:mod:`.checks`) and records (:mod:`.records`) of a
training run. Import from the modules; the package re-exports nothing."""
