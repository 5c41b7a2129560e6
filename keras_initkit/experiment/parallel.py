"""Independent cells of an experiment, run in worker processes.

Each worker is a fresh Python process (the "spawn" start method: forking a process that has
already started TensorFlow's thread pools is unsafe) with its own TensorFlow thread pools,
sized so that the workers together use the machine's cores once. Workers report each
finished epoch through a queue, so that the parent can draw one progress bar.
"""
import concurrent.futures
import multiprocessing
import os
import queue as queues

# A worker training a small model holds TensorFlow, Keras and the data: about 1 GiB was
# measured here; twice that leaves room for larger models.
WORKER_MEMORY = 2 * 1024 ** 3

_reports = None  # in a worker: the queue to the parent


def cores():
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory():
    """Bytes of memory available now, or None where the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_jobs(cells):
    """Workers for `cells` cells: one per core, no more than the cells, and no more than
    the available memory holds at `WORKER_MEMORY` each."""
    memory = available_memory()
    by_memory = cores() if memory is None else max(1, memory // WORKER_MEMORY)
    return max(1, min(cores(), cells, by_memory))


def check_jobs(jobs):
    """`jobs` as given, or a ValueError naming what is allowed."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"`jobs` must be an integer >= 1 or None (one worker per core); "
                         f"received jobs={jobs!r}.")
    return jobs


def run(function, tasks, jobs, on_epoch, on_done):
    """Calls `function(task, report)` for every task, `jobs` at a time.

    `report(epochs_done)` is how a task says it has finished an epoch; it reaches
    `on_epoch(index, epochs_done)` in this process. `on_done(index, result)` is called as
    each task finishes. With `jobs == 1` the tasks run here, in order; otherwise in worker
    processes.

    Returns:
        The results, in the order of `tasks` whatever order they finished in.

    Raises:
        The first exception a task raised; the tasks not yet started are cancelled.
    """
    results = [None] * len(tasks)
    if jobs == 1:
        for index, task in enumerate(tasks):
            results[index] = function(task, lambda epoch, i=index: on_epoch(i, epoch))
            on_done(index, results[index])
        return results
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    threads = max(1, cores() // jobs)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start,
                                                initargs=(reports, threads)) as pool:
        pending = {pool.submit(_call, function, task, index): index
                   for index, task in enumerate(tasks)}
        try:
            while pending:
                finished, _ = concurrent.futures.wait(
                    pending, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
                _drain(reports, on_epoch)
                for future in finished:
                    index = pending.pop(future)
                    results[index] = future.result()
                    on_done(index, results[index])
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def _start(reports, threads):
    """A worker's first act: its queue to the parent, and its TensorFlow thread pools."""
    global _reports
    _reports = reports
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _call(function, task, index):
    import gc

    import keras

    # A worker runs many cells: without this, every cell's model stays in memory.
    keras.backend.clear_session()  # it collects garbage too
    # TensorFlow keeps every finished fit's training graph (plain Keras does): frozen, the
    # survivors are not walked again by every later collection (0.1 s instead of up to 2 s).
    gc.freeze()
    return function(task, lambda epoch: _reports.put((index, epoch)))


def _drain(reports, on_epoch):
    while True:
        try:
            index, epoch = reports.get_nowait()
        except queues.Empty:
            return
        on_epoch(index, epoch)
