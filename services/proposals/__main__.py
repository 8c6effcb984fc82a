"""``python -m services.proposals`` (gRPC API) | ``python -m services.proposals work`` (queue worker)."""

from services.common.process import main
from services.proposals.handlers import HANDLERS
from services.proposals.servicer import api

if __name__ == "__main__":
    main("proposals", api, HANDLERS)
