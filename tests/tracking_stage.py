"""A stage in miniature for the tests of MLflow faults (tests/test_tracking_faults.py): the real
run_stage, tracking.setup, variant_run and SeedLogger, an output written through birdplane.io, an
artifact logged at the end; seconds instead of a training's minutes.

Run as `python tracking_stage.py [EPOCHS]` in a project folder. Prints `epoch N` after each
epoch's metrics are logged. For the tests, BIRDPLANE_TEST_SIGNAL_IN_SQL="<SQL text>:<SIGNAL>"
sends the signal to this process from inside the store's transaction, just before the first
statement holding that text (SQLAlchemy's before_cursor_execute) once `epoch 1` began, and then
keeps the write going for BIRDPLANE_TEST_WRITE_S seconds (0.2 by default): the signal lands in
the middle of a write, as a real one may.
"""

import os
import signal
import sys
import time

from birdplane.process import run_stage


def signal_inside_the_store(armed: list[bool]) -> None:
    spec = os.environ.get("BIRDPLANE_TEST_SIGNAL_IN_SQL")
    if not spec:
        return
    text, name = spec.rsplit(":", 1)
    seconds = float(os.environ.get("BIRDPLANE_TEST_WRITE_S", "0.2"))
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    fired = []

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn, cursor, statement, *args):
        if armed and not fired and text in statement:
            fired.append(statement)
            print(
                f"signal {name} inside {' '.join(statement.split()[:3])} at {time.time()}",
                flush=True,
            )
            os.kill(os.getpid(), getattr(signal, name))
            time.sleep(seconds)


class Epoch:
    def __init__(self, epoch: int):
        self.epoch = epoch

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": 1.0 / self.epoch}


def main() -> None:
    import mlflow

    from birdplane import tracking
    from birdplane.io import outputs

    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    armed: list[bool] = []
    signal_inside_the_store(armed)
    tracking.setup("birdplane")
    with tracking.variant_run("birdplane", "tiny", stage="train", tags={"variant": "tiny"}):
        log = tracking.SeedLogger("tiny", "train", [1], {"lr": 0.1}, {"variant": "tiny"})
        with log.scope([1]), outputs() as out:
            out.write_text("out/result.txt", "done\n")
            log.start(1, _NoParameters())
            for epoch in range(1, epochs + 1):
                armed.append(True)
                log.epoch(1, Epoch(epoch))
                print(f"epoch {epoch}", flush=True)
            mlflow.log_dict({"epochs": epochs}, "result.json")
    print("finished", flush=True)


class _NoParameters:
    """A model without parameters, for SeedLogger.start's n_parameters."""

    def parameters(self):
        return iter(())


if __name__ == "__main__":
    run_stage("train", main)
