"""The errors the client raises, each with a message that says what to do."""


class StevedoreError(Exception):
    """Base class of every error this package raises."""


class InvalidName(StevedoreError, ValueError):
    """A task, queue or node name stevedore would refuse."""


class InvalidOptions(StevedoreError, ValueError):
    """Publish options that do not go together, or a value out of range."""


class PayloadTooLarge(StevedoreError, ValueError):
    """The encoded message is larger than the workers accept (1 MiB by default)."""

    def __init__(self, task: str, size: int, limit: int):
        super().__init__(
            f"the message of task `{task}` is {size} bytes, more than the limit of {limit}: "
            "pass a reference (a key, a URL) instead of the data"
        )
        self.task, self.size, self.limit = task, size, limit


class RedisUnreachable(StevedoreError, ConnectionError):
    """Redis could not be reached; nothing was published."""


class PartlyPublished(StevedoreError):
    """Redis refused part of a batch (out of memory, a read-only replica...): `published` went
    in, `not_published` did not; publish those again once the cause is fixed."""

    def __init__(self, published, not_published, cause: str):
        super().__init__(
            f"{len(not_published)} of {len(published) + len(not_published)} tasks were not "
            f"published ({cause}); publish them again once Redis accepts writes"
        )
        self.published, self.not_published, self.cause = published, not_published, cause


class TaskFailed(StevedoreError):
    """The task ended without succeeding (failed, dead, timed out, cancelled, expired...)."""

    def __init__(self, task_id: str, state: str, error):
        super().__init__(f"task {task_id} {state}: {error or 'no error recorded'}")
        self.task_id, self.state, self.error = task_id, state, error


class WaitTimeout(StevedoreError, TimeoutError):
    """The task did not end within the time given to `wait`."""

    def __init__(self, task_id: str, timeout: float):
        super().__init__(
            f"task {task_id} did not end within {timeout:g} s; it may still run "
            "(wait again, or look with `stevedore task ID`)"
        )
        self.task_id, self.timeout = task_id, timeout
