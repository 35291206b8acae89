"""What every task family's trainer shares: config, device, epoch loop, losses, optimizers,
checkpoints and the dispatch from a task family to its trainer. Torch-free modules
(``caps``, ``family_knobs``, ``knobs``, ``config``, ``resolved``) are imported by the service.
"""
