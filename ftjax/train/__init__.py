"""Training: the train state, pure steps, config checks and the train-and-evaluate loop."""
