"""``python -m services.trainer`` (gRPC API: start/watch/cancel) | ``python -m services.trainer work`` (runs
training jobs; the GPU image)."""

from services.common.process import main
from services.trainer.handlers import HANDLERS
from services.trainer.servicer import api

if __name__ == "__main__":
    main("trainer", api, HANDLERS)
