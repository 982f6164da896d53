"""Training-cost prediction: memory and step time of on-device (re)training, from layer features. Pure."""
