"""relational-rnn: a faithful, fast Relational Memory Core for PyTorch."""
