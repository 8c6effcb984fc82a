"""``python -m services.detector`` (gRPC API) | ``python -m services.detector work`` (queue worker; scale
detection by running more of these)."""

from services.common.process import main
from services.detector.handlers import HANDLERS
from services.detector.servicer import api

if __name__ == "__main__":
    main("detector", api, HANDLERS)
