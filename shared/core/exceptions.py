"""The project's exceptions: one base, and one class per kind of failure the CLI names with its
own exit code (README, "Exit codes"). Standard library only: the CLI imports it before anything
heavy. Problems in a config tree are values, not exceptions (shared/core/errors.py: ConfigError)."""


class AgentqError(Exception):
    """A failure we can name, said in one line: never shown to a user as a traceback."""


class InvalidInput(AgentqError):
    """Bad input, named by file and field; nothing was enqueued (exit code 2)."""


class ServiceUnavailable(AgentqError):
    """Redis, AutoGen Studio, a worker or a model endpoint could not be reached or started (exit code 3)."""


class BrokerUnavailable(ServiceUnavailable):
    """A message could not be published: the broker (BROKER_URL, else REDIS_URL) is out of reach."""


class RunTimedOut(AgentqError, TimeoutError):
    """A run outlived its --timeout, or stopped moving (STALL_SECONDS); it may still finish (exit code 4)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C while `producer.api` waited for a run: the run goes on on the workers (`run_id`)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


class StartInterrupted(RunInterrupted):
    """Ctrl-C before a run's start reached the broker: the run is ended, nothing of it ran (`run_id`)."""


class TaskFailed(AgentqError):
    """One component or workflow task failed for good; the others go on (the run exits 1)."""


class MalformedAnswer(Exception):
    """A 200 from Studio or a model endpoint whose body is not the answer asked for (an HTML page
    from a proxy, JSON cut short, no choices): a server-side fault, retried as a 5xx is (shared/retry.py)."""


class RunCancelled(Exception):
    """`producer cancel` ended the run before this node started (the node is skipped, not failed)."""
