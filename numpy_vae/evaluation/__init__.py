"""Evaluating a trained model: the importance-weighted likelihood and what the latent space is used for.

    iwae.py          importance_weighted_nll (Burda et al. 2015), with mean and standard error
    latent_stats.py  posterior statistics, KL per dimension, active units, posterior collapse
"""
