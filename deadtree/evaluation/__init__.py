"""Measuring the models, apart from the product: scores against labelled scenes (`deadtree evaluate`), `segment`
run on validation frames, the false-alarm figure on town tiles, and the west -> east domain study."""
