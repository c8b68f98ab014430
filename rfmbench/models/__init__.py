"""Models: scikit-learn style estimators, each with its search space beside it."""
