"""What every service shares: the gRPC server with health, reflection, metrics, logs and graceful stop."""
