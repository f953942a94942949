"""The built-in demo: federated logistic regression on an embedded, seeded dataset.

Nothing is downloaded: the data are generated from a fixed seed, split across datasites
with different feature shifts and label balances (non-IID), and trained with Flower's
``FedAvg`` over any transport that can run locally.
"""
