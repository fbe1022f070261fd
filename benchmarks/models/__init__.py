"""Benchmarks that train whole models on tasks: a character GPT, ViT and convolutional KANs on
scikit-learn's digits, CartPole, a transformer step, deep-network variance and S-KAN's selection."""
