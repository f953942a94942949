"""quickstart-numpy: a Flower app made the way Flower's quickstart templates are."""
