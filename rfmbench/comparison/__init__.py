"""Comparing models across datasets: leaderboards, statistics, plots. DataFrame in, DataFrame out."""
