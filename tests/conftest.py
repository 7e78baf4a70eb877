import torch

# Two cores: one intra-op thread keeps the suite fast and the numbers reproducible.
torch.set_num_threads(1)
