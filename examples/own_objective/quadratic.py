"""A training function of your own: hpsearch calls it once per trial with the trial's config."""


def objective(config, report):
    x, y = config["x"], config["y"]
    scale = 1.0 if config["loss"] == "squared" else 0.5
    loss = float("inf")
    for epoch in range(1, 6):  # five "epochs": report after each one, for the pruner
        loss = scale * ((x - 2) ** 2 + (y + 1) ** 2) + 1 / epoch
        report(loss, epoch)
    return loss  # the metric of the study
