"""Saving: inference folders, model cards, atomic output folders and their leftovers, and Hub uploads."""
