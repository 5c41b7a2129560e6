"""Independent cells of an experiment, run side by side: in this process and in worker processes.

This process takes cells too (it has TensorFlow loaded already; a worker pays an import of
it), and each worker takes its next cell as soon as it has finished one. Each worker is a
fresh Python process (the "spawn" start method: forking a process that has
already started TensorFlow's thread pools is unsafe) with its own TensorFlow thread pools,
sized so that together they use the machine's cores about once. Workers report each
finished epoch through a queue, so that the parent can draw one progress bar.
"""
import concurrent.futures
import multiprocessing
import os
import queue as queues
import threading

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
    each task finishes, in this thread. With `jobs == 1` the tasks run here, in order;
    otherwise this process runs them too, beside `jobs - 1` worker processes: it has
    TensorFlow loaded already, and a worker costs a TensorFlow import. Each takes the next
    task when it has finished its last.

    Returns:
        The results, in the order of `tasks` whatever order they finished in.

    Raises:
        The first exception a task raised; the tasks not yet started are not started.
    """
    results = [None] * len(tasks)
    if jobs == 1:
        for index, task in enumerate(tasks):
            results[index] = function(task, lambda epoch, i=index: on_epoch(i, epoch))
            on_done(index, results[index])
        return results
    context = multiprocessing.get_context("spawn")
    reports, finished = context.Queue(), queues.Queue()
    order, lock, running = iter(range(len(tasks))), threading.Lock(), set()
    failed = []

    def take():
        with lock:
            index = None if failed else next(order, None)
            if index is not None:
                running.add(index)
            return index

    with concurrent.futures.ProcessPoolExecutor(jobs - 1, mp_context=context,
                                                initializer=_start,
                                                initargs=(reports, cores() // jobs or 1)) as pool:
        def submit():
            index = take()
            if index is not None:
                pool.submit(_call, function, tasks[index], index).add_done_callback(
                    lambda future, i=index: finished_one(i, future))

        def finished_one(index, future):
            # In the pool's thread: hand the result over, and give the worker its next task.
            finished.put((index, future))
            if future.exception() is None:
                submit()

        def collect(wait):
            _drain(reports, on_epoch)
            while True:
                try:
                    index, future = finished.get(timeout=0.2) if wait else finished.get_nowait()
                except queues.Empty:
                    return
                with lock:
                    running.discard(index)
                if future.exception() is not None:
                    with lock:
                        failed.append(index)
                    raise future.exception()
                results[index] = future.result()
                on_done(index, results[index])
                wait = False

        for _ in range(jobs - 1):
            submit()
        index = take()
        while index is not None:
            def report(epoch, i=index):
                on_epoch(i, epoch)
                _drain(reports, on_epoch)  # the workers' epochs, while this one works
            try:
                results[index] = function(tasks[index], report)
            except BaseException:
                with lock:
                    failed.append(index)
                raise
            with lock:
                running.discard(index)
            on_done(index, results[index])
            collect(wait=False)
            index = take()
        while True:
            with lock:
                if not running:
                    break
            collect(wait=True)
    return results


def _start(reports, threads):
    """A worker's first act: its queue to the parent, and its backend's thread pools."""
    global _reports
    _reports = reports
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)


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
