"""Hypothesis profiles shared by tests/ and parity_tests/.

    fast      (default)  few examples per property, for CI and everyday runs
    thorough  many examples:  pytest --hypothesis-profile=thorough
"""
from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=15, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("fast")
