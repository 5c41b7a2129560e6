"""Whether a model trains on several worker processes (tf.distribute), for the parts that
must then act alike on every worker: the monitor's decisions, and seeded weight draws."""
from ._compat import in_multi_worker_mode


def multi_worker(model_or_strategy):
    """True when the model's `tf.distribute` strategy (or the strategy given) spans several
    worker processes, as `MultiWorkerMirroredStrategy` does with more than one worker."""
    strategy = getattr(model_or_strategy, "distribute_strategy", model_or_strategy)
    return in_multi_worker_mode(strategy)
