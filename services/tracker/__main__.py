"""``python -m services.tracker`` (gRPC API) | ``python -m services.tracker work`` (queue worker)."""

from services.common.process import main
from services.tracker.handlers import HANDLERS
from services.tracker.servicer import api

if __name__ == "__main__":
    main("tracker", api, HANDLERS)
