"""Evaluation: the ranking metrics, the evaluator that decodes and scores a split, and ID-quality measures."""
