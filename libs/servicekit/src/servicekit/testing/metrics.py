"""Reading this process's Prometheus metrics the way a scrape would, by name and labels."""

from prometheus_client import REGISTRY


def metric_value(name: str, **labels: str) -> float:
    """The sample ``name`` (as exposed: ``events_consumed_total``) with exactly ``labels``.

    0 when there is no such sample yet: a labelled counter appears on its first increment, so
    "before" readings in tests need no special case.
    """
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value
