"""The offline build: embed item texts, fit the sources, train the fusion on holdout folds, save and load the index."""
