"""Every key the client writes or reads (docs/protocol.md, "Every key"); built here only."""


class Keys:
    """The key names of one namespace."""

    def __init__(self, namespace: str):
        self.ns = namespace

    def _queue_tag(self, queue: str) -> str:
        """The hash tag of a message's `queue` field: `q:NAME`, `n:NODE` or `b`."""
        if queue == "broadcast":
            return "b"
        if queue.startswith("node:"):
            return "n:" + queue[5:]
        return "q:" + queue

    def stream(self, queue: str) -> str:
        return f"{self.ns}:{{{self._queue_tag(queue)}}}:stream"

    def delayed(self, queue: str) -> str:
        return f"{self.ns}:{{{self._queue_tag(queue)}}}:delayed"

    def dead(self, queue: str) -> str:
        return f"{self.ns}:{{{self._queue_tag(queue)}}}:dead"

    def history(self, queue: str, state: str) -> str:
        return f"{self.ns}:{{{self._queue_tag(queue)}}}:history:{state}"

    def dup(self, queue: str, key: str) -> str:
        return f"{self.ns}:{{{self._queue_tag(queue)}}}:dup:{key}"

    def delayed_wake(self) -> str:
        return f"{self.ns}:delayed-wake"

    def record(self, task_id: str) -> str:
        return f"{self.ns}:{{t:{task_id}}}:record"

    def progress(self, task_id: str) -> str:
        return f"{self.ns}:{{t:{task_id}}}:progress"

    def task_log(self, task_id: str) -> str:
        return f"{self.ns}:{{t:{task_id}}}:log"

    def claim(self, task_id: str) -> str:
        return f"{self.ns}:{{t:{task_id}}}:claim"

    def done(self, task_id: str) -> str:
        return f"{self.ns}:{{t:{task_id}}}:done"

    def queue_registry(self) -> str:
        return f"{self.ns}:{{r}}:queues"
