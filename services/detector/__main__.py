"""``python -m services.detector``: the detector service (settings from AVAFORGE_* environment variables)."""

from avaforge.storage import S3Store
from avaforge.v1 import stages_pb2_grpc
from services.common.cache import cache_dir
from services.common.server import configure_logging, serve, stop_on_signals
from services.detector.servicer import FULL_NAME, METRICS, SERVICE, DetectorServicer


def main() -> None:
    configure_logging()
    store = S3Store.from_env()
    with cache_dir("detector") as cache:
        servicer = DetectorServicer(store, cache)
        running = serve(
            SERVICE,
            lambda s: stages_pb2_grpc.add_DetectorServiceServicer_to_server(servicer, s),
            [FULL_NAME],
            metrics=METRICS,
        )
        with stop_on_signals(running):
            pass


if __name__ == "__main__":
    main()
